"""Benchmark (part of `geobench bench train`): the training data loader on its own.

A prepared dataset of CVUSA-sized JPEGs (1232x224 panoramas, 750x750 aerials) feeds
SAFA's paper-size card (112x616 ground, aerial polar-transformed on the fly). Rows:
- per_worker: pairs/s of the loader in one process (decode, resize, augment, polar,
  normalise) against the decode floor, one JPEG decode + resize to the card size per
  image at full resolution, the way research loaders do it (target >= 0.85);
- reduced_decode: the same loader with reduced-size JPEG decoding switched off, to show
  what DCT-scaled decoding buys (information);
- workers=N: pairs/s of a DataLoader with N worker processes against N x the one-process
  loader (scaling; information on a shared 2-core machine).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from geobench.bench import make_row, selected
from geobench.bench.train import pair_world

STAGE = "train"


def _rate(fn, n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def run(quick: bool) -> list[dict]:
    import cv2
    import torch

    import geobench.models.zoo  # noqa: F401  (registers the models)
    from geobench.models import MODELS
    from geobench.prepared import read_prepared
    from geobench.progress import set_quiet
    from geobench.train import data as D

    set_quiet(True)
    n, repeat = (24, 2) if quick else (96, 3)
    if not selected(f"safa card, CVUSA-size JPEGs, {n} pairs"):
        return []  # a narrowed run (--rows) wants none of these rows
    card = MODELS.card("safa")
    rows = []
    with tempfile.TemporaryDirectory(prefix="geobench-bench-loader-") as tmp:
        # Smooth textures compress like photographs (noise would not).
        ds = read_prepared(pair_world(Path(tmp), n, pano=(224, 1232), aerial=(750, 750),
                                      blur=2, quality=90))
        pairs = D.build_pairs(ds, "train", card.query_view, card.reference_view)
        dataset = D.PairDataset(pairs, card, hflip_p=0.5, rotate_p=0.5)
        qsize, rsize = dataset.qsize, dataset.rsize

        def floor() -> None:
            for i in range(n):
                for path, size in ((pairs.query_paths[i], qsize), (pairs.reference_paths[i], rsize)):
                    img = cv2.imread(path, cv2.IMREAD_COLOR)
                    cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)

        def loader() -> None:
            for i in range(n):
                dataset[(i, i)]

        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        loader()  # warm: polar maps, imports
        floor_rate = _rate(floor, n, repeat)
        one = _rate(loader, n, repeat)
        case = f"safa card, CVUSA-size JPEGs, {n} pairs, 1 thread"
        rows.append(make_row(STAGE, case, "per_worker", one, floor_rate, "pairs/s", ">=0.85",
                             note="floor = full-size JPEG decode + resize of both images, "
                                  "same thread"))
        original = D.reduced_flag
        D.reduced_flag = lambda size, need: cv2.IMREAD_COLOR  # full-size decoding
        try:
            full = _rate(loader, n, repeat)
        finally:
            D.reduced_flag = original
        rows.append(make_row(STAGE, case, "reduced_decode", one, full, "pairs/s", None,
                             note="ratio = loader with reduced JPEG decoding / without it"))
        D.fork_safe_opencv(2)
        for workers in (1, 2):
            loader_n = torch.utils.data.DataLoader(
                dataset, batch_size=8, num_workers=workers, worker_init_fn=D.worker_init,
                sampler=[(i, i) for i in range(n)], persistent_workers=True)
            next(iter(loader_n))  # start the workers

            def epoch(dl=loader_n) -> None:
                for _ in dl:
                    pass

            rate = _rate(epoch, n, repeat)
            rows.append(make_row(STAGE, f"{case} (DataLoader)", f"workers={workers}", rate,
                                 workers * one, "pairs/s", None,
                                 note="floor = workers x the one-process loader"))
            del loader_n
    return rows
