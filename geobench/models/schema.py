"""Model argument schemas: the type and range of every argument of a registered model.

Each model card carries `schema = {argument: Arg(...)}`. `check_model_args` runs before a
model is built (by `build_model`, and by the training config before any data is read), so
`--set model_args.dropout=-5` is one line naming the argument and its range instead of a
run that silently trains without dropout, and `dropout=1.5` is not a torch traceback. A
test fails when a registered model has an argument its schema does not describe.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from geobench.errors import UsageError
from geobench.validation import Range

_KIND_TEXT = {int: "an integer", float: "a number", bool: "true or false", str: "a name",
              dict: "a mapping of name: value", tuple: "a list of positive integers"}


@dataclass(frozen=True)
class Arg:
    """kind: int | float | bool | str | dict; optional: None is allowed too."""

    kind: type
    range: Range | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False

    def problem(self, value: Any) -> str | None:
        """Why `value` does not fit, or None."""
        if value is None:
            return None if self.optional else f"must be {_KIND_TEXT[self.kind]}, not null"
        ok = {int: isinstance(value, int) and not isinstance(value, bool),
              float: isinstance(value, (int, float)) and not isinstance(value, bool),
              bool: isinstance(value, bool), str: isinstance(value, str),
              dict: isinstance(value, Mapping),
              tuple: isinstance(value, (list, tuple)) and all(
                  isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)}[self.kind]
        if not ok:
            return f"must be {_KIND_TEXT[self.kind]}, not {type(value).__name__}"
        if self.choices and value not in self.choices:
            return f"must be one of {' | '.join(self.choices)}"
        if self.range is not None and not self.range.allows(value):
            why = f" ({self.range.why})" if self.range.why else ""
            return f"must be {self.range.describe(self.kind is int)}{why}"
        return None


# Shared pieces of the zoo's schemas.
NAME = Arg(str)
FLAG = Arg(bool)
COUNT = Arg(int, Range(1))
ARGS = Arg(dict, optional=True)
DROPOUT = Arg(float, Range(0, 1, high_open=True, why="the probability of zeroing an activation"))
FREEZE = Arg(int, Range(0, why="backbone stages frozen; 0: none"))
MIXVPR = {"mixvpr_dim": COUNT, "mix_depth": COUNT, "out_rows": COUNT}


def check_model_args(model: str, schema: Mapping[str, Arg], args: Mapping[str, Any],
                     where: str = "") -> None:
    """UsageError for the first argument in `args` that breaks `schema` (names the schema
    does not list are left to the factory's own unknown-argument error)."""
    for name, value in args.items():
        spec = schema.get(name)
        if spec is None:
            continue
        problem = spec.problem(value)
        if problem:
            source = f" (from {where})" if where else ""
            raise UsageError(f"model {model!r} argument {name} = {value!r}{source} {problem}; "
                             f"see `geobench models {model}`")


# The zoo's schemas (geobench.models.zoo passes each to its card).
MCGRA = {"attention": NAME, "deformable": FLAG, "polar": FLAG, "share_weights": FLAG,
         "backbone": NAME, **MIXVPR, "freeze_stages": FREEZE, "attention_args": ARGS,
         "branches": Arg(str, choices=("both", "context", "relation")), "aggregator": NAME,
         "aggregator_args": ARGS}
MIXVPR_ARGS = {"backbone": NAME, **MIXVPR, "freeze_stages": FREEZE}
SAFA = {"backbone": NAME, "heads": COUNT, "share_weights": FLAG,
        "pooling": Arg(str, choices=("mean", "max")), "pool5": FLAG, "dropout": DROPOUT}
DROP_PATH = Arg(float, Range(0, 1, high_open=True,
                             why="the probability of dropping a residual branch"))
CONVNEXT_GAP = {"backbone": NAME, "drop_path_rate": DROP_PATH}
LRFR = {"backbone": NAME, "gsra_groups": COUNT, "clusters": COUNT, "cluster_dim": COUNT,
        "salad_hidden": COUNT, "dropout": DROPOUT, "share_weights": FLAG, "query_view": NAME,
        "gsra": FLAG, "aggregator": NAME, "aggregator_args": ARGS, "drop_path_rate": DROP_PATH}
ASAVG = {"backbone": NAME, **MIXVPR, "sfe_after_stage": COUNT, "align_normalize": FLAG,
         "n_crops": Arg(int, Range(1), optional=True), "sfe": FLAG, "asa": FLAG,
         "aggregator": NAME, "aggregator_args": ARGS}

# DINOv2 towers: dims = (width, depth, heads) of the ViT; grid = patches per side.
DIMS = Arg(tuple)
BLOCKS = Arg(int, Range(0, why="transformer blocks trained; 0: none"))
MEGALOC = {"dims": DIMS, "grid": COUNT, "clusters": COUNT, "cluster_dim": COUNT,
           "token_dim": COUNT, "hidden": COUNT, "out_dim": COUNT}
DINO_SALAD = {"dims": DIMS, "grid": COUNT, "clusters": COUNT, "cluster_dim": COUNT,
              "token_dim": COUNT, "hidden": COUNT, "trainable_blocks": BLOCKS}
GEMFC = {"backbone": NAME, "dim": COUNT, "freeze_stages": FREEZE}
BOQ_RESNET = {"backbone": NAME, "proj_channels": COUNT, "queries": COUNT, "layers": COUNT,
              "row_dim": COUNT, "freeze_stages": FREEZE}
BOQ_DINO = {"dims": DIMS, "grid": COUNT, "proj_channels": COUNT, "queries": COUNT,
            "layers": COUNT, "row_dim": COUNT, "trainable_blocks": BLOCKS}
