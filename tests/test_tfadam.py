"""TFAdam: TensorFlow 1's Adam update (SAFA's optimiser), written out by hand here."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from geobench.train.tfadam import TFAdam


def _f32(x: float) -> float:
    return float(np.float32(x))


def tf_adam_by_hand(p0, grads, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """tensorflow/core/kernels/training_ops.cc ApplyAdam, beta powers kept in float32."""
    p, m, v = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)
    b1p, b2p = _f32(b1), _f32(b2)
    for t, g in enumerate(grads):
        if t:
            b1p, b2p = _f32(b1p * _f32(b1)), _f32(b2p * _f32(b2))
        alpha = lr * math.sqrt(1 - b2p) / (1 - b1p)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        p = p - m * alpha / (v.sqrt() + eps)
    return p


def _grads(n=4):
    gen = torch.Generator().manual_seed(0)
    # Gradients from 1e-9 to 1: the small ones are where the epsilon placement shows.
    scale = torch.logspace(-9, 0, 10, dtype=torch.float64)
    return [torch.randn(10, generator=gen, dtype=torch.float64) * scale for _ in range(n)]


def test_tfadam_is_tensorflows_update_and_not_torchs():
    p0 = torch.linspace(-1, 1, 10, dtype=torch.float64)
    grads = _grads()
    ours, theirs = p0.clone().requires_grad_(), p0.clone().requires_grad_()
    opts = TFAdam([ours], lr=1e-3), torch.optim.Adam([theirs], lr=1e-3)
    for g in grads:
        for p, opt in zip((ours, theirs), opts):
            p.grad = g.clone()
            opt.step()
    want = tf_adam_by_hand(p0, grads)
    torch.testing.assert_close(ours.detach(), want, rtol=1e-14, atol=1e-16)
    # Large gradients move both alike (up to the float32 beta powers); 1e-9..1e-7 ones differ
    # (TF's epsilon is 32x torch's at t=1).
    moved_t, moved_o = (theirs.detach() - p0), (ours.detach() - p0)
    torch.testing.assert_close(moved_o[-3:], moved_t[-3:], rtol=1e-4, atol=0)
    assert ((moved_o[:3] - moved_t[:3]).abs() > 0.5 * moved_t[:3].abs()).all()


def test_state_survives_a_checkpoint():
    p0 = torch.linspace(-1, 1, 10, dtype=torch.float64)
    grads = _grads(5)
    straight = p0.clone().requires_grad_()
    opt = TFAdam([straight], lr=1e-3)
    for g in grads:
        straight.grad = g.clone()
        opt.step()
    resumed = p0.clone().requires_grad_()
    first = TFAdam([resumed], lr=1e-3)
    for g in grads[:2]:
        resumed.grad = g.clone()
        first.step()
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    second = TFAdam([resumed], lr=1e-3)
    second.load_state_dict(torch.load(buf, weights_only=True))
    for g in grads[2:]:
        resumed.grad = g.clone()
        second.step()
    assert torch.equal(resumed, straight)


@pytest.mark.parametrize("kwargs", [{"lr": 0.0}, {"eps": -1.0}, {"betas": (0.9, 1.0)},
                                    {"weight_decay": -0.1}])
def test_invalid_settings(kwargs):
    with pytest.raises(ValueError, match="TFAdam"):
        TFAdam([torch.zeros(2, requires_grad=True)], **kwargs)
