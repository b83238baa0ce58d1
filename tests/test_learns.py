"""Every registered model can learn, through the step `geobench train` runs.

Generated from the registry, so a new model is covered: its tiny preset, trained with its
own tiny recipe (loss, optimiser, lr, schedule, pairwise scoring) by
`geobench.train.step.train_step`, must overfit one fixed small batch: the loss falls to
near its floor and every query ranks its own reference first. A gradient that never
reaches a branch, a frozen layer or a loss that cannot separate fails here in seconds.
The tiny presets must also keep the geometry of the paper card they shrink.
"""
from __future__ import annotations

import math
from collections import defaultdict

import pytest
import torch
import torch.nn.functional as F

from geobench.models import build_model, list_models
from geobench.models.registry import MODELS
from geobench.train.config import resolve_config
from geobench.train.optim import build_optimizer, build_scheduler
from geobench.train.step import step_parts, train_step

NAMES = list_models()
BATCH = 4
MAX_STEPS = 80        # the most any model may need to overfit the batch
CHECK_EVERY = 5
STEPS_PER_EPOCH = 18  # a demo world's epoch (600 pairs, batch 32): where warm-ups end


def test_registry_is_covered():
    assert set(NAMES) >= {"asavg", "convnext_gap", "lrfr", "mcgra", "mixvpr", "safa"}


def _parts(name: str, seed: int = 0):
    torch.manual_seed(seed)
    from geobench.losses import build_loss
    from geobench.train.batching import loss_options

    cfg = resolve_config(name, "unused", "unused", preset="tiny", cli={"batch_size": BATCH})
    model = build_model(name, preset="tiny")
    loss_fn = build_loss(cfg.loss, **loss_options(cfg))
    params = [p for p in model.parameters() if p.requires_grad]
    params += [p for p in loss_fn.parameters() if p.requires_grad]
    optimizer = build_optimizer(cfg, params)
    scheduler = build_scheduler(cfg, optimizer, MAX_STEPS, STEPS_PER_EPOCH)
    parts = step_parts(model, loss_fn, optimizer, scheduler, grad_clip=cfg.grad_clip,
                       grad_clip_mode=cfg.grad_clip_mode, pairwise=cfg.pairwise_training)
    return cfg, model, loss_fn, parts


def _batch(model, seed: int = 1):
    """Smooth random images (low-frequency noise), one independent image per view and pair."""
    g = torch.Generator().manual_seed(seed)
    card = model.card

    def images(view):
        h, w = card.input_size[view]
        x = torch.randn(BATCH, 3, h // 8 + 2, w // 8 + 2, generator=g)
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)

    return images(card.query_view), images(card.reference_view)


def _loss_value(loss_fn, pairwise: bool, q, r, sim) -> float:
    if pairwise:
        return float(loss_fn.from_similarity(sim))
    return float(loss_fn(q, r))


def loss_floor(loss_fn, pairwise: bool, b: int) -> float:
    """The smallest loss of any batch whose query and reference descriptors coincide and whose
    off-diagonal similarities all equal s (the simplex s = -1/(b-1) up to near-collapse): the
    loss of a batch separated perfectly, at the loss's own (initial) parameters. Zero for the
    triplet losses; for label-smoothed InfoNCE the entropy its targets leave."""
    best = math.inf
    with torch.no_grad():
        for s in torch.linspace(-1.0 / (b - 1), 0.99, 300).tolist():
            gram = torch.full((b, b), s) + (1 - s) * torch.eye(b)
            vals, vecs = torch.linalg.eigh(gram.double())
            x = F.normalize((vecs * vals.clamp(min=0).sqrt()).float(), dim=1)  # Gram: `gram`
            best = min(best, _loss_value(loss_fn, pairwise, x, x, x @ x.T))
    return best


def _evaluate(model, loss_fn, pairwise: bool, q_img, r_img) -> tuple[float, float]:
    """(loss, in-batch R@1 of the queries) with the model in eval mode (no dropout noise)."""
    model.eval()
    with torch.no_grad():
        q = model.embed(q_img, model.card.query_view)
        r = model.embed(r_img, model.card.reference_view)
        sim = model.similarity_matrix(q_img, r_img) if pairwise else q @ r.T
        loss = _loss_value(loss_fn, pairwise, q, r, sim)
    model.train()
    r1 = float((sim.argmax(1) == torch.arange(len(sim))).float().mean())
    return loss, r1


