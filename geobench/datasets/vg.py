"""Visual geo-localization datasets in the gmberton (VPR-datasets-downloader) format.

Layout facts (reference/datasets.md §5): `images/<split>/{database,queries}/` trees of
`@east@north@zone@letter@lat@lon@pano@tile@heading@pitch@roll@height@time@note@.jpg`
files. We parse the basename (a folder may contain '@'), let the caller choose the
queries folder (SF-XL test uses `queries_v1`), follow symlinks (MSLS test -> val), and
link every database image within 25 m as an evaluation positive and within 10 m as a
training positive (train split). pitts30k / pitts250k also read the raw NetVLAD release
(datasets/*.mat dbStructs, see geobench.datasets.pitts) when --root holds no images/ tree;
what both layouts share is in geobench.datasets.vg_common.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geobench.datasets import msls, pitts
from geobench.datasets.common import (
    Adapted,
    blank_row,
    parse_options,
    require_dir,
    walk_images,
)
from geobench.datasets.registry import register_dataset
from geobench.datasets.vg_common import (
    RAW_MAT_NAMES,
    SIZES,
    SPLITS,
    VGOptions,
    expected_counts,
    find_images_dir,
    radius_positives,
)
from geobench.errors import DataError, UsageError

NAME_FORMAT = "@east@north@zone@letter@lat@lon@pano_id@tile@heading@pitch@roll@height@time@note@.jpg"


@dataclass(frozen=True)
class VGName:
    east: float
    north: float
    zone: str
    lat: float | None
    lon: float | None
    heading: float | None
    pano: str


def parse_name(path: Path) -> VGName:
    """Parse a VG file name; DataError naming the file when it does not follow the format."""
    fields = path.name.split("@")

    def num(i: int) -> float | None:
        return float(fields[i]) if len(fields) > i and fields[i].strip() else None

    try:
        if len(fields) < 8 or fields[0] != "":
            raise ValueError
        east, north = num(1), num(2)
        if east is None or north is None:
            raise ValueError
        return VGName(east, north, f"{fields[3]}{fields[4]}", num(5), num(6), num(9), fields[7])
    except ValueError:
        raise DataError(f"{path}: file name does not follow the VG format {NAME_FORMAT}; "
                        f"format the dataset with VPR-datasets-downloader") from None


def _images_dir(root: Path, name: str) -> Path:
    found = find_images_dir(root, name)
    if found is not None:
        return found
    raw = (f" (or at the raw release folder with datasets/{name}_test.mat and queries_real/)"
           if name in RAW_MAT_NAMES else "")
    raise DataError(f"{root}: no images/<split>/ folder found; point --root at the {name} folder "
                    f"that contains images/test/database and images/test/queries{raw}")


def _prepare_vg(name: str, root: Path, options: dict[str, Any]) -> Adapted:
    opts = parse_options(VGOptions, options, name)
    root = require_dir(root, name, "the folder that contains images/")
    images = _images_dir(root, name)
    base = images.parent
    protocol = msls.check_protocol(name, opts.protocol)
    wanted = tuple(opts.splits) if opts.splits else SPLITS
    for split in wanted:
        if split not in SPLITS:
            raise UsageError(f"prepare {name}: unknown split {split!r}; choose from "
                             f"{', '.join(SPLITS)}")
    index: list[dict[str, Any]] = []
    positives: list[dict[str, Any]] = []
    used: dict[str, dict[str, str]] = {}
    for split in wanted:
        db_dir = images / split / opts.database_folder
        q_dir = images / split / opts.queries_folder
        if not q_dir.is_dir() and (images / split / "queries").is_dir():
            q_dir = images / split / "queries"  # e.g. SF-XL val keeps the plain name
        if not db_dir.is_dir() or not q_dir.is_dir():
            if opts.splits:
                lacking = db_dir if not db_dir.is_dir() else q_dir
                raise DataError(f"{lacking}: folder not found; check --root or choose the "
                                f"queries folder (e.g. queries_v1 for SF-XL)")
            continue
        rows: dict[str, list[tuple[str, VGName]]] = {}
        for role, folder in (("reference", db_dir), ("query", q_dir)):
            files = walk_images(folder, (".jpg",))
            if not files:
                raise DataError(f"{folder}: no .jpg images found; restore the {split} "
                                f"{'database' if role == 'reference' else 'queries'}")
            rows[role] = [(f.relative_to(base).as_posix(), parse_name(f)) for f in files]
        if protocol is not None and split != "train":  # MSLS val (and test, its symlink)
            rows["query"] = msls.select_queries(rows["query"], q_dir, protocol)
        zones = {v.zone for rs in rows.values() for _, v in rs}
        if len(zones) > 1:
            raise DataError(f"{images / split}: images span UTM zones {', '.join(sorted(zones))}; "
                            f"UTM distances across zones are meaningless, split the dataset "
                            f"by zone")
        used[split] = {"database": db_dir.name, "queries": q_dir.name}
        for role, rs in rows.items():
            for rel, v in rs:
                index.append(blank_row(uid=rel, split=split, role=role, view="street", path=rel,
                                       lat=v.lat, lon=v.lon, utm_e=v.east, utm_n=v.north,
                                       heading=v.heading))
        positives += radius_positives(
            split, [rel for rel, _ in rows["query"]],
            np.array([[v.east, v.north] for _, v in rows["query"]]),
            [rel for rel, _ in rows["reference"]],
            np.array([[v.east, v.north] for _, v in rows["reference"]]), opts)
    if not used:
        raise DataError(f"{images}: no split has both a {opts.database_folder}/ and a "
                        f"{opts.queries_folder}/ folder; check --root or the queries folder name")
    parameters = {"folders": used, "eval_radius_m": opts.eval_radius_m,
                  "train_radius_m": opts.train_radius_m, "distance": "euclidean UTM"}
    counts = expected_counts(name, used)
    if protocol is not None:
        parameters["protocol"] = protocol
        counts = {k: n for k, n in msls.expected(protocol).items() if k.split("/")[0] in used}
    return Adapted(index=index, positives=positives, parameters=parameters, raw_root=base,
                   protocol=protocol or "vg25", scan=[], expected_sizes=dict(SIZES.get(name, {})),
                   expected_counts=counts)


_DEFAULTS = {"sf_xl": {"queries_folder": "queries_v1"}}


def _make(name: str) -> Callable[[Path, Path, dict[str, Any]], Adapted]:
    def adapter(root: Path, out: Path, options: dict[str, Any]) -> Adapted:
        merged = {**_DEFAULTS.get(name, {}), **{k: v for k, v in options.items() if v is not None}}
        if name in RAW_MAT_NAMES and pitts.is_raw_layout(Path(root), name):
            return pitts.prepare_raw(name, Path(root), merged)
        return _prepare_vg(name, root, merged)

    adapter.__name__ = name
    adapter.__doc__ = f"{name} in the VG benchmark format (images/<split>/{{database,queries}})."
    return adapter


for _name in ("pitts30k", "pitts250k", "msls", "sf_xl", "tokyo247", "vg"):
    register_dataset(name=_name)(_make(_name))
