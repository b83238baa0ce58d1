"""Pretrained weights: the catalog (`geobench/data/weights.yaml`), choosing an entry, fetching it.

The catalog lists published weight files (publisher URL, sha256 or the hash prefix the
file name carries, key format, license, where each fact came from). An entry whose
publisher gives no hash says `sha256: null`: it is never chosen by `imagenet`, and it is
fetched only with `allow_unpinned` (`--allow-unpinned`), which prints the sha256 it
computed and records it; a user's own catalog can then pin that hash.
`GEOBENCH_WEIGHTS_CATALOG=path.yaml` replaces it. `--pretrained` takes an entry name,
`imagenet` (the entry a model's paper recipe names for its backbone, else the backbone's
entry tagged `imagenet`) or `none`.

Files are fetched with `geobench download`'s machinery (resume, atomic rename) into
`$GEOBENCH_HOME/weights/` (default `~/.cache/geobench/weights/`) and verified here
before they get their final name. A file already in PyTorch's hub cache
(`$TORCH_HOME/hub/checkpoints/`) with a matching hash is used in place.
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from geobench.errors import DataError, SchemaError, UsageError

SCHEMA = "geobench.weights/1"
FORMATS = ("torchvision", "timm", "official")
LOADS = ("backbone", "model")
CHOICES = ("imagenet", "none")
_HEX = re.compile(r"^[0-9a-f]{8,64}$")
# Registered-backbone names and the tower names the model zoo uses, to one catalog family.
_ALIASES = {"convnext_t": "convnext_tiny", "convnext_b": "convnext_base"}
_CUTS = re.compile(r"_(layer\d|stage\d)$")


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    backbone: str
    url: str
    sha256: str          # full hex, a prefix of at least 8 hex digits, or "" (unpinned)
    format: str
    license: str
    source: str
    tags: tuple[str, ...] = ()
    models: tuple[str, ...] = ()  # registered models whose paper recipe starts from this file
    loads: str = "backbone"       # backbone: into every backbone; model: a whole released model
    model_args: tuple[tuple[str, Any], ...] = ()  # the architecture the file is for (loads: model)

    @property
    def pinned(self) -> bool:
        """False for files whose publisher prints no hash (`sha256: null`)."""
        return bool(self.sha256)

    @property
    def file_name(self) -> str:
        return Path(urlsplit(self.url).path).name

    @property
    def full_hash(self) -> bool:
        return len(self.sha256) == 64

    @property
    def cache_name(self) -> str:
        """The file name in the cache: the published one when it carries the hash (as torch.hub
        names files), else prefixed with the entry name, so `model.safetensors` files of
        different entries never overwrite each other."""
        stem = self.file_name.split(".")[0]
        named = self.pinned and stem.endswith(self.sha256[:8])
        return self.file_name if named else f"{self.name}--{self.file_name}"


def backbone_family(name: str) -> str:
    """resnet50_layer3 -> resnet50, convnext_t -> convnext_tiny: the catalog's backbone key."""
    name = _ALIASES.get(name, name)
    return _CUTS.sub("", name)


def catalog_path() -> Path:
    override = os.environ.get("GEOBENCH_WEIGHTS_CATALOG")
    return Path(override) if override else Path(__file__).resolve().parents[1] / "data" / "weights.yaml"


def _fail(path: Path, where: str, what: str) -> SchemaError:
    return SchemaError(f"{path}: {where}: {what}; fix the entry (the schema is described at the "
                       f"top of geobench/data/weights.yaml)")


