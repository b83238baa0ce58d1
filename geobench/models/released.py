"""Whole-model weight files: geobench's own, the papers' released checkpoints, or a backbone.

`load_model_weights(model, path)` is what `--weights FILE` does. It recognises

* geobench's own state dict or RUN/checkpoint.pt (keys `towers.shared.backbone...`);
* released checkpoints of the field, renamed tower by tower (key layouts read from the
  official code; a one-network file fills both towers of a two-branch model):
  - `lrfr`: WenjianGan/LRFR `GeoModel` (`model.backbone.backbone.N.*` = torchvision
    ConvNeXt-T `features.N` up to stage 3; GSRA `conv1x1/theta_spatial/phi_spatial/
    gg_spatial/gn`; SALAD `model.aggregation.*`);
  - `sample4geo`: Skyy93/Sample4Geo `TimmModel` (`model.*` = timm ConvNeXt with
    `head.norm`, plus the InfoNCE `logit_scale`, which geobench keeps in the loss);
  - `mixvpr`: amaralibey/MixVPR `VPRModel` (`backbone.model.*` = torchvision ResNet-50
    without layer4/fc, `aggregator.*` = MixVPR);
  - `cosplace`: gmberton/CosPlace and gmberton/EigenPlaces `GeoLocalizationNet`
    (`backbone.N` = torchvision ResNet children as a sequence, `aggregation.1.p` GeM,
    `aggregation.3.*` linear);
  - `boq`: amaralibey/Bag-of-Queries ResNet-50 `VPRModel` (`backbone.net.N` = conv1, bn1,
    relu, maxpool, layer1..3 as a sequence; `aggregator.*` = BoQ);
* anything else is a backbone file (torchvision / timm / official names), loaded into
  every backbone of the model (geobench.models.weights).
Key-mapping failures name the first unmatched keys (see `apply_state`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from torch import Tensor, nn

from geobench.errors import DataError
from geobench.models.weights import LoadReport, _few, apply_state, read_state_dict

_GSRA = {"conv1x1": "coord", "theta_spatial": "theta", "phi_spatial": "phi",
         "gg_spatial": "relation", "gn": "norm"}
_DP_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / torch.compile wrappers


def _lrfr(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    from geobench.models.backbones.convnext import torchvision_to_timm

    out: dict[str, Tensor] = {}
    features = {}
    for key, value in state.items():
        if key.startswith("model.backbone.backbone."):
            features["features." + key[len("model.backbone.backbone."):]] = value
        elif key.startswith("model.attention."):
            head, _, rest = key[len("model.attention."):].partition(".")
            out[f"attention.{_GSRA.get(head, head)}.{rest}"] = value
        elif key.startswith("model.aggregation."):
            out["aggregator." + key[len("model.aggregation."):]] = value
        else:
            out[key] = value  # reported as unexpected
    out.update({"backbone." + k: v for k, v in torchvision_to_timm(features).items()})
    return out, ()


def _sample4geo(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    out = {("backbone." + k[len("model."):] if k.startswith("model.") else k): v
           for k, v in state.items()}
    # The learnable InfoNCE temperature: geobench's infonce loss owns it, not the model.
    return out, tuple(k for k in out if k == "logit_scale")


def _mixvpr(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    out = {("backbone." + k[len("backbone.model."):] if k.startswith("backbone.model.") else k): v
           for k, v in state.items()}
    return out, ()


@dataclass(frozen=True)
class Layout:
    name: str
    models: tuple[str, ...]        # registered models with this architecture
    marker: str                    # a key prefix only this layout has
    convert: Callable[[dict[str, Tensor]], tuple[dict[str, Tensor], tuple[str, ...]]]


def _boq_resnet(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    from geobench.models.boq import boq_resnet_state

    return boq_resnet_state(state)


def _gemfc(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    from geobench.models.gemfc import released_gemfc

    return released_gemfc(state)


LAYOUTS = (
    Layout("lrfr", ("lrfr",), "model.backbone.backbone.", _lrfr),
    Layout("boq", ("boq_resnet50",), "backbone.net.0.", _boq_resnet),
    Layout("cosplace", ("cosplace", "eigenplaces"), "aggregation.3.", _gemfc),
    Layout("sample4geo", ("convnext_gap",), "model.stem.", _sample4geo),
    Layout("mixvpr", ("mixvpr",), "backbone.model.conv1.", _mixvpr),
)


def detect_layout(keys: list[str]) -> Layout | None:
    return next((lay for lay in LAYOUTS if any(k.startswith(lay.marker) for k in keys)), None)


def _unwrapped(state: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        while key.startswith(_DP_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def _combine(path: Path, reports: list[LoadReport]) -> LoadReport:
    return LoadReport(str(path), sum(r.loaded for r in reports), reports[0].naming,
                      tuple(k for r in reports for k in r.skipped),
                      tuple(k for r in reports for k in r.missing),
                      tuple(k for r in reports for k in r.unexpected))


def _into_loss(loss: nn.Module | None, tensors: dict[str, Tensor]) -> dict[str, float]:
    import torch

    taken: dict[str, float] = {}
    for key, value in tensors.items():
        param = getattr(loss, key, None)
        if isinstance(param, nn.Parameter) and param.shape == value.shape:
            with torch.no_grad():
                param.copy_(value.to(param))
            taken[key] = float(value.float().mean())  # logit_scale is a scalar
    return taken


def released_state(model: nn.Module, state: dict[str, Tensor], path: str | Path
                   ) -> tuple[dict[str, Tensor], str, tuple[str, ...]] | None:
    """A released checkpoint's `state` renamed to `model`'s keys: (state, layout, skipped).

    None when `state` is not a known released layout.
    """
    layout = detect_layout(list(state))
    if layout is None:
        return None
    name = getattr(model, "model_name", type(model).__name__)
    towers = getattr(model, "towers", None)
    if name not in layout.models:
        raise DataError(f"{path}: a released {layout.name} checkpoint, which loads into "
                        f"{', '.join(layout.models)}, not {name}; train or evaluate that model")
    if towers is None:  # one network: the file is the whole model
        converted, skipped = layout.convert(state)
        return converted, layout.name, skipped
    tower_state, skipped = layout.convert(state)
    full: dict[str, Tensor] = {}
    for tower in towers:  # a one-network checkpoint fills every tower
        full.update({f"towers.{tower}.{k}": v for k, v in tower_state.items() if k not in skipped})
    full.update({k: tower_state[k] for k in skipped})
    return full, layout.name, skipped


def load_model_weights(model: nn.Module, path: str | Path, strict: bool = True,
                       loss: nn.Module | None = None) -> LoadReport:
    """Load a whole-model or backbone weight file into a registered model (see module doc).

    `loss`: the training loss, which takes the file's loss parameters (Sample4Geo's learned
    `logit_scale`) when it has a parameter of that name and shape; `into_loss` says which.
    """
    path = Path(path)
    state = _unwrapped(read_state_dict(path))
    own = model.state_dict()
    if sum(k in own for k in state) * 2 > len(state):  # geobench's own names
        return apply_state(model, state, path, naming="geobench", strict=strict)
    released = released_state(model, state, path)
    if released is not None:
        full, layout, skipped = released
        report = apply_state(model, full, path, naming=layout, skipped=skipped, strict=strict)
        return replace(report, into_loss=_into_loss(loss, {k: full[k] for k in skipped}))
    backbones = model.backbones() if hasattr(model, "backbones") else []
    if not backbones:
        raise DataError(f"{path}: keys look like {_few(list(state), 3)}, which is neither "
                        f"this model's own layout nor a backbone file")
    return _combine(path, [bb.load_weights(str(path), strict=strict, state=state) for bb in backbones])
