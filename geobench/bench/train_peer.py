"""Benchmark: geobench's training loop next to a plain PyTorch loop over the same things.

The peer is what a research script does: polar images made once beforehand (untimed, as
their data-preparation scripts do), a minimal `Dataset` that decodes a pair with OpenCV,
resizes and normalises it, a stock `DataLoader` (same batch, same workers), and a loop of
forward, loss, backward, optimiser step. Same model (`safa` tiny), same images, same loss
and optimiser settings as the geobench run of the train stage. Ratio = geobench ÷ plain
loop images/s: the price (or gain) of geobench's data pipeline, logging and checkpoints.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from geobench.bench import bench_threads, make_row, selected

STAGE = "train"
PEER = "plain PyTorch loop (Dataset + DataLoader, same model, loss, batch, workers)"


class PlainPairs:
    """(ground, polar) tensors from files, the way a research Dataset reads them."""

    def __init__(self, pairs: list[tuple[str, str]], qsize, rsize, mean, std) -> None:
        self.pairs, self.qsize, self.rsize = pairs, qsize, rsize
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, path: str, size) -> object:
        import cv2
        import torch

        img = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        arr = (img.astype(np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(arr.transpose(2, 0, 1).copy())

    def __getitem__(self, i: int):
        g, p = self.pairs[i]
        return self._load(g, self.qsize), self._load(p, self.rsize)


def _opencv_worker(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)


def plain_loop(ds_root: Path, tmp: Path, cfg, steps: int, workers: int) -> float:
    """images/s of the plain loop over `steps` steps."""
    import cv2
    import torch

    from geobench.geometry.polar import polar_transform
    from geobench.losses import build_loss
    from geobench.train import cards
    from geobench.train.optim import build_optimizer

    model = cards.build(cfg.model, cfg.preset, cfg.model_args).train()
    card = model.card
    qsize = card.input_size[card.query_view]
    rsize = card.input_size[card.reference_view]
    raw = ds_root.parent / "raw"
    (tmp / "polar").mkdir(exist_ok=True)
    pairs = []
    for g in sorted((raw / "g").glob("*.jpg")):
        polar = tmp / "polar" / f"{g.stem}.png"  # made once, as research prep scripts do
        cv2.imwrite(str(polar), cv2.cvtColor(polar_transform(
            cv2.cvtColor(cv2.imread(str(raw / "a" / g.name)), cv2.COLOR_BGR2RGB),
            size=tuple(rsize), crop_square=True), cv2.COLOR_RGB2BGR))
        pairs.append((str(g), str(polar)))
    cv2.setNumThreads(1)  # forked workers must not inherit OpenCV's thread pool
    loader = torch.utils.data.DataLoader(
        PlainPairs(pairs, qsize, rsize, card.mean, card.std), batch_size=cfg.batch_size,
        shuffle=True, num_workers=workers, drop_last=True, worker_init_fn=_opencv_worker)
    loss_fn = build_loss(cfg.loss, **cfg.loss_args)
    opt = build_optimizer(cfg, list(model.parameters()) + list(loss_fn.parameters()))
    # timed like geobench's own figure: from starting the loader (workers) to the last step
    done, images, start = 0, 0, time.perf_counter()
    while done < steps:
        for q, r in loader:
            qd, rd = model(q, r)
            loss = loss_fn(qd, rd)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            images += 2 * q.shape[0]
            if done >= steps:
                break
    return images / (time.perf_counter() - start)


def run(quick: bool) -> list[dict]:
    from geobench.bench.train import MODEL, PRESET, bench_config
    from geobench.progress import is_quiet, set_quiet
    from geobench.train.engine import train

    n, steps, workers = (64, 6, 2) if quick else (256, 30, 2)
    case = f"{MODEL} {PRESET} B=8 workers={workers} steps={steps} vs plain loop"
    if not selected(case):
        return []
    quiet = is_quiet()
    set_quiet(True)
    try:
        with tempfile.TemporaryDirectory(prefix="geobench-bench-train-peer-") as tmp:
            cfg = bench_config(Path(tmp), n, steps, workers)
            ours = train(cfg).images_per_s
            theirs = plain_loop(Path(cfg.data), Path(tmp), cfg, steps, workers)
    finally:
        set_quiet(quiet)
    return [make_row(STAGE, case, "throughput", ours, theirs, "img/s", "", peer=PEER,
                     threads=bench_threads(),
                     note="the plain loop reads polar images made beforehand (untimed)")]
