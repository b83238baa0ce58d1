"""Load a local weight file (torchvision/timm/official names) into a model.

Reads `.pt`/`.pth`/`.bin` (torch.load with weights_only=True, so no code runs) and
`.safetensors` (parsed here: an 8-byte header length, a JSON header, raw little-endian
tensors; no extra package). Checkpoint wrappers (`state_dict`, `model`, ...) are
unwrapped, wrapper prefixes (`module.`, `model.`, `_orig_mod.`, `backbone.`, `encoder.`)
stripped, foreign naming schemes converted by the model (`convert_state_dict`), and
parameters of parts the model deliberately does not build (`dropped_prefixes`, e.g.
ResNet `layer4.`/`fc.` for the layer3 variant) skipped. Anything else that does not match
is an error (strict) or a warning, each on one line; a shape mismatch is always an error
naming the key and both shapes. Nothing is ever downloaded.
"""
from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from geobench.errors import DataError

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "module", "net", "params",
                "weights")
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "backbone.", "encoder.")
_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


class WeightsWarning(UserWarning):
    """Keys that did not match, when loading non-strictly."""


@dataclass(frozen=True)
class LoadReport:
    path: str
    loaded: int
    naming: str | None = None  # foreign scheme that was converted, e.g. "torchvision"
    skipped: tuple[str, ...] = ()  # keys of parts the model does not build
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    into_loss: dict[str, float] = field(default_factory=dict)  # file keys the loss took (logit_scale)


def _few(keys: list[str] | tuple[str, ...], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > n else shown


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """Parse a .safetensors file without the safetensors package."""
    with path.open("rb") as f:
        try:
            n = int.from_bytes(f.read(8), "little")
            if n > path.stat().st_size - 8:  # never allocate what a corrupt length asks for
                raise ValueError("header length beyond the end of the file")
            header = json.loads(f.read(n).decode("utf-8"))
        except (ValueError, UnicodeDecodeError, MemoryError, OverflowError) as exc:
            raise DataError(
                f"{path}: not a safetensors file ({type(exc).__name__}); re-save it with safetensors.torch.save_file"
            ) from None
        body = bytearray(f.read())  # tensors below are views of this one buffer
    if not isinstance(header, dict):
        raise DataError(f"{path}: safetensors header is a JSON {type(header).__name__}, not an "
                        f"object of tensors; re-export the file")
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not _valid_entry(info):
            raise DataError(f"{path}: tensor {name!r} has a malformed header entry {str(info)[:80]!r} "
                            "(needs dtype, shape: [non-negative ints], data_offsets: [begin, end]); "
                            "re-export the file")
        dtype = _ST_DTYPES.get(info.get("dtype"))
        begin, end = info.get("data_offsets", (0, -1))
        shape = info.get("shape", [])
        numel = int(torch.Size(shape).numel())
        if dtype is None or not 0 <= begin <= end <= len(body) or end - begin != numel * dtype.itemsize:
            raise DataError(
                f"{path}: tensor {name!r} has an unsupported dtype {info.get('dtype')!r} or inconsistent "
                "offsets/shape in the header; re-export the file"
            )
        flat = torch.frombuffer(body, dtype=dtype, count=numel, offset=begin) if numel else torch.empty(0, dtype=dtype)
        out[name] = flat.reshape(shape)
    return out


def _valid_entry(info: Any) -> bool:
    """A header entry torch can use: the checks json.loads cannot make."""
    def ints(v: Any) -> bool:
        return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool)
                                           and x >= 0 for x in v)

    return (isinstance(info, dict) and isinstance(info.get("dtype"), str)
            and ints(info.get("shape")) and ints(info.get("data_offsets"))
            and len(info["data_offsets"]) == 2)


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    for _ in range(4):  # e.g. {"epoch": 3, "state_dict": {"model": {...}}}
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            if any(isinstance(v, Tensor) for v in obj.values()):
                return {k: v for k, v in obj.items() if isinstance(v, Tensor)}
            break
        obj = inner
    found = f"keys {_few([str(k) for k in obj])}" if isinstance(obj, dict) else type(obj).__name__
    raise DataError(
        f"{path}: no state dict of tensors found (top level has {found}); save `model.state_dict()` with torch.save"
    )


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a local weight file, unwrapped from common checkpoint containers."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: weights file not found; pass the path of a local .pth/.pt/.safetensors file")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notice is not for the user
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or pickled-code files
        reason = " ".join(str(exc).split())[:200]
        if "weights_only" in reason or isinstance(exc, pickle.UnpicklingError):
            # torch's own text advises weights_only=False, i.e. running the file's code
            reason = ("it holds pickled Python objects besides tensors, which geobench never "
                      "unpickles because unpickling can run code")
        raise DataError(
            f"{path}: cannot read weights ({type(exc).__name__}: {reason}); "
            "it must be a torch.save'd state dict of tensors (or .safetensors)"
        ) from None
    return _unwrap(obj, path)


