"""Pittsburgh 30k / 250k in the raw NetVLAD release (the input of VPR-datasets-downloader).

Layout facts (reference/datasets.md §5.3): the release root (`raw_data/`) holds the
database folders `000/ … 006/` (30k) or `… 010/` (250k), `queries_real/` and
`datasets/pitts30k_{train,val,test}.mat` (or `pitts250k_…`). Each .mat holds a MATLAB
struct `dbStruct` whose fields are, in order: [0] whichSet, [1] dbImageFns (paths
relative to the release root), [2] utmDb (2×N), [3] qImageFns (relative to
`queries_real/`), [4] utmQ (2×N), [5] numDb, [6] numQ, [7] posDistThr, ... Fields are read
by name and, when a copy renamed them, by that position. Coordinates are UTM zone 17T
(Pittsburgh), from which lat/lon follow. The vg adapters call `prepare_raw` when --root
holds such .mat files and no images/<split>/ tree.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geobench.datasets.common import IMAGE_EXTS, Adapted, FileSet, blank_row, parse_options
from geobench.datasets.geo import utm_to_latlon
from geobench.datasets.vg_common import (
    SIZES,
    SPLITS,
    VGOptions,
    expected_counts,
    find_images_dir,
    radius_positives,
)
from geobench.errors import DataError, UsageError

QUERIES_DIR = "queries_real"
UTM_ZONE, UTM_NORTHERN = 17, True       # "17T": Pittsburgh, northern hemisphere
# (field name, position in the struct) of what we read
FIELDS = {"dbImageFns": 1, "utmDb": 2, "qImageFns": 3, "utmQ": 4, "numDb": 5, "numQ": 6,
          "posDistThr": 7}
REQUIRED = ("dbImageFns", "utmDb", "qImageFns", "utmQ")


@dataclass(frozen=True)
class DbStruct:
    """One split of the release: database / query files (as stored) and UTM (N, 2)."""

    path: Path
    db_files: list[str]
    db_utm: np.ndarray
    q_files: list[str]
    q_utm: np.ndarray
    pos_dist_thr: float | None


def mat_name(name: str, split: str) -> str:
    return f"{name}_{split}.mat"


def _malformed(path: Path, what: str) -> DataError:
    return DataError(f"{path}: malformed dbStruct ({what}); restore the file from the NetVLAD "
                     f"Pittsburgh release (datasets/{path.name})")


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _load_struct(path: Path) -> tuple[Any, ...] | dict[str, Any]:
    """dbStruct's fields by name (or as the positional tuple if it has no names)."""
    import h5py
    from scipy.io import loadmat

    if not path.is_file():
        raise DataError(f"{path}: file not found; copy datasets/{path.name} from the Pittsburgh "
                        f"release next to queries_real/")
    if h5py.is_hdf5(str(path)):
        raise DataError(f"{path}: MATLAB v7.3 (HDF5) file; the release ships v5 files, re-save "
                        f"it in MATLAB with save(..., '-v7') or restore the original")
    try:
        mat = loadmat(str(path))
    # scipy raises almost anything on a damaged file (IndexError, MatReadError, ...)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path}: not a readable MATLAB file ({_reason(exc)}); "
                        f"restore it from the Pittsburgh release") from None
    if "dbStruct" not in mat:
        found = ", ".join(sorted(k for k in mat if not k.startswith("__"))) or "none"
        raise DataError(f"{path}: no dbStruct variable (found: {found}); this is not a NetVLAD "
                        f"dataset file, restore datasets/{path.name}")
    struct = mat["dbStruct"]
    if not isinstance(struct, np.ndarray) or struct.dtype.names is None or struct.size != 1:
        raise _malformed(path, "dbStruct is not a 1x1 MATLAB struct")
    values = struct.item()
    if not isinstance(values, tuple):
        raise _malformed(path, "dbStruct is not a 1x1 MATLAB struct")
    names = struct.dtype.names
    if all(f in names for f in REQUIRED):
        return dict(zip(names, values, strict=True))
    return values


