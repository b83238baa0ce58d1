"""geobench's Sample4Geo batches against the official shuffle's (benchmarks/make_sampler_golden.py
ran Skyy93/Sample4Geo's CVUSADatasetTrain.shuffle on the same GPS table): the share of
near and of in-range neighbours per batch, anchors per batch and batches per epoch."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from geobench.train.sampling import PairBatchSampler

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = json.loads((ROOT / "tests" / "fixtures" / "sampler_golden.json").read_text())


def test_sample4geo_batch_composition_matches_the_official_shuffle():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from make_sampler_golden import EPOCHS, batch_stats, world
    finally:
        sys.path.pop(0)
    assert GOLDEN["format"] == "geobench-sampler-golden/1"
    table = world()
    sampler = PairBatchSampler(np.arange(GOLDEN["n_places"]), GOLDEN["batch"], seed=0, neighbours=table,
                               per_anchor=GOLDEN["neighbour_select"])
    per_epoch = [batch_stats([b.tolist() for b in sampler.batches(e)], table, GOLDEN["neighbour_select"])
                 for e in range(EPOCHS)]
    ours = {k: float(np.mean([e[k] for e in per_epoch])) for k in per_epoch[0]}
    want, sd = GOLDEN["mean"], GOLDEN["sd"]
    assert ours["batches"] == want["batches"]  # every place once, the last partial batch dropped
    for key in ("near_share", "range_share", "anchors_per_batch"):
        # within four standard errors of the official mean over as many epochs
        tol = 4 * max(sd[key], 1e-3) * np.sqrt(2 / EPOCHS)
        assert abs(ours[key] - want[key]) <= tol, (key, ours[key], want[key], tol)
