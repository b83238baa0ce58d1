"""Model cards as the training engine sees them: the registered card with a preset applied."""
from __future__ import annotations

import dataclasses
from typing import Any

from geobench.errors import UsageError


def load_zoo() -> None:
    """Import the model zoo so every model is registered (a no-op once imported)."""
    import geobench.models.zoo  # noqa: F401


def resolve_card(model: str, preset: str | None = None) -> Any:
    """The card of `model` with `preset`'s input_size / recipe overrides merged in."""
    load_zoo()
    from geobench.models.registry import MODELS

    card = MODELS.card(model)
    if preset is None:
        return card
    presets = dict(getattr(card, "presets", {}) or {})
    if preset not in presets:
        known = ", ".join(sorted(presets)) or "none"
        raise UsageError(f"model {model!r} has no preset {preset!r} (its presets: {known}); "
                         f"see `geobench models {model}`")
    over = presets[preset]
    changes: dict[str, Any] = {}
    if "input_size" in over:
        changes["input_size"] = {**card.input_size, **{k: tuple(v) for k, v in over["input_size"].items()}}
    if "recipe" in over:
        changes["recipe"] = {**card.recipe, **over["recipe"]}
    for key in ("descriptor_dim", "polar", "query_view", "reference_view", "mean", "std"):
        if key in over:
            changes[key] = over[key]
    return dataclasses.replace(card, **changes)


def build(model: str, preset: str | None, model_args: dict[str, Any],
          weights: str | None = None) -> Any:
    """Build a registered model (geobench.models.build_model) with a preset and overrides."""
    from geobench.models import build_model

    return build_model(model, preset=preset, weights=weights, **model_args)
