"""A model's starting weights and their provenance: `--weights FILE` or `--pretrained CHOICE`.

`plan_start` resolves and fetches them from the model's name and arguments alone, so a
wrong name, a bad hash or no network fail before a large model is built or a dataset read;
`apply_start` loads them and returns the record that goes into RUN/config.json (and from
there into every results.h5 / metrics.csv evaluated from the run): name, URL, full sha256
of the bytes loaded, loaded / skipped / missing / unexpected key counts.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geobench.errors import GeobenchWarning, UsageError


class RandomInitWarning(GeobenchWarning):
    """A paper recipe is about to train from random weights."""


class UnpinnedWeightsWarning(GeobenchWarning):
    """A catalog file with no published hash was used; its computed sha256 is shown."""


class SubstituteStartWarning(GeobenchWarning):
    """A paper recipe starts from another file than the paper's (which cannot be verified)."""


def default_choice(preset: str | None) -> str:
    """The paper recipe starts from ImageNet weights; presets (tiny) from scratch."""
    return "imagenet" if preset is None else "none"


def backbone_of(name: str, preset: str | None = None, model_args: dict[str, Any] | None = None) -> str:
    """The backbone a registered model is built with (factory default < preset < arguments)."""
    from geobench.models import describe

    info = describe(name)
    backbone = info["arguments"].get("backbone")
    if preset is not None:
        backbone = info["presets"].get(preset, {}).get("kwargs", {}).get("backbone", backbone)
    backbone = (model_args or {}).get("backbone", backbone)
    return str(backbone) if backbone else ""


def recipe_weights(name: str, preset: str | None = None) -> tuple[str, Any]:
    """(backbone, catalog entry or None) that `--pretrained imagenet` gives model `name`."""
    from geobench.models.pretrained import choose

    backbone = backbone_of(name, preset)
    return backbone, (choose("imagenet", backbone, name) if backbone else None)


@dataclass(frozen=True)
class Start:
    """Resolved starting weights, not yet loaded."""

    model: str
    weights: str | None = None      # a local file (wins over the catalog)
    choice: str = "none"
    backbone: str = ""
    entry: Any = None               # geobench.models.pretrained.WeightsEntry
    fetched: Any = None             # geobench.models.pretrained.Fetched

    @property
    def model_args(self) -> dict[str, Any]:
        """The architecture a whole-model catalog file is for (e.g. CosPlace ResNet-101 512-D)."""
        return dict(self.entry.model_args) if self.entry is not None else {}


def plan_start(model: str, preset: str | None = None, model_args: dict[str, Any] | None = None,
               weights: str | None = None, pretrained: str | None = None,
               explicit: bool | None = None, allow_unpinned: bool = False) -> Start:
    """Resolve (and fetch) what `model` starts from; warns if a paper recipe starts at random.

    `pretrained` None means the default for `preset`; `explicit` (default: it was given)
    makes `imagenet` without a catalog file an error rather than the paper-recipe warning.
    `allow_unpinned` lets an entry without a published sha256 be fetched (`--allow-unpinned`).
    """
    if weights is not None:
        if not Path(weights).is_file():
            from geobench.errors import DataError

            raise DataError(f"{weights}: weights file not found; pass the path of a local "
                            f".pth/.pt/.safetensors file to --weights")
        return Start(model, weights=str(weights))
    choice = pretrained or default_choice(preset)
    explicit = pretrained is not None if explicit is None else explicit
    backbone = backbone_of(model, preset, model_args)
    from geobench.models.pretrained import (
        CHOICES,
        check_unpinned,
        choose,
        fetch_weights,
        paper_entry,
    )

    if not backbone and choice in CHOICES:  # no registered backbone: only a named entry fits
        return Start(model, choice=choice)

    entry = choose(choice, backbone, model)
    if entry is None:
        if choice == "imagenet" and explicit:
            raise UsageError(f"--pretrained imagenet: the weights catalog has no entry for backbone "
                             f"{backbone} of {model}; pass --weights FILE or --pretrained none")
        if preset is None:
            why = ("--pretrained none" if choice == "none" else
                   f"the weights catalog has no ImageNet entry for backbone {backbone}")
            warnings.warn(f"{model}: the paper recipe starts from random weights ({why}); the "
                          f"published numbers assume pretrained weights", RandomInitWarning,
                          stacklevel=2)
        return Start(model, choice=choice, backbone=backbone)
    if choice == "imagenet" and preset is None:
        paper = paper_entry(model, backbone)
        if paper is not None and paper.name != entry.name:
            warnings.warn(f"{model}: the paper recipe starts from {paper.name}, which has no "
                          f"published sha256; starting from {entry.name} instead. Pass --pretrained "
                          f"{paper.name} --allow-unpinned for the paper's start",
                          SubstituteStartWarning, stacklevel=2)
    check_unpinned(entry, allow_unpinned)
    fetched = fetch_weights(entry, allow_unpinned=allow_unpinned)
    if not fetched.pinned:
        warnings.warn(f"{entry.name}: unpinned file ({fetched.path}), sha256 {fetched.sha256} "
                      f"computed here and recorded with the results; to pin it, add `sha256: "
                      f"{fetched.sha256}` to a copy of the catalog (GEOBENCH_WEIGHTS_CATALOG)",
                      UnpinnedWeightsWarning, stacklevel=2)
    return Start(model, choice=choice, backbone=backbone, entry=entry, fetched=fetched)


