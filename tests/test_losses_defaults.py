"""Loss defaults, argument checks and precision handling (issue 18's mutation run)."""
from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from geobench.errors import UsageError
from geobench.losses import (
    LOSSES,
    MultiSimilarity,
    SemiSoftTriHard,
    SoftMarginTriplet,
    SymmetricInfoNCE,
    build_loss,
    squared_distances,
)

DEFAULTS = {
    "soft_margin_triplet": {"gamma": 10.0, "distance": "squared", "count_diagonal": False},
    "soft_margin_triplet_hard": {"gamma": 10.0, "hard_k": 4, "distance": "squared", "count_diagonal": False},
    "semi_soft_tri_hard": {"alpha": 10.0, "distance": "squared"},
    "infonce": {"temperature": 0.07, "label_smoothing": 0.1},
    "multi_similarity": {"alpha": 1.0, "beta": 50.0, "base": 0.0, "epsilon": 0.1},
}


def attributes(loss) -> dict:
    out = {k: getattr(loss, k) for k in ("gamma", "hard_k", "alpha", "beta", "base", "epsilon",
                                         "label_smoothing", "distance", "count_diagonal") if hasattr(loss, k)}
    if hasattr(loss, "logit_scale"):
        out["temperature"] = round(1.0 / math.exp(loss.logit_scale.item()), 6)
    return out


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_cards_factories_and_modules_agree_on_defaults(name):
    entry = LOSSES.entry(name)
    assert entry.card.defaults == DEFAULTS[name]
    sig = inspect.signature(entry.factory).parameters
    assert {k: sig[k].default for k in DEFAULTS[name]} == DEFAULTS[name]
    built = attributes(build_loss(name))
    assert {k: built.get(k) for k in DEFAULTS[name]} == DEFAULTS[name]
    assert entry.card.description


def test_module_class_defaults():
    assert attributes(SoftMarginTriplet()) == {"gamma": 10.0, "hard_k": None, "distance": "squared",
                                               "count_diagonal": False}
    assert attributes(SemiSoftTriHard()) == {"alpha": 10.0, "distance": "squared"}
    nce = SymmetricInfoNCE()
    assert attributes(nce) == {"label_smoothing": 0.1, "temperature": 0.07}
    assert nce.logit_scale.requires_grad
    assert not SymmetricInfoNCE(learnable=False).logit_scale.requires_grad
    assert not build_loss("infonce", learnable=False).logit_scale.requires_grad
    assert attributes(MultiSimilarity()) == {"alpha": 1.0, "beta": 50.0, "base": 0.0,
                                             "epsilon": 0.1}


def test_argument_checks():
    with pytest.raises(UsageError, match="hard_k must be >= 1, got 0"):
        SoftMarginTriplet(hard_k=0)
    assert SoftMarginTriplet(hard_k=1).hard_k == 1
    for t in (0.0, -0.5):
        with pytest.raises(UsageError, match="temperature must be > 0"):
            SymmetricInfoNCE(temperature=t)
    with pytest.raises(UsageError, match=r"bad arguments \{'gamma': 3\}.*defaults are "
                                         r"\{'temperature': 0.07, 'label_smoothing': 0.1\}"):
        build_loss("infonce", gamma=3)
    x = F.normalize(torch.randn(2, 4), dim=1)
    for name in DEFAULTS:                          # two pairs are enough, three dims are not
        assert torch.isfinite(build_loss(name)(x, x.flip(0)))
        with pytest.raises(UsageError, match="two \\(B, D\\) descriptor batches"):
            build_loss(name)(x[None], x[None])


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_half_precision_is_promoted_and_double_kept(name):
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    r = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    want = build_loss(name)(q, r)
    for dtype in (torch.float16, torch.bfloat16):
        got = build_loss(name)(q.to(dtype), r.to(dtype))
        assert got.dtype == torch.float32
        # the inputs were rounded to half precision, the arithmetic was not
        assert got.item() == pytest.approx(want.item(), rel=0.05, abs=0.05)
    assert build_loss(name).double()(q.double(), r.double()).dtype == torch.float64


def test_squared_distances_of_unit_vectors():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    r = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.6, 0.8]])
    assert torch.allclose(squared_distances(q, r),
                          torch.tensor([[0.0, 4.0, 0.8], [2.0, 2.0, 0.4]]), atol=1e-6)
