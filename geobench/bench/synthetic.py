"""Benchmark: synthetic world generation speed (CVUSA layout, default resolution).

Measurement: `generate()` of N pairs (aerial 256x256 + panorama 112x616 + label PNG,
districts built included). Floor: encoding and writing the same number of images of the
same sizes (random content) in the same process, i.e. what any generator must pay for
the files alone. Reported: images/s, the ratio to the floor, and the projected time of
2,000 pairs (target: about a minute on 2 cores).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from geobench.bench import make_row

STAGE = "synthetic"


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


def run(quick: bool) -> list[dict]:
    from geobench.datasets.synthetic import SyntheticOptions, generate
    from geobench.progress import set_quiet

    set_quiet(True)
    pairs = 60 if quick else 2000
    rows = []
    with tempfile.TemporaryDirectory(prefix="geobench-bench-synth-") as tmp:
        opts = SyntheticOptions(out=Path(tmp) / "raw", pairs=pairs, test_pairs=max(1, pairs // 10),
                                cities=2, seed=0)
        total = opts.pairs + int(opts.test_pairs)
        t0 = time.perf_counter()
        generate(opts)
        seconds = time.perf_counter() - t0
        shutil.rmtree(opts.out, ignore_errors=True)
        floor_dir = Path(tmp) / "floor"
        floor_dir.mkdir()
        aerial, ground = opts.sizes
        floor = _floor(floor_dir, total, aerial, ground)
    images = 2 * total
    rows.append(make_row(STAGE, "cvusa-default", "images_per_s", images / seconds,
                         images / floor, "images/s", ">=", pairs=total, aerial=aerial,
                         ground=f"{ground[0]}x{ground[1]}"))
    rows.append(make_row(STAGE, "cvusa-default", "seconds_per_2000_pairs",
                         seconds / total * 2000, None, "s", "", pairs=total,
                         note="aim ~60 s on 2 cores; includes district builds; projected "
                              "linearly from the run"))
    return rows