def _strip(state: dict[str, Tensor], own: set[str], prefix: str | None, path: Path) -> dict[str, Tensor]:
    if prefix:
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not picked:
            raise DataError(f"{path}: no key starts with prefix {prefix!r}; keys look like {_few(list(state), 3)}")
        state = picked
    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        new = key
        while new not in own and new.startswith(WRAPPER_PREFIXES):
            new = new.split(".", 1)[1]
        if new in out:
            raise DataError(f"{path}: keys {origin[new]!r} and {key!r} both map to {new!r}; pass prefix= to pick one")
        out[new], origin[new] = value, key
    return out


def load_weights(
    model: nn.Module, path: str | Path, strict: bool = True, prefix: str | None = None,
    state: dict[str, Tensor] | None = None,
) -> LoadReport:
    """Load `path` into `model`; see the module docstring for the rules.

    strict: missing or unexpected keys raise DataError (else: one WeightsWarning each).
    prefix: use only keys under this prefix (e.g. "query_net."), stripped before matching.
    state: the file's tensors when already read (one read for every tower of a model).
    """
    path = Path(path)
    state = read_state_dict(path) if state is None else state
    own = model.state_dict()
    state = _strip(state, set(own), prefix, path)
    naming = None
    convert = getattr(model, "convert_state_dict", None)
    if convert is not None:
        state, naming = convert(state)
    dropped = tuple(getattr(model, "dropped_prefixes", ()))
    skipped = tuple(k for k in state if k not in own and k.startswith(dropped))
    return apply_state(model, state, path, naming=naming, skipped=skipped, strict=strict)


def apply_state(
    model: nn.Module, state: dict[str, Tensor], path: str | Path, *, naming: str | None = None,
    skipped: tuple[str, ...] = (), strict: bool = True,
) -> LoadReport:
    """Load an already renamed `state` into `model` with the checks of `load_weights`.

    `skipped` are keys of the file that are known not to belong to the model (reported,
    never an error); every other key must match a parameter of the same shape.
    """
    own = model.state_dict()
    unexpected = tuple(k for k in state if k not in own and k not in skipped)
    # Old checkpoints predate BatchNorm's counter; the model's own value is right.
    missing = tuple(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    name = type(model).__name__
    if len(missing) == len([k for k in own if not k.endswith("num_batches_tracked")]):
        raise DataError(
            f"{path}: no key matches {name} (file keys look like {_few(list(state), 3)}; "
            f"expected e.g. {_few(list(own), 3)}); pick the matching backbone or pass prefix="
        )
    for key in state:
        if key in own and tuple(state[key].shape) != tuple(own[key].shape):
            raise DataError(
                f"{path}: {key!r} has shape {tuple(state[key].shape)} in the file but "
                f"{tuple(own[key].shape)} in {name}; the file is for a different architecture or variant"
            )
    problems = []
    if missing:
        problems.append(f"{len(missing)} {name} parameters missing from the file: {_few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} keys in the file not used by {name}: {_few(unexpected)}")
    if strict and problems:
        raise DataError(f"{path}: " + "; ".join(problems) + "; pass prefix= or load non-strictly (strict=False)")
    for problem in problems:
        warnings.warn(f"{path}: {problem}", WeightsWarning, stacklevel=2)
    usable = {k: v for k, v in state.items() if k in own}
    model.load_state_dict(usable, strict=False)
    return LoadReport(str(path), len(usable), naming, tuple(skipped), missing, unexpected)
