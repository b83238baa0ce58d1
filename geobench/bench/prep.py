"""Benchmark: polar transform throughput against the codec floor, per worker count.

A folder of generated 750x750 JPEGs (CVUSA's aerial size) is decoded, transformed to
112x616 and encoded as PNG by the same runner `geobench polar` uses. The floor is that
runner with the transform replaced by a plain copy of an output-sized region: decode the
input and encode an image of the output size, same library, same worker count. Target:
polar throughput >= 85% of the floor. For reference, a per-image numpy bilinear sampler
(as research code writes it) is timed against one OpenCV remap.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from geobench.bench import bench_threads, interleaved, make_row

STAGE = "prep"
SIDE = 750


def synthetic_aerial(rng: np.random.Generator, side: int = SIDE) -> np.ndarray:
    """Textured, JPEG-realistic content: smooth fields plus fine noise (not flat colour)."""
    import cv2

    coarse = rng.uniform(0, 255, (side // 16, side // 16, 3)).astype(np.float32)
    img = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 12, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_jpegs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n):
        path = folder / f"{k:07d}.jpg"
        cv2.imwrite(str(path), synthetic_aerial(rng), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def codec_floor_job(img: np.ndarray, params: Any, job: Any) -> list[tuple[np.ndarray, dict]]:
    """No transform: an output-sized copy of the input, so only decode + encode remain."""
    H, W = params.size
    return [(np.ascontiguousarray(img[:H, :W]), {})]


def run(quick: bool) -> list[dict]:
    from geobench.geometry.imagerun import ImageJob, run_jobs
    from geobench.geometry.polar import PolarParams, polar_job, polar_numpy, polar_transform
    from geobench.progress import set_quiet

    set_quiet(True)
    n = 24 if quick else 160
    repeat = 5
    params = PolarParams()
    counts = sorted({1, min(bench_threads(), 4)})
    rows = []
    with tempfile.TemporaryDirectory(prefix="geobench-bench-prep-") as tmp:
        root = Path(tmp)
        sources = write_jpegs(root / "src", n)
        throughput: dict[int, float] = {}
        for w in counts:
            polar_jobs, floor_jobs = ([ImageJob(str(p), (str(root / f"{kind}{w}" / f"{p.stem}.png"),),
                                                p.name) for p in sources]
                                      for kind in ("polar", "floor"))
            best = interleaved({
                "floor": lambda j=floor_jobs, w=w: run_jobs(j, codec_floor_job, params, workers=w),
                "polar": lambda j=polar_jobs, w=w: run_jobs(j, polar_job, params, workers=w),
            }, repeat=repeat, warmup=1, clock=time.perf_counter)  # worker processes
            throughput[w] = n / best["polar"]
            rows.append(make_row(STAGE, f"polar {SIDE}px jpg -> 112x616 png workers={w}",
                                 "throughput", n / best["polar"], n / best["floor"], "img/s",
                                 ">=0.85", samples=best.ratios("floor", "polar"), workers=w,
                                 n=n))
        if len(counts) > 1:
            w = counts[-1]
            rows.append(make_row(STAGE, f"polar scaling workers={w} vs 1", "throughput",
                                 throughput[w], throughput[1], "img/s", ">=", workers=w, n=n,
                                 note="ideal ratio = workers on an idle machine"))
        import cv2

        img = cv2.imread(str(sources[0]))
        # peer: the per-pixel numpy bilinear sampler research code runs on every image
        t = interleaved({"geobench": lambda: polar_transform(img),
                         "numpy": lambda: polar_numpy(img)}, repeat=5, warmup=1,
                        min_seconds=0.05)
        rows.append(make_row(STAGE, f"polar {SIDE}px -> 112x616 one image vs numpy sampler",
                             "time", t["geobench"], t["numpy"], "s", "<=",
                             samples=t.ratios("geobench", "numpy"),
                             peer="per-pixel numpy bilinear sampler (research code)",
                             note="geobench = cv2.remap with cached maps"))
    return rows