def _field(path: Path, fields: tuple[Any, ...] | dict[str, Any], name: str,
           required: bool = True) -> Any:
    if isinstance(fields, dict):
        if name in fields:
            return fields[name]
    elif FIELDS[name] < len(fields):
        return fields[FIELDS[name]]
    if required:
        raise _malformed(path, f"no field {name} (position {FIELDS[name]})")
    return None


def _files(path: Path, value: Any, name: str) -> list[str]:
    """A MATLAB cell array (or char matrix) of relative image paths -> list[str]."""
    out: list[str] = []
    for k, v in enumerate(np.asarray(value, dtype=object).ravel()):
        while isinstance(v, np.ndarray) and v.dtype.kind in "OU" and v.size == 1:
            v = v.flat[0]
        text = v.strip().replace("\\", "/") if isinstance(v, str) else ""
        rel = text[2:] if text.startswith("./") else text
        if (not rel.lower().endswith(IMAGE_EXTS) or rel.startswith("/")
                or "/../" in f"/{rel}/"):
            raise _malformed(path, f"{name} entry {k + 1} is {str(v)[:60]!r}, expected a "
                                   f"relative image path such as 000/000000_pitch1_yaw1.jpg")
        out.append(rel)
    return out


def _utm(path: Path, value: Any, name: str, n: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise _malformed(path, f"{name} is not numeric") from None
    if arr.shape == (n, 2) and n != 2:
        arr = arr.T  # a copy saved N×2 instead of the release's 2×N
    if arr.shape != (2, n):
        raise _malformed(path, f"{name} has shape {arr.shape}, expected (2, {n}): one east/"
                               f"north column per file")
    if not np.all(np.isfinite(arr)):
        raise _malformed(path, f"{name} holds NaN or infinite coordinates")
    return arr.T.copy()


def _count(path: Path, value: Any, name: str, expected: int) -> None:
    if value is None:
        return
    try:
        n = int(np.asarray(value, dtype=float).ravel()[0])
    except (TypeError, ValueError, IndexError):
        raise _malformed(path, f"{name} is not a number") from None
    if n != expected:
        raise _malformed(path, f"{name} is {n} but the file list has {expected} entries")


def load_db_struct(path: Path) -> DbStruct:
    """Read one datasets/<name>_<split>.mat; DataError naming the file when malformed."""
    path = Path(path)
    fields = _load_struct(path)
    db = _files(path, _field(path, fields, "dbImageFns"), "dbImageFns")
    q = _files(path, _field(path, fields, "qImageFns"), "qImageFns")
    db_utm = _utm(path, _field(path, fields, "utmDb"), "utmDb", len(db))
    q_utm = _utm(path, _field(path, fields, "utmQ"), "utmQ", len(q))
    _count(path, _field(path, fields, "numDb", required=False), "numDb", len(db))
    _count(path, _field(path, fields, "numQ", required=False), "numQ", len(q))
    thr = _field(path, fields, "posDistThr", required=False)
    try:
        pos_thr = float(np.asarray(thr, dtype=float).ravel()[0]) if thr is not None else None
    except (TypeError, ValueError, IndexError):
        pos_thr = None
    for files, name in ((db, "dbImageFns"), (q, "qImageFns")):
        seen: set[str] = set()
        for f in files:
            if f in seen:
                raise _malformed(path, f"{name} lists {f} twice")
            seen.add(f)
    return DbStruct(path, db, db_utm, q, q_utm, pos_thr)


def _mat_dirs(root: Path, name: str) -> list[Path]:
    """datasets/ folders under root (shallowest first) holding at least one <name>_*.mat."""
    dirs = [root, *root.glob("datasets"), *root.glob("*/datasets"), *root.glob("*/*/datasets")]
    return [d for d in dirs if d.is_dir()
            and any((d / mat_name(name, s)).is_file() for s in SPLITS)]


def is_raw_layout(root: Path, name: str) -> bool:
    """True when root holds the raw release (its .mat files or queries_real/) and no
    images/<split>/ tree, which takes precedence."""
    if not root.is_dir() or find_images_dir(root, name) is not None:
        return False
    return bool(_mat_dirs(root, name)) or any(
        (p / QUERIES_DIR).is_dir() for p in (root, root / "raw_data", root.parent))


def prepare_raw(name: str, root: Path, options: dict[str, Any]) -> Adapted:
    """Index the raw release: one row per listed image, 25 m / 10 m radius positives."""
    opts = parse_options(VGOptions, options, name)
    wanted = tuple(opts.splits) if opts.splits else SPLITS
    for split in wanted:
        if split not in SPLITS:
            raise UsageError(f"prepare {name}: unknown split {split!r}; choose from "
                             f"{', '.join(SPLITS)}")
    if (opts.queries_folder, opts.database_folder) != ("queries", "database"):
        raise UsageError(f"prepare {name}: the queries / database folder options apply to the "
                         f"images/<split>/ layout; {root} holds the raw release, whose .mat "
                         f"files list the images (drop --queries-folder)")
    dirs = _mat_dirs(root, name)
    if not dirs:
        base = next((p for p in (root, root / "raw_data", root.parent)
                     if (p / QUERIES_DIR).is_dir()), root)
        raise DataError(f"{base / 'datasets' / mat_name(name, 'test')}: file not found; the raw "
                        f"Pittsburgh layout needs datasets/{name}_{{train,val,test}}.mat next to "
                        f"{QUERIES_DIR}/ (they ship with the NetVLAD release)")
    mat_dir = dirs[0]
    base = mat_dir.parent  # the release root: datasets/, queries_real/, 000/ ...
    mats = {s: mat_dir / mat_name(name, s) for s in wanted}
    if opts.splits:
        for split, path in mats.items():
            if not path.is_file():
                raise DataError(f"{path}: file not found; restore it from the NetVLAD release "
                                f"or leave {split} out of the splits")
    mats = {s: p for s, p in mats.items() if p.is_file()}
    files = FileSet(base)
    index: list[dict[str, Any]] = []
    positives: list[dict[str, Any]] = []
    missing: list[str] = []
    thresholds: dict[str, float | None] = {}
    for split, path in mats.items():
        struct = load_db_struct(path)
        thresholds[split] = struct.pos_dist_thr
        uids: dict[str, list[str]] = {}
        xy: dict[str, np.ndarray] = {}
        for role, rels, utm in (("reference", struct.db_files, struct.db_utm),
                                ("query", [f"{QUERIES_DIR}/{f}" for f in struct.q_files],
                                 struct.q_utm)):
            present = np.array([files.exists(rel) for rel in rels], dtype=bool)
            missing += [rel for rel, ok in zip(rels, present, strict=True) if not ok]
            kept = [rel for rel, ok in zip(rels, present, strict=True) if ok]
            east, north = utm[present, 0], utm[present, 1]
            lat, lon = utm_to_latlon(east, north, UTM_ZONE, UTM_NORTHERN)
            uids[role] = [f"{split}/{rel}" for rel in kept]
            xy[role] = np.stack([east, north], axis=1)
            for uid, rel, e, n, la, lo in zip(uids[role], kept, east, north, lat, lon, strict=True):
                index.append(blank_row(uid=uid, split=split, role=role, view="street", path=rel,
                                       lat=float(la), lon=float(lo), utm_e=float(e),
                                       utm_n=float(n)))
        positives += radius_positives(split, uids["query"], xy["query"], uids["reference"],
                                      xy["reference"], opts)
    parameters = {"layout": "netvlad raw release", "mats": {s: str(p) for s, p in mats.items()},
                  "utm_zone": f"{UTM_ZONE}T", "pos_dist_thr_in_mat": thresholds,
                  "eval_radius_m": opts.eval_radius_m, "train_radius_m": opts.train_radius_m,
                  "distance": "euclidean UTM"}
    return Adapted(index=index, positives=positives, parameters=parameters, raw_root=base, protocol="vg25",
                   missing={"street": missing}, scan=[],
                   expected_sizes=dict(SIZES.get(name, {})),
                   expected_counts=expected_counts(name, mats))
