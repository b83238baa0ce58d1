"""University-1652: drone, satellite and street views of buildings, class id = folder name.

Layout facts (reference/datasets.md §4): `train/{drone,satellite,street,google}/<id>/`
and `test/{query,gallery}_{drone,satellite,street}/<id>/`; ids are 4-digit folder names
including `0000`; some folders are empty (skipped). The official protocol keeps the
250 gallery buildings that no query shows as distractors; `drop_distractors` gives
Sample4Geo's smaller gallery. Every image's uid is its path, so an image that is a
query in one task and a reference in another (query_satellite vs gallery_satellite)
keeps distinct, unique uids.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geobench.datasets.common import IMAGE_EXTS, Adapted, blank_row, parse_options, require_dir
from geobench.datasets.registry import register_dataset
from geobench.errors import DataError, UsageError

# folder -> (split, role, view)
FOLDERS = {
    "train/drone": ("train", "query", "drone"),
    "train/street": ("train", "query", "street"),
    "train/google": ("train", "query", "street"),
    "train/satellite": ("train", "reference", "aerial"),
    "test/query_drone": ("test", "query", "drone"),
    "test/query_satellite": ("test", "query", "aerial"),
    "test/query_street": ("test", "query", "street"),
    "test/gallery_drone": ("test", "reference", "drone"),
    "test/gallery_satellite": ("test", "reference", "aerial"),
    "test/gallery_street": ("test", "reference", "street"),
}
# query folder -> gallery folder it is evaluated against (same building id = positive)
TASKS = {
    "train/drone": "train/satellite", "train/street": "train/satellite",
    "train/google": "train/satellite",
    "test/query_drone": "test/gallery_satellite",       # drone -> satellite (D2S)
    "test/query_satellite": "test/gallery_drone",       # satellite -> drone (S2D)
    "test/query_street": "test/gallery_satellite",      # street -> satellite
}


@dataclass(frozen=True)
class U1652Options:
    drop_distractors: bool = False
    include_google: bool = False
    splits: tuple[str, ...] = ("train", "test")
    strict: bool = False


def _dataset_root(root: Path) -> Path:
    if (root / "train").is_dir() or (root / "test").is_dir():
        return root
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if (child / "test").is_dir() or (child / "train").is_dir():
            return child
    raise DataError(f"{root}: no train/ or test/ folder found; point --root at University-Release/ "
                    f"(the folder that contains train/ and test/)")


def _classes(folder: Path) -> tuple[dict[str, list[str]], int]:
    """Building id -> sorted image names; empty building folders are counted, not kept."""
    classes: dict[str, list[str]] = {}
    empty = 0
    for sub in sorted(folder.iterdir()):
        if sub.name.startswith(".") or not sub.is_dir():
            continue
        if not sub.name.isdigit():
            raise DataError(f"{sub}: building folders must be named by their numeric id (e.g. "
                            f"0839); move or remove this folder")
        names = sorted(f.name for f in sub.iterdir() if f.is_file()
                       and f.suffix.lower() in IMAGE_EXTS and not f.name.startswith("."))
        if names:
            classes[sub.name] = names
        else:
            empty += 1
    return classes, empty


@register_dataset(name="university1652")
def university1652(root: Path, out: Path, options: dict[str, Any]) -> Adapted:
    opts = parse_options(U1652Options, options, "university1652")
    root = require_dir(root, "University-1652", "University-Release/ with train/ and test/")
    base = _dataset_root(root)
    for split in opts.splits:
        if split not in ("train", "test"):
            raise UsageError(f"prepare university1652: unknown split {split!r}; choose train, test")
        if not (base / split).is_dir():
            raise DataError(f"{base / split}: folder not found; restore it or pass splits "
                            f"without {split}")
    wanted = [f for f, (s, _, _) in FOLDERS.items() if s in opts.splits
              and (opts.include_google or f != "train/google")]
    listing: dict[str, dict[str, list[str]]] = {}
    empty: dict[str, int] = {}
    for folder in wanted:
        if (base / folder).is_dir():
            listing[folder], n_empty = _classes(base / folder)
            if n_empty:
                empty[folder] = n_empty
    for query, gallery in TASKS.items():
        if query in listing and gallery not in listing:
            raise DataError(f"{base / gallery}: folder not found but {query}/ is there; restore "
                            f"{gallery}/ from the University-1652 archive")
    query_ids = {i for f, cls in listing.items() if FOLDERS[f][1] == "query"
                 and FOLDERS[f][0] == "test" for i in cls}
    dropped: dict[str, int] = {}
    if opts.drop_distractors:
        for folder, cls in listing.items():
            if folder.startswith("test/gallery_"):
                extra = [i for i in cls if i not in query_ids]
                for i in extra:
                    del cls[i]
                if extra:
                    dropped[folder] = len(extra)
    if not any(listing.values()):
        raise DataError(f"{base}: no images found in any of {', '.join(wanted)}; check --root")

    index: list[dict[str, Any]] = []
    for folder, cls in listing.items():
        split, role, view = FOLDERS[folder]
        for building, names in cls.items():
            for name in names:
                path = f"{folder}/{building}/{name}"
                index.append(blank_row(uid=path, split=split, role=role, view=view, path=path,
                                       item=building))
    positives: list[dict[str, Any]] = []
    for query, gallery in TASKS.items():
        if query not in listing:
            continue
        split = FOLDERS[query][0]
        refs = listing[gallery]
        for building, names in listing[query].items():
            targets = [f"{gallery}/{building}/{n}" for n in refs.get(building, ())]
            for name in names:
                q = f"{query}/{building}/{name}"
                positives.extend({"split": split, "query": q, "reference": r, "kind": "positive"}
                                 for r in targets)
    parameters = {"gallery_distractors": "dropped" if opts.drop_distractors else "kept",
                  "distractors_dropped": dropped, "empty_folders_skipped": empty,
                  "tasks": {q: g for q, g in TASKS.items() if q in listing}}
    counts = {"test/query/drone": 37855, "test/reference/aerial": 951, "test/query/aerial": 701,
              "test/reference/drone": 51355, "test/query/street": 2579,
              "test/reference/street": 2921}
    if opts.drop_distractors:
        counts = {k: v for k, v in counts.items() if "reference" not in k}
    return Adapted(index=index, positives=positives, parameters=parameters, raw_root=base,
                   scan=[], expected_counts=counts if "test" in opts.splits else {})
