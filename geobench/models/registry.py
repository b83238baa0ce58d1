"""The model registry and model cards.

A registered model is a factory function decorated with `register_model(card)`; the
function's name is the model's key (`geobench train mcgra`). Its card carries every
default the rest of geobench reads from the model: input size per view, polar or not,
normalisation, descriptor size, the paper's recipe and the presets (`tiny`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from geobench.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelCard:
    """Defaults and facts of a registered model.

    input_size: (H, W) per view name ("ground", "aerial", "polar", "perspective", ...).
    polar: the aerial view is fed polar-transformed.
    recipe: the paper's training recipe (loss, optimiser, lr, batch size, epochs, ...),
      read by the training engine as defaults.
    presets: named overrides of the factory's keyword arguments and of input_size /
      recipe, e.g. {"tiny": {"kwargs": {...}, "input_size": {...}, "recipe": {...}}}.
    params_m: expected parameter count in millions (checked by the tests within 2%).
    rerank: `geobench eval` re-orders each query's global-search shortlist of this many
      references with the model's pair score (pair-dependent models); 0 = off.
    schema: the type and range of each factory argument (geobench.models.schema).
    """

    paper: str
    description: str
    input_size: dict[str, tuple[int, int]]
    descriptor_dim: int
    polar: bool = False
    query_view: str = "ground"
    reference_view: str = "aerial"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    recipe: dict[str, Any] = field(default_factory=dict)
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    params_m: float | None = None
    notes: str = ""
    rerank: int = 0
    # argument -> geobench.models.schema.Arg: type and range, checked before a build
    schema: dict[str, Any] = field(default_factory=dict)


MODELS: Registry[Callable[..., Any]] = Registry("model", "geobench models")
register_model = MODELS.register
