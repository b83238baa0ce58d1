"""The dataset catalog: `datasets.yaml`, loaded and validated.

The catalog describes every dataset of the field (what it is, how to get access, its
layout, default protocol, native sizes, downloadable files). It ships inside the
package; `GEOBENCH_CATALOG=path.yaml` points geobench at another copy (a private
mirror's, or a test's).
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geobench.errors import SchemaError, UnknownNameError

SCHEMA = "geobench.datasets/1"
TASKS = ("cvgl", "vg")
ACCESS_KINDS = ("open", "form", "email", "account", "generated")
REQUIRED = ("task", "description", "citation", "homepage", "access", "layout",
            "default_protocol", "image_sizes", "files")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FileSpec:
    name: str
    url: str
    size: int
    sha256: str
    extract: bool = True


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    task: str
    description: str
    citation: str
    homepage: str
    access_kind: str
    access_how: str
    layout: str
    default_protocol: str
    image_sizes: dict[str, tuple[int, int]]
    counts: dict[str, int]
    files: tuple[FileSpec, ...]
    training_places: str = ""   # optional: what a training place is (geobench/train/places.py)

    @property
    def gated(self) -> bool:
        return self.access_kind not in ("open", "generated")

    def card_rows(self) -> list[tuple[str, str]]:
        sizes = ", ".join(f"{v} {h}x{w}" for v, (h, w) in self.image_sizes.items())
        counts = ", ".join(f"{k} {n:,}" for k, n in self.counts.items())
        files = ", ".join(f"{f.name} ({f.size:,} B)" for f in self.files) or "none listed"
        return [("task", self.task), ("description", self.description),
                ("citation", self.citation), ("homepage", self.homepage),
                ("access", f"{self.access_kind}: {self.access_how}"),
                ("layout", self.layout.rstrip()), ("default protocol", self.default_protocol),
                ("native sizes (HxW)", sizes), ("counts", counts or "-"), ("files", files),
                ("training places", self.training_places or "-")]


def default_path() -> Path:
    override = os.environ.get("GEOBENCH_CATALOG")
    return Path(override) if override else Path(__file__).with_name("datasets.yaml")


def _fail(path: Path, where: str, what: str) -> SchemaError:
    return SchemaError(f"{path}: {where}: {what}; fix the entry (see the comment at the top "
                       f"of datasets.yaml)")


def _size(path: Path, where: str, value: Any) -> tuple[int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and v > 0 for v in value)):
        raise _fail(path, where, f"expected [height, width] in pixels, got {value!r}")
    return int(value[0]), int(value[1])


def _file(path: Path, where: str, entry: Any) -> FileSpec:
    if not isinstance(entry, dict):
        raise _fail(path, where, "each file needs name, url, size and sha256")
    missing = [k for k in ("name", "url", "size", "sha256") if k not in entry]
    if missing:
        raise _fail(path, where, f"missing {', '.join(missing)}")
    file_name = str(entry["name"])
    if file_name in ("", ".", "..") or any(c in file_name for c in "/\\\0"):
        raise _fail(path, where, f"name {file_name!r} must be a plain file name (no folder "
                                 f"part, not . or ..): it is written inside the dataset folder")
    if not isinstance(entry["size"], int) or entry["size"] < 0:
        raise _fail(path, where, f"size {entry['size']!r} is not a byte count")
    if not _SHA256.match(str(entry["sha256"]).lower()):
        raise _fail(path, where, f"sha256 {entry['sha256']!r} is not 64 hex digits")
    return FileSpec(str(entry["name"]), str(entry["url"]), int(entry["size"]),
                    str(entry["sha256"]).lower(), bool(entry.get("extract", True)))


def _spec(path: Path, name: str, entry: Any) -> DatasetSpec:
    where = f"datasets.{name}"
    if not isinstance(entry, dict):
        raise _fail(path, where, "expected a mapping of fields")
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise _fail(path, where, f"missing field(s) {', '.join(missing)}")
    if entry["task"] not in TASKS:
        raise _fail(path, f"{where}.task", f"{entry['task']!r} is not one of {', '.join(TASKS)}")
    access = entry["access"]
    if not isinstance(access, dict) or access.get("kind") not in ACCESS_KINDS or not access.get("how"):
        raise _fail(path, f"{where}.access", f"needs kind ({', '.join(ACCESS_KINDS)}) and how")
    sizes = entry["image_sizes"]
    if not isinstance(sizes, dict) or not sizes:
        raise _fail(path, f"{where}.image_sizes", "expected {view: [height, width]}")
    counts = entry.get("counts") or {}
    if not isinstance(counts, dict) or not all(isinstance(v, int) for v in counts.values()):
        raise _fail(path, f"{where}.counts", "expected {name: integer}")
    files = entry["files"] or []
    if not isinstance(files, list):
        raise _fail(path, f"{where}.files", "expected a list")
    return DatasetSpec(
        name=name, task=entry["task"], description=str(entry["description"]),
        citation=str(entry["citation"]), homepage=str(entry["homepage"]),
        access_kind=access["kind"], access_how=str(access["how"]), layout=str(entry["layout"]),
        default_protocol=str(entry["default_protocol"]),
        image_sizes={v: _size(path, f"{where}.image_sizes.{v}", s) for v, s in sizes.items()},
        counts={k: int(v) for k, v in counts.items()},
        files=tuple(_file(path, f"{where}.files[{i}]", f) for i, f in enumerate(files)),
        training_places=str(entry.get("training_places") or ""),
    )


def read_yaml(path: Path, schema: str, missing: str) -> dict[str, Any]:
    """A YAML mapping whose `schema` key must equal `schema`; one-line errors name the
    file (and the line of a syntax error). `missing`: the fix when the file is absent."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaError(f"{path}: {missing}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SchemaError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict) or data.get("schema") != schema:
        found = data.get("schema") if isinstance(data, dict) else None
        raise SchemaError(f"{path}: schema {found!r}, expected {schema!r}")
    return data


def load_catalog(path: str | Path | None = None) -> dict[str, DatasetSpec]:
    """Load and validate datasets.yaml; errors name the file and the offending entry."""
    path = Path(path) if path is not None else default_path()
    data = read_yaml(path, SCHEMA, "catalog not found; reinstall geobench or unset "
                                   "GEOBENCH_CATALOG")
    entries = data.get("datasets")
    if not isinstance(entries, dict) or not entries:
        raise SchemaError(f"{path}: no `datasets:` mapping found")
    return {name: _spec(path, name, entry) for name, entry in entries.items()}


def get_spec(name: str, path: str | Path | None = None) -> DatasetSpec:
    catalog = load_catalog(path)
    if name not in catalog:
        raise unknown_dataset(name, catalog)
    return catalog[name]


def unknown_dataset(name: str, catalog: dict[str, DatasetSpec]) -> UnknownNameError:
    close = difflib.get_close_matches(name, list(catalog), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return UnknownNameError(f"unknown dataset {name!r}.{hint} Run `geobench datasets` to list "
                            f"them all.")
