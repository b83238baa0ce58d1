"""Polar transform of north-up aerial images into panorama-like strips (SAFA / DSM).

Default geometry = the SAFA code (reference/datasets.md §6.1): output row i, column j of
an H×W result from an S×S aerial image samples the aerial at

    r = (S/2)(H-1-i)/H,  theta = 2*pi*j/W,
    row = S/2 + r*cos(theta),  col = S/2 - r*sin(theta)

with bilinear interpolation and zero outside. Column j then faces heading 180 + 360 j/W
(j=0 south, W/4 west, W/2 north, 3W/4 east): north sits at the centre column exactly like
CVUSA/VIGOR panoramas, so no shift is needed. `north="left"` gives the seed paper's printed
form (row = S/2 - r cos, col = S/2 + r sin: north at column 0, a W/2 roll of the default),
and `radius="seed"` its radius (S/2)(H-i)/H. The top row is the aerial border (horizon),
the bottom row the centre (camera position).

`stretch="minmax"` reproduces the files SAFA and DSM published: their scripts sample in
float64 and save with `scipy.misc.imsave`, which byte-scales every image on its own —
(v - min) * 255 / (max - min) over all pixels and channels, + 0.5, truncated to uint8
(max = min: scale 1). Low-contrast tiles are therefore stretched to the full 0..255
range; models trained on those files (SAFA/DSM released weights) expect that input.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geobench.errors import DataError, UsageError

NORTH = ("center", "left")
RADIUS = ("safa", "seed")
FORMATS = ("png", "jpg")
STRETCH = ("none", "minmax")


@dataclass(frozen=True)
class PolarParams:
    """Everything that decides a polar image; recorded in polar.json beside the outputs."""

    size: tuple[int, int] = (112, 616)
    north: str = "center"
    radius: str = "safa"
    format: str = "png"
    crop_square: bool = False
    stretch: str = "none"  # none | minmax (SAFA/DSM's per-image byte scaling)

    def __post_init__(self) -> None:
        h, w = self.size
        if int(h) != h or int(w) != w or h < 1 or w < 1:
            raise UsageError(f"--size {h}x{w} is not a valid polar size; use positive "
                             f"integers HEIGHTxWIDTH, e.g. 112x616")
        object.__setattr__(self, "size", (int(h), int(w)))
        for name, value, allowed in (("north", self.north, NORTH), ("radius", self.radius, RADIUS),
                                     ("format", self.format, FORMATS),
                                     ("stretch", self.stretch, STRETCH)):
            if value not in allowed:
                raise UsageError(f"--{name} {value!r} is not one of {' | '.join(allowed)}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["size"] = list(self.size)
        if self.stretch == "none":  # folders written before the option still match
            del data["stretch"]
        return data


def _check_args(S: float, H: int, W: int, north: str, radius: str) -> None:
    if north not in NORTH:
        raise UsageError(f"north {north!r} is not one of {' | '.join(NORTH)}")
    if radius not in RADIUS:
        raise UsageError(f"radius {radius!r} is not one of {' | '.join(RADIUS)}")
    if S <= 0 or H < 1 or W < 1:
        raise UsageError(f"polar sizes must be positive (aerial {S}, output {H}x{W})")


def polar_coords(S: float, H: int, W: int, north: str = "center",
                 radius: str = "safa") -> tuple[np.ndarray, np.ndarray]:
    """Float64 aerial (row, col) sampled by every output pixel, each of shape (H, W)."""
    _check_args(S, H, W, north, radius)
    i = np.arange(H, dtype=np.float64)[:, None]
    j = np.arange(W, dtype=np.float64)[None, :]
    r = (S / 2.0) * ((H - 1 - i) if radius == "safa" else (H - i)) / H
    theta = 2.0 * np.pi * j / W
    sign = 1.0 if north == "center" else -1.0
    row = S / 2.0 + sign * r * np.cos(theta)
    col = S / 2.0 - sign * r * np.sin(theta)
    return row, col


@functools.lru_cache(maxsize=16)
def polar_maps(S: int, H: int, W: int, north: str = "center",
               radius: str = "safa") -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (map_x = aerial column, map_y = aerial row), float32, cached per size."""
    row, col = polar_coords(S, H, W, north, radius)
    map_x, map_y = col.astype(np.float32), row.astype(np.float32)
    map_x.flags.writeable = map_y.flags.writeable = False
    return map_x, map_y


