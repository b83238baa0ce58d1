"""The models benchmark module produces well-formed rows (smoke test on one tiny model)."""
from __future__ import annotations

import math

import torch

from geobench.bench import FIELDS
from geobench.bench import models as bench_models


def test_measure_rows_are_well_formed():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny workload: avoid thread spin on a shared machine
    try:
        rows = bench_models._measure("safa", "tiny", 2, "cpu", repeat=1, memory=False)
    finally:
        torch.set_num_threads(before)
    assert [r["metric"] for r in rows] == ["forward throughput", "forward+backward throughput"]
    for row in rows:
        assert set(FIELDS) <= set(row) and row["stage"] == "models" and row["unit"] == "img/s"
        assert row["value"] > 0 and row["floor"] > 0 and math.isfinite(row["ratio"])
        assert row["case"] == "safa tiny (ground 56x308, polar 56x308) b=2 cpu"
        assert row["target"] == ">="  # tiny rows: direction only; bounds apply at paper size


def test_train_step_memory_probe_counts_the_step_only():
    added, _ = bench_models.train_step_peak("safa", "tiny", 2, bare=False)
    assert 0 <= added < 200 * 2**20
