"""Backbones with torchvision/timm/official parameter names, by name.

    from geobench.models.backbones import build_backbone
    net = build_backbone("resnet50_layer3", pretrained_path="resnet50-0676ba61.pth")
    net.out_channels, net.stride   # 1024, 16
    feats = net(images)            # (B, 1024, H/16, W/16)

Every backbone is a `Backbone` (base.py): `forward` returns the last kept stage's map,
`forward_stages` / `run_stage` give the stages, `freeze_stages(n)` stops gradients, and
`pretrained_path` loads a local weight file (never downloads; see models/weights.py).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from geobench.models.backbones.base import Backbone, count_parameters
from geobench.models.backbones.convnext import (
    ConvNeXt,
    convnext_base,
    convnext_base_stage3,
    convnext_tiny,
    convnext_tiny_stage3,
    timm_to_torchvision,
    torchvision_to_timm,
)
from geobench.models.backbones.lsknet import LSKNet, lsknet_s, lsknet_t
from geobench.models.backbones.resnet import ResNet, resnet50, resnet50_layer3
from geobench.models.backbones.vgg import VGGFeatures, vgg16
from geobench.registry import Registry


@dataclass(frozen=True)
class BackboneCard:
    description: str
    out_channels: int
    stride: int
    naming: str  # whose parameter names a weight file must use


BACKBONES: Registry[Callable[..., Backbone]] = Registry(
    "backbone", "python -c 'import geobench.models.backbones as b; print(b.BACKBONES.names())'"
)

_CARDS: dict[str, tuple[Callable[..., Backbone], BackboneCard]] = {
    "resnet50": (resnet50, BackboneCard("ResNet-50, all four stages", 2048, 32, "torchvision")),
    "resnet50_layer3": (resnet50_layer3, BackboneCard("ResNet-50 up to layer3", 1024, 16, "torchvision")),
    "vgg16": (vgg16, BackboneCard("VGG-16 conv features", 512, 32, "torchvision")),
    "convnext_tiny": (convnext_tiny, BackboneCard("ConvNeXt-T", 768, 32, "timm (torchvision accepted)")),
    "convnext_tiny_stage3": (
        convnext_tiny_stage3, BackboneCard("ConvNeXt-T up to stage 3", 384, 16, "timm (torchvision accepted)")
    ),
    "convnext_base": (convnext_base, BackboneCard("ConvNeXt-B", 1024, 32, "timm (torchvision accepted)")),
    "convnext_base_stage3": (
        convnext_base_stage3, BackboneCard("ConvNeXt-B up to stage 3", 512, 16, "timm (torchvision accepted)")
    ),
    "lsknet_t": (lsknet_t, BackboneCard("LSKNet-T", 256, 32, "official LSKNet repository")),
    "lsknet_s": (lsknet_s, BackboneCard("LSKNet-S", 512, 32, "official LSKNet repository")),
}
for _name, (_factory, _card) in _CARDS.items():
    BACKBONES.register(_card, name=_name)(_factory)


def build_backbone(name: str, pretrained_path: str | None = None, **kwargs: Any) -> Backbone:
    """Build a registered backbone; `pretrained_path` loads a local weight file."""
    return BACKBONES.get(name)(pretrained_path=pretrained_path, **kwargs)


__all__ = [
    "BACKBONES", "Backbone", "BackboneCard", "ConvNeXt", "LSKNet", "ResNet", "VGGFeatures",
    "build_backbone", "convnext_base", "convnext_base_stage3", "convnext_tiny",
    "convnext_tiny_stage3", "count_parameters", "lsknet_s", "lsknet_t", "resnet50",
    "resnet50_layer3", "timm_to_torchvision", "torchvision_to_timm", "vgg16",
]