def _entry(path: Path, i: int, raw: Any) -> WeightsEntry:
    where = f"weights[{i}]"
    if not isinstance(raw, dict):
        raise _fail(path, where, "expected a mapping with name, backbone, url, sha256, format")
    missing = [k for k in ("name", "backbone", "url", "format", "license", "source")
               if not raw.get(k)]
    if "sha256" not in raw:  # null is allowed (unpinned) but must be said explicitly
        missing.append("sha256 (or sha256: null for a file whose publisher prints no hash)")
    if missing:
        raise _fail(path, f"{where} ({raw.get('name', '?')})", f"missing {', '.join(missing)}")
    where = f"weights[{i}] ({raw['name']})"
    digest = "" if raw["sha256"] is None else str(raw["sha256"]).lower()
    if raw["sha256"] is not None and not _HEX.match(digest):
        raise _fail(path, where, f"sha256 {raw['sha256']!r} is not 8 to 64 hex digits")
    loads = str(raw.get("loads") or "backbone")
    if loads not in LOADS:
        raise _fail(path, where, f"loads {loads!r} is not one of {', '.join(LOADS)}")
    if loads == "model" and not raw.get("models"):
        raise _fail(path, where, "loads: model needs models: [the registered models it loads into]")
    args = raw.get("model_args") or {}
    if not isinstance(args, dict):
        raise _fail(path, where, f"model_args must be a mapping, got {type(args).__name__}")
    if raw["format"] not in FORMATS:
        raise _fail(path, where, f"format {raw['format']!r} is not one of {', '.join(FORMATS)}")
    if not str(raw["url"]).startswith(("https://", "http://")):
        raise _fail(path, where, f"url {raw['url']!r} is not an http(s) URL")
    entry = WeightsEntry(
        name=str(raw["name"]), backbone=str(raw["backbone"]), url=str(raw["url"]), sha256=digest,
        format=str(raw["format"]), license=str(raw["license"]), source=str(raw["source"]),
        tags=tuple(str(t) for t in raw.get("tags") or ()),
        models=tuple(str(m) for m in raw.get("models") or ()), loads=loads,
        model_args=tuple(sorted((str(k), v) for k, v in args.items())))
    if not entry.file_name:
        raise _fail(path, where, f"url {entry.url!r} names no file")
    if entry.pinned and not entry.full_hash and not entry.file_name.split(".")[0].endswith(digest):
        raise _fail(path, where, f"a sha256 prefix must be the one the file name carries "
                                 f"({entry.file_name}); give the full sha256 otherwise")
    return entry


def load_weights_catalog(path: str | Path | None = None) -> dict[str, WeightsEntry]:
    """The validated catalog, by entry name; errors name the file and the entry."""
    from geobench.catalog import read_yaml

    path = Path(path) if path is not None else catalog_path()
    data = read_yaml(path, SCHEMA, "weights catalog not found; fix GEOBENCH_WEIGHTS_CATALOG "
                                   "or reinstall geobench")
    entries: dict[str, WeightsEntry] = {}
    for i, raw in enumerate(data.get("weights") or []):
        entry = _entry(path, i, raw)
        if entry.name in entries:
            raise _fail(path, f"weights[{i}]", f"name {entry.name!r} is used twice")
        entries[entry.name] = entry
    return entries


