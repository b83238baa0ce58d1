"""CVACT: ACT_data.mat (panoIds, utm, 1-based split indices) + ANU_data_small/_test images.

Layout facts (reference/datasets.md §2): `ACT_data.mat` lives in different places in
different repos, so it is searched for; it may be MATLAB v5 (scipy) or v7.3 (HDF5).
trainSet.trainInd and valSet.valInd index ANU_data_small (train / CVACT_val, one-to-one
by panoId); valSetAll.valInd indexes ANU_data_test (CVACT_test) where every aerial within
5 m (UTM) of the query counts (OriCNN RecallGeo.m). Some listed images are missing from
the archives: they are counted and skipped unless `strict`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geobench.datasets.common import (
    Adapted,
    FileSet,
    blank_row,
    find_dir,
    find_file,
    parse_options,
    require_dir,
)
from geobench.datasets.cvusa import POLAR_DIR, write_polar
from geobench.datasets.geo import radius_pairs, utm_to_latlon
from geobench.datasets.registry import register_dataset
from geobench.errors import DataError, UsageError

SETS = {"train": ("trainSet", "trainInd", "ANU_data_small"),
        "val": ("valSet", "valInd", "ANU_data_small"),
        "test": ("valSetAll", "valInd", "ANU_data_test")}
GROUND, AERIAL = "streetview/{}_grdView.jpg", "satview_polish/{}_satView_polish.jpg"


@dataclass(frozen=True)
class CVACTOptions:
    splits: tuple[str, ...] | None = None
    mat: str | None = None             # explicit ACT_data.mat path
    test_radius_m: float = 5.0
    utm_zone: int = 55                 # Canberra: zone 55, southern hemisphere
    utm_northern: bool = False
    polar: bool = False
    polar_size: tuple[int, int] = (112, 616)
    polar_stretch: str = "none"  # none | minmax (SAFA/DSM's published polar files)
    model: str | None = None
    strict: bool = False


@dataclass
class ActData:
    pano_ids: list[str]
    utm: np.ndarray                    # (N, 2) as stored
    sets: dict[str, np.ndarray]        # split -> 0-based indices


def _strings(values: Any) -> list[str]:
    """MATLAB char matrix or cell array of strings, as loadmat returns them, -> list[str]."""
    out = []
    for v in np.asarray(values, dtype=object).ravel():
        while isinstance(v, np.ndarray):
            v = v.ravel()[0] if v.size == 1 or v.dtype.kind != "U" else "".join(v.ravel())
        out.append(str(v).strip())
    return out


def _load_v5(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    # scipy raises almost anything on a damaged file (IndexError, MatReadError, ...)
    except Exception as exc:  # noqa: BLE001
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{path}: not a readable MATLAB file ({reason}); restore "
                        f"ACT_data.mat") from None
    if "panoIds" not in mat or "utm" not in mat:
        raise DataError(f"{path}: no panoIds/utm variables; this is not CVACT's ACT_data.mat")
    data: dict[str, Any] = {"panoIds": _strings(mat["panoIds"]), "utm": np.asarray(mat["utm"], float)}
    for struct, field, _ in SETS.values():
        if struct in mat:
            s = mat[struct]
            if s.dtype.names is None or field not in s.dtype.names:
                raise DataError(f"{path}: struct {struct} has no field {field}; restore "
                                f"ACT_data.mat")
            data[f"{struct}.{field}"] = np.asarray(s[field].ravel()[0]).ravel()
    return data


def _load_v73(path: Path) -> dict[str, Any]:
    import h5py

    with h5py.File(path, "r") as f:
        for key in ("panoIds", "utm"):
            if key not in f:
                raise DataError(f"{path}: HDF5 dataset /{key} not found; this is not CVACT's "
                                f"ACT_data.mat")
        ids = f["panoIds"]
        if h5py.check_dtype(ref=ids.dtype) is not None:
            names = ["".join(map(chr, np.asarray(f[r][()]).ravel())) for r in ids[()].ravel()]
        else:  # char matrix, stored transposed (chars, N)
            chars = np.asarray(ids[()])
            names = ["".join(map(chr, col)).strip("\x00 ") for col in chars.T]
        utm = np.asarray(f["utm"][()], float)
        if utm.shape[0] == 2 and utm.shape[1] != 2:
            utm = utm.T  # MATLAB column-major N×2 arrives as 2×N
        data: dict[str, Any] = {"panoIds": names, "utm": utm}
        for struct, field, _ in SETS.values():
            if struct in f:
                if field not in f[struct]:
                    raise DataError(f"{path}: HDF5 dataset /{struct}/{field} not found; "
                                    f"restore ACT_data.mat")
                data[f"{struct}.{field}"] = np.asarray(f[struct][field][()]).ravel()
    return data


def load_act_data(path: Path) -> ActData:
    """Read ACT_data.mat (v5 or v7.3); split indices become 0-based and are range-checked."""
    import h5py

    if not path.is_file():
        raise DataError(f"{path}: file not found; pass the path of ACT_data.mat")
    data = _load_v73(path) if h5py.is_hdf5(str(path)) else _load_v5(path)
    ids, utm = data["panoIds"], data["utm"]
    if utm.ndim != 2 or utm.shape != (len(ids), 2):
        raise DataError(f"{path}: utm has shape {utm.shape}, expected ({len(ids)}, 2) to match "
                        f"panoIds; restore ACT_data.mat")
    sets = {}
    for split, (struct, field, _) in SETS.items():
        raw = data.get(f"{struct}.{field}")
        if raw is None:
            continue
        if raw.size and (np.any(raw != np.round(raw)) or raw.min() < 1 or raw.max() > len(ids)):
            raise DataError(f"{path}: {struct}.{field} holds indices outside 1..{len(ids)} "
                            f"(MATLAB indices are 1-based); restore ACT_data.mat")
        sets[split] = raw.astype(np.int64) - 1
    return ActData(ids, utm, sets)


def _east_north(utm: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Which column is the easting: eastings lie in (100 km, 900 km), northings rarely."""
    col0_east = bool(np.all((utm[:, 0] > 1e5) & (utm[:, 0] < 9e5))) if len(utm) else True
    if col0_east:
        return utm[:, 0], utm[:, 1], "east,north"
    return utm[:, 1], utm[:, 0], "north,east"


