"""What every dataset adapter shares: the result type, option parsing, file lookups.

An adapter is a function `adapter(root: Path, out: Path, options: dict) -> Adapted`
registered in `geobench.datasets.registry.DATASETS`. It reads the raw layout and
returns rows; `geobench.datasets.prepare_dataset` writes them, so every dataset goes
through one writer.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from geobench.errors import DataError, UsageError

IMAGE_EXTS = (".jpg", ".jpeg", ".png")


@dataclass
class Adapted:
    """An adapter's output: index and positive rows plus what the manifest records.

    raw_root: the folder the index paths are relative to (may be below the given root,
      e.g. when the user points at the parent of CVPR_subset/).
    missing: images the split files name but the disk lacks, per view (reported, and
      fatal with `strict`).
    scan: (folder relative to raw_root, extensions) pairs holding the dataset's images,
      for `geobench doctor` to find files that no split uses.
    expected_sizes: view -> (H, W) of the native images, for `geobench doctor`.
    expected_counts: "split/role/view" -> count of the full public release.
    protocol: the named evaluation protocol, where the options choose it (VIGOR same or
      cross area); otherwise the catalog's default for the dataset is recorded.
    """

    index: list[dict[str, Any]]
    positives: list[dict[str, Any]]
    parameters: dict[str, Any]
    raw_root: Path
    derived_dirs: list[str] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)
    scan: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    expected_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    expected_counts: dict[str, int] = field(default_factory=dict)
    protocol: str | None = None  # evaluation protocol when it depends on the options

    def n_missing(self) -> int:
        return sum(len(v) for v in self.missing.values())


OptionsT = TypeVar("OptionsT")


def parse_options(cls: type[OptionsT], options: Mapping[str, Any] | None,
                  dataset: str) -> OptionsT:
    """Build the frozen option dataclass `cls` from a dict; unknown keys are a UsageError."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(k for k, v in options.items() if k not in known)
    if unknown:
        raise UsageError(f"prepare {dataset}: unknown option(s) {', '.join(unknown)}; "
                         f"valid options are {', '.join(sorted(known))}")
    return cls(**{k: v for k, v in options.items() if v is not None})


def require_dir(root: Path, dataset: str, hint: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found (not a directory); pass --root pointing "
                        f"at your {dataset} copy ({hint})")
    return root


def find_file(root: Path, name: str, max_depth: int = 4) -> list[Path]:
    """Files called `name` under root, shallowest first (users nest their copies freely)."""
    found: list[Path] = []
    root = Path(root)
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        depth = len(Path(dirpath).parts) - base_depth
        if depth >= max_depth:
            dirnames[:] = []
        dirnames.sort()
        if name in filenames:
            found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: (len(p.parts), str(p)))


def find_dir(root: Path, name: str, max_depth: int = 3) -> list[Path]:
    """Folders called `name` under (or equal to) root, shallowest first."""
    root = Path(root)
    if root.name == name:
        return [root]
    found: list[Path] = []
    base_depth = len(root.parts)
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        depth = len(Path(dirpath).parts) - base_depth
        dirnames.sort()
        if name in dirnames:
            found.append(Path(dirpath) / name)
        if depth + 1 >= max_depth:
            dirnames[:] = []
    return sorted(found, key=lambda p: (len(p.parts), str(p)))


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) of a text split file, skipping blank lines.

    Tolerates CRLF line ends, a UTF-8 BOM and a missing final newline (VIGOR's
    NewYork satellite_list.txt has none).
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: split file not found; check --root") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason}); restore the original "
                        f"split file") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line:
            yield number, line


class FileSet:
    """Existence checks through one directory listing per folder (fast on 100k files)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._listing: dict[str, frozenset[str]] = {}

    def _names(self, folder: str) -> frozenset[str]:
        if folder not in self._listing:
            try:
                self._listing[folder] = frozenset(os.listdir(self.root / folder))
            except (FileNotFoundError, NotADirectoryError):
                self._listing[folder] = frozenset()
        return self._listing[folder]

    def exists(self, rel: str) -> bool:
        folder, _, name = rel.replace("\\", "/").rpartition("/")
        return name in self._names(folder)

    def has_dir(self, rel: str) -> bool:
        return (self.root / rel).is_dir()


def walk_images(folder: Path, exts: Iterable[str] = IMAGE_EXTS) -> list[Path]:
    """Image files below folder (following symlinks, e.g. MSLS test -> val), sorted."""
    exts = tuple(e.lower() for e in exts)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        found.extend(Path(dirpath) / f for f in filenames
                     if f.lower().endswith(exts) and not f.startswith("."))
    return sorted(found)


def check_missing(adapted: Adapted, dataset: str, strict: bool) -> None:
    """Raise when nothing is usable, or anything is missing under `strict`."""
    n = adapted.n_missing()
    if not n and not adapted.index:  # not a copy of this dataset at all (another one's tree?)
        raise DataError(f"{adapted.raw_root}: nothing of {dataset} found there (0 images "
                        f"indexed): it does not hold the {dataset} layout; pass --root pointing "
                        f"at your copy of {dataset} (`geobench datasets {dataset}` shows the "
                        f"layout)")
    if not n:
        return
    example = next(p for v in adapted.missing.values() for p in v)
    per_view = ", ".join(f"{len(v)} {k}" for k, v in adapted.missing.items() if v)
    if not adapted.index:
        raise DataError(f"{adapted.raw_root}: none of the images named by the {dataset} split "
                        f"files exist (e.g. {example}); pass --root pointing at the folder "
                        f"that holds them")
    if strict:
        raise DataError(f"{adapted.raw_root / example}: missing image ({n} missing: {per_view}); "
                        f"restore the files or drop --strict to skip them")


def blank_row(**values: Any) -> dict[str, Any]:
    row = {"uid": "", "split": "", "role": "", "view": "", "path": "", "item": "",
           "lat": None, "lon": None, "utm_e": None, "utm_n": None, "heading": None, "city": ""}
    row.update(values)
    return row
