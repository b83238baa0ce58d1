"""Every ablation row is a switch: mcgra / asavg / lrfr arguments, the aggregator argument,
and the variant string that names the row (tiny presets; shapes, parameter counts, a step)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from geobench.errors import UsageError
from geobench.models import build_model
from geobench.models.aggregators import SAFA, SALAD, GeM, MixVPR
from geobench.models.asa import SFE
from geobench.models.attention import CBAM, GSRA, MCGRA, MaxPoolBaseline
from geobench.models.towers import feature_shape
from geobench.models.variant import full_args, variant

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# mcgra's tiny preset at half its input size with a narrow MixVPR: the same modules, a
# quarter of the compute (its ResNet stage 3 is 1024 channels wide whatever the size).
SMALL = {"mcgra": {"input_size": {"ground": (32, 128), "polar": (32, 128)}, "mixvpr_dim": 16,
                   "out_rows": 1}}


def _tiny(name: str, meta: bool = False, **kw):
    torch.manual_seed(0)
    kw = {**SMALL.get(name, {}), **kw}
    if meta:  # parameter counts without initialising (fast)
        with torch.device("meta"):
            return build_model(name, preset="tiny", **kw)
    return build_model(name, preset="tiny", **kw)


def _batch(model, b: int = 3):
    card = model.card
    g = torch.Generator().manual_seed(1)
    return (torch.randn(b, 3, *card.input_size[card.query_view], generator=g),
            torch.randn(b, 3, *card.input_size[card.reference_view], generator=g))


def _train_step(model) -> float:
    """One optimiser step on a soft-margin loss over the model's (B x B) scores."""
    model.train()
    q, r = _batch(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    sim = model.similarity_matrix(q, r) if getattr(model, "pairwise", False) else \
        (lambda a: a[0] @ a[1].T)(model(q, r))
    loss = F.softplus(10 * (sim - sim.diagonal()[:, None])).mean()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    return float(loss.detach())


def _mcgra_map(model) -> tuple[int, int, int]:
    tower = model.towers["query"]
    return feature_shape(tower.backbone, *model.card.input_size["ground"])


# --- mcgra --------------------------------------------------------------------------------
MCGRA_ROWS = [
    ({"attention": "maxpool"}, lambda c, h, w: 0),
    ({"attention": "cbam"}, lambda c, h, w: n_params(CBAM(c))),
    ({"attention": "none"}, lambda c, h, w: 0),
    ({"deformable": False}, lambda c, h, w: n_params(MCGRA(c, h, w, deformable=False))),
    ({"branches": "context"}, lambda c, h, w: n_params(MCGRA(c, h, w, branches="context"))),
    ({"branches": "relation"}, lambda c, h, w: n_params(MCGRA(c, h, w, branches="relation"))),
]


@pytest.mark.parametrize("kw,attention_params", MCGRA_ROWS, ids=lambda v: str(v) if isinstance(v, dict) else "")
def test_mcgra_attention_rows_swap_only_the_attention(kw, attention_params):
    base, model = _tiny("mcgra", meta=True), _tiny("mcgra", **kw)
    c, h, w = _mcgra_map(base)
    # Two branches, each with its own attention: only that module's parameters change.
    with torch.device("meta"):
        expected = n_params(base) - 2 * n_params(MCGRA(c, h, w)) + 2 * attention_params(c, h, w)
    assert n_params(model) == expected
    q, r = _batch(model)
    with torch.no_grad():
        dq, dr = model.eval()(q, r)
    assert dq.shape == dr.shape == (3, base.card.descriptor_dim)
    _train_step(model)


def test_maxpool_baseline_is_size_preserving_max_pooling():
    x = torch.randn(2, 8, 4, 16)
    torch.testing.assert_close(MaxPoolBaseline()(x), F.max_pool2d(x, 3, 1, 1), rtol=0, atol=0)
    assert n_params(MaxPoolBaseline(5)) == 0 and MaxPoolBaseline(5)(x).shape == x.shape
    with pytest.raises(UsageError, match="odd"):
        MaxPoolBaseline(2)
    model = _tiny("mcgra", meta=True, attention="maxpool")
    assert {type(t.attention) for t in model.towers.values()} == {MaxPoolBaseline}


def test_mcgra_single_branch_drops_the_other_branch():
    ctx, rel = MCGRA(16, 4, 16, branches="context"), MCGRA(16, 4, 16, branches="relation")
    assert not hasattr(ctx, "theta") and ctx.pos is None and ctx.fuse.in_channels == 1
    assert not hasattr(rel, "ctx3") and rel.fuse.in_channels == rel.rel_embed[0].out_channels
    x = torch.randn(2, 16, 4, 16)
    for m in (ctx, rel):
        assert m.attention_map(x).shape == (2, 1, 4, 16)
    with pytest.raises(UsageError, match="branches"):
        MCGRA(16, 4, 16, branches="neither")


def test_mcgra_refuses_mcgra_arguments_beside_another_attention():
    with pytest.raises(UsageError, match="deformable"):
        build_model("mcgra", preset="tiny", attention="cbam", deformable=False)
    with pytest.raises(UsageError, match="branches"):
        build_model("mcgra", preset="tiny", attention="maxpool", branches="context")


def test_mcgra_polar_off_takes_plain_aerial_images():
    model = _tiny("mcgra", polar=False, input_size={"ground": (32, 128), "aerial": (64, 64)})
    assert (model.card.reference_view, model.card.polar) == ("aerial", False)
    _train_step(model)


# --- the aggregator argument ------------------------------------------------------------
@pytest.mark.parametrize("name", ["mcgra", "asavg", "lrfr"])
@pytest.mark.parametrize("agg", ["MixVPR", "SALAD", "GeM", "SAFA"])
def test_aggregator_argument(name, agg):
    model = _tiny(name, aggregator=agg)
    heads = [m for m in model.modules() if type(m) in (MixVPR, SALAD, GeM, SAFA)]
    assert {type(h).__name__.lower() for h in heads} == {agg.lower()}
    head = heads[0]
    dim = head.num_clusters * head.cluster_dim if agg == "SALAD" else head.out_dim
    assert model.card.descriptor_dim == dim
    if agg == "SALAD":  # small maps get fewer clusters than local features (dustbin: n > m)
        bb = model.backbone if name == "asavg" else next(iter(model.towers.values())).backbone
        _, h, w = feature_shape(bb, *model.card.input_size[model.card.query_view])
        assert head.num_clusters < h * w
    _train_step(model)


def test_aggregator_errors_name_the_argument():
    with pytest.raises(UsageError, match="unknown aggregator 'netvlad'.*mixvpr"):
        build_model("mcgra", preset="tiny", aggregator="netvlad")
    with pytest.raises(UsageError, match="aggregator gem has no argument heads; its arguments: p"):
        build_model("lrfr", preset="tiny", aggregator="gem", aggregator_args={"heads": 2})
    model = _tiny("lrfr", aggregator="safa", aggregator_args={"heads": 2})
    assert model.card.descriptor_dim == 2 * 48


# --- asavg ---------------------------------------------------------------------------------
def test_asavg_sfe_switch_and_stage():
    base, off, early = _tiny("asavg"), _tiny("asavg", sfe=False), _tiny("asavg", sfe_after_stage=1)
    assert off.sfe is None and n_params(base) - n_params(off) == n_params(SFE())
    assert early.sfe_after_stage == 1 and n_params(early) == n_params(base)
    q, _ = _batch(base)
    with torch.no_grad():  # SFE after stage 1 sees stage-1 maps: a different network
        assert not torch.allclose(early.eval().features(q, "perspective"), base.eval().features(q, "perspective"))
    for model in (off, early):
        _train_step(model)
    with pytest.raises(UsageError, match="sfe_after_stage"):
        build_model("asavg", preset="tiny", sfe_after_stage=4)


def test_asavg_without_asa_is_a_plain_crop_free_descriptor():
    model = _tiny("asavg", asa=False).eval()
    assert model.pairwise is False
    q, r = _batch(model)
    with torch.no_grad():
        dq, dr = model(q, r)
        sim = model.similarity_matrix(q, r)
        fq, fr = model.features(q, "perspective"), model.features(r, "ground")
        full = model.pairwise_score(fq, fr)
    torch.testing.assert_close(sim, dq @ dr.T)
    torch.testing.assert_close(full, dq @ dr.T, atol=1e-6, rtol=1e-6)
    # MixVPR fixes the map size: the whole panorama map gets its own head.
    c, h, w = feature_shape(model.backbone, *model.card.input_size["ground"])
    assert (model.reference_aggregator.in_h, model.reference_aggregator.in_w) == (h, w)
    assert n_params(model) - n_params(_tiny("asavg")) == n_params(model.reference_aggregator)
    shared = _tiny("asavg", asa=False, aggregator="gem")
    assert shared.reference_aggregator is None  # GeM takes any map size: one head
    _train_step(model)


@pytest.mark.parametrize("backbone,stage3_params", [("lsknet_t", 3_990_190), ("lsknet_s", 13_840_892)])
def test_asavg_lsknet_variants(backbone, stage3_params):
    with torch.device("meta"):
        model = build_model("asavg", backbone=backbone)
    # The published LSKNet totals include stage 4 and the head; geobench cuts after stage 3.
    assert n_params(model.backbone) < stage3_params
    assert model.build_args["backbone"] == backbone


# --- lrfr ----------------------------------------------------------------------------------
def test_lrfr_gsra_switch():
    base, off = _tiny("lrfr"), _tiny("lrfr", gsra=False)
    c, h, w = feature_shape(base.towers["shared"].backbone, 64, 64)
    assert n_params(base) - n_params(off) == n_params(GSRA(c, h, w, 4))
    assert isinstance(base.towers["shared"].attention, GSRA)
    assert isinstance(off.towers["shared"].attention, torch.nn.Identity)
    assert off.fixed_size is False  # SALAD alone takes any size
    _train_step(off)


# --- variant strings -----------------------------------------------------------------------
def test_variant_names_the_changed_arguments_only():
    assert variant("mcgra", "tiny", {}) == "mcgra"
    assert variant("mcgra", "tiny", {"attention": "cbam"}) == "mcgra attention=cbam"
    assert variant("mcgra", None, {"deformable": False, "attention": "mcgra"}) == "mcgra deformable=false"
    assert variant("lrfr", "tiny", {"aggregator": "SALAD", "gsra": False}) == "lrfr gsra=false"
    assert variant("asavg", "tiny", {"sfe_after_stage": 1, "asa": False}) == "asavg sfe_after_stage=1 asa=false"
    assert variant("mcgra", "tiny", {"attention_args": {"reduction": 4}}) == "mcgra attention_args.reduction=4"
    # The preset's own values are not a change: mcgra tiny already uses resnet_micro.
    assert variant("mcgra", "tiny", {"backbone": "resnet_micro"}) == "mcgra"
    args = full_args("mcgra", "tiny", {"attention": "cbam"})
    assert args["attention"] == "cbam" and args["backbone"] == "resnet_micro"
    assert args["input_size"] == {"ground": [32, 176], "polar": [32, 176]} and args["polar"] is True
