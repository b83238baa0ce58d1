"""geobench's training step and schedules against the official training code.

tests/fixtures/train_golden.pt was written by benchmarks/make_train_golden.py in a side
environment running the official Sample4Geo, LRFR and MixVPR training functions (tiny
network sizes, one fixed batch, the same start from a numpy rule, 3 steps; dropout and
stochastic depth off on both sides). Here geobench's own `train_step` (the one
`geobench train` runs) with the model card's recipe (loss, optimiser, scheduler, clipping)
must give the same losses, learning rates, per-parameter gradient norms and parameters.

Tolerances (two programs sum in different orders), learning rates to 1e-12 relative:
float32 (Sample4Geo, MixVPR): loss and parameters 1e-5 absolute, gradient norms 1e-4
relative (+1e-7 absolute); float64 (LRFR, whose tiny GSRA makes float32 gradients
ill-conditioned): loss 1e-12, parameters 1e-11, gradient norms 1e-9 relative (+1e-15).
Observed (max |d loss|, max relative d of gradient norms above 1e-6 x the largest,
max |d param|) are printed with -s.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "train_golden.pt"
pytestmark = pytest.mark.skipif(not GOLDEN.exists(), reason="run benchmarks/make_train_golden.py")

LR_RTOL = 1e-12
# dtype: (loss atol, parameter atol, gradient-norm rtol, gradient-norm atol)
TOLERANCES = {"float32": (1e-5, 1e-5, 1e-4, 1e-7), "float64": (1e-12, 1e-11, 1e-9, 1e-15)}


def _generator():
    spec = importlib.util.spec_from_file_location("make_train_golden", ROOT / "benchmarks" / "make_train_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


@pytest.fixture(scope="module")
def golden():
    return torch.load(GOLDEN, weights_only=True)


def _start(model, keys):
    """Load the official start into `model`; returns {official name: geobench name}."""
    from geobench.models.released import released_state

    state = {k: torch.from_numpy(GEN.init_value(k, tuple(shape))) for k, shape in keys}
    full, _, skipped = released_state(model, state, "golden start")
    missing, unexpected = model.load_state_dict({k: v for k, v in full.items() if k not in skipped},
                                                strict=False)
    floating = [k for k in missing if model.state_dict()[k].is_floating_point()]
    assert not floating and not unexpected, (floating[:5], unexpected[:5])
    # Names: convert once more with each tensor holding its own index.
    tagged = {k: torch.full(tuple(shape), float(i)) for i, (k, shape) in enumerate(keys)}
    renamed, _, _ = released_state(model, tagged, "golden names")
    names = {}
    for new, value in renamed.items():
        if new.startswith("towers.") and not new.startswith("towers.shared."):
            continue
        names[keys[int(value.reshape(-1)[0])][0]] = new
    return names


def _run(name, model, cfg, batch, total, spe, loss_fn=None):
    from geobench.losses import build_loss
    from geobench.train.batching import loss_options
    from geobench.train.optim import build_optimizer, build_scheduler
    from geobench.train.step import StepParts, train_step, trainable

    loss_fn = loss_fn or build_loss(cfg.loss, **loss_options(cfg))
    model.train()
    named = trainable(model, loss_fn)
    optimizer = build_optimizer(cfg, [p for _, p in named])
    scheduler = build_scheduler(cfg, optimizer, total, spe)
    parts = StepParts(model, loss_fn, optimizer, scheduler, named, grad_clip=cfg.grad_clip,
                      grad_clip_mode=cfg.grad_clip_mode)
    return [train_step(parts, batch, record_grads=True) for _ in range(GEN.STEPS)]


def _compare(ref, outs, model, names, extra=None):
    """Losses, lrs, gradient norms and final parameters; returns the largest differences."""
    LOSS_ATOL, PARAM_ATOL, GRAD_RTOL, GRAD_ATOL = TOLERANCES[ref["config"].get("dtype", "float32")]
    got_loss = [o.loss for o in outs]
    loss_diff = max(abs(a - b) for a, b in zip(got_loss, ref["loss"]))
    assert loss_diff <= LOSS_ATOL, (got_loss, ref["loss"])
    assert [o.lr for o in outs] == pytest.approx(ref["lr"], rel=LR_RTOL, abs=0)
    names = {**names, **(extra or {})}
    grad_diff = 0.0  # largest relative difference among norms not (analytically) zero
    for step, (o, norms) in enumerate(zip(outs, ref["grad_norms"])):
        assert {names[k] for k in norms} == set(o.grad_norms), f"step {step}: trainable sets differ"
        floor = 1e-6 * max(norms.values())
        for k, expected in norms.items():
            got = o.grad_norms[names[k]]
            if expected > floor:
                grad_diff = max(grad_diff, abs(got - expected) / expected)
            assert got == pytest.approx(expected, rel=GRAD_RTOL, abs=GRAD_ATOL), (step, k)
    params = dict(model.named_parameters())
    if extra:
        params.update(extra["params"])
    param_diff = 0.0
    for k, rec in ref["params"].items():
        p = params[names[k]].detach().reshape(-1)
        assert float(p.norm()) == pytest.approx(rec["norm"], rel=PARAM_ATOL, abs=PARAM_ATOL), k
        diff = float((p[rec["idx"]] - rec["val"]).abs().max())
        param_diff = max(param_diff, diff)
        assert diff <= PARAM_ATOL, k
    trained = [k for k in ref["grad_norms"][0] if k != "logit_scale"]
    moved = sum(float((params[names[k]].detach().reshape(-1)[ref["params"][k]["idx"]].cpu().double() -
                       torch.from_numpy(GEN.init_value(k, tuple(params[names[k]].shape))).reshape(-1)[
                           ref["params"][k]["idx"]].double()).abs().max()) > 1e-6 for k in trained)
    assert moved > 0.8 * len(trained), "the steps changed too few parameters to test anything"
    return loss_diff, grad_diff, param_diff


def _deterministic(name: str) -> dict:
    """Stochastic depth off where the model has it (random masks differ between programs)."""
    import inspect

    from geobench.models import MODELS
    from geobench.train.cards import load_zoo

    load_zoo()
    return {"drop_path_rate": 0.0} if "drop_path_rate" in inspect.signature(MODELS.get(name)).parameters else {}


def _images(shape, which):
    return torch.from_numpy(GEN.batch_images(tuple(shape), which))


def test_sample4geo_step_equals_the_official_training_step(golden, tmp_path):
    from geobench.losses import build_loss
    from geobench.models import build_model
    from geobench.train.batching import loss_options
    from geobench.train.config import resolve_config

    ref = golden["sample4geo"]
    c = ref["config"]
    cfg = resolve_config("convnext_gap", "unused", tmp_path / "run")  # the paper recipe
    model = build_model("convnext_gap", backbone="convnext_micro", **_deterministic("convnext_gap"),
                        input_size={"ground": tuple(c["ground"]), "aerial": tuple(c["aerial"])})
    names = _start(model, ref["keys"])
    loss_fn = build_loss(cfg.loss, **loss_options(cfg))
    b = c["batch"]
    batch = (_images((b, 3, *c["ground"]), 0), _images((b, 3, *c["aerial"]), 1))
    outs = _run("convnext_gap", model, cfg, batch, c["steps_per_epoch"] * c["epochs"],
                c["steps_per_epoch"], loss_fn)
    # Sample4Geo keeps the learnable temperature in the model; geobench in the loss.
    extra = {"logit_scale": "loss.logit_scale", "params": {"loss.logit_scale": loss_fn.logit_scale}}
    print("sample4geo max |d loss|, max rel d grad-norm, max |d param|:", _compare(ref, outs, model, names, extra))


def test_lrfr_step_equals_the_official_training_step(golden, tmp_path):
    from geobench.models import build_model
    from geobench.train.config import resolve_config

    ref = golden["lrfr"]
    c = ref["config"]
    cfg = resolve_config("lrfr", "unused", tmp_path / "run")
    size = tuple(c["size"])
    model = build_model("lrfr", backbone="convnext_micro", gsra_groups=c["gsra_ratio"],
                        clusters=c["clusters"], cluster_dim=c["cluster_dim"], salad_hidden=512,
                        dropout=0.0, input_size={"drone": size, "aerial": size}, **_deterministic("lrfr"))
    names = _start(model, ref["keys"])
    model.double()  # as the fixture (see benchmarks/make_train_golden.py)
    b = c["batch"]
    batch = (_images((b, 3, *size), 0).double(), _images((b, 3, *size), 1).double())
    outs = _run("lrfr", model, cfg, batch, c["steps_per_epoch"] * c["epochs"], c["steps_per_epoch"])
    print("lrfr max |d loss|, max rel d grad-norm, max |d param|:", _compare(ref, outs, model, names))


def test_mixvpr_step_equals_the_official_training_step(golden, tmp_path):
    from geobench.models import build_model
    from geobench.train.config import resolve_config

    ref = golden["mixvpr"]
    c = ref["config"]
    cfg = resolve_config("mixvpr", "unused", tmp_path / "run", cli={"warmup_steps": c["warmup_steps"]})
    size = tuple(c["size"])
    model = build_model("mixvpr", backbone="resnet_micro", mixvpr_dim=c["out_channels"],
                        mix_depth=c["mix_depth"], out_rows=c["out_rows"], freeze_stages=2,
                        input_size={"street": size})
    names = _start(model, ref["keys"])
    places, per = c["places"], c["per_place"]
    images = _images((places * per, 3, *size), 0).view(places, per, 3, *size)
    # Each place's 4 images as 2 pairs: the same 4 descriptors and labels as the official batch.
    q, r = images[:, 0::2].reshape(-1, 3, *size), images[:, 1::2].reshape(-1, 3, *size)
    labels = torch.arange(places).repeat_interleave(per // 2)
    outs = _run("mixvpr", model, cfg, (q, r, labels), 10 * cfg.epochs, 10)
    print("mixvpr max |d loss|, max rel d grad-norm, max |d param|:", _compare(ref, outs, model, names))


def _geobench_lrs(cfg, spe: int, epochs: int) -> list[float]:
    from geobench.train.optim import build_optimizer, build_scheduler

    opt = build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))])
    sched = build_scheduler(cfg, opt, spe * epochs, spe)
    out = []
    for _ in range(spe * epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_every_step_of_whole_schedules_equals_the_official_scheduler(golden, tmp_path):
    from geobench.train.config import resolve_config

    checked = set()
    for key, s in golden["schedules"].items():
        model = key.split("_")[0]
        name = {"sample4geo": "convnext_gap", "lrfr": "lrfr", "mixvpr": "mixvpr"}[model]
        cli = {"epochs": s["epochs"], "lr": s["lr"]}
        if "warmup_steps" in s:
            cli.update(warmup_steps=s["warmup_steps"], milestones=s["milestones"])
        else:
            cli["warmup_epochs"] = s["warmup_epochs"]
        cfg = resolve_config(name, "unused", tmp_path / key, cli=cli)  # the card's schedule
        got = _geobench_lrs(cfg, s["steps_per_epoch"], s["epochs"])
        assert len(got) == len(s["sequence"])
        np.testing.assert_allclose(got, s["sequence"], rtol=LR_RTOL, atol=0, err_msg=key)
        checked.add(model)
    assert checked == {"sample4geo", "lrfr", "mixvpr"}