def _folders(root: Path) -> tuple[Path, dict[str, Path]]:
    found = {}
    for name in ("ANU_data_small", "ANU_data_test"):
        dirs = [root] if root.name == name else find_dir(root, name, max_depth=3)
        if not dirs and (root.parent / name).is_dir() and root.name.startswith("ANU_data"):
            dirs = [root.parent / name]
        if dirs:
            found[name] = dirs[0]
    if not found:
        raise DataError(f"{root}: no ANU_data_small/ or ANU_data_test/ folder found; point --root "
                        f"at the CVACT folder that contains them")
    base = Path(os.path.commonpath([p.parent for p in found.values()]))
    return base, found


@register_dataset(name="cvact")
def cvact(root: Path, out: Path, options: dict[str, Any]) -> Adapted:
    opts = parse_options(CVACTOptions, options, "cvact")
    root = require_dir(root, "CVACT", "the folder with ACT_data.mat and ANU_data_small/")
    base, folders = _folders(root)
    if opts.mat:
        mat_path = Path(opts.mat)
    else:
        candidates = find_file(root, "ACT_data.mat", max_depth=5) or find_file(base, "ACT_data.mat")
        if not candidates:
            raise DataError(f"{root}: ACT_data.mat not found (searched {root}); copy it next to "
                            f"ANU_data_small/ (it ships with OriCNN as "
                            f"OriNet_CVACT/CVACT_orientations/ACT_data.mat) or pass mat=PATH")
        mat_path = candidates[0]
    act = load_act_data(mat_path)
    splits = opts.splits or tuple(s for s in SETS if SETS[s][2] in folders and s in act.sets)
    for split in splits:
        if split not in SETS:
            raise UsageError(f"prepare cvact: unknown split {split!r}; choose from train, val, test")
        struct, field, folder = SETS[split]
        if split not in act.sets:
            raise DataError(f"{mat_path}: no {struct}.{field}; this ACT_data.mat cannot give "
                            f"split {split}")
        if folder not in folders:
            raise DataError(f"{root / folder}: folder not found; it holds the {split} images "
                            f"(or leave {split} out of the splits)")
    if not splits:
        raise DataError(f"{mat_path}: no split of ACT_data.mat has its image folder under {root}")
    east, north, order = _east_north(act.utm)
    lat, lon = utm_to_latlon(east, north, opts.utm_zone, opts.utm_northern)

    index: list[dict[str, Any]] = []
    positives: list[dict[str, Any]] = []
    missing: dict[str, list[str]] = {"ground": [], "aerial": []}
    polar_jobs: list[tuple[str, str]] = []
    duplicates = 0
    for split in splits:
        folder = folders[SETS[split][2]]
        rel = folder.relative_to(base).as_posix()
        files = FileSet(base)
        kept: list[int] = []
        seen: set[str] = set()
        for i in act.sets[split]:
            pid = act.pano_ids[i]
            if pid in seen:
                duplicates += 1
                continue
            seen.add(pid)
            g, a = f"{rel}/{GROUND.format(pid)}", f"{rel}/{AERIAL.format(pid)}"
            ok = True
            for view, path in (("ground", g), ("aerial", a)):
                if not files.exists(path):
                    missing[view].append(path)
                    ok = False
            if not ok:
                continue
            kept.append(i)
            geo = dict(lat=lat[i], lon=lon[i], utm_e=east[i], utm_n=north[i], heading=0.0)
            index.append(blank_row(uid=f"{split}/ground/{pid}", split=split, role="query",
                                   view="ground", path=g, item=pid, **geo))
            index.append(blank_row(uid=f"{split}/aerial/{pid}", split=split, role="reference",
                                   view="aerial", path=a, item=pid, **geo))
            if opts.polar:
                p = f"{POLAR_DIR}/{SETS[split][2]}/{pid}_satView_polish.png"
                polar_jobs.append((a, p))
                index.append(blank_row(uid=f"{split}/polar/{pid}", split=split, role="reference",
                                       view="polar", path=p, item=pid, **geo))
        views = ["aerial", "polar"] if opts.polar else ["aerial"]
        if split == "test":  # CVACT_test: any aerial within 5 m counts
            xy = np.stack([east[kept], north[kept]], axis=1) if kept else np.zeros((0, 2))
            qi, ri, dist = radius_pairs(xy, xy, opts.test_radius_m)
            links = [(kept[q], kept[r], float(d)) for q, r, d in zip(qi, ri, dist, strict=True)]
        else:
            links = [(i, i, 0.0) for i in kept]
        for q, r, d in links:
            for view in views:
                positives.append({"split": split, "query": f"{split}/ground/{act.pano_ids[q]}",
                                  "reference": f"{split}/{view}/{act.pano_ids[r]}",
                                  "kind": "positive", "distance_m": d})
    parameters: dict[str, Any] = {
        "mat": str(mat_path), "sets": {s: ".".join(SETS[s][:2]) for s in splits},
        "utm_columns": order, "utm_zone": f"{opts.utm_zone}{'N' if opts.utm_northern else 'S'}",
        "test_radius_m": opts.test_radius_m, "duplicate_ids_skipped": duplicates,
        "ground_convention": "north at the centre column, heading clockwise", "polar": None}
    if opts.polar and index:
        from geobench.datasets.cvusa import CVUSAOptions, _polar_size

        size = _polar_size(CVUSAOptions(polar_size=opts.polar_size, model=opts.model))
        parameters["polar"] = {"size": list(size), "north": "center", "radius": "safa",
                               "stretch": opts.polar_stretch}
        write_polar(base, Path(out), polar_jobs, size, opts.polar_stretch)
    scan = [(f"{p.relative_to(base).as_posix()}/{sub}", (".jpg",)) for p in folders.values()
            for sub in ("streetview", "satview_polish")]
    counts = {"train": 35532, "val": 8884, "test": 92802}
    return Adapted(index=index, positives=positives, parameters=parameters, raw_root=base,
                   derived_dirs=[POLAR_DIR] if opts.polar else [], missing=missing, scan=scan,
                   expected_sizes={"ground": (832, 1664), "aerial": (1200, 1200)},
                   expected_counts={f"{s}/{r}/{v}": counts[s] for s in splits
                                    for r, v in (("query", "ground"), ("reference", "aerial"))})
