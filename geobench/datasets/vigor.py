"""VIGOR: panoramas of four cities against a half-overlapping satellite grid.

Layout facts (reference/datasets.md §3): `splits/<City>/satellite_list.txt` and label
lines `<pano> <sat> d0 d1 <semi1> d0 d1 <semi2> d0 d1 <semi3> d0 d1`; the first satellite
is the positive, the next three semi-positives. The pano sits at row 320 + d0, column
320 - d1 of the satellite, so dy = d0 and dx = -d1. Satellites are `.png`; some files
have no trailing newline; references are keyed by (city, file name), never by position.
Also accepts Sample4Geo's rearranged tree ({ground,satellite}/<City>/) and the corrected
labels of SliceMatch (`splits__corrected`, files suffixed `__corrected`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geobench.datasets.common import (
    Adapted,
    FileSet,
    blank_row,
    find_dir,
    parse_options,
    read_lines,
    require_dir,
)
from geobench.datasets.geo import haversine_m, latlon_to_utm
from geobench.datasets.registry import register_dataset
from geobench.errors import DataError, UsageError

CITIES = ("Chicago", "NewYork", "SanFrancisco", "Seattle")
LABEL_FORMAT = ("<panoid>,<lat>,<lon>,.jpg <sat.png> d0 d1 followed by three more "
                "<sat.png> d0 d1 (13 space-separated fields)")


@dataclass(frozen=True)
class VIGOROptions:
    protocol: str = "same"             # same | cross
    corrected: bool = False            # use splits__corrected (SliceMatch labels)
    cities: tuple[str, ...] | None = None
    cross_train_cities: tuple[str, ...] = ("NewYork", "Seattle")
    cross_test_cities: tuple[str, ...] = ("Chicago", "SanFrancisco")
    strict: bool = False


def _label_file(stem: str, corrected: bool) -> str:
    return f"{stem}__corrected.txt" if corrected else f"{stem}.txt"


def _parse_sat(name: str) -> tuple[float, float] | None:
    if not (name.startswith("satellite_") and name.endswith(".png")):
        return None
    parts = name[: -len(".png")].split("_")
    if len(parts) != 3:
        return None
    try:
        return float(parts[1]), float(parts[2])
    except ValueError:
        return None


def _parse_pano(name: str) -> tuple[float, float] | None:
    parts = name.split(",")
    if len(parts) < 4 or parts[-1] != ".jpg":
        return None
    try:
        return float(parts[-3]), float(parts[-2])
    except ValueError:
        return None


class _Layout:
    """Where a city's images live: official <City>/{panorama,satellite} or Sample4Geo's."""

    def __init__(self, root: Path, cities: list[str]) -> None:
        rearranged = (root / "ground").is_dir() and (root / "satellite").is_dir() and not any(
            (root / c / "panorama").is_dir() for c in cities)
        self.pano = {c: f"ground/{c}" if rearranged else f"{c}/panorama" for c in cities}
        self.sat = {c: f"satellite/{c}" if rearranged else f"{c}/satellite" for c in cities}
        self.name = "sample4geo" if rearranged else "official"


def _read_satellites(path: Path) -> dict[str, tuple[float, float]]:
    sats: dict[str, tuple[float, float]] = {}
    for number, line in read_lines(path):
        ll = _parse_sat(line)
        if ll is None:
            raise DataError(f"{path}:{number}: malformed satellite name {line[:80]!r}; expected "
                            f"satellite_<lat>_<lon>.png")
        sats[line] = ll
    if not sats:
        raise DataError(f"{path}: satellite list is empty; restore it from the VIGOR archive")
    return sats


def _read_labels(path: Path, city: str, sats: dict[str, dict[str, Any]]
                 ) -> list[tuple[str, float, float, list[tuple[str, float, float]]]]:
    rows = []
    for number, line in read_lines(path):
        fields = line.split()
        pano_ll = _parse_pano(fields[0]) if fields else None
        try:
            deltas = [(fields[i], float(fields[i + 1]), float(fields[i + 2]))
                      for i in (1, 4, 7, 10)] if len(fields) == 13 else None
        except ValueError:
            deltas = None
        if pano_ll is None or deltas is None:
            raise DataError(f"{path}:{number}: malformed label line {line[:80]!r}; expected "
                            f"{LABEL_FORMAT}")
        for sat, _, _ in deltas:
            if sat not in sats[city]:
                other = next((c for c, names in sats.items() if sat in names), None)
                if other is not None:
                    raise DataError(f"{path}:{number}: satellite {sat} belongs to {other}, not "
                                    f"{city} (mixed-up cities); restore splits/{city}/ from the "
                                    f"VIGOR archive")
                raise DataError(f"{path}:{number}: satellite {sat} is not in "
                                f"splits/{city}/satellite_list.txt; restore the split files")
        rows.append((fields[0], pano_ll[0], pano_ll[1], deltas))
    return rows


@register_dataset(name="vigor")
def vigor(root: Path, out: Path, options: dict[str, Any]) -> Adapted:
    opts = parse_options(VIGOROptions, options, "vigor")
    root = require_dir(root, "VIGOR", "the folder with the city folders and splits/")
    if opts.protocol not in ("same", "cross"):
        raise UsageError(f"prepare vigor: protocol {opts.protocol!r} is not same or cross")
    split_name = "splits__corrected" if opts.corrected else "splits"
    found = find_dir(root, split_name)
    if not found:
        raise DataError(f"{root / split_name}: folder not found under {root}; point --root at "
                        f"the VIGOR folder" + (" (or drop --corrected)" if opts.corrected else ""))
    splits_dir = found[0]
    base = splits_dir.parent
    present = sorted(p.name for p in splits_dir.iterdir() if p.is_dir())
    cities = list(opts.cities) if opts.cities else present
    if opts.protocol == "cross":
        plan = {"train": list(opts.cross_train_cities), "test": list(opts.cross_test_cities)}
        label_stem = {"train": "pano_label_balanced", "test": "pano_label_balanced"}
    else:
        plan = {"train": cities, "test": cities}
        label_stem = {"train": "same_area_balanced_train", "test": "same_area_balanced_test"}
    needed = sorted({c for cs in plan.values() for c in cs})
    for city in needed:
        if city not in present:
            raise DataError(f"{splits_dir / city}: city folder not found (present: "
                            f"{', '.join(present) or 'none'}); restore it or choose cities "
                            f"with the cities / cross_*_cities options")
    layout = _Layout(base, needed)
    files = FileSet(base)

    sats = {c: _read_satellites(splits_dir / c / "satellite_list.txt") for c in needed}
    sat_info: dict[str, dict[str, Any]] = {}
    for city, names in sats.items():
        lat = np.array([v[0] for v in names.values()])
        lon = np.array([v[1] for v in names.values()])
        east, north, _ = latlon_to_utm(lat, lon)
        sat_info[city] = {n: (la, lo, e, no) for n, la, lo, e, no in
                          zip(names, lat, lon, east, north, strict=True)}

    index: list[dict[str, Any]] = []
    positives: list[dict[str, Any]] = []
    missing: dict[str, list[str]] = {"ground": [], "aerial": []}
    seen_missing: set[str] = set()
    for split, split_cities in plan.items():
        present_refs: set[tuple[str, str]] = set()
        for city in split_cities:
            for name, (lat, lon, e, n) in sat_info[city].items():
                path = f"{layout.sat[city]}/{name}"
                if not files.exists(path):
                    if path not in seen_missing:
                        missing["aerial"].append(path)
                        seen_missing.add(path)
                    continue
                present_refs.add((city, name))
                index.append(blank_row(uid=f"{split}/aerial/{city}/{name}", split=split,
                                       role="reference", view="aerial", path=path,
                                       item=f"{city}/{name}", lat=lat, lon=lon, utm_e=e,
                                       utm_n=n, heading=0.0, city=city))
        for city in split_cities:
            label_path = splits_dir / city / _label_file(label_stem[split], opts.corrected)
            labels = _read_labels(label_path, city, sat_info)
            if not labels:
                continue
            p_e, p_n, _ = latlon_to_utm(np.array([r[1] for r in labels]),
                                        np.array([r[2] for r in labels]))
            for (pano, lat, lon, deltas), e, n in zip(labels, p_e, p_n, strict=True):
                path = f"{layout.pano[city]}/{pano}"
                if not files.exists(path):
                    elsewhere = [c for c in needed if c != city
                                 and files.exists(f"{layout.pano[c]}/{pano}")]
                    if elsewhere:
                        raise DataError(f"{label_path}: panorama {pano} is in "
                                        f"{layout.pano[elsewhere[0]]}/, not {layout.pano[city]}/ "
                                        f"(mixed-up cities); move it back")
                    missing["ground"].append(path)
                    continue
                if (city, deltas[0][0]) not in present_refs:
                    continue  # its positive aerial is missing (already counted)
                uid = f"ground/{city}/{pano}"
                index.append(blank_row(uid=uid, split=split, role="query", view="ground",
                                       path=path, item=f"{city}/{deltas[0][0]}", lat=lat,
                                       lon=lon, utm_e=e, utm_n=n, heading=0.0, city=city))
                for k, (sat, d0, d1) in enumerate(deltas):
                    if (city, sat) not in present_refs:
                        continue
                    s_lat, s_lon = sat_info[city][sat][:2]
                    positives.append({
                        "split": split, "query": uid, "reference": f"{split}/aerial/{city}/{sat}",
                        "kind": "positive" if k == 0 else "semi_positive",
                        "distance_m": float(haversine_m(lat, lon, s_lat, s_lon)),
                        "dy": d0, "dx": -d1})

    full = {"same": {"train/query/ground": 52609, "test/query/ground": 52605,
                     "train/reference/aerial": 90618, "test/reference/aerial": 90618},
            "cross": {"train/query/ground": 51520, "test/query/ground": 53694,
                      "train/reference/aerial": 44055, "test/reference/aerial": 46563}}
    parameters = {"protocol": opts.protocol, "labels": split_name, "cities": plan,
                  "layout": layout.name, "offsets": "dy = d0, dx = -d1 (pixels of the "
                  "satellite image as stored, 640x640 in the release, from its centre, rows "
                  "down / columns right)",
                  "ground_convention": "north at the centre column, heading clockwise"}
    scan = [(d, (".jpg",)) for d in layout.pano.values()] + \
        [(d, (".png",)) for d in layout.sat.values()]
    return Adapted(index=index, positives=positives, parameters=parameters, raw_root=base,
                   protocol=f"vigor_{opts.protocol}",
                   missing=missing, scan=scan,
                   expected_sizes={"ground": (1024, 2048), "aerial": (640, 640)},
                   expected_counts=full[opts.protocol] if set(needed) == set(CITIES) else {})
