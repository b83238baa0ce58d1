"""The single training step (geobench.train.step) on its own, and the loop running it."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from geobench.losses import build_loss
from geobench.train.step import StepOutput, step_parts, train_step


class TwoLinear(nn.Module):
    """Two towers of one linear layer each: q, r = A x, B y."""

    def __init__(self, d_in: int = 6, d_out: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(d_in, d_out), nn.Linear(d_in, d_out)
        self.blow_up = False

    def forward(self, x, y):
        q, r = self.a(x), self.b(y)
        return (q * float("nan"), r) if self.blow_up else (q, r)


def _batch(n: int = 5, d: int = 6):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


def _parts(loss="infonce", opt=torch.optim.SGD, lr=0.5, warmup=2, **options):
    model, loss_fn = TwoLinear(), build_loss(loss)
    params = [p for p in model.parameters()] + [p for p in loss_fn.parameters()]
    optimizer = opt(params, lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))
    return model, loss_fn, step_parts(model, loss_fn, optimizer, scheduler, **options)


def test_step_is_forward_backward_update_and_reports_the_lr_it_used():
    model, loss_fn, parts = _parts()
    x, y = _batch()
    before = {n: p.detach().clone() for n, p in parts.named}
    # The same step by hand, on copies.
    ref_model, ref_loss = TwoLinear(), build_loss("infonce")
    loss = ref_loss(*ref_model(x, y))
    loss.backward()
    grads = dict(ref_model.named_parameters())
    grads.update({f"loss.{n}": p for n, p in ref_loss.named_parameters()})
    out = train_step(parts, (x, y), record_grads=True)
    assert isinstance(out, StepOutput) and out.applied
    assert out.loss == pytest.approx(float(loss.detach()), abs=0, rel=1e-7)
    assert out.lr == pytest.approx(0.5 / 3)  # warm-up factor of step 0, not of step 1
    assert parts.optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * 2 / 3)
    assert set(out.grad_norms) == {"a.weight", "a.bias", "b.weight", "b.bias", "loss.logit_scale"}
    for name, p in parts.named:
        g = grads[name].grad
        assert out.grad_norms[name] == pytest.approx(float(g.norm()), rel=1e-6)
        torch.testing.assert_close(p.detach(), before[name] - (0.5 / 3) * g, rtol=0, atol=1e-6)


def test_non_finite_loss_changes_nothing():
    model, _, parts = _parts(opt=torch.optim.Adam)
    x, y = _batch()
    train_step(parts, (x, y))  # Adam now has state
    weights = {n: p.detach().clone() for n, p in parts.named}
    opt_state = {k: v.clone() for k, v in parts.optimizer.state[parts.named[0][1]].items()}
    epoch = parts.scheduler.last_epoch
    model.blow_up = True
    out = train_step(parts, (x, y), record_grads=True)
    assert math.isnan(out.loss) and not out.applied and out.grad_norms is None
    assert parts.scheduler.last_epoch == epoch
    for n, p in parts.named:
        assert torch.equal(p.detach(), weights[n]), n
    for k, v in parts.optimizer.state[parts.named[0][1]].items():
        assert torch.equal(v, opt_state[k]), k


@pytest.mark.parametrize("mode", ["value", "norm"])
def test_gradient_clipping_applies_to_model_and_loss_parameters(mode):
    limit = 1e-3
    _, _, parts = _parts(loss="soft_margin_triplet", lr=1.0, warmup=0, grad_clip=limit,
                         grad_clip_mode=mode)
    x, y = _batch()
    before = {n: p.detach().clone() for n, p in parts.named}
    out = train_step(parts, (x, y), record_grads=True)
    steps = {n: before[n] - p.detach() for n, p in parts.named}  # = clipped gradient (SGD, lr 1)
    raw = math.sqrt(sum(v ** 2 for v in out.grad_norms.values()))
    assert raw > 10 * limit  # the batch really is clipped
    if mode == "value":
        assert max(float(s.abs().max()) for s in steps.values()) == pytest.approx(limit, rel=1e-5)
    else:
        total = math.sqrt(sum(float(s.norm()) ** 2 for s in steps.values()))
        assert total == pytest.approx(limit, rel=1e-4)
        for n, s in steps.items():  # one common factor for every parameter
            assert float(s.norm()) == pytest.approx(out.grad_norms[n] * limit / raw, rel=1e-4, abs=1e-9)


def test_labels_reach_the_loss_and_the_gather_hook_sees_every_batch():
    model, loss_fn = TwoLinear(), build_loss("multi_similarity")
    seen = []

    def gather(q, r, labels):
        seen.append((q.shape[0], None if labels is None else labels.tolist()))
        return torch.cat([q, q]), torch.cat([r, r]), torch.cat([labels, labels])

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    parts = step_parts(model, loss_fn, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0),
                       gather=gather)
    x, y = _batch(4)
    labels = torch.tensor([0, 0, 1, 1])
    out = train_step(parts, (x, y, labels))
    q, r = TwoLinear()(x, y)
    doubled = loss_fn(torch.cat([q, q]), torch.cat([r, r]), labels=torch.cat([labels, labels]))
    assert seen == [(4, [0, 0, 1, 1])]
    assert out.loss == pytest.approx(float(doubled), rel=1e-6)


def test_the_training_loop_runs_this_step(tmp_path, monkeypatch):
    import geobench.train.engine as engine
    from geobench.progress import set_quiet
    from geobench.train.config import resolve_config
    from tests._train_world import register_test_model, write_world

    set_quiet(True)
    name = register_test_model()
    world = write_world(tmp_path / "w", n_train=6, n_test=2)
    calls = []
    real = engine.train_step

    def spy(parts, batch, **kw):
        out = real(parts, batch, **kw)
        calls.append(out)
        return out

    monkeypatch.setattr(engine, "train_step", spy)
    seen = []
    cfg = resolve_config(name, world, tmp_path / "run",
                         cli={"workers": 0, "eval_every": 0, "epochs": 2, "batch_size": 3})
    summary = engine.train(cfg, on_step=seen.append)
    assert len(calls) == summary.steps == len(seen) == 4
    assert [c.loss for c in calls] == [s.loss for s in seen]
