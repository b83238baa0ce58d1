"""CVUSA (CVPR_subset): panoramas paired 1:1 with aerial tiles through the split CSVs.

Layout facts (reference/datasets.md §1): `splits/train-19zl.csv` and `val-19zl.csv`,
no header, columns aerial,pano,annotation relative to the root; some downloads double
folder names (`bingmap/bingmap/19`, `splits/splits`), so the CSVs are searched for and
path prefixes resolved against the disk. val-19zl is the test set of every paper and
becomes split `test`. About 100 panoramas belong to no split, so we index from the CSVs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geobench.datasets.common import (
    IMAGE_EXTS,
    Adapted,
    FileSet,
    blank_row,
    find_file,
    parse_options,
    read_lines,
    require_dir,
)
from geobench.datasets.registry import register_dataset
from geobench.errors import DataError, UsageError

SPLIT_FILES = {"train": "train-19zl.csv", "test": "val-19zl.csv"}
LINE_FORMAT = "bingmap/19/NNNNNNN.jpg,streetview/panos/NNNNNNN.jpg,streetview/annotations/NNNNNNN.png"
POLAR_DIR = "polarmap"


@dataclass(frozen=True)
class CVUSAOptions:
    polar: bool = False
    polar_size: tuple[int, int] = (112, 616)
    polar_stretch: str = "none"       # none | minmax (SAFA/DSM's published polar files)
    model: str | None = None          # take the polar size from this model's card
    splits: tuple[str, ...] = ("train", "test")
    strict: bool = False


def _variants(rel_dir: str) -> list[str]:
    """A CSV folder and its doubled-first-folder variant (bingmap/19 -> bingmap/bingmap/19)."""
    parts = rel_dir.split("/")
    return [rel_dir, "/".join([parts[0]] + parts)] if parts and parts[0] else [rel_dir]


def _resolve_dirs(csv: Path, root: Path, dirs: list[str]) -> tuple[Path, dict[str, str]]:
    """Pick the base folder and per-folder prefix that make the CSV paths exist on disk."""
    bases = [p for p in [csv.parent, *csv.parent.parents] if p == root or root in p.parents]
    best: tuple[int, Path, dict[str, str]] | None = None
    for base in bases:
        mapping = {}
        for d in dirs:
            mapping[d] = next((v for v in _variants(d) if (base / v).is_dir()), d)
        score = sum((base / v).is_dir() for v in mapping.values())
        if best is None or score > best[0]:
            best = (score, base, mapping)
    assert best is not None  # csv lies under root, so bases is never empty
    return best[1], best[2]


def _parse(csv: Path) -> list[tuple[int, str, str]]:
    rows = []
    for number, line in read_lines(csv):
        fields = [f.strip() for f in line.split(",")]
        if (len(fields) not in (2, 3) or not fields[0].lower().endswith(IMAGE_EXTS)
                or not fields[1].lower().endswith(IMAGE_EXTS) or "/" not in fields[0]):
            raise DataError(f"{csv}:{number}: malformed line {line[:80]!r}; expected "
                            f"'{LINE_FORMAT}' (no header)")
        rows.append((number, fields[0], fields[1]))
    if not rows:
        raise DataError(f"{csv}: split file is empty; restore it from the CVUSA archive")
    return rows


def _locations(base: Path) -> np.ndarray | None:
    """The optional split_locations/all.csv (sat_lat, sat_lon, grd_lat, grd_lon, ...)."""
    path = base / "split_locations" / "all.csv"
    if not path.is_file():
        return None
    try:
        return np.loadtxt(path, delimiter=",", usecols=(0, 1, 2, 3), ndmin=2)
    except ValueError as exc:
        raise DataError(f"{path}: not a numeric CSV ({exc}); delete it (it is optional) "
                        f"or restore it") from None


def _polar_size(opts: CVUSAOptions) -> tuple[int, int]:
    if opts.model is None:
        return tuple(int(v) for v in opts.polar_size)  # type: ignore[return-value]
    from geobench.models import describe  # loads the zoo, so every model is known

    size = describe(opts.model)["input_size"].get("polar")
    if size is None:
        raise UsageError(f"model {opts.model!r} has no polar input size on its card; pass "
                         f"--polar-size HxW instead")
    return int(size[0]), int(size[1])


def write_polar(raw_root: Path, out: Path, jobs: list[tuple[str, str]], size: tuple[int, int],
                stretch: str = "none") -> None:
    """Polar-transform each (aerial path, polar path) with the SAFA convention
    (`stretch`: see geobench.geometry.polar)."""
    from geobench.geometry.imagerun import write_image
    from geobench.geometry.polar import polar_transform
    from geobench.imagefile import decode_image
    from geobench.progress import track

    for src, dst in track(jobs, "polar transform"):
        image = decode_image(raw_root / src)  # DataError naming a missing/damaged file
        polar = polar_transform(image, size, stretch=stretch)
        # encoded in memory, then written atomically: a full disk is one DiskFullError, and
        # libpng never writes to a file itself (it prints "libpng error" when that fails)
        write_image(np.asarray(polar), out / dst)


@register_dataset(name="cvusa")
def cvusa(root: Path, out: Path, options: dict[str, Any]) -> Adapted:
    opts = parse_options(CVUSAOptions, options, "cvusa")
    root = require_dir(root, "CVUSA", "the folder with splits/, bingmap/ and streetview/")
    csvs = {}
    for split in opts.splits:
        if split not in SPLIT_FILES:
            raise UsageError(f"prepare cvusa: unknown split {split!r}; choose from train, test")
        found = find_file(root, SPLIT_FILES[split])
        if not found:
            raise DataError(f"{root / 'splits' / SPLIT_FILES[split]}: split file not found "
                            f"(searched all of {root}); point --root at the CVUSA folder that "
                            f"contains splits/")
        csvs[split] = found[0]
    parsed = {split: _parse(csv) for split, csv in csvs.items()}
    dirs = sorted({p.rsplit("/", 1)[0] for rows in parsed.values() for _, a, g in rows
                   for p in (a, g)})
    base, mapping = _resolve_dirs(next(iter(csvs.values())), root, dirs)
    files = FileSet(base)
    locations = _locations(base)

    index: list[dict[str, Any]] = []
    positives: list[dict[str, Any]] = []
    missing: dict[str, list[str]] = {"ground": [], "aerial": []}
    polar_jobs: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for split, rows in parsed.items():
        for number, aerial, pano in rows:
            pair = aerial.rsplit("/", 1)[1].rsplit(".", 1)[0]
            where = f"{csvs[split]}:{number}"
            if pair in seen:
                raise DataError(f"{where}: pair id {pair} already listed at {seen[pair]}; "
                                f"each pair may appear once across the split files")
            seen[pair] = where
            a_path = "/".join([mapping[aerial.rsplit('/', 1)[0]], aerial.rsplit("/", 1)[1]])
            g_path = "/".join([mapping[pano.rsplit('/', 1)[0]], pano.rsplit("/", 1)[1]])
            ok = True
            for view, path in (("ground", g_path), ("aerial", a_path)):
                if not files.exists(path):
                    missing[view].append(path)
                    ok = False
            if not ok:
                continue
            geo_g: dict[str, Any] = {}
            geo_a: dict[str, Any] = {}
            if locations is not None and pair.isdigit() and 0 < int(pair) <= len(locations):
                sat_lat, sat_lon, grd_lat, grd_lon = locations[int(pair) - 1]
                geo_a, geo_g = {"lat": sat_lat, "lon": sat_lon}, {"lat": grd_lat, "lon": grd_lon}
            index.append(blank_row(uid=f"ground/{pair}", split=split, role="query", view="ground",
                                   path=g_path, item=pair, heading=0.0, **geo_g))
            index.append(blank_row(uid=f"aerial/{pair}", split=split, role="reference",
                                   view="aerial", path=a_path, item=pair, heading=0.0, **geo_a))
            positives.append({"split": split, "query": f"ground/{pair}",
                              "reference": f"aerial/{pair}", "kind": "positive",
                              "distance_m": 0.0})
            if opts.polar:
                p_path = aerial.replace("bing", "polar").rsplit(".", 1)[0] + ".png"
                if not p_path.startswith(POLAR_DIR + "/"):
                    p_path = f"{POLAR_DIR}/{p_path}"
                polar_jobs.append((a_path, p_path))
                index.append(blank_row(uid=f"polar/{pair}", split=split, role="reference",
                                       view="polar", path=p_path, item=pair, heading=0.0, **geo_a))
                positives.append({"split": split, "query": f"ground/{pair}",
                                  "reference": f"polar/{pair}", "kind": "positive",
                                  "distance_m": 0.0})
    _fill_utm(index)

    parameters: dict[str, Any] = {
        "split_files": {s: str(p) for s, p in csvs.items()},
        "split_map": {SPLIT_FILES[s]: s for s in csvs},
        "folders": mapping,
        "ground_convention": "north at the centre column, heading clockwise",
        "polar": None,
    }
    if opts.polar and index:
        size = _polar_size(opts)
        parameters["polar"] = {"size": list(size), "north": "center", "radius": "safa",
                               "stretch": opts.polar_stretch}
        write_polar(base, Path(out), polar_jobs, size, opts.polar_stretch)
    return Adapted(
        index=index, positives=positives, parameters=parameters, raw_root=base,
        derived_dirs=[POLAR_DIR] if opts.polar else [], missing=missing,
        scan=[(mapping[d], IMAGE_EXTS) for d in dirs],
        expected_sizes={"ground": (224, 1232), "aerial": (750, 750)},
        expected_counts={"train/query/ground": 35532, "train/reference/aerial": 35532,
                         "test/query/ground": 8884, "test/reference/aerial": 8884},
    )


def _fill_utm(index: list[dict[str, Any]]) -> None:
    """UTM for rows with lat/lon, each in its own zone (CVUSA spans the whole USA)."""
    from geobench.datasets.geo import latlon_to_utm

    rows = [r for r in index if r["lat"] is not None]
    if rows:
        east, north, _ = latlon_to_utm([r["lat"] for r in rows], [r["lon"] for r in rows])
        for row, e, n in zip(rows, east, north, strict=True):
            row["utm_e"], row["utm_n"] = float(e), float(n)
