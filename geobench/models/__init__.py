"""Models: the registry, the zoo of registered models and their building blocks.

    from geobench.models import build_model
    model = build_model("mcgra", preset="tiny")
    q, r = model(ground_images, polar_images)      # L2-normalised (B, D) each
    model.card.input_size                          # what the data pipeline resizes to

This package imports no torch at import time; `build_model` and `describe` load the zoo.
"""
from __future__ import annotations

import inspect
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geobench.errors import UsageError
from geobench.models.registry import MODELS, ModelCard, register_model

if TYPE_CHECKING:
    from geobench.models.base import GeoModel

__all__ = ["MODELS", "GeoModel", "ModelCard", "build_model", "describe", "list_models", "register_model"]


def __getattr__(name: str) -> Any:
    if name == "GeoModel":  # lazily: importing the package must not import torch
        from geobench.models.base import GeoModel

        return GeoModel
    raise AttributeError(f"module 'geobench.models' has no attribute {name!r}")


def _load_zoo() -> None:
    import geobench.models.boq  # noqa: F401  (registers BoQ)
    import geobench.models.gemfc  # noqa: F401  (registers CosPlace, EigenPlaces)
    import geobench.models.vpr  # noqa: F401  (registers the released VPR models)
    import geobench.models.zoo  # noqa: F401  (registers the models)


def _factory_args(factory: Any) -> dict[str, Any]:
    return {
        name: (None if p.default is inspect.Parameter.empty else p.default)
        for name, p in inspect.signature(factory).parameters.items()
        if name != "input_size"
    }


def _preset(name: str, card: ModelCard, preset: str | None) -> dict[str, Any]:
    if preset is None:
        return {}
    if preset not in card.presets:
        known = ", ".join(sorted(card.presets)) or "none"
        raise UsageError(f"model {name!r} has no preset {preset!r}; its presets: {known}.")
    return card.presets[preset]


def build_model(
    name: str, preset: str | None = None, weights: str | Path | None = None, **overrides: Any
) -> GeoModel:
    """Build a registered model: card defaults < preset < overrides (factory arguments).

    `input_size={view: (H, W)}` overrides sizes per view; `weights` is a local file: the
    whole model (geobench's or a released checkpoint, see models/released.py) or a backbone
    file (torchvision/timm/official names) loaded into every backbone of the model.
    The returned model's card describes this instance (sizes, descriptor size, recipe,
    params_m counted).
    """
    _load_zoo()
    entry = MODELS.entry(name)
    card: ModelCard = entry.card
    p = _preset(name, card, preset)
    input_size = {**card.input_size, **p.get("input_size", {}), **(overrides.pop("input_size", None) or {})}
    kwargs = {**p.get("kwargs", {}), **overrides}
    allowed = _factory_args(entry.factory)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise UsageError(
            f"model {name!r} has no argument {', '.join(unknown)}; its arguments: {', '.join(sorted(allowed))} "
            f"(see `geobench models {name}`)."
        )
    from geobench.models.schema import check_model_args

    check_model_args(name, card.schema, kwargs)
    model = entry.factory(input_size=input_size, **kwargs)
    model._registry_name = name
    n = sum(t.numel() for t in model.parameters())
    model.card = replace(
        model.card, recipe={**card.recipe, **p.get("recipe", {})}, params_m=round(n / 1e6, 3)
    )
    model.preset = preset
    model.build_args = {"name": name, "preset": preset, "input_size": input_size, **kwargs}
    model.backbone_name = kwargs.get("backbone", allowed.get("backbone"))
    if weights is not None:
        from geobench.models.released import load_model_weights

        model.weights_reports = [load_model_weights(model, weights)]
    return model


def list_models() -> list[str]:
    _load_zoo()
    return MODELS.names()


def describe(name: str) -> dict[str, Any]:
    """Everything `geobench models NAME` shows: the card, presets and factory arguments."""
    _load_zoo()
    entry = MODELS.entry(name)
    info = asdict(entry.card)
    info["name"] = name
    info["arguments"] = _factory_args(entry.factory)
    return info
