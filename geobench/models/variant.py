"""Which row of an ablation table a model is: its full arguments and a short `variant` string.

A run records the model name, the preset, every factory argument with the value it was
built with (card defaults < preset < the run's model_args) and a human-readable variant:
the model name followed by the arguments that differ from the preset's, in the factory's
order, e.g. ``mcgra attention=cbam deformable=false``. Two runs of one ablation row get the
same string, whatever seed, dataset or preset they used (the preset has its own column).
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any


def _factory(name: str) -> Any:
    from geobench.models import MODELS, _load_zoo

    _load_zoo()
    return MODELS.entry(name)


def base_args(name: str, preset: str | None) -> dict[str, Any]:
    """Every factory argument of model `name` with its default, preset values applied."""
    entry = _factory(name)
    args = {k: p.default for k, p in inspect.signature(entry.factory).parameters.items()
            if p.default is not inspect.Parameter.empty}
    spec = entry.card.presets.get(preset, {}) if preset else {}
    args.update(spec.get("kwargs", {}))
    args["input_size"] = {**entry.card.input_size, **spec.get("input_size", {})}
    return args


def full_args(name: str, preset: str | None, model_args: Mapping[str, Any] | None) -> dict[str, Any]:
    """base_args with the run's model_args applied (input_size merged per view)."""
    args = base_args(name, preset)
    given = dict(model_args or {})
    if "input_size" in given:
        given["input_size"] = {**args["input_size"], **(given["input_size"] or {})}
    return _plain({**args, **given})


def _plain(value: Any) -> Any:
    """JSON-friendly copy: tuples become lists, mappings plain dicts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return "x".join(_text(v) for v in value)
    return str(value)


def _changes(key: str, value: Any, base: Any) -> list[str]:
    if isinstance(value, Mapping):
        base = base if isinstance(base, Mapping) else {}
        out: list[str] = []
        for k, v in value.items():
            out += _changes(f"{key}.{k}", v, base.get(k))
        return out
    same = _plain(value) == _plain(base) or (
        isinstance(value, str) and isinstance(base, str) and value.lower() == base.lower())
    return [] if same else [f"{key}={_text(value)}"]


def variant(name: str, preset: str | None = None, model_args: Mapping[str, Any] | None = None) -> str:
    """``name`` plus ``key=value`` for each argument that differs from the preset's."""
    base = base_args(name, preset)
    given = dict(model_args or {})
    parts = [name]
    order = list(base) + [k for k in given if k not in base]
    for key in order:
        if key in given:
            parts += _changes(key, given[key], base.get(key))
    return " ".join(parts)


def model_record(name: str, preset: str | None, model_args: Mapping[str, Any] | None) -> dict[str, Any]:
    """What config.json, results.h5 and metrics.csv say about the model (see module doc).

    The starting weights are recorded beside it by the weights code (`init_weights`).
    """
    return {"model": name, "preset": preset, "variant": variant(name, preset, model_args),
            "model_args_full": full_args(name, preset, model_args)}
