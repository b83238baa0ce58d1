"""Released VPR networks equal their official code (fixture: benchmarks/make_released_golden.py).

The official networks (gmberton/MegaLoc `MegaLoc`, facebookresearch/dinov2 hub builders) were
run with weights from tests/golden_weights.fill on seeded non-square inputs; geobench builds
its networks, fills the same names with the same values (so the official state-dict layout
must load key for key, strictly) and must give the same outputs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from geobench.errors import UsageError
from geobench.models import build_model
from geobench.models.backbones.dinov2 import VITS14, DinoV2
from tests.golden_weights import fill, fill_state, images

GOLDEN = np.load(Path(__file__).parent / "fixtures" / "released_golden.npz")


def _filled(model: torch.nn.Module) -> torch.nn.Module:
    state = {k: torch.from_numpy(v) for k, v in fill_state(model.state_dict()).items()}
    model.load_state_dict(state, strict=True)  # the official names, every key
    return model.eval()


def test_megaloc_layout_is_the_released_one_key_for_key():
    with torch.device("meta"):
        model = build_model("megaloc")
    got = [f"{k}:{'x'.join(map(str, v.shape))}" for k, v in model.state_dict().items()]
    assert sorted(got) == sorted(GOLDEN["megaloc.keys"].tolist())
    assert model.card.descriptor_dim == 8448


def test_megaloc_equals_the_official_model_on_a_non_square_batch():
    # The official MegaLoc at 2 blocks and 512 output dims (see the generator).
    model = _filled(build_model("megaloc", input_size={"street": (182, 252)},
                                dims=(768, 2, 12), out_dim=512))
    with torch.no_grad():
        got = model.embed(torch.from_numpy(images(0, 2, 182, 252)), "street").numpy()
    want = GOLDEN["megaloc"]
    assert got.shape == want.shape == (2, 512)
    assert np.abs(got - want).max() < 2e-6
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("name, registers, seed, n, h, w", [
    ("dinov2_vits14_reg", 4, 1, 2, 126, 98),   # exact-size antialiased interpolation
    ("dinov2_vits14", 0, 2, 1, 98, 140),       # scale-factor interpolation with 0.1 offset
])
def test_dinov2_tokens_equal_the_hub_model(name, registers, seed, n, h, w):
    net = _filled(DinoV2(VITS14, registers=registers))
    with torch.no_grad():
        cls, fmap = net.tokens(torch.from_numpy(images(seed, n, h, w)))
    patches = fmap.flatten(2).transpose(1, 2).numpy()
    assert patches.shape == GOLDEN[f"{name}.patches"].shape == (n, (h // 14) * (w // 14), 384)
    assert np.abs(cls.numpy() - GOLDEN[f"{name}.cls"]).max() < 2e-5
    assert np.abs(patches - GOLDEN[f"{name}.patches"]).max() < 2e-5


def test_hub_layout_loads_and_unknown_sizes_are_refused():
    net = DinoV2(VITS14, registers=4)
    keys = set(net.state_dict())
    assert {"mask_token", "register_tokens", "cls_token", "pos_embed",
            "blocks.11.ls2.gamma", "patch_embed.proj.weight"} <= keys
    assert net.pos_embed.shape == (1, 37 * 37 + 1, 384)
    with pytest.raises(UsageError, match="multiples of 14"):
        net.tokens(torch.zeros(1, 3, 100, 98))
    with pytest.raises(UsageError, match="use 182x252"):
        build_model("megaloc", input_size={"street": (180, 250)})


def test_freezing_stops_gradients_to_the_first_blocks_and_the_tokens():
    net = DinoV2((16, 3, 2), grid=2)
    net.freeze_stages(2)
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert {"cls_token", "pos_embed", "mask_token", "patch_embed.proj.weight"} <= frozen
    assert any(n.startswith("blocks.1.") for n in frozen)
    assert not any(n.startswith("blocks.2.") for n in frozen)


def test_dino_salad_layout_is_the_released_one_key_for_key():
    with torch.device("meta"):
        model = build_model("dino_salad")
    got = [f"{k}:{'x'.join(map(str, v.shape))}" for k, v in model.state_dict().items()]
    assert sorted(got) == sorted(GOLDEN["dino_salad.keys"].tolist())
    trained = {n.split(".")[3] for n, p in model.named_parameters()
               if p.requires_grad and n.startswith("backbone.model.blocks.")}
    assert trained == {"8", "9", "10", "11"}  # the last 4 blocks, as serizba/salad trains


def test_dino_salad_equals_the_official_model():
    # The official backbone wrapper and SALAD at 3 of 12 blocks (see the generator).
    model = _filled(build_model("dino_salad", input_size={"street": (112, 168)},
                                dims=(768, 3, 12), trainable_blocks=1))
    with torch.no_grad():
        got = model.embed(torch.from_numpy(images(3, 2, 112, 168)), "street").numpy()
    want = GOLDEN["dino_salad"]
    assert got.shape == want.shape == (2, 8448)
    assert np.abs(got - want).max() < 2e-6


def _official_file(tmp_path, name: str, keep_blocks: int | None = None) -> Path:
    """A released-layout weight file with the golden values, named as the official code names."""
    state = {}
    for entry in GOLDEN[f"{name}.keys"].tolist():
        key, shape = entry.split(":")
        dims = tuple(int(d) for d in shape.split("x")) if shape else ()
        if keep_blocks is not None and ".blocks." in key and int(key.split(".blocks.")[1].split(".")[0]) >= keep_blocks:
            continue
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        else:
            state[key] = torch.from_numpy(fill(key, dims))
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    return path


def test_boq_resnet50_release_loads_by_name_and_equals_the_official_model(tmp_path):
    with torch.device("meta"):
        full = build_model("boq_resnet50")
    from geobench.models.boq import boq_resnet_state
    want_keys = {k.split(":")[0] for k in GOLDEN["boq_resnet50.keys"].tolist()}
    assert set(boq_resnet_state(dict.fromkeys(want_keys))[0]) == set(full.state_dict())
    path = _official_file(tmp_path, "boq_resnet50")
    model = build_model("boq_resnet50", input_size={"street": (96, 128)}, weights=path).eval()
    assert model.weights_reports[0].naming == "boq" and not model.weights_reports[0].unexpected
    with torch.no_grad():
        got = model.embed(torch.from_numpy(images(4, 2, 96, 128)), "street").numpy()
    want = GOLDEN["boq_resnet50"]
    assert got.shape == want.shape == (2, 16384)
    assert np.abs(got - want).max() < 2e-6


def test_boq_dinov2_release_loads_key_for_key_and_equals_the_official_model(tmp_path):
    with torch.device("meta"):
        full = build_model("boq_dinov2")
    got = [f"{k}:{'x'.join(map(str, v.shape))}" for k, v in full.state_dict().items()]
    assert sorted(got) == sorted(GOLDEN["boq_dinov2.keys"].tolist())
    path = _official_file(tmp_path, "boq_dinov2", keep_blocks=3)
    model = build_model("boq_dinov2", input_size={"street": (112, 154)}, dims=(768, 3, 12),
                        trainable_blocks=1, weights=path).eval()
    with torch.no_grad():
        got = model.embed(torch.from_numpy(images(5, 2, 112, 154)), "street").numpy()
    want = GOLDEN["boq_dinov2"]
    assert got.shape == want.shape == (2, 12288)
    assert np.abs(got - want).max() < 2e-6


@pytest.mark.parametrize("name, dim, seed, size", [("cosplace", 128, 6, (96, 128)),
                                                     ("eigenplaces", 256, 7, (112, 96))])
def test_gem_fc_releases_load_by_name_and_equal_the_official_model(tmp_path, name, dim, seed, size):
    path = _official_file(tmp_path, name)
    model = build_model(name, input_size={"street": size}, dim=dim, weights=path).eval()
    report = model.weights_reports[0]
    assert report.naming == "cosplace" and not report.unexpected and not report.missing
    assert report.loaded == len(GOLDEN[f"{name}.keys"])
    with torch.no_grad():
        got = model.embed(torch.from_numpy(images(seed, 2, *size)), "street").numpy()
    want = GOLDEN[name]
    assert got.shape == want.shape == (2, dim)
    # 53 convolutions deep in float32 (the official pools with avg_pool2d, geobench with mean):
    # the descriptors' entries (~0.1) agree to a few parts in 1e5.
    assert np.abs(got - want).max() < 1e-5