def choose(choice: str, backbone: str, model: str | None = None,
           catalog: dict[str, WeightsEntry] | None = None) -> WeightsEntry | None:
    """The entry `--pretrained choice` selects for `backbone` (None for `none` or no entry).

    `imagenet`: the pinned entry listing `model` (its paper recipe's file) for the backbone
    family, else the family's pinned entry tagged `imagenet`, else None (an entry without a
    published hash is only ever taken by name). A name must exist and fit.
    """
    catalog = load_weights_catalog() if catalog is None else catalog
    family = backbone_family(backbone)
    if choice == "none":
        return None
    if choice == "imagenet":  # never a whole released model, never an unpinned file
        fits = [e for e in catalog.values()
                if e.backbone == family and e.loads == "backbone" and e.pinned]
        return (next((e for e in fits if model is not None and model in e.models), None)
                or next((e for e in fits if "imagenet" in e.tags), None))
    entry = catalog.get(choice)
    if entry is None:
        close = difflib.get_close_matches(choice, list(catalog), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(f"--pretrained {choice!r}: no such entry in {catalog_path()}{hint}; use "
                         f"imagenet, none or an entry name (`geobench models NAME` shows the "
                         f"entries for a model)")
    if entry.loads == "model" or (model is not None and model in entry.models):
        if model is not None and model not in entry.models:
            raise UsageError(f"--pretrained {choice}: the file is a released "
                             f"{', '.join(entry.models)} model, not {model}; pass --model "
                             f"{entry.models[0]}")
        return entry
    if entry.backbone != family:
        raise UsageError(f"--pretrained {choice}: the file is for backbone {entry.backbone}, but "
                         f"this model uses {backbone}; pick an entry for {family} or `imagenet`")
    return entry


# --- the cache ----------------------------------------------------------------------------
def cache_dir() -> Path:
    home = os.environ.get("GEOBENCH_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "geobench") / "weights"


def torch_hub_dir() -> Path:
    """PyTorch's checkpoint cache, resolved as torch.hub does (TORCH_HOME, XDG_CACHE_HOME)."""
    home = os.environ.get("TORCH_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME")
        home = str(Path(xdg) / "torch") if xdg else str(Path.home() / ".cache" / "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def _matches(entry: WeightsEntry, digest: str) -> bool:
    if not entry.pinned:  # nothing to compare with: the digest is printed and recorded
        return True
    return digest == entry.sha256 if entry.full_hash else digest.startswith(entry.sha256)


def paper_entry(model: str, backbone: str, catalog: dict[str, WeightsEntry] | None = None
                ) -> WeightsEntry | None:
    """The entry listing `model` for its backbone family, pinned or not (the paper's start)."""
    catalog = load_weights_catalog() if catalog is None else catalog
    family = backbone_family(backbone)
    return next((e for e in catalog.values()
                 if e.backbone == family and e.loads == "backbone" and model in e.models), None)


@dataclass(frozen=True)
class Fetched:
    path: Path
    sha256: str      # of the bytes on disk (full hex)
    action: str      # downloaded | resumed | cached | torch-cache
    pinned: bool = True  # False: nothing verified it; the sha256 is the one computed here


def check_unpinned(entry: WeightsEntry, allow_unpinned: bool) -> None:
    """An unpinned entry is fetched only when the user says so (before any work)."""
    if not entry.pinned and not allow_unpinned:
        raise UsageError(f"--pretrained {entry.name}: its publisher prints no sha256 ({entry.source}), "
                         f"so the file cannot be verified; pass --allow-unpinned to fetch it anyway "
                         f"(its sha256 is printed and recorded), or pin it in your own catalog "
                         f"(GEOBENCH_WEIGHTS_CATALOG) or pass --weights FILE")


def fetch_weights(entry: WeightsEntry, timeout: float = 60.0,
                  allow_unpinned: bool = False) -> Fetched:
    """The verified local file of `entry`: cache, PyTorch's cache, else downloaded.

    An unpinned entry needs `allow_unpinned`; its file is then not verified, and the
    returned sha256 (of the bytes on disk) is what the caller prints and records.
    """
    from geobench.download import fetch
    from geobench.fileio import sha256_file

    check_unpinned(entry, allow_unpinned)

    dest = cache_dir() / entry.cache_name
    places = [(dest, "cached")]
    if entry.pinned:  # without a hash, a file of the same name elsewhere proves nothing
        places.append((torch_hub_dir() / entry.file_name, "torch-cache"))
    for where, action in places:
        if where.is_file():
            digest = sha256_file(where)
            if _matches(entry, digest):
                return Fetched(where, digest, action, entry.pinned)
            if action == "cached":
                where.unlink()  # ours and corrupt: fetch it again
    # Downloaded under a staging name and renamed only once the hash matches, so a
    # wrong file never sits under the final name (fetch resumes the staging .part).
    staging = dest.with_name(dest.name + ".unverified")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{dest.parent}: cannot create the weights cache ({exc.strerror or exc}); "
                        f"set GEOBENCH_HOME to a writable folder or pass --weights FILE") from None
    try:
        got = fetch(entry.url, staging, timeout=timeout)
    except OSError as exc:  # the cache's disk, not the network
        raise DataError(f"{staging}: cannot write the downloaded weights ({exc.strerror or exc}); "
                        f"free space or set GEOBENCH_HOME to another folder") from None
    except DataError as exc:
        reason = str(exc).split(";")[0]
        raise DataError(f"{reason}; cannot fetch pretrained weights {entry.name}: put the file "
                        f"there by hand as {dest} (or in {torch_hub_dir()}), pass --weights "
                        f"FILE, or --pretrained none") from None
    digest = got.sha256
    if not _matches(entry, digest):
        staging.unlink(missing_ok=True)
        want = entry.sha256 + ("" if entry.full_hash else "...")
        raise DataError(f"{entry.url}: downloaded file has sha256 {digest}, expected {want} "
                        f"(catalog {catalog_path()}); it was deleted. Re-run to retry, or fix the "
                        f"entry {entry.name}")
    os.replace(staging, dest)
    return Fetched(dest, digest, got.action, entry.pinned)
