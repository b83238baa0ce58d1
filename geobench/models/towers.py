"""Building registered models from parts: backbones by name, towers, one- and two-tower models.

A tower is backbone -> attention -> aggregator. A `TowerModel` holds one shared tower or
separate query / reference towers (SAFA-style two-branch models); `encode` picks the
tower from the branch the base class derives from the view.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from geobench.errors import UsageError
from geobench.models.backbones import ConvNeXt, LSKNet, ResNet, VGGFeatures
from geobench.models.backbones.base import Backbone
from geobench.models.backbones.convnext import BASE as CONVNEXT_B
from geobench.models.backbones.convnext import TINY as CONVNEXT_T
from geobench.models.backbones.lsknet import LSKNET_S, LSKNET_T
from geobench.models.backbones.vgg import VGG16_BLOCKS
from geobench.models.base import GeoModel, full_precision
from geobench.models.registry import ModelCard

# "*_micro" are CPU-sized stand-ins of the same architecture for the `tiny` presets.
_BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet50": lambda n, **kw: ResNet((3, 4, 6, 3), num_stages=n, **kw),
    "resnet_micro": lambda n, **kw: ResNet((1, 1, 1, 1), num_stages=n, **kw),
    "vgg16": lambda n, **kw: VGGFeatures(VGG16_BLOCKS, num_stages=n, **{"final_pool": False, **kw}),
    "vgg_micro": lambda n, **kw: VGGFeatures(((8,), (16,), (32,), (32,), (64,)), num_stages=n,
                                             **{"final_pool": False, **kw}),
    "convnext_t": lambda n, **kw: ConvNeXt(*CONVNEXT_T, num_stages=n, **kw),
    "convnext_b": lambda n, **kw: ConvNeXt(*CONVNEXT_B, num_stages=n, **kw),
    "convnext_micro": lambda n, **kw: ConvNeXt((1, 1, 1, 1), (16, 32, 48, 64), num_stages=n, **kw),
    "lsknet_t": lambda n, **kw: LSKNet(*LSKNET_T, num_stages=n, **kw),
    "lsknet_s": lambda n, **kw: LSKNet(*LSKNET_S, num_stages=n, **kw),
    "lsknet_micro": lambda n, **kw: LSKNet((8, 16, 32, 64), (1, 1, 1, 1), num_stages=n, **kw),
}


def make_backbone(name: str, num_stages: int, **kwargs) -> Backbone:
    """A backbone by name, truncated to `num_stages` stages."""
    try:
        factory = _BACKBONES[name]
    except KeyError:
        raise UsageError(f"unknown backbone {name!r}: use one of {', '.join(sorted(_BACKBONES))}.") from None
    return factory(num_stages, **kwargs)


def backbone_names() -> list[str]:
    return sorted(_BACKBONES)


def feature_shape(module: nn.Module, h: int, w: int, run: Callable | None = None) -> tuple[int, int, int]:
    """(C, h', w') of module(x) for a (1, 3, h, w) input, traced on the meta device (no compute)."""
    from torch.func import functional_call

    state = {k: torch.empty_like(v, device="meta") for k, v in module.state_dict(keep_vars=True).items()}
    x = torch.empty(1, 3, h, w, device="meta")
    with torch.no_grad():
        y = functional_call(module, state, (x,)) if run is None else run(state, x)
    return tuple(y.shape[1:])  # type: ignore[return-value]


class Tower(nn.Module):
    """backbone -> attention -> aggregator; `backbone_head` uses the backbone's own head
    (ConvNeXt's LayerNorm(GAP), timm `head.norm`) as the aggregator."""

    def __init__(
        self,
        backbone: Backbone,
        attention: nn.Module | None = None,
        aggregator: nn.Module | None = None,
        backbone_head: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.attention = attention if attention is not None else nn.Identity()
        self.aggregator = aggregator
        self.backbone_head = backbone_head

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.feature_map(x)
        if self.backbone_head:
            return self.backbone.forward_head(f)  # type: ignore[operator]
        return self.aggregator(f)


class TowerModel(GeoModel):
    """One shared tower (`towers['shared']`) or one per branch (`towers['query'|'reference']`)."""

    def __init__(self, card: ModelCard, towers: dict[str, Tower], fixed_size: bool,
                 joint_batch: bool = False) -> None:
        super().__init__(card)
        if set(towers) not in ({"shared"}, {"query", "reference"}):
            raise ValueError("towers must be {'shared'} or {'query', 'reference'}")
        self.towers = nn.ModuleDict(towers)
        self.fixed_size = fixed_size
        self.view_agnostic = "shared" in towers and not fixed_size
        # One pass over query and reference images together, so BatchNorm's batch
        # statistics cover the whole batch (MixVPR's places x images forward).
        self.joint_batch = joint_batch and "shared" in towers

    def forward(self, query_images: torch.Tensor, reference_images: torch.Tensor,
                matrix: bool = False) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        if not self.joint_batch or matrix or query_images.shape[1:] != reference_images.shape[1:]:
            return super().forward(query_images, reference_images, matrix)
        self.check_input_size(query_images, self.card.query_view)
        self.check_input_size(reference_images, self.card.reference_view)
        both = self.towers["shared"](torch.cat([query_images, reference_images]))
        both = F.normalize(full_precision(both), dim=-1)
        return both[: len(query_images)], both[len(query_images):]

    def tower(self, branch: str) -> Tower:
        return self.towers["shared"] if "shared" in self.towers else self.towers[branch]  # type: ignore[return-value]

    def encode(self, images: torch.Tensor, branch: str) -> torch.Tensor:
        return self.tower(branch)(images)


def build_towers(
    share_weights: bool, sizes: dict[str, tuple[int, int]], make: Callable[[tuple[int, int]], Tower]
) -> dict[str, Tower]:
    """One tower per branch (each built for its own input size), or one shared tower.

    A shared tower must see one size when its layers fix the size; `make` raises then.
    """
    if share_weights:
        first = sizes["query"]
        return {"shared": make(first)}
    return {"query": make(sizes["query"]), "reference": make(sizes["reference"])}


def require_same_size(name: str, sizes: dict[str, tuple[int, int]]) -> None:
    if len(set(sizes.values())) > 1:
        raise UsageError(
            f"model {name!r} with shared weights has size-fixed layers, so every view needs the same input "
            f"size; got {sizes}: set equal sizes in input_size or pass share_weights=False."
        )
