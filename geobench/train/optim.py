"""Optimisers and per-step learning-rate schedules from the recipes (models.md §6)."""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from geobench.train.config import TrainConfig


class LrFactor:
    """lr multiplier as a function of the optimiser step (a picklable LambdaLR callable).

    Each schedule is the official code's, step for step (tests/test_train_golden.py):
    warm-up `zero` is transformers' get_*_schedule_with_warmup (step / warmup, so the first
    step has lr 0: Sample4Geo, LRFR); `step` is MixVPR's optimizer_step ((step + 1) / warmup).
    A warm-up sets the lr outright, so a milestone reached during it is lost (MixVPR's
    MultiStepLR multiplies the lr, which the next warm-up step overwrites). `linear` decays
    towards 0 at int(stretch x the run) (LRFR's 1.05, ending at about 1 - 1/stretch).
    Its attributes are plain numbers so LambdaLR's state_dict stays weights_only-safe.
    """

    def __init__(self, schedule: str, total_steps: int, warmup_steps: int = 0,
                 milestones: Iterable[int] = (), gamma: float = 0.1, stretch: float = 1.0,
                 warmup_from: str = "zero") -> None:
        self.schedule, self.total_steps = schedule, max(1, int(total_steps))
        self.warmup_steps = int(warmup_steps)
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma, self.stretch = float(gamma), float(stretch)
        self.warmup_from = warmup_from

    def __call__(self, step: int) -> float:
        w = self.warmup_steps
        if step < w:
            return (step + (self.warmup_from == "step")) / w
        if self.schedule == "staged":
            return self.gamma ** sum(w <= m <= step for m in self.milestones)
        if self.schedule == "linear":
            end = int(self.total_steps * self.stretch)
            return max(0.0, (end - step) / max(1, end - w))
        if self.schedule == "cosine":
            progress = (step - w) / max(1, self.total_steps - w)
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
        return 1.0


def build_optimizer(cfg: TrainConfig, params: list[Any]):
    import torch

    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam_tf":  # TensorFlow's epsilon placement (SAFA's official code)
        from geobench.train.tfadam import TFAdam

        return TFAdam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def build_scheduler(cfg: TrainConfig, optimizer: Any, total_steps: int, steps_per_epoch: int):
    import torch

    factor = LrFactor(cfg.schedule, total_steps,
                      warmup_steps=cfg.warmup_steps or round(cfg.warmup_epochs * steps_per_epoch),
                      milestones=[round(m * steps_per_epoch) for m in cfg.milestones],
                      gamma=cfg.lr_gamma, stretch=cfg.schedule_stretch, warmup_from=cfg.warmup_from)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

