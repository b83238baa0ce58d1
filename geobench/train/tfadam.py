"""Adam as TensorFlow 1's `tf.train.AdamOptimizer` computes it (SAFA's official optimiser).

TensorFlow adds epsilon to sqrt(v) *before* the bias correction ("epsilon hat" in Kingma
& Ba's sec. 2 footnote), torch.optim.Adam after it:

    TF:    p -= lr_t * m / (sqrt(v) + eps),   lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)
    torch: p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

so TF's effective epsilon is eps / sqrt(1 - b2^t): 3.2e-7 at the first step with the
defaults, 32x torch's. Parameters whose gradients are that small (SAFA's heads, dead
filters) move differently. The moments are updated as TF's kernel writes them,
m += (g - m)(1 - b1), v += (g^2 - v)(1 - b2), and b1^t, b2^t are float32 numbers
multiplied once per step, as TF's `beta1_power` and `beta2_power` variables (their
rounding moves 1 - b2^t by up to ~3e-5 relative in the first steps). `weight_decay`
adds wd * p to the gradient as torch.optim.Adam does (TF's AdamOptimizer has none; SAFA
uses 0).
"""
from __future__ import annotations

import math
import struct

import torch


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


class TFAdam(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        if not lr > 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"TFAdam: invalid lr={lr}, betas={betas}, eps={eps} or "
                             f"weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("TFAdam does not support sparse gradients")
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["beta1_power"], state["beta2_power"] = _f32(b1), _f32(b2)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                else:
                    state["beta1_power"] = _f32(state["beta1_power"] * _f32(b1))
                    state["beta2_power"] = _f32(state["beta2_power"] * _f32(b2))
                state["step"] += 1
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(grad, 1 - b1)
                v.lerp_(grad * grad, 1 - b2)
                lr_t = group["lr"] * math.sqrt(1 - state["beta2_power"]) / (1 - state["beta1_power"])
                p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-lr_t)
        return loss