def _counts(reports: list[Any]) -> dict[str, int]:
    return {"loaded": sum(r.loaded for r in reports),
            "skipped": sum(len(r.skipped) for r in reports),
            "missing": sum(len(r.missing) for r in reports),
            "unexpected": sum(len(r.unexpected) for r in reports)}


def apply_start(model: Any, start: Start, loss: Any = None) -> dict[str, Any]:
    """Load `start` into the built `model` (and the training `loss`: a released checkpoint's
    learned temperature); returns the provenance record."""
    from geobench.fileio import sha256_file

    if start.weights is not None:
        from geobench.models.released import load_model_weights

        report = load_model_weights(model, start.weights, loss=loss)
        path = Path(start.weights)
        record = {"source": "file", "name": path.name, "path": str(path.resolve()),
                  "sha256": sha256_file(path), "format": report.naming or "backbone",
                  **_counts([report])}
        if report.into_loss:
            record["loss"] = dict(report.into_loss)
        elif report.skipped:
            record["not_loaded"] = (f"{', '.join(report.skipped)}: the loss has no such parameter "
                                    f"(the file's learned temperature needs loss infonce)")
        return record
    record: dict[str, Any] = {"source": "pretrained", "choice": start.choice, "name": "none",
                              "backbone": start.backbone}
    if start.entry is None:
        if not start.backbone:
            record["note"] = "the model has no registered backbone"
        return record
    path = start.fetched.path
    if start.entry.loads == "model":  # a released whole model, in its publisher's layout
        from geobench.models.released import load_model_weights

        reports = [load_model_weights(model, path)]
    else:
        from geobench.models.weights import read_state_dict

        state = read_state_dict(path)  # read once for every tower
        reports = [bb.load_weights(str(path), state=state) for bb in model.backbones()]
    if not start.fetched.pinned:
        record["pinned"] = False  # the sha256 below was computed here, not published
    record.update({"name": start.entry.name, "url": start.entry.url,
                   "sha256": start.fetched.sha256, "path": str(path),
                   "fetched": start.fetched.action, "format": start.entry.format,
                   "license": start.entry.license, **_counts(reports)})
    return record


def initial_weights(model: Any, weights: str | None = None, pretrained: str | None = None,
                    preset: str | None = None, explicit: bool | None = None) -> dict[str, Any]:
    """plan_start + apply_start for an already built registered model."""
    name = getattr(model, "model_name", type(model).__name__)
    args = {"backbone": model.backbone_name} if getattr(model, "backbone_name", None) else {}
    start = plan_start(name, preset, args, weights, pretrained, explicit)
    return apply_start(model, start)
