"""Backbones: published parameter counts, torchvision/timm/official names, shapes, stages."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from geobench.errors import UnknownNameError, UsageError
from geobench.models.backbones import (
    BACKBONES,
    ConvNeXt,
    LSKNet,
    ResNet,
    VGGFeatures,
    build_backbone,
    count_parameters,
    timm_to_torchvision,
    torchvision_to_timm,
)
from geobench.models.backbones.convnext import ConvNeXtBlock
from geobench.models.backbones.lsknet import LSKblock

# Published / reference counts (reference/models.md §1, torchvision and timm model cards).
PARAMS = [
    ("resnet50", {"num_classes": 1000}, 25_557_032),  # torchvision resnet50
    ("resnet50_layer3", {}, 8_543_296),  # 25.557 M − layer4 − fc (≈8.5 M)
    ("vgg16", {}, 14_714_688),  # torchvision vgg16().features
    ("convnext_tiny", {"num_classes": 1000}, 28_589_128),  # torchvision / timm convnext_tiny
    ("convnext_tiny_stage3", {}, 12_348_000),  # LRFR backbone (≈12.35 M)
    ("convnext_base", {"num_classes": 1000}, 88_591_464),  # timm convnext_base
    ("convnext_base", {"head_norm": True}, 87_566_464),  # Sample4Geo, num_classes=0 (≈87.6 M)
    ("lsknet_t", {}, 3_990_190),  # LSKNet-T backbone ≈3.99 M
    ("lsknet_t", {"num_classes": 1000}, 4_247_190),  # with ImageNet head ≈4.25 M (paper 4.3 M)
    ("lsknet_s", {}, 13_840_892),  # LSKNet-S backbone ≈13.84 M
    ("lsknet_s", {"num_classes": 1000}, 14_353_892),  # ≈14.35 M (paper 14.4 M)
]


@pytest.mark.parametrize("name,kwargs,expected", PARAMS, ids=[f"{p[0]}-{p[2]}" for p in PARAMS])
def test_parameter_counts_match_published(name, kwargs, expected):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = build_backbone(name, **kwargs)
    assert count_parameters(model) == expected


# name, input (H, W), expected output (C, H, W): sizes chosen odd to exercise the rounding.
SHAPES = [
    ("resnet50_layer3", (112, 616), (1024, 7, 39)),  # MC_GRA's input (models.md §1.1)
    ("resnet50_layer3", (320, 320), (1024, 20, 20)),  # MixVPR's input
    ("resnet50", (65, 97), (2048, 3, 4)),
    ("vgg16", (67, 96), (512, 2, 3)),
    ("convnext_tiny_stage3", (384, 384), (384, 24, 24)),  # LRFR (N = 576)
    ("convnext_base", (140, 768), (1024, 4, 24)),
    ("lsknet_t", (65, 97), (256, 3, 4)),
    ("lsknet_s", (64, 128), (512, 2, 4)),
]


@pytest.mark.parametrize("name,size,expected", SHAPES)
def test_output_shapes_and_strides(name, size, expected):
    with torch.device("meta"):
        model = build_backbone(name)
        out = model(torch.empty(2, 3, *size))
    assert tuple(out.shape) == (2, *expected)
    assert model.out_channels == expected[0] == BACKBONES.card(name).out_channels
    assert model.stride == BACKBONES.card(name).stride


# Same classes as the registered backbones, narrow and shallow so CPU forward+backward is quick.
MICRO = {
    "resnet": lambda: ResNet((1, 1, 2), num_stages=3),
    "vgg": lambda: VGGFeatures(((8,), (8, 16), (16,), (24,), (32,)), final_pool=False),
    "convnext": lambda: ConvNeXt((1, 1, 2, 1), (16, 24, 32, 40), drop_path_rate=0.1),
    "lsknet": lambda: LSKNet((8, 16, 24, 32), (1, 1, 2, 1), drop_path_rate=0.1),
    "lsknet_3": lambda: LSKNet((8, 16, 24, 32), (1, 2, 1, 1), num_stages=3),
}


@pytest.mark.parametrize("name", list(MICRO))
def test_real_forward_stages_and_backward(name):
    torch.manual_seed(0)
    model = MICRO[name]().eval()
    x = torch.randn(2, 3, 32, 64)
    with torch.no_grad():
        stages = model.forward_stages(x)
        out = model(x)
    assert len(stages) == model.num_stages
    for feat, c, s in zip(stages, model.stage_channels, model.stage_strides, strict=True):
        assert feat.shape == (2, c, 32 // s, 64 // s) and torch.isfinite(feat).all()
    assert torch.equal(out, stages[-1])
    with torch.no_grad():
        assert torch.equal(model(x), out)  # deterministic in eval mode
    model.train()
    model(x).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_full_size_backbone_runs_for_real():
    model = build_backbone("resnet50_layer3").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 48, 64))
    assert out.shape == (1, 1024, 3, 4) and torch.isfinite(out).all()


def test_vgg_without_final_pool_has_stride_16():
    model = build_backbone("vgg16", final_pool=False)
    assert (model.out_channels, model.stride) == (512, 16)
    assert model(torch.randn(1, 3, 32, 48)).shape == (1, 512, 2, 3)


def test_freeze_stages_stops_gradients():
    model = build_backbone("resnet50_layer3")
    model.freeze_stages(2)  # MixVPR: conv1, bn1, layer1, layer2
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "conv1.weight" in frozen and "bn1.bias" in frozen and "layer2.3.conv3.weight" in frozen
    assert not any(n.startswith("layer3.") for n in frozen)
    with pytest.raises(UsageError, match=r"n must be in \[0, 3\]"):
        model.freeze_stages(4)


def _names(name, **kwargs):
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in build_backbone(name, **kwargs).state_dict().items()}


def test_resnet_uses_torchvision_names():
    sd = _names("resnet50", num_classes=1000)
    assert sd["conv1.weight"] == (64, 3, 7, 7)
    assert sd["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert sd["layer1.0.downsample.1.running_var"] == (256,)
    assert sd["layer2.0.conv2.weight"] == (128, 128, 3, 3)
    assert sd["layer3.5.bn3.weight"] == (1024,)
    assert sd["layer4.2.conv3.weight"] == (2048, 512, 1, 1)
    assert sd["fc.weight"] == (1000, 2048)
    assert "bn1.num_batches_tracked" in sd
    # torchvision resnet50().state_dict() has 320 entries (161 params, 159 BN buffers).
    assert len(sd) == 320
    trunc = _names("resnet50_layer3")
    assert not any(k.startswith(("layer4.", "fc.")) for k in trunc)
    model = build_backbone("resnet50_layer3")
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv1.stride == (1, 1)  # v1.5


def test_vgg_uses_torchvision_indices():
    sd = _names("vgg16")
    convs = sorted({int(k.split(".")[1]) for k in sd})
    assert convs == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert sd["features.0.weight"] == (64, 3, 3, 3) and sd["features.28.weight"] == (512, 512, 3, 3)
    assert max(int(k.split(".")[1]) for k in _names("vgg16", num_stages=4)) == 21


def test_convnext_uses_timm_names_and_maps_torchvision():
    sd = _names("convnext_tiny", num_classes=1000)
    assert sd["stem.0.weight"] == (96, 3, 4, 4) and sd["stem.1.weight"] == (96,)
    assert sd["stages.1.downsample.0.weight"] == (96,)
    assert sd["stages.1.downsample.1.weight"] == (192, 96, 2, 2)
    assert sd["stages.2.blocks.8.conv_dw.weight"] == (384, 1, 7, 7)
    assert sd["stages.0.blocks.0.mlp.fc1.weight"] == (384, 96)
    assert sd["stages.3.blocks.2.gamma"] == (768,)
    assert sd["head.norm.weight"] == (768,) and sd["head.fc.weight"] == (1000, 768)
    assert not any(k.startswith("stages.0.downsample") for k in sd)
    with torch.device("meta"):
        tv = timm_to_torchvision(build_backbone("convnext_tiny", num_classes=1000).state_dict())
    shapes = {k: tuple(v.shape) for k, v in tv.items()}
    # torchvision convnext_tiny names
    assert shapes["features.0.0.weight"] == (96, 3, 4, 4)
    assert shapes["features.1.0.block.0.weight"] == (96, 1, 7, 7)
    assert shapes["features.1.0.block.3.weight"] == (384, 96)
    assert shapes["features.1.0.layer_scale"] == (96, 1, 1)
    assert shapes["features.6.1.weight"] == (768, 384, 2, 2)
    assert shapes["features.7.2.block.5.bias"] == (768,)
    assert shapes["classifier.0.weight"] == (768,) and shapes["classifier.2.weight"] == (1000, 768)
    assert len(tv) == len(sd)
    state = MICRO["convnext"]().state_dict()
    tv = timm_to_torchvision(state)
    back = torchvision_to_timm(tv)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_lsknet_uses_official_names():
    sd = _names("lsknet_t")
    assert sd["patch_embed1.proj.weight"] == (32, 3, 7, 7)
    assert sd["patch_embed2.proj.weight"] == (64, 32, 3, 3)
    assert sd["patch_embed1.norm.running_mean"] == (32,)
    assert sd["block1.0.attn.spatial_gating_unit.conv0.weight"] == (32, 1, 5, 5)
    assert sd["block1.0.attn.spatial_gating_unit.conv_spatial.weight"] == (32, 1, 7, 7)
    assert sd["block1.0.attn.spatial_gating_unit.conv_squeeze.weight"] == (2, 2, 7, 7)
    assert sd["block3.4.attn.spatial_gating_unit.conv1.weight"] == (80, 160, 1, 1)
    assert sd["block1.2.mlp.dwconv.dwconv.weight"] == (256, 1, 3, 3)
    assert sd["block4.1.layer_scale_2"] == (256,)
    assert sd["norm4.weight"] == (256,)
    assert "block1.0.attn.proj_1.weight" in sd and "block2.2.norm2.running_var" in sd


def test_lsk_block_is_the_published_selection():
    torch.manual_seed(0)
    m = LSKblock(8).double()
    x = torch.randn(2, 8, 9, 10, dtype=torch.float64)
    a1 = F.conv2d(x, m.conv0.weight, m.conv0.bias, padding=2, groups=8)
    a2 = F.conv2d(a1, m.conv_spatial.weight, m.conv_spatial.bias, padding=9, dilation=3, groups=8)
    a1, a2 = m.conv1(a1), m.conv2(a2)
    a = torch.cat([a1, a2], 1)
    sig = torch.sigmoid(m.conv_squeeze(torch.cat([a.mean(1, keepdim=True), a.max(1, keepdim=True)[0]], 1)))
    expected = x * m.conv(a1 * sig[:, :1] + a2 * sig[:, 1:])
    assert torch.allclose(m(x), expected, atol=1e-12)


def test_convnext_block_matches_definition():
    torch.manual_seed(0)
    blk = ConvNeXtBlock(8, ls_init=0.5).double()
    x = torch.randn(1, 8, 5, 6, dtype=torch.float64)
    y = F.conv2d(x, blk.conv_dw.weight, blk.conv_dw.bias, padding=3, groups=8).permute(0, 2, 3, 1)
    y = F.layer_norm(y, (8,), blk.norm.weight, blk.norm.bias, 1e-6)
    y = F.linear(F.gelu(F.linear(y, blk.mlp.fc1.weight, blk.mlp.fc1.bias)), blk.mlp.fc2.weight, blk.mlp.fc2.bias)
    assert torch.allclose(blk(x), x + 0.5 * y.permute(0, 3, 1, 2), atol=1e-12)


def test_heads():
    torch.manual_seed(0)
    with torch.device("meta"):
        cnx = build_backbone("convnext_base", head_norm=True)
        assert cnx.forward_head(cnx(torch.empty(2, 3, 64, 64))).shape == (2, 1024)
        res = build_backbone("resnet50", num_classes=10)
        assert res.forward_head(res(torch.empty(1, 3, 64, 64))).shape == (1, 10)
    with pytest.raises(UsageError, match="built without a head"):
        build_backbone("lsknet_t").forward_head(torch.zeros(1, 256, 2, 2))


def test_bad_names_and_options_raise_usage_errors():
    with pytest.raises(UnknownNameError, match="convnext_tiny"):
        build_backbone("convnext_tine")
    with pytest.raises(UsageError, match=r"num_stages must be in \[1, 4\]"):
        build_backbone("resnet50", num_stages=5)
    with pytest.raises(UsageError, match="needs all stages"):
        build_backbone("convnext_tiny", num_stages=3, num_classes=10)
