"""Training benchmark: is the data pipeline ever the bottleneck?

Trains a tiny registered model (SAFA tiny: panorama + aerial decoded with OpenCV, aerial
polar-transformed on the fly) on a generated prepared dataset and reports
  * wait_fraction: share of step time spent waiting for the DataLoader (target <= 0.1),
  * throughput: images/s of the full loop against the floor of the same model stepping on
    batches already in memory (target >= 0.85: loading costs at most 15%).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from geobench.bench import bench_threads, make_row

STAGE = "train"
MODEL, PRESET = "safa", "tiny"


def pair_world(root: Path, n: int, pano: tuple[int, int] = (128, 512),
               aerial: tuple[int, int] = (256, 256), blur: float = 0.0,
               quality: int = 95) -> Path:
    """A prepared train split of n ground/aerial pairs of random JPEGs (ROOT/ds); `blur`
    smooths them so they compress like photographs (the loader stage's decode cost)."""
    import cv2

    from geobench.prepared import write_prepared

    rng = np.random.default_rng(0)
    raw, index, positives = root / "raw", [], []
    (raw / "g").mkdir(parents=True)
    (raw / "a").mkdir(parents=True)
    for i in range(n):
        images = [rng.integers(0, 255, (*shape, 3), dtype=np.uint8) for shape in (pano, aerial)]
        for sub, img in zip(("g", "a"), images, strict=True):
            img = cv2.GaussianBlur(img, (0, 0), blur) if blur else img
            cv2.imwrite(str(raw / sub / f"{i}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        common = dict(split="train", item=str(i), lat=40.0, lon=-75.0, utm_e=5e5 + i, utm_n=4.4e6)
        index.append(dict(uid=f"g{i}", role="query", view="ground", path=f"g/{i}.jpg", **common))
        index.append(dict(uid=f"a{i}", role="reference", view="aerial", path=f"a/{i}.jpg", **common))
        positives.append(dict(split="train", query=f"g{i}", reference=f"a{i}", kind="train_positive"))
    return write_prepared(root / "ds", index, positives, dataset="bench", raw_root=raw).root


def bench_config(root: Path, n: int, steps: int, workers: int):
    """The run every train-stage row measures: MODEL/PRESET on a generated world, B=8."""
    from geobench.train.config import resolve_config

    return resolve_config(MODEL, pair_world(root, n), root / "run", preset=PRESET, cli={
        "workers": workers, "eval_every": 0, "epochs": 100, "max_steps": steps,
        "batch_size": 8, "device": "cpu", "amp": False})


def _compute_floor(cfg, steps: int) -> float:
    """images/s of the same model, loss and optimiser on one batch already in memory."""
    import torch

    from geobench.losses import build_loss
    from geobench.train import cards
    from geobench.train.optim import build_optimizer

    model = cards.build(cfg.model, cfg.preset, cfg.model_args)
    card = model.card
    loss_fn = build_loss(cfg.loss, **cfg.loss_args)
    opt = build_optimizer(cfg, list(model.parameters()) + list(loss_fn.parameters()))
    b = cfg.batch_size
    q = torch.randn(b, 3, *card.input_size[card.query_view])
    r = torch.randn(b, 3, *card.input_size[card.reference_view])
    model.train()

    def step() -> None:
        qd, rd = model(q, r)
        loss = loss_fn(qd, rd)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return 2 * b * steps / (time.perf_counter() - start)


def run(quick: bool) -> list[dict]:
    from geobench.progress import is_quiet, set_quiet
    from geobench.train.engine import train

    n, steps, workers = (64, 6, 2) if quick else (256, 30, 2)
    rows = []
    quiet = is_quiet()
    set_quiet(True)
    try:
        with tempfile.TemporaryDirectory(prefix="geobench-bench-train-") as tmp:
            cfg = bench_config(Path(tmp), n, steps, workers)
            summary = train(cfg)
            floor = _compute_floor(cfg, steps)
    finally:
        set_quiet(quiet)
    case = f"{MODEL} {PRESET} B={cfg.batch_size} workers={workers} steps={steps}"
    rows.append(make_row(STAGE, case, "wait_fraction", summary.data_wait_fraction, None,
                         "fraction", "<=0.1", threads=bench_threads()))
    rows.append(make_row(STAGE, case, "throughput", summary.images_per_s, floor, "img/s",
                         ">=0.85", floor_is="same model on in-memory batches",
                         threads=bench_threads()))
    return rows
