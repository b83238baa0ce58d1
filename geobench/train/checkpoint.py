"""Checkpoints: one torch.save'd dict that loads with `torch.load(weights_only=True)`.

Everything in it is a tensor, a number, a string, or a list/dict of those: the model
name and arguments, weights, optimizer / scheduler / AMP-scaler / loss state, epoch and
step, the RNG states (as tensors and lists), the dataset hash, the resolved config and
the log rows so far. Writes go to a temporary file renamed over the final name.

Beside each checkpoint, `NAME.sha256` (the `sha256sum` format) holds its checksum; a file
that does not match is refused on load, naming it. While a new checkpoint replaces an old
one the checksum file lists both, so a kill at any moment leaves a checkpoint that
verifies. A checkpoint without a checksum file (written before they existed, or copied
alone) loads unverified.
"""
from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from geobench.errors import DataError
from geobench.fileio import atomic_path, sha256_file, write_text

FORMAT = "geobench.checkpoint/1"
LAST, BEST = "checkpoint.pt", "best.pt"


def rng_state() -> dict[str, Any]:
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "internal": list(internal),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checksum_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def _listed(path: Path) -> list[str]:
    """The digests the checksum file lists for `path` (empty when there is none)."""
    sidecar = checksum_path(path)
    try:
        lines = sidecar.read_bytes().decode("ascii").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DataError(f"{sidecar}: unreadable ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise DataError(f"{sidecar}: damaged (not a sha256sum checksum line), so {path.name} "
                        f"cannot be verified; restore it, or delete it to use {path.name} "
                        f"unverified") from None
    return [line.split()[0].lower() for line in lines if line.split()]


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write `payload` (plus the format tag) to `path`, and its checksum beside."""
    import torch

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)
        digest = sha256_file(tmp)
        old = []
        if path.is_file():
            try:
                listed = _listed(path)
            except DataError:  # a damaged checksum file is replaced, not trusted
                listed = []
            old = [d for d in (listed or [sha256_file(path)]) if d != digest]
        # Both digests while the rename is pending: whichever file survives a kill verifies.
        write_text(checksum_path(path), "".join(f"{d}  {path.name}\n" for d in [digest, *old]))
    if old:
        write_text(checksum_path(path), f"{digest}  {path.name}\n")
    return path


def verify_checkpoint(path: str | Path) -> str:
    """The file's sha256, refused when its checksum file lists another one."""
    path = Path(path)
    return check_listed(path, sha256_file(path))


def check_listed(path: Path, digest: str) -> str:
    """`digest` (of `path`'s bytes), refused when the checksum file lists another one."""
    listed = _listed(path)
    if listed and digest not in listed:
        raise DataError(f"{path}: fails its checksum (sha256 {digest[:12]}..., "
                        f"{checksum_path(path).name} says {listed[0][:12]}...); the file is "
                        f"damaged. Use another checkpoint, or delete both files and train again")
    return digest


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (weights_only) with a one-line error for bad files."""
    return read_checkpoint(path, map_location)[0]


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[dict[str, Any], str]:
    """(state, sha256 of the bytes loaded). The file is read once and loaded from memory,
    so the hash always describes what was loaded, even while a training run replaces it."""
    import hashlib
    import io
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found; train first with `geobench train MODEL "
                        f"--data DS --out {path.parent}`")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    check_listed(path, digest)
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notice is not for the user
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc):
            # torch's text advises weights_only=False, i.e. running the file's code
            reason = ("it holds pickled Python objects besides tensors, which geobench never "
                      "unpickles because unpickling can run code")
        raise DataError(f"{path}: not a readable checkpoint ({reason}); delete it and re-run "
                        f"training, or point to another checkpoint") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{path}: format {found!r}, expected {FORMAT!r}; this is not a geobench "
                        f"training checkpoint")
    return data, digest


def checkpoint_hash(path: str | Path) -> str:
    return verify_checkpoint(path)
