"""Shared fixtures: a CLI runner and a small prepared dataset written through the contract."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module of tiny workloads: they only lose to thread
    spin on a shared machine. Modules opt in with `pytestmark = usefixtures(...)`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def invoke(runner):
    """Run `geobench ARGS...` in-process; returns the click Result."""
    from geobench.cli import app

    def run(*args: str | Path):
        return runner.invoke(app, [str(a) for a in args])

    return run


def make_rows(n_pairs: int = 4, split: str = "test"):
    """Index rows and positive links for n ground/aerial pairs (paths need not exist)."""
    index, positives = [], []
    for i in range(n_pairs):
        index.append(dict(uid=f"{split}-g{i}", split=split, role="query", view="ground",
                          path=f"streetview/panos/{i:07d}.jpg", item=str(i), lat=40.0 + i * 1e-4,
                          lon=-75.0, utm_e=500000.0, utm_n=4400000.0 + 11.1 * i, heading=0.0,
                          city="town"))
        index.append(dict(uid=f"{split}-a{i}", split=split, role="reference", view="aerial",
                          path=f"bingmap/19/{i:07d}.jpg", item=str(i), lat=40.0 + i * 1e-4,
                          lon=-75.0, utm_e=500000.0, utm_n=4400000.0 + 11.1 * i, heading=None,
                          city="town"))
        positives.append(dict(split=split, query=f"{split}-g{i}", reference=f"{split}-a{i}",
                              kind="positive", distance_m=0.0))
    return index, positives


@pytest.fixture
def tiny_prepared(tmp_path):
    """A valid prepared dataset directory with real (tiny) image files."""
    import cv2
    import numpy as np

    from geobench.prepared import write_prepared

    raw = tmp_path / "raw"
    index, positives = make_rows(4)
    for row in index:
        path = raw / row["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((8, 8, 3), 127, np.uint8))
    return write_prepared(tmp_path / "ds", index, positives, dataset="fixture", raw_root=raw,
                          parameters={"note": "test fixture"})


@pytest.fixture(params=["numba", "numpy"])
def both_passes(request, monkeypatch):
    """Run a search test with the compiled passes and with numpy's (the fallback)."""
    monkeypatch.setenv("GEOBENCH_SEARCH_PASSES", request.param)
    return request.param