@functools.lru_cache(maxsize=16)
def _fixed_maps(S: int, H: int, W: int, north: str, radius: str) -> tuple[Any, Any]:
    # Fixed-point maps (1/32 px) make remap ~2x faster than float maps; same result as
    # OpenCV's own float path, which quantises internally to the same grid.
    import cv2

    map_x, map_y = polar_maps(S, H, W, north, radius)
    return cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)


def center_square(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return img[top:top + s, left:left + s]


def _square(img: np.ndarray, crop_square: bool, source: str | Path | None) -> np.ndarray:
    h, w = img.shape[:2]
    if h == w:
        return img
    if crop_square:
        return center_square(img)
    where = f"{source}: " if source is not None else ""
    raise DataError(f"{where}aerial image is {h}x{w}, not square; the polar transform needs a "
                    f"square north-up aerial image (pass --crop-square to centre-crop it)")


def polar_transform(img: np.ndarray, size: tuple[int, int] = (112, 616), north: str = "center",
                    radius: str = "safa", crop_square: bool = False,
                    source: str | Path | None = None, stretch: str = "none") -> np.ndarray:
    """Polar-transform one square aerial image (H×W×C or H×W, any dtype cv2 remaps);
    `stretch="minmax"`: sample in float and byte-scale the result (see module doc)."""
    import cv2

    if stretch not in STRETCH:
        raise UsageError(f"--stretch {stretch!r} is not one of {' | '.join(STRETCH)}")
    img = _square(np.asarray(img), crop_square, source)
    if stretch == "minmax":  # no rounding to uint8 before the stretch amplifies it
        img = img.astype(np.float32)
    H, W = size
    m1, m2 = _fixed_maps(int(img.shape[0]), int(H), int(W), north, radius)
    out = cv2.remap(img, m1, m2, interpolation=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return byte_scale(out) if stretch == "minmax" else out


def byte_scale(values: np.ndarray) -> np.ndarray:
    """scipy.misc.imsave's conversion of a float image: min..max of the whole image
    (all channels together) to 0..255, + 0.5, truncated; a flat image gets scale 1."""
    v = np.asarray(values, dtype=np.float64)
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
    scale = 255.0 / (hi - lo if hi > lo else 1.0)
    return (np.clip((v - lo) * scale, 0.0, 255.0) + 0.5).astype(np.uint8)


def polar_numpy(img: np.ndarray, size: tuple[int, int] = (112, 616), north: str = "center",
                radius: str = "safa") -> np.ndarray:
    """Per-image float64 bilinear sampler written the way research code does it.

    Slow (recomputes coordinates and gathers in numpy every call); kept as the exact
    reference for tests and as the baseline the prep benchmark compares OpenCV against.
    Each of the four neighbours outside the image contributes zero, as in SAFA's sampler.
    """
    img = np.asarray(img, dtype=np.float64)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[:, :, None]
    S = img.shape[0]
    row, col = polar_coords(S, size[0], size[1], north, radius)
    r0, c0 = np.floor(row).astype(np.int64), np.floor(col).astype(np.int64)
    out = np.zeros(row.shape + (img.shape[2],), dtype=np.float64)
    for dr in (0, 1):
        for dc in (0, 1):
            rr, cc = r0 + dr, c0 + dc
            weight = (1 - np.abs(row - rr)) * (1 - np.abs(col - cc))
            inside = (rr >= 0) & (rr < img.shape[0]) & (cc >= 0) & (cc < img.shape[1])
            vals = img[np.clip(rr, 0, img.shape[0] - 1), np.clip(cc, 0, img.shape[1] - 1)]
            out += np.where(inside, weight, 0.0)[..., None] * vals
    return out[..., 0] if squeeze else out


def column_heading(j: Any, W: int, north: str = "center") -> Any:
    """Compass heading (degrees clockwise from north) that polar column j faces."""
    base = 180.0 if north == "center" else 0.0
    return (base + 360.0 * np.asarray(j, dtype=float) / W) % 360.0


def polar_job(img: np.ndarray, params: PolarParams, job: Any) -> list[tuple[np.ndarray, dict]]:
    """Worker entry for the folder runner: one aerial image -> one polar image."""
    return [(polar_transform(img, params.size, params.north, params.radius,
                             params.crop_square, job.src, params.stretch), {})]


def describe(params: PolarParams) -> dict[str, Any]:
    """The polar.json description of a parameter set: values plus the formula in words."""
    r = "(S/2)(H-1-i)/H" if params.radius == "safa" else "(S/2)(H-i)/H"
    if params.north == "center":
        sample = "row = S/2 + r cos(theta), col = S/2 - r sin(theta)"
        heading = "heading(j) = 180 + 360 j / W (north at the centre column)"
    else:
        sample = "row = S/2 - r cos(theta), col = S/2 + r sin(theta)"
        heading = "heading(j) = 360 j / W (north at column 0)"
    return {**params.to_json(),
            "formula": f"r = {r}, theta = 2 pi j / W, {sample}; S = aerial side in pixels",
            "heading": heading,
            "interpolation": "bilinear (OpenCV remap, 1/32 px), zero outside the aerial image",
            "stretch": params.stretch,
            "stretch_rule": ("per image: (v - min) * 255 / (max - min) + 0.5, truncated (SAFA/"
                             "DSM files, scipy.misc.imsave byte scaling)"
                             if params.stretch == "minmax" else "none: grey levels as sampled"),
            "convention": "safa-code" if (params.north, params.radius) == ("center", "safa")
            else "custom"}


# --------------------------------------------------------------------------- folders

MANIFEST = "polar.json"
SCHEMA = "geobench.polar/1"


@dataclass
class PolarReport:
    """What a `polar_folder` run did; `failed` holds (path, one-line reason)."""

    dst: Path
    params: PolarParams
    written: int
    skipped: int
    failed: list[tuple[str, str]]
    input_sizes: dict[str, int]
    seconds: float

    @property
    def total(self) -> int:
        return self.written + self.skipped + len(self.failed)

    def raise_for_failures(self) -> None:
        if self.failed:
            path, reason = self.failed[0]
            more = f" (and {len(self.failed) - 1} more, listed in {self.dst / MANIFEST})" \
                if len(self.failed) > 1 else ""
            raise DataError(f"{reason}{more}; the other images were written, fix or remove the "
                            f"failed ones and re-run to finish")


def polar_jobs(pairs: list[tuple[Path, Path]]) -> list[Any]:
    from geobench.geometry.imagerun import ImageJob

    return [ImageJob(str(s), (str(d),), str(s)) for s, d in pairs]


def polar_folder(src: str | Path, dst: str | Path, params: PolarParams = PolarParams(),
                 workers: int = 1, strict: bool = False, shard: Any = None) -> PolarReport:
    """Polar-transform every image under a folder (or in a list file) into `dst`.

    Outputs mirror the sources' relative paths with the chosen extension. Re-running
    skips outputs newer than their source and than the last parameter change (recorded
    in dst/polar.json), so an interrupted run resumes. Unreadable or non-square images
    are reported in the result (strict: DataError at the first one).

    `shard` (geobench.shard): a Shard transforms its share of the sorted sources and keeps
    its record in dst/.shards/; "merge" checks every share and writes polar.json.
    """
    from geobench.geometry.imagerun import list_sources

    src, dst = Path(src), Path(dst)
    sources = list_sources(src, exclude=dst)
    pairs = [(path, dst / rel.with_suffix("." + params.format)) for path, rel in sources]
    if shard == "merge":
        return merge_polar(pairs, dst, params, source=str(src))
    return polar_files(pairs, dst, params, workers=workers, strict=strict, source=str(src),
                       shard=shard)


def polar_files(pairs: list[tuple[Path, Path]], dst: str | Path, params: PolarParams,
                workers: int = 1, strict: bool = False, source: str = "",
                shard: Any = None) -> PolarReport:
    """Polar-transform explicit (source, output) pairs; polar.json goes into `dst`.

    Dataset adapters use this to put polar images where their index says (e.g.
    DS/polarmap/19/NNNNNNN.png for CVUSA).
    """
    import json
    import time

    from geobench import shard as shards
    from geobench.fileio import write_json
    from geobench.geometry.imagerun import check_unique_outputs, run_jobs, up_to_date
    from geobench.prepared import versions

    t0 = time.perf_counter()
    dst = Path(dst)
    jobs = polar_jobs(pairs)
    check_unique_outputs(jobs)  # over every share, so shards cannot collide either
    total = len(jobs)
    previous: dict[str, Any] = {}
    if shard is not None:
        start, end = shard.share(total)
        jobs = jobs[start:end]
        previous = shards.read_record(dst, "polar", shard) or {}

        def write_record(rec: dict[str, Any]) -> None:
            shards.write_record(dst, "polar", shard, total, rec)
    else:
        def write_record(rec: dict[str, Any]) -> None:
            write_json(dst / MANIFEST, rec)

        if (dst / MANIFEST).is_file():
            try:
                previous = json.loads((dst / MANIFEST).read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                previous = {}  # unreadable record: treat every output as stale
    same = previous.get("parameters") == params.to_json() and "stale_before" in previous
    stale_before = float(previous["stale_before"]) if same else time.time()
    record = {"schema": SCHEMA, "parameters": params.to_json(), "description": describe(params),
              "source": source, "stale_before": stale_before, "complete": False,
              "versions": versions()}
    if not same:
        # Written first so an interrupted run with new parameters can't pass off outputs
        # made with the old ones as up to date.
        write_record(record)
    todo = [job for job in jobs if not up_to_date(job, stale_before)]
    results = run_jobs(todo, polar_job, params, workers=workers, strict=strict,
                       description="polar" if shard is None else f"polar {shard.label}")
    sizes: dict[str, int] = {}
    for res in results:
        if res.ok:
            key = f"{res.shape[0]}x{res.shape[1]}"
            sizes[key] = sizes.get(key, 0) + 1
    seen = set(previous.get("input_sizes", []) if same else []) | set(sizes)
    failed = [(r.job.src, r.error) for r in results if not r.ok]
    record.update(complete=not failed, count=len(jobs), input_sizes=sorted(seen),
                  failed=[{"path": p, "error": e} for p, e in failed])
    write_record(record)
    return PolarReport(dst, params, written=sum(r.ok for r in results),
                       skipped=len(jobs) - len(todo), failed=failed, input_sizes=sizes,
                       seconds=time.perf_counter() - t0)


def merge_polar(pairs: list[tuple[Path, Path]], dst: str | Path, params: PolarParams,
                source: str = "") -> PolarReport:
    """Check that every shard of a `--shard I/N` run finished and wrote its outputs, then
    write the polar.json one whole run writes (shard records removed)."""
    import time

    from geobench import shard as shards
    from geobench.fileio import remove_stale_temps, write_json
    from geobench.prepared import versions

    t0 = time.perf_counter()
    dst = Path(dst)
    jobs = polar_jobs(pairs)
    command = f"geobench polar {source} {dst}"
    records = shards.collect(dst, "polar", len(jobs), params.to_json(), command)
    missing = [out for job in jobs for out in job.outputs if not Path(out).is_file()]
    if missing:
        raise DataError(f"{missing[0]}: missing although its shard finished ({len(missing)} "
                        f"outputs in all); re-run the shard that holds it, then merge again")
    remove_stale_temps(dst)  # shards leave other machines' temporaries alone
    sizes = sorted({s for r in records for s in r.get("input_sizes", [])})
    write_json(dst / MANIFEST, {
        "schema": SCHEMA, "parameters": params.to_json(), "description": describe(params),
        "source": source, "stale_before": min(float(r["stale_before"]) for r in records),
        "complete": True, "versions": versions(), "count": len(jobs), "input_sizes": sizes,
        "failed": []})
    shards.remove_records(dst, "polar")
    return PolarReport(dst, params, written=0, skipped=len(jobs), failed=[], input_sizes={},
                       seconds=time.perf_counter() - t0)
