"""Aggregation heads by name, so the seed models can swap theirs (the `aggregator` argument).

`make_aggregator(name, c, h, w, defaults, overrides)` builds MixVPR, SALAD, GeM or SAFA for a
(c, h, w) feature map. `defaults` are the model's own settings for that head (e.g. mcgra's
mixvpr_dim), `overrides` the user's `aggregator_args`; unknown keys are refused with the list
of known ones. Every head exposes `out_dim` and whether its layer shapes fix the map size.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from geobench.errors import UsageError
from geobench.models.aggregators import SAFA, SALAD, GeM, MixVPR

AGGREGATORS = ("mixvpr", "salad", "gem", "safa")
# Keyword arguments each head accepts in `aggregator_args`, with geobench's defaults.
HEAD_DEFAULTS: dict[str, dict[str, Any]] = {
    "mixvpr": {"out_channels": 1024, "mix_depth": 4, "mlp_ratio": 1.0, "out_rows": 4},
    # SALAD's own defaults (64 clusters x 128 dims); no global token on CNN backbones.
    "salad": {"clusters": 64, "cluster_dim": 128, "hidden": 512, "dropout": 0.3, "sinkhorn_iters": 3},
    "gem": {"p": 3.0},
    "safa": {"heads": 8},
}
SIZE_FIXED = ("mixvpr", "safa")  # their layer shapes contain h*w


def aggregator_name(name: str) -> str:
    """'MixVPR' / 'mixvpr' -> 'mixvpr'; anything else is refused with the choices."""
    key = str(name).strip().lower()
    if key not in AGGREGATORS:
        raise UsageError(f"unknown aggregator {name!r}: use one of {' | '.join(AGGREGATORS)} "
                         f"(model argument aggregator, e.g. --set model_args.aggregator=gem)")
    return key


def head_args(name: str, defaults: dict[str, Any] | None, overrides: dict[str, Any] | None,
              n_positions: int) -> dict[str, Any]:
    """The head's keyword arguments: geobench defaults < the model's < aggregator_args."""
    known = HEAD_DEFAULTS[name]
    unknown = sorted(set(overrides or {}) - set(known))
    if unknown:
        raise UsageError(f"aggregator {name} has no argument {', '.join(unknown)}; its arguments: "
                         f"{', '.join(known)} (model argument aggregator_args)")
    args = {**known, **{k: v for k, v in (defaults or {}).items() if k in known}}
    if name == "salad" and "clusters" not in (overrides or {}) and "clusters" not in (defaults or {}):
        # SALAD's dustbin needs more features than clusters; small maps (tiny presets,
        # 4x16 = 64 positions) get half as many clusters as positions.
        args["clusters"] = max(1, min(args["clusters"], n_positions // 2))
    return {**args, **(overrides or {})}


def make_aggregator(name: str, channels: int, h: int, w: int,
                    defaults: dict[str, Any] | None = None,
                    overrides: dict[str, Any] | None = None) -> nn.Module:
    """An aggregation head for (channels, h, w) maps; `.out_dim` is its descriptor size."""
    name = aggregator_name(name)
    a = head_args(name, defaults, overrides, h * w)
    if name == "mixvpr":
        head: nn.Module = MixVPR(channels, h, w, int(a["out_channels"]), int(a["mix_depth"]),
                                 float(a["mlp_ratio"]), int(a["out_rows"]))
    elif name == "salad":
        head = SALAD(channels, int(a["clusters"]), int(a["cluster_dim"]), dropout=float(a["dropout"]),
                     use_token=False, hidden=int(a["hidden"]), sinkhorn_iters=int(a["sinkhorn_iters"]))
    elif name == "gem":
        head = GeM(float(a["p"]))
        head.out_dim = channels
    else:
        head = SAFA(channels, h, w, int(a["heads"]))
    head.size_fixed = name in SIZE_FIXED
    return head
