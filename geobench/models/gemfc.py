"""CosPlace and EigenPlaces (gmberton/CosPlace, gmberton/EigenPlaces, MIT): a torchvision
ResNet, then L2-normalise the map over channels, GeM-pool it, a linear layer, L2-normalise.

Both release one file per backbone x descriptor size, in one layout (`GeoLocalizationNet`):
`backbone.N` is the ResNet without its pooling and fc as a sequence (conv1, bn1, relu,
maxpool, layer1..4) and `aggregation.1.p` / `aggregation.3.*` the GeM exponent and the
linear layer. `released_state` renames them to geobench's torchvision names on load.
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geobench.errors import UsageError
from geobench.models import schema as schemas
from geobench.models.backbones.resnet import ResNet
from geobench.models.base import GeoModel
from geobench.models.registry import ModelCard, register_model
from geobench.models.vpr import TINY_RECIPE

Size = tuple[int, int]
# ResNet depth -> blocks per layer (torchvision's bottleneck ResNets).
RESNETS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3),
           "resnet_micro": (1, 1, 1, 1)}
# torchvision's ResNet children as a sequence, as `list(resnet.children())[:-2]` numbers them.
RESNET_SEQUENCE = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3",
                   "7": "layer4"}


def sequence_to_resnet(key: str, prefix: str) -> str:
    """`{prefix}N.rest` of a ResNet kept as nn.Sequential -> `backbone.<torchvision name>.rest`."""
    index, _, rest = key[len(prefix):].partition(".")
    return f"backbone.{RESNET_SEQUENCE.get(index, index)}.{rest}"


class GemFc(nn.Module):
    """L2 over channels -> GeM (p of shape (1,), as released) -> linear."""

    def __init__(self, channels: int, dim: int, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.full((1,), float(p)))
        self.eps = eps
        self.fc = nn.Linear(channels, dim)
        self.out_dim = dim

    def forward(self, x: Tensor) -> Tensor:
        x = F.normalize(x, dim=1).clamp(min=self.eps).pow(self.p)
        return self.fc(x.mean(dim=(-2, -1)).pow(1.0 / self.p))


class GemFcModel(GeoModel):
    view_agnostic = True

    def __init__(self, card: ModelCard, backbone: ResNet, aggregator: GemFc) -> None:
        super().__init__(card)
        self.backbone = backbone
        self.aggregator = aggregator

    def encode(self, images: Tensor, branch: str) -> Tensor:
        return self.aggregator(self.backbone(images))


def released_gemfc(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    """A released CosPlace / EigenPlaces file in geobench's names."""
    names = {"aggregation.1.p": "aggregator.p", "aggregation.3.weight": "aggregator.fc.weight",
             "aggregation.3.bias": "aggregator.fc.bias"}
    out = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            key = sequence_to_resnet(key, "backbone.")
        out[names.get(key, key)] = value
    return out, ()


def _build(name: str, card: ModelCard, input_size: dict[str, Size] | None, backbone: str,
           dim: int, freeze_stages: int) -> GemFcModel:
    if backbone not in RESNETS:
        raise UsageError(f"{name}: backbone {backbone!r} is not available; use one of "
                         f"{', '.join(sorted(RESNETS))} (the released VGG16 and ResNet18 files "
                         f"are not supported yet)")
    if dim < 1:
        raise UsageError(f"{name}: dim must be a positive descriptor size, got {dim}")
    sizes = {k: tuple(v) for k, v in (input_size or card.input_size).items()}
    net = ResNet(RESNETS[backbone])
    net.freeze_stages(freeze_stages)
    head = GemFc(net.out_channels, dim)
    return GemFcModel(replace(card, input_size=sizes, descriptor_dim=dim), net, head)


def _card(paper: str, description: str, notes: str, provenance: str) -> ModelCard:
    return ModelCard(
        paper=paper, description=description, input_size={"street": (480, 640)},
        descriptor_dim=2048, query_view="street", reference_view="street",
        recipe={"loss": "multi_similarity", "loss_args": {"alpha": 1.0, "beta": 50.0, "base": 0.0},
                "miner": {"name": "multi_similarity", "epsilon": 0.1}, "optimizer": "adam",
                "lr": 1e-5, "batch_size": 32, "images_per_place": 4, "epochs": 4,
                "schedule": {"name": "constant"}, "amp": True, "provenance": provenance},
        presets={"tiny": {"kwargs": {"backbone": "resnet_micro", "dim": 64, "freeze_stages": 0},
                          "input_size": {"street": (48, 64)}, "recipe": TINY_RECIPE,
                          "params_m": 8.147}},
        params_m=27.704, notes=notes, schema=schemas.GEMFC)


_GRID = ("Released grid (backbone x dim): {grid}. geobench builds resnet50/101/152 (bottleneck "
         "ResNets); the VGG16 and ResNet18 files are not supported yet. Official test "
         "preprocessing: full-resolution images (480x640 in Pitts30k/Tokyo), ImageNet mean/std; "
         "licence MIT.")

COSPLACE_CARD = _card(
    "Berton et al., Rethinking Visual Geo-localization for Large-Scale Applications (CosPlace), "
    "CVPR 2022",
    "torchvision ResNet + L2 + GeM + linear, L2 (CosPlace, trained on SF-XL)",
    _GRID.format(grid="ResNet50/101/152: 32-2048, ResNet18: 32-512, VGG16: 64-512"),
    "[R] gmberton/CosPlace cosplace_network.py (architecture, released weights; layers before "
    "layer3 frozen). [A] fine-tuning defaults: CosPlace's own CosFace training over SF-XL "
    "groups is not part of geobench")

EIGENPLACES_CARD = _card(
    "Berton et al., EigenPlaces: Training Viewpoint Robust Models for Visual Place Recognition, "
    "ICCV 2023",
    "torchvision ResNet + L2 + GeM + linear, L2 (EigenPlaces, trained on SF-XL)",
    _GRID.format(grid="ResNet50/101: 128-2048, ResNet18: 256-512, VGG16: 512"),
    "[R] gmberton/EigenPlaces eigenplaces_network.py (architecture, released weights). [A] "
    "fine-tuning defaults: EigenPlaces' own training is not part of geobench")


@register_model(card=COSPLACE_CARD)
def cosplace(input_size: dict[str, Size] | None = None, backbone: str = "resnet50",
             dim: int = 2048, freeze_stages: int = 2) -> GemFcModel:
    return _build("cosplace", COSPLACE_CARD, input_size, backbone, dim, freeze_stages)


@register_model(card=EIGENPLACES_CARD)
def eigenplaces(input_size: dict[str, Size] | None = None, backbone: str = "resnet50",
                dim: int = 2048, freeze_stages: int = 2) -> GemFcModel:
    return _build("eigenplaces", EIGENPLACES_CARD, input_size, backbone, dim, freeze_stages)
