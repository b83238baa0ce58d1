"""A model's starting weights and their provenance: `--weights FILE` or `--pretrained CHOICE`.

`initial_weights` loads them and returns the record that goes into RUN/config.json (and
from there into every results.h5 / metrics.csv evaluated from the run): name, URL, full
sha256 of the bytes loaded, loaded / skipped / missing / unexpected key counts.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from geobench.errors import GeobenchWarning, UsageError


class RandomInitWarning(GeobenchWarning):
    """A paper recipe is about to train from random weights."""


def default_choice(preset: str | None) -> str:
    """The paper recipe starts from ImageNet weights; presets (tiny) from scratch."""
    return "imagenet" if preset is None else "none"


def model_backbone(model: Any) -> str | None:
    return getattr(model, "backbone_name", None)


def recipe_weights(name: str, preset: str | None = None) -> tuple[str, Any]:
    """(backbone, catalog entry or None) that `--pretrained imagenet` gives model `name`."""
    from geobench.models import describe
    from geobench.models.pretrained import choose

    info = describe(name)
    backbone = info["arguments"].get("backbone")
    if preset is not None:
        backbone = info["presets"].get(preset, {}).get("kwargs", {}).get("backbone", backbone)
    if backbone is None:
        return "", None
    return backbone, choose("imagenet", backbone, name)


def _counts(report: Any) -> dict[str, int]:
    return {"loaded": report.loaded, "skipped": len(report.skipped),
            "missing": len(report.missing), "unexpected": len(report.unexpected)}


def initial_weights(model: Any, weights: str | None = None, pretrained: str | None = None,
                    preset: str | None = None, explicit: bool | None = None) -> dict[str, Any]:
    """Load the starting weights into `model`; returns their provenance record.

    `weights` (a local file: the whole model, a released checkpoint or a backbone) wins
    over `pretrained` (None = the default for `preset`). `explicit`: the user asked for
    `pretrained` (default: it was given), so `imagenet` without a catalog file is an error
    rather than the paper-recipe warning.
    """
    from geobench.fileio import sha256_file

    if weights is not None:
        from geobench.models.released import load_model_weights

        report = load_model_weights(model, weights)
        return {"source": "file", "name": Path(weights).name, "path": str(Path(weights).resolve()),
                "sha256": sha256_file(weights), "format": report.naming or "backbone",
                **_counts(report)}
    choice = pretrained or default_choice(preset)
    explicit = pretrained is not None if explicit is None else explicit
    backbone = model_backbone(model) or ""
    name = getattr(model, "model_name", "")
    record: dict[str, Any] = {"source": "pretrained", "choice": choice, "name": "none",
                              "backbone": backbone}
    from geobench.models.pretrained import choose, fetch_weights

    if not backbone:  # a model without a registered backbone: nothing in the catalog fits
        return {**record, "name": "none", "note": "the model has no registered backbone"}
    entry = choose(choice, backbone, name)
    if entry is None:
        if choice == "imagenet" and explicit:
            raise UsageError(f"--pretrained imagenet: the weights catalog has no entry for backbone "
                             f"{backbone} of {name}; pass --weights FILE or --pretrained none")
        if preset is None:
            why = ("--pretrained none" if choice == "none" else
                   f"the weights catalog has no ImageNet entry for backbone {backbone}")
            warnings.warn(f"{name}: the paper recipe starts from random weights ({why}); the "
                          f"published numbers assume pretrained weights", RandomInitWarning,
                          stacklevel=2)
        return record
    fetched = fetch_weights(entry)
    reports = [bb.load_weights(str(fetched.path)) for bb in model.backbones()]
    total = {k: sum(_counts(r)[k] for r in reports) for k in ("loaded", "skipped", "missing",
                                                               "unexpected")}
    record.update({"name": entry.name, "url": entry.url, "sha256": fetched.sha256,
                   "path": str(fetched.path), "fetched": fetched.action, "format": entry.format,
                   "license": entry.license, **total})
    return record


def describe_record(record: dict[str, Any] | None) -> str:
    """One line for tables: 'resnet50.tv_in1k (sha256 0676ba61...)' or 'none'."""
    if not record:
        return "not recorded"
    if record.get("name", "none") == "none":
        return "none (random initialisation)"
    return f"{record['name']} (sha256 {str(record.get('sha256', ''))[:12]}…)"
