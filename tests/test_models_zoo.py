"""Registry-generated tests: every registered model, tiny preset and paper size."""
from __future__ import annotations

import io

import pytest
import torch

from geobench.errors import UnknownNameError, UsageError
from geobench.models import MODELS, build_model, describe, list_models

NAMES = list_models()
# Published / independently derived totals (reference/models.md §1, §3, §8.4), in millions.
PUBLISHED_M = {
    "convnext_gap": 87.6,  # Sample4Geo ConvNeXt-B, shared
    "lrfr": 12.35 + 0.333 + 0.493,  # ConvNeXt-T ≤ stage 3 + GSRA + SALAD
    "mixvpr": 8.543 + 2.338,  # ResNet-50 ≤ layer3 + MixVPR(20x20)
    "mcgra": 2 * (8.543 + 1.651),  # two branches, plus MC_GRA (not published)
}
CHEAP_PAPER_FORWARD = ["mixvpr", "mcgra"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batches(model, b: int = 2, seed: int = 0):
    card = model.card
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, 3, *card.input_size[card.query_view], generator=g)
    r = torch.randn(b, 3, *card.input_size[card.reference_view], generator=g)
    return q, r


def _tiny(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(name, preset="tiny")


def test_registry_has_the_issue_models():
    assert {"mcgra", "asavg", "lrfr", "safa", "mixvpr", "convnext_gap"} <= set(NAMES)
    for name in NAMES:
        card = MODELS.card(name)
        assert "tiny" in card.presets and card.params_m and card.recipe["loss"]
        assert card.query_view in card.input_size and card.reference_view in card.input_size


@pytest.mark.parametrize("name", NAMES)
def test_tiny_shapes_norm_determinism_and_params(name):
    model = _tiny(name).eval()
    card = MODELS.card(name)
    q, r = _batches(model)
    with torch.no_grad():
        dq, dr = model(q, r)
        dq2 = model.embed(q, card.query_view)
    assert dq.shape == (2, model.card.descriptor_dim) and dr.shape == dq.shape
    torch.testing.assert_close(dq.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(dr.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(dq, dq2, rtol=0, atol=0)
    expected = card.presets["tiny"]["params_m"]
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n - expected) <= 0.02 * expected, (n, expected)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_backward_reaches_every_trainable_parameter(name):
    model = _tiny(name).train()
    q, r = _batches(model, b=3)
    dq, dr = model(q, r)
    sim = dq @ dr.t()
    loss = torch.nn.functional.softplus(10 * (sim - sim.diagonal()[:, None])).mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_save_load_round_trip(name):
    model = _tiny(name, seed=0).eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    other = _tiny(name, seed=1).eval()
    buf.seek(0)
    other.load_state_dict(torch.load(buf, weights_only=True))
    q, r = _batches(model)
    with torch.no_grad():
        for a, b in zip(model(q, r), other(q, r), strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_paper_size_card_matches_build(name):
    card = MODELS.card(name)
    with torch.device("meta"):  # shapes and counts only: nothing allocated or initialised
        model = build_model(name)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n - card.params_m) <= 0.02 * card.params_m, (n, card.params_m)
    if name in PUBLISHED_M:
        assert abs(n - PUBLISHED_M[name]) <= 0.02 * PUBLISHED_M[name] + (1.0 if name == "mcgra" else 0)
    assert model.card.descriptor_dim == card.descriptor_dim
    assert model.card.input_size == card.input_size
    if model.fixed_size:
        view = card.query_view
        h, w = card.input_size[view]
        with pytest.raises(UsageError, match=f"resize them to {h}x{w}"):
            model.check_input_size(torch.empty(1, 3, h + 16, w, device="meta"), view)


@pytest.mark.parametrize("name", CHEAP_PAPER_FORWARD)
def test_paper_size_forward_batch_one(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    q, r = _batches(model, b=1)
    with torch.no_grad():
        dq, dr = model(q, r)
    assert dq.shape == dr.shape == (1, MODELS.card(name).descriptor_dim)
    torch.testing.assert_close(dq.norm(dim=-1), torch.ones(1))


@pytest.mark.parametrize("attention", ["mcgra", "cbam", "none"])
@pytest.mark.parametrize("deformable", [True, False])
def test_mcgra_ablations(attention, deformable):
    if attention != "mcgra" and not deformable:
        pytest.skip("deformable only applies to MC_GRA")
    model = build_model("mcgra", preset="tiny", attention=attention, deformable=deformable).eval()
    q, r = _batches(model)
    with torch.no_grad():
        assert model(q, r)[0].shape == (2, 128)
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"mcgra": "MCGRA", "cbam": "CBAM", "none": "MixVPR"}[attention] in kinds
    if attention == "mcgra":
        assert any(getattr(m, "deformable", None) is deformable for m in model.modules() if type(m).__name__ == "ContextConv")


def test_mcgra_non_polar_variant_and_view_errors():
    model = build_model("mcgra", preset="tiny")
    with pytest.raises(UsageError, match="polar"):
        model.embed(torch.randn(1, 3, 32, 176), "aerial")
    with pytest.raises(UsageError, match="32x176"):
        model.embed(torch.randn(1, 3, 32, 178), "ground")
    with pytest.raises(UsageError, match=r"\(B, 3, H, W\)"):
        model.embed(torch.randn(3, 32, 176), "ground")
    flat = build_model("mcgra", preset="tiny", polar=False, input_size={"aerial": (64, 64)})
    assert flat.card.reference_view == "aerial" and not flat.card.polar
    assert flat.embed(torch.randn(1, 3, 64, 64), "aerial").shape == (1, 128)
    assert set(flat.card.input_size) == {"ground", "aerial"}
    with torch.device("meta"):
        assert build_model("mcgra", polar=False).card.input_size["aerial"] == (256, 256)


def test_asavg_pairwise_scoring_and_rerank():
    torch.manual_seed(0)
    model = build_model("asavg", preset="tiny").eval()
    q, r = _batches(model, b=3)
    with torch.no_grad():
        dq, dr = model(q, r)
        fq, fr = model.features(q, "perspective"), model.features(r, "ground")
        scores = model.pairwise_score(fq, fr)
        sim = model.similarity_matrix(q, r)
        assert scores.shape == (3, 3)
        torch.testing.assert_close(scores.diagonal(), (dq * dr).sum(-1), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sim, scores, atol=1e-5, rtol=1e-5)
        shortlist = torch.tensor([[2, 0], [1, 2], [0, 1]])
        idx, sc = model.rerank(fq, fr, shortlist)
    for i in range(3):
        assert set(idx[i].tolist()) == set(shortlist[i].tolist())
        assert sc[i, 0] >= sc[i, 1]
        torch.testing.assert_close(sc[i], scores[i, idx[i]])
    with pytest.raises(UsageError, match="shortlist"):
        model.rerank(fq, fr, torch.tensor([[0, 1]]))


def test_build_model_errors():
    with pytest.raises(UnknownNameError, match="Did you mean mcgra"):
        build_model("mcgr")
    with pytest.raises(UsageError, match="no preset 'huge'"):
        build_model("safa", preset="huge")
    with pytest.raises(UsageError, match="no argument bogus"):
        build_model("safa", preset="tiny", bogus=1)
    with pytest.raises(UsageError, match="same input size"):
        build_model("lrfr", preset="tiny", input_size={"drone": (64, 64), "aerial": (96, 96)})
    with pytest.raises(UsageError, match="unknown backbone"):
        build_model("mixvpr", backbone="resnet9000")


def test_weights_file_loads_into_every_backbone(tmp_path):
    torch.manual_seed(0)
    src = build_model("mcgra", preset="tiny")
    path = tmp_path / "resnet_micro.pth"
    torch.save(src.towers["query"].backbone.state_dict(), path)
    model = build_model("mcgra", preset="tiny", weights=path)
    (report,) = model.weights_reports  # one report for the whole model, both backbones in it
    assert report.loaded == 2 * len(src.towers["query"].backbone.state_dict())
    for tower in model.towers.values():
        for k, v in src.towers["query"].backbone.state_dict().items():
            torch.testing.assert_close(tower.backbone.state_dict()[k], v)


def test_describe():
    info = describe("mcgra")
    assert info["descriptor_dim"] == 4096 and info["polar"] is True
    assert info["input_size"]["ground"] == (112, 616)
    assert info["recipe"]["loss_args"]["gamma"] == 10.0
    assert info["arguments"]["attention"] == "mcgra" and "deformable" in info["arguments"]
    with pytest.raises(UnknownNameError):
        describe("nope")


def test_view_agnostic_shared_model_embeds_other_views():
    model = build_model("convnext_gap", preset="tiny").eval()
    with torch.no_grad():
        assert model.embed(torch.randn(1, 3, 48, 48), "drone").shape == (1, 64)
    with pytest.raises(UsageError, match="does not embed view 'drone'"):
        build_model("mcgra", preset="tiny").embed(torch.randn(1, 3, 32, 128), "drone")


def test_descriptors_are_float32_under_autocast():
    model = build_model("safa", preset="tiny").eval()
    q, r = _batches(model)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        dq, dr = model(q, r)
    assert dq.dtype == dr.dtype == torch.float32
    torch.testing.assert_close(dq.norm(dim=-1), torch.ones(2))


def test_lrfr_runs_cross_view_with_a_ground_query():
    model = build_model("lrfr", preset="tiny", query_view="ground", share_weights=False,
                        input_size={"ground": (64, 256), "aerial": (128, 128)}).eval()
    assert (model.card.query_view, model.card.reference_view) == ("ground", "aerial")
    with torch.no_grad():
        q, r = model(torch.randn(2, 3, 64, 256), torch.randn(2, 3, 128, 128))
    assert q.shape == r.shape == (2, model.card.descriptor_dim)
    with pytest.raises(UsageError, match="share_weights=False"):
        build_model("lrfr", preset="tiny", query_view="ground",
                    input_size={"ground": (64, 256), "aerial": (128, 128)})
