"""geobench's parameter names and shapes against the real libraries and the official code.

tests/fixtures/backbone_keys.json was written by benchmarks/make_backbone_golden.py in a
side environment with torchvision and timm and the official LRFR / Sample4Geo / MixVPR
code; here full-size networks are built on the meta device (no memory, no compute) and
compared key for key, shape for shape.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geobench.models.backbones import ConvNeXt, ResNet, VGGFeatures, torchvision_to_timm
from geobench.models.backbones.convnext import BASE, TINY

GOLDEN = Path(__file__).parent / "fixtures" / "backbone_keys.json"
pytestmark = pytest.mark.skipif(not GOLDEN.exists(), reason="run benchmarks/make_backbone_golden.py")


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text())


def shapes(module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def meta(build):
    with torch.device("meta"):
        return build()


def as_dict(pairs) -> dict[str, list[int]]:
    return {k: s for k, s in pairs}


def test_resnet50_equals_torchvision(golden):
    ours = shapes(meta(lambda: ResNet((3, 4, 6, 3), num_classes=1000)))
    theirs = golden["networks"]["torchvision.resnet50"]
    assert list(ours) == [k for k, _ in theirs]  # same order too
    assert ours == as_dict(theirs)


def test_vgg16_features_equal_torchvision(golden):
    theirs = as_dict(golden["networks"]["torchvision.vgg16"])
    ours = meta(VGGFeatures)
    assert shapes(ours) == {k: s for k, s in theirs.items() if k.startswith("features.")}
    rest = [k for k in theirs if not k.startswith("features.")]
    assert rest and all(k.startswith(ours.dropped_prefixes) for k in rest)


@pytest.mark.parametrize("size, spec", [("tiny", TINY), ("base", BASE)])
def test_convnext_equals_timm_and_converts_torchvision(golden, size, spec):
    ours = shapes(meta(lambda: ConvNeXt(*spec, head_norm=True, num_classes=1000)))
    timm_keys = golden["networks"][f"timm.convnext_{size}"]
    assert ours == as_dict(timm_keys)
    tv = {k: torch.empty(s, device="meta") for k, s in golden["networks"][f"torchvision.convnext_{size}"]}
    assert {k: list(v.shape) for k, v in torchvision_to_timm(tv).items()} == ours


def test_catalog_urls_are_torchvisions(golden):
    from geobench.models.pretrained import load_weights_catalog

    catalog = load_weights_catalog()
    published = set(golden["torchvision_urls"].values())
    tv = {e.url for e in catalog.values() if e.format == "torchvision"}
    assert tv == published  # every torchvision entry is a URL torchvision itself publishes
    for entry in catalog.values():
        if entry.format == "torchvision":  # and the source names the enum it came from
            assert golden["torchvision_urls"][_enum(entry.source)] == entry.url


def _enum(source: str) -> str:
    return next(w for w in source.split() if "_Weights." in w)


# --- released checkpoints: the official key layouts into the registered models ---------------
@pytest.mark.parametrize("layout, model, kwargs", [
    ("lrfr", "lrfr", {}),
    ("lrfr", "lrfr", {"share_weights": False}),  # a one-network file fills both towers
    ("sample4geo", "convnext_gap", {}),
    ("mixvpr", "mixvpr", {}),
])
def test_released_layouts_map_onto_every_parameter(golden, layout, model, kwargs):
    from geobench.models import build_model
    from geobench.models.released import released_state

    net = meta(lambda: build_model(model, **kwargs))
    state = {k: torch.empty(s, device="meta") for k, s in golden["official"][layout]}
    full, name, skipped = released_state(net, state, "golden")
    own = shapes(net)
    assert name == layout
    mapped = {k: list(v.shape) for k, v in full.items() if k not in skipped}
    assert mapped == {k: s for k, s in own.items() if k in mapped}  # names and shapes agree
    assert not [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]
    assert skipped == (("logit_scale",) if layout == "sample4geo" else ())
