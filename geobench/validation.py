"""The range of every numeric command-line option, checked before a command does any work.

One table (OPTIONS) names, per command, the allowed range of each of its int/float options;
options shared by many commands (seeds, worker counts) are in COMMON. The CLI calls
`check_options(command, values)` before the command body runs, so a value out of range is
one line naming the option and the range, and nothing has been embedded, rendered or
written. Checks that relate two options (a negative radius below the positive radius) are
in RELATIONS. A test walks every command of the app and fails when a numeric option has no
range here.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from geobench.errors import UsageError

SEED_MAX = 2**32 - 1  # numpy and torch generators take unsigned 32-bit seeds
DEFAULT_TRAIN_RADIUS = 10.0  # metres: `mine --split train` without --train-radius


@dataclass(frozen=True)
class Range:
    """low <= value <= high (either side optional; `open` sides exclude the bound)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    why: str = ""  # what the option means, said after the range

    def describe(self, integer: bool) -> str:
        kind = "an integer" if integer else "a number"

        def num(bound: float) -> str:
            return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"

        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{kind} in {left}{num(self.low)}, {num(self.high)}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {num(self.low)}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {num(self.high)}"
        return f"{kind}"

    def allows(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return False
        return True


def option_name(param: str) -> str:
    return "--" + param.replace("_", "-")


SEED = Range(0, SEED_MAX, why="seeds are unsigned 32-bit integers")
WORKERS = Range(0, why="0 runs the work in this process")
COUNT = Range(1)

# Options shared by several commands, unless a command's own table says otherwise.
COMMON: dict[str, Range] = {"seed": SEED, "workers": WORKERS, "val_seed": SEED}

OPTIONS: dict[str, dict[str, Range]] = {
    "prepare": {"pairs": COUNT, "test_pairs": COUNT, "cities": COUNT},
    "polar": {},
    "crop": {"fov": Range(0, 360, low_open=True, why="degrees; perspective crops at most 179"),
             "pitch": Range(-90, 90, why="degrees"),
             "per_image": COUNT,
             "pad_offset": Range(-1, 1, why="a fraction of the 2:1 panorama height")},
    "mine": {"radius": Range(0, why="metres"), "train_radius": Range(0, why="metres"),
             "negative_radius": Range(0, why="metres")},
    "train": {"epochs": COUNT, "batch_size": Range(2, why="the other pairs of a batch are the "
                                                      "negatives"),
              "lr": Range(0, low_open=True), "max_steps": COUNT,
              "eval_every": Range(0, why="0: no evaluation during training"),
              "val_fraction": Range(0, 1, high_open=True, why="a share of the train places")},
    # --nprobe / --ef-search take a positive integer or auto (eval.approx.parse_param)
    "eval": {"save_topk": Range(0, why="0 stores no neighbours"),
             "exact_sample": Range(0, why="0: no exact comparison"),
             "max_loss": Range(0, 100, why="points of R@1 the index may lose"),
             "rerank": Range(0, why="0: off"), "batch_size": COUNT},
    "bench": {"threads": COUNT},
    "demo": {"pairs": COUNT, "test_pairs": COUNT, "epochs": COUNT},
    "examples": {"queries": COUNT, "k": COUNT},
    "attention": {"queries": COUNT},
}


def _mine_radii(values: Mapping[str, Any]) -> None:
    negative, radius = values.get("negative_radius"), values.get("radius")
    train_radius = values.get("train_radius")
    if values.get("split", "test") == "train":  # training positives use --train-radius
        positive, name = (DEFAULT_TRAIN_RADIUS if train_radius is None else train_radius,
                          "--train-radius")
    else:
        positive, name = radius, "--radius"
    if negative is not None and positive is not None and negative < positive:
        raise UsageError(f"--negative-radius {negative:g} is below {name} {positive:g}: a "
                         f"reference between them would be both a positive and a negative; "
                         f"use --negative-radius {positive:g} or more")


# Checks over several options of one command, run after the ranges.
RELATIONS: dict[str, tuple[Callable[[Mapping[str, Any]], None], ...]] = {
    "mine": (_mine_radii,),
}


def range_of(command: str, param: str) -> Range | None:
    return OPTIONS.get(command, {}).get(param, COMMON.get(param))


def check_options(command: str, values: Mapping[str, Any]) -> None:
    """Raise UsageError for the first option of `command` outside its range.

    `values` maps parameter names (python spelling) to values; None (not given) and
    booleans are skipped, as are names without a range.
    """
    for param, value in values.items():
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        allowed = range_of(command, param)
        if allowed is None or allowed.allows(value):
            continue
        why = f" ({allowed.why})" if allowed.why else ""
        shown = value if isinstance(value, int) else f"{value:g}"
        raise UsageError(f"{option_name(param)} {shown}: must be "
                         f"{allowed.describe(isinstance(value, int))}{why}")
    for relation in RELATIONS.get(command, ()):
        relation(values)


# Image sizes given as HxW: each side within this, so a typo cannot ask for a 30 GB image.
MAX_SIDE = 16384


def check_size(h: int, w: int, option: str) -> tuple[int, int]:
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise UsageError(f"{option} {h}x{w}: each side must be in [1, {MAX_SIDE}] pixels, "
                         f"e.g. 112x616")
    return h, w
