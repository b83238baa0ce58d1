"""Optimisers and per-step learning-rate schedules from the recipes (models.md §6)."""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from geobench.train.config import TrainConfig


class LrFactor:
    """lr multiplier as a function of the optimiser step (a picklable LambdaLR callable).

    Its attributes are plain numbers so LambdaLR's state_dict stays weights_only-safe.
    """

    def __init__(self, schedule: str, total_steps: int, warmup_steps: int = 0,
                 milestones: Iterable[int] = (), gamma: float = 0.1, stretch: float = 1.0) -> None:
        self.schedule, self.total_steps = schedule, max(1, int(total_steps))
        self.warmup_steps = int(warmup_steps)
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma, self.stretch = float(gamma), float(stretch)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.schedule == "staged":
            return self.gamma ** sum(step >= m for m in self.milestones)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        if self.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.schedule == "linear":
            # LRFR decays over stretch x the real length, ending at 1 - 1/stretch.
            return 1.0 - progress / self.stretch
        return 1.0


def build_optimizer(cfg: TrainConfig, params: list[Any]):
    import torch

    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def build_scheduler(cfg: TrainConfig, optimizer: Any, total_steps: int, steps_per_epoch: int):
    import torch

    factor = LrFactor(cfg.schedule, total_steps,
                      warmup_steps=cfg.warmup_steps or round(cfg.warmup_epochs * steps_per_epoch),
                      milestones=[round(m * steps_per_epoch) for m in cfg.milestones],
                      gamma=cfg.lr_gamma, stretch=cfg.schedule_stretch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