@pytest.mark.parametrize("name", NAMES)
def test_tiny_recipe_overfits_one_batch(name):
    cfg, model, loss_fn, parts = _parts(name)
    q_img, r_img = _batch(model)
    pairwise = cfg.pairwise_training
    floor = loss_floor(loss_fn, pairwise, BATCH)
    start, _ = _evaluate(model, loss_fn, pairwise, q_img, r_img)
    assert start > floor + 0.05, (name, start, floor)  # there is something to learn
    model.train()
    history = []
    for step in range(1, MAX_STEPS + 1):
        out = train_step(parts, (q_img, r_img))
        assert out.applied and math.isfinite(out.loss), (name, step, out.loss)
        if step % CHECK_EVERY == 0:
            loss, r1 = _evaluate(model, loss_fn, pairwise, q_img, r_img)
            history.append((step, round(loss, 4), r1))
            if r1 == 1.0 and loss - floor <= 0.1 * (start - floor):
                break
    loss, r1 = _evaluate(model, loss_fn, pairwise, q_img, r_img)
    assert r1 == 1.0, (name, floor, start, history)
    assert loss - floor <= 0.1 * (start - floor), (name, floor, start, history)


def _module_norms(norms: dict[str, float]) -> dict[str, float]:
    """Gradient norm per module: the parameters' norms, grouped by their owning module."""
    squares: dict[str, float] = defaultdict(float)
    for param, value in norms.items():
        squares[param.rpartition(".")[0] or param] += value ** 2
    return {module: math.sqrt(v) for module, v in squares.items()}


@pytest.mark.parametrize("name", NAMES)
def test_every_trainable_module_gets_a_gradient(name):
    cfg, model, _, parts = _parts(name)
    model.train()
    out = train_step(parts, _batch(model), record_grads=True)
    norms = _module_norms(out.grad_norms)
    trainable = {n.rpartition(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable <= set(norms), sorted(trainable - set(norms))
    dead = sorted(m for m, v in norms.items() if not v > 0.0 or not math.isfinite(v))
    assert not dead, (name, dead)


# --- geometry: a tiny preset shrinks the paper card, it does not reshape it ----------------
def geometry(input_size: dict[str, tuple[int, int]], query_view: str) -> dict[str, float]:
    """Aspect (W / H) of every view and every view's width relative to the query view's.

    These fix what one pixel column means across the views (a 60° query in a 360° panorama,
    the panorama's width against the aerial's side), so a tiny preset must keep them."""
    qh, qw = input_size[query_view]
    out = {}
    for view, (h, w) in sorted(input_size.items()):
        out[f"{view} aspect"] = w / h
        if view != query_view:
            out[f"{view} width / {query_view} width"] = w / qw
    return out


@pytest.mark.parametrize("name", NAMES)
def test_tiny_preset_keeps_the_paper_geometry(name):
    paper = MODELS.card(name)  # the registered (paper) card: no network is built
    tiny = build_model(name, preset="tiny").card
    want = geometry(paper.input_size, paper.query_view)
    got = geometry(tiny.input_size, tiny.query_view)
    assert set(got) == set(want), (name, got, want)
    off = {k: (got[k], want[k]) for k in want if abs(got[k] / want[k] - 1) > 0.02}
    assert not off, (name, off)


def test_geometry_catches_the_old_asavg_preset():
    """The ratio the asavg tiny preset used to break: a 60° query over a 4x panorama."""
    paper = geometry({"perspective": (224, 224), "ground": (224, 1344)}, "perspective")
    old = geometry({"perspective": (32, 32), "ground": (32, 128)}, "perspective")
    assert paper["ground width / perspective width"] == 6.0
    assert old["ground width / perspective width"] == 4.0


def test_loss_floor_by_hand():
    from geobench.losses import build_loss

    # triplet losses separate completely: floor 0 (to float precision)
    assert loss_floor(build_loss("soft_margin_triplet", gamma=10.0), False, 4) < 1e-6
    # label-smoothed InfoNCE: the entropy of its target distribution, reachable at s where
    # scale * (1 - s) = log(p_t / p_o) (p_t = 1 - eps + eps / B, p_o = eps / B)
    b, eps = 4, 0.1
    p_t, p_o = 1 - eps + eps / b, eps / b
    entropy = -(p_t * math.log(p_t) + (b - 1) * p_o * math.log(p_o))
    got = loss_floor(build_loss("infonce", temperature=0.07, label_smoothing=eps), False, b)
    assert got == pytest.approx(entropy, abs=2e-3)
