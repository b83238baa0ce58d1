"""Benchmark: synthetic world generation speed (CVUSA layout, 2 cities, standard preset).

Measured end to end: `generate()` of N pairs (aerial + panorama + label PNG, planning and
district builds included) with as many workers as the bench threads (the machine's
cores). Floor: encoding and writing the same number of images of the same sizes (random
content) in this process, i.e. what any generator pays for the files alone.

Projected for 2,000 pairs (1,800 train + 200 test), at default and full resolution, from
parts measured here: planning the 2,000 locations, building one of their districts (then
scaled by raster cells to all of them), rendering sample pairs in that district, and
starting the worker processes; with W workers the builds (plus the up to W - 1 built
twice) and the pairs are divided by W. Target of the issue: about a minute on 2 cores.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from geobench.bench import bench_threads, make_row

STAGE = "synthetic"
PAIRS_2000 = (1800, 200)


def _floor(folder: Path, n_pairs: int, aerial: int, ground: tuple[int, int]) -> float:
    from geobench.datasets.synthetic.scene import save

    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (aerial, aerial, 3), dtype=np.uint8)
    g = rng.integers(0, 255, ground + (3,), dtype=np.uint8)
    lab = rng.integers(0, 8, ground, dtype=np.uint8)
    t0 = time.perf_counter()
    for k in range(n_pairs):
        save(folder / f"a{k}.jpg", a, 85)
        save(folder / f"g{k}.jpg", g, 85)
        save(folder / f"l{k}.png", lab, 100)
    return time.perf_counter() - t0


def _probe(_: int) -> int:
    import geobench.datasets.synthetic.layouts  # noqa: F401 - what a worker imports

    return 0


def spawn_seconds(workers: int) -> float:
    """Seconds to start `workers` spawned processes that import the renderer."""
    import multiprocessing as mp

    if workers <= 1:
        return 0.0
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        pool.map(_probe, range(workers))
    return time.perf_counter() - t0


def project_2000(folder: Path, resolution: str, samples: int, workers: int) -> dict:
    """Parts of a 2,000-pair run and its projected seconds with 1 and `workers` workers."""
    from geobench.datasets.synthetic import SyntheticOptions, difficulty_of, plan_sites
    from geobench.datasets.synthetic.layouts import cvusa_pair
    from geobench.datasets.synthetic.pool import Job
    from geobench.datasets.synthetic.scene import build_town

    opts = SyntheticOptions(out=folder, pairs=PAIRS_2000[0], test_pairs=PAIRS_2000[1],
                            cities=2, seed=0, resolution=resolution, workers=1)
    diff = difficulty_of(opts)
    t0 = time.perf_counter()
    sites = plan_sites(opts)
    plan_s = time.perf_counter() - t0
    first = max(sites, key=lambda s: s.size[0])
    t0 = time.perf_counter()
    town = build_town(first, opts, diff)
    build_s = time.perf_counter() - t0
    builds_s = build_s * sum(s.size[0] ** 2 for s in sites) / first.size[0] ** 2
    job = Job(opts, diff, folder, {0: first})
    pts = np.asarray(first.picked)[:samples]
    t0 = time.perf_counter()
    for j, (x, y) in enumerate(pts):
        cvusa_pair(town, (j, float(x), float(y), j + 1, False), job)
    pair_s = (time.perf_counter() - t0) / len(pts)
    total = sum(PAIRS_2000)
    serial = plan_s + builds_s + total * pair_s
    start = spawn_seconds(workers)
    parallel = plan_s + start + (builds_s + (workers - 1) * build_s + total * pair_s) / workers
    aerial, ground = opts.sizes
    return {"serial": serial, "parallel": parallel, "pair_s": pair_s, "build_s": build_s,
            "districts": len(sites), "plan_s": plan_s, "spawn_s": start, "aerial": aerial,
            "ground": f"{ground[0]}x{ground[1]}"}


def run(quick: bool) -> list[dict]:
    from geobench.datasets.synthetic import SyntheticOptions, generate
    from geobench.progress import set_quiet

    set_quiet(True)
    workers = bench_threads()
    pairs = 120 if quick else sum(PAIRS_2000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="geobench-bench-synth-") as tmp:
        opts = SyntheticOptions(out=Path(tmp) / "raw", pairs=pairs - pairs // 10,
                                test_pairs=pairs // 10, cities=2, seed=0, workers=workers)
        t0 = time.perf_counter()
        generate(opts)
        seconds = time.perf_counter() - t0
        floor_dir = Path(tmp) / "floor"
        floor_dir.mkdir()
        aerial, ground = opts.sizes
        floor = _floor(floor_dir, pairs, aerial, ground)
        images = 2 * pairs
        rows.append(make_row(STAGE, f"cvusa-default {pairs} pairs workers={workers}",
                             "images_per_s", images / seconds, images / floor, "images/s", ">=",
                             pairs=pairs, aerial=aerial, ground=f"{ground[0]}x{ground[1]}",
                             seconds=round(seconds, 2)))
        for resolution, samples in (("default", 30 if quick else 200),
                                    ("full", 10 if quick else 60)):
            part = project_2000(Path(tmp) / resolution, resolution, samples, workers)
            note = (f"projected: plan {part['plan_s']:.1f} s + {part['districts']} district "
                    f"builds ({part['build_s']:.1f} s for the largest) + 2000 x "
                    f"{1000 * part['pair_s']:.0f} ms per pair; worker start-up "
                    f"{part['spawn_s']:.1f} s; target ~60 s on 2 cores")
            # one row per distinct worker count (with one bench thread both are serial)
            for w, key in ((1, "serial"), (workers, "parallel"))[:1 if workers == 1 else 2]:
                rows.append(make_row(STAGE, f"cvusa-{resolution} 2000 pairs workers={w}",
                                     "seconds_per_2000_pairs", part[key], None, "s", "",
                                     aerial=part["aerial"], ground=part["ground"], note=note))
            rows.append(make_row(STAGE, f"cvusa-{resolution} render", "images_per_s_per_core",
                                 2.0 / part["pair_s"], None, "images/s", "",
                                 n_samples=samples, note="one process, district already built"))
    return rows
