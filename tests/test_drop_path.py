"""LRFR's stochastic depth equals torchvision's convnext_tiny(stochastic_depth_prob=0.1).

tests/fixtures/drop_path_golden.json was written by benchmarks/make_drop_path_golden.py
from torchvision itself: every kept block's probability and mode, and the per-sample
multipliers one seeded train-mode forward applied.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geobench.models import build_model
from geobench.models.backbones import convnext
from geobench.models.backbones.base import drop_path

GOLDEN = Path(__file__).parent / "fixtures" / "drop_path_golden.json"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blocks(backbone):
    return [m for m in backbone.modules() if isinstance(m, convnext.ConvNeXtBlock)]


def test_lrfr_drops_paths_as_torchvisions_convnext_tiny(monkeypatch):
    ref = json.loads(GOLDEN.read_text())
    size = ref["size"]
    model = build_model("lrfr", input_size={"drone": (size, size), "aerial": (size, size)})
    backbone = model.towers["drone"].backbone if "drone" in model.towers else next(iter(model.towers.values())).backbone
    assert [b.drop_path for b in _blocks(backbone)] == pytest.approx(ref["p"], abs=1e-12)
    assert set(ref["mode"]) == {"row"}

    seen: list[list[float]] = []

    def recording(x, p, training):
        y = drop_path(x, p, training)
        if p > 0:
            flat_x, flat_y = x.flatten(1), y.flatten(1)
            j = flat_x.abs().argmax(dim=1, keepdim=True)
            seen.append((flat_y.gather(1, j) / flat_x.gather(1, j)).squeeze(1).tolist())
        return y

    monkeypatch.setattr(convnext, "drop_path", recording)
    x = torch.randn(ref["batch"], 3, size, size)
    backbone.train()
    torch.manual_seed(ref["seed"])
    with torch.no_grad():
        backbone(x)
    want = [m for m, p in zip(ref["multipliers"], ref["p"]) if p > 0]  # p = 0 draws nothing
    assert len(seen) == len(want)
    for got, exp in zip(seen, want):
        assert got == pytest.approx(exp, rel=1e-5)
    assert any(0.0 in m for m in want), "the seed must drop some paths"
    backbone.eval()
    with torch.no_grad():
        assert torch.equal(backbone(x), backbone(x))  # off in evaluation


def test_drop_path_rows_scale_and_limits():
    torch.manual_seed(0)
    x = torch.randn(4000, 3, 2, 2)
    y = drop_path(x, 0.25, True)
    kept = y[:, 0, 0, 0] != 0
    # One decision per sample ("row"): whole samples kept and scaled by 1 / (1 - p), or zero.
    torch.testing.assert_close(y, x * (kept.float() / 0.75)[:, None, None, None])
    assert abs(kept.float().mean().item() - 0.75) < 0.03
    assert torch.equal(drop_path(x, 0.25, False), x) and torch.equal(drop_path(x, 0.0, True), x)
    assert torch.equal(drop_path(x, 1.0, True), torch.zeros_like(x))  # torchvision: all dropped, no NaN


def test_lrfr_stochastic_depth_is_an_argument():
    model = build_model("lrfr", preset="tiny", drop_path_rate=0.0)
    assert all(b.drop_path == 0.0 for t in model.towers.values() for b in _blocks(t.backbone))
