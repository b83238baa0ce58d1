"""SAFA as the official TensorFlow code builds it: SAME pools, pool5, dropout, mean pooling."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from geobench.models import build_model
from geobench.models.backbones.vgg import VGG16_BLOCKS, VGGFeatures
from geobench.models.towers import feature_shape

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_parameter_count_and_map_size_equal_the_official_code():
    with torch.device("meta"):  # shapes only: no 30 M-parameter initialisation
        model = build_model("safa")
    # Two VGG-16 branches of 14,714,688 plus two aggregators of 52,160 (N = 80, 8 heads).
    assert model.num_parameters() == 29_533_696
    for branch in ("query", "reference"):
        tower = model.towers[branch]
        assert feature_shape(tower.backbone, 112, 616) == (512, 4, 20)
        agg = tower.aggregator
        assert (agg.in_h, agg.in_w, agg.pooling) == (4, 20, "mean")
        assert sum(p.numel() for p in agg.parameters()) == 52_160
    assert model.card.descriptor_dim == 4096


def test_the_earlier_variant_stays_an_argument():
    model = build_model("safa", pooling="max", pool5=False, dropout=0.0)
    agg = model.towers["query"].aggregator
    assert (agg.in_h, agg.in_w, agg.pooling) == (7, 39, "max")
    assert model.towers["query"].backbone.dropout is None


def _tf_same_pool(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's 2x2/2 'SAME' max pool: pad bottom/right with -inf up to an even size."""
    h, w = x.shape[-2:]
    return F.max_pool2d(F.pad(x, (0, w % 2, 0, h % 2), value=-float("inf")), 2, 2)


def test_same_pools_and_dropout_placement():
    torch.manual_seed(0)
    bb = VGGFeatures(((2,), (3,), (4,), (4,), (5,)), num_stages=5, same_pool=True).eval()
    x = torch.randn(1, 3, 13, 27)
    with torch.no_grad():
        want = x
        for i in range(5):
            start, stop = bb._bounds[i]
            for j in range(start, stop - 1):  # conv, relu
                want = bb.features[j](want)
            want = _tf_same_pool(want)
        torch.testing.assert_close(bb(x), want)
    assert bb(x).shape[-2:] == (1, 1)
    # torchvision's indices are kept (weights load unchanged); dropout follows conv4_1..conv5_3.
    vgg = VGGFeatures(VGG16_BLOCKS, 5, dropout=0.2)
    assert sorted(vgg._dropped) == [18, 20, 22, 25, 27, 29]
    assert all(isinstance(vgg.features[j], torch.nn.ReLU) for j in vgg._dropped)
    assert "features.28.weight" in vgg.state_dict()


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model = build_model("safa", preset="tiny")
    x = torch.randn(2, 3, *model.card.input_size["ground"])
    tower = model.towers["query"]
    with torch.no_grad():
        model.train()
        assert not torch.equal(tower(x), tower(x))
        model.eval()
        assert torch.equal(tower(x), tower(x))
        early = tower.backbone.run_stage(0, x)  # no dropout before conv4
        model.train()
        assert torch.equal(tower.backbone.run_stage(0, x), early)
