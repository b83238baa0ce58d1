"""Bag-of-Queries (BoQ; amaralibey/Bag-of-Queries, MIT) on ResNet-50 or DINOv2.

BoQ projects the backbone's map (3x3 conv, LayerNorm over channels), then each of its
blocks runs a transformer encoder layer over the local features and lets a bag of learned
queries (self-attention, LayerNorm) read them by cross-attention (LayerNorm). The blocks'
outputs are stacked (layers x queries rows) and a linear layer mixes the rows to
`row_dim`; the descriptor is that (channels x row_dim) matrix flattened, L2-normalised.
Built from torch's own TransformerEncoderLayer and MultiheadAttention with the official
attribute names, so the released files load key for key:

- `boq_resnet50` (16,384-D): torchvision ResNet-50 to layer3 (the release's
  `backbone.net.N` sequence is renamed to torchvision's names on load), 512 channels,
  64 queries, 2 blocks, 32 rows; 384x384 at test time.
- `boq_dinov2` (12,288-D): the hub's DINOv2 ViT-B/14 (`backbone.dino.*`, patch tokens of
  the last block *without* the final norm), 384 channels, 64 queries, 2 blocks, 32 rows;
  322x322 at test time.
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geobench.errors import UsageError
from geobench.models import schema as schemas
from geobench.models.backbones.dinov2 import VITB14, DinoV2
from geobench.models.backbones.resnet import ResNet
from geobench.models.base import GeoModel
from geobench.models.registry import ModelCard, register_model
from geobench.models.vpr import TINY_RECIPE, Holder, patch_sizes

Size = tuple[int, int]


class BoQBlock(nn.Module):
    def __init__(self, dim: int, queries: int, heads: int) -> None:
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True)
        self.queries = nn.Parameter(torch.randn(1, queries, dim))
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_q = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.encoder(x)
        q = self.queries.expand(len(x), -1, -1)
        q = self.norm_q(q + self.self_attn(q, q, q)[0])
        out, attn = self.cross_attn(q, x, x)
        return x, self.norm_out(out), attn


class BoQ(nn.Module):
    """The aggregator: (B, C, H, W) map -> (B, proj_channels * row_dim) L2-normalised."""

    def __init__(self, in_channels: int, proj_channels: int, queries: int, layers: int,
                 row_dim: int) -> None:
        super().__init__()
        self.proj_c = nn.Conv2d(in_channels, proj_channels, kernel_size=3, padding=1)
        self.norm_input = nn.LayerNorm(proj_channels)
        # One head per 64 channels, as the official code sets it.
        self.boqs = nn.ModuleList(BoQBlock(proj_channels, queries, proj_channels // 64)
                                  for _ in range(layers))
        self.fc = nn.Linear(layers * queries, row_dim)
        self.out_dim = proj_channels * row_dim

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm_input(self.proj_c(x).flatten(2).transpose(1, 2))
        outs = []
        for block in self.boqs:
            x, out, _ = block(x)
            outs.append(out)
        rows = self.fc(torch.cat(outs, dim=1).transpose(1, 2))  # (B, channels, row_dim)
        return F.normalize(rows.flatten(1), dim=-1)


class BoQModel(GeoModel):
    """One backbone shared by every view, then BoQ."""

    view_agnostic = True

    def __init__(self, card: ModelCard, backbone: nn.Module, aggregator: BoQ,
                 backbone_key: str = "") -> None:
        super().__init__(card)
        self.backbone = Holder(backbone_key, backbone) if backbone_key else backbone
        self.key = backbone_key
        self.aggregator = aggregator

    def encode(self, images: Tensor, branch: str) -> Tensor:
        net = getattr(self.backbone, self.key) if self.key else self.backbone
        fmap = net.tokens(images, norm=False)[1] if isinstance(net, DinoV2) else net(images)
        return self.aggregator(fmap)


def boq_resnet_state(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    """A released BoQ ResNet file's keys in geobench's (torchvision) names: its ResNet is
    nn.Sequential(conv1, bn1, relu, maxpool, layer1, layer2, layer3)."""
    from geobench.models.gemfc import sequence_to_resnet

    return {(sequence_to_resnet(k, "backbone.net.") if k.startswith("backbone.net.") else k): v
            for k, v in state.items()}, ()


def _recipe(size: int, provenance: str) -> dict:
    return {
        "loss": "multi_similarity", "loss_args": {"alpha": 1.0, "beta": 50.0, "base": 0.0},
        "miner": {"name": "multi_similarity", "epsilon": 0.1},
        # 160 places x 4 images, as BoQ's GSV-Cities training: batch_size counts (query,
        # reference) pairs, two images each, so 320 pairs.
        "batch_size": 320, "images_per_place": 4, "amp": True, "places": "utm_cell",
        "hflip_p": 0.0, "augment": {"randaugment_ops": 3, "randaugment_magnitude": 15},
        "provenance": f"{provenance}; 160 places x 4 images per batch (train.py's default: 128), "
        f"RandAugment(num_ops=3, magnitude=15) and no flip (src/dataloaders/datamodule.py); trained "
        f"at {size}x{size} (pass input_size to train so)",
    }


BOQ_NOTES = ("Licence MIT. Official preprocessing: bicubic antialiased resize to the card's "
             "size, ImageNet mean/std. Weights: GitHub release v1.0 of amaralibey/Bag-of-Queries.")
BOQ_TINY = {"input_size": {"street": (56, 56)}, "recipe": TINY_RECIPE}

BOQ_RESNET_CARD = ModelCard(
    paper="Ali-bey et al., BoQ: A Place is Worth a Bag of Learnable Queries, CVPR 2024",
    description="ResNet-50 (to layer3) + BoQ (512 channels, 64 queries, 2 blocks, 32 rows), 16384-D",
    input_size={"street": (384, 384)},
    descriptor_dim=16384,
    query_view="street",
    reference_view="street",
    recipe=_recipe(320, "[R] amaralibey/Bag-of-Queries train.py / hubconf.py: GSV-Cities at "
                        "320x320, tested at 384x384; ResNet-50 layer3 trained, earlier frozen"),
    presets={"tiny": {**BOQ_TINY, "kwargs": {"backbone": "resnet_micro", "proj_channels": 64,
                                              "queries": 4, "row_dim": 4}, "params_m": 2.734}},
    params_m=23.844,
    schema=schemas.BOQ_RESNET,
    notes=BOQ_NOTES,
)


@register_model(card=BOQ_RESNET_CARD)
def boq_resnet50(
    input_size: dict[str, Size] | None = None,
    backbone: str = "resnet50",
    proj_channels: int = 512,
    queries: int = 64,
    layers: int = 2,
    row_dim: int = 32,
    freeze_stages: int = 2,
) -> BoQModel:
    from geobench.models.towers import feature_shape, make_backbone

    sizes = {k: tuple(v) for k, v in (input_size or BOQ_RESNET_CARD.input_size).items()}
    net = make_backbone(backbone, 3)
    if not isinstance(net, ResNet):
        raise UsageError(f"boq_resnet50: backbone {backbone!r} is not a ResNet; use resnet50 "
                         f"(or resnet_micro for tests)")
    net.freeze_stages(freeze_stages)
    channels = feature_shape(net, 64, 64)[0]
    head = BoQ(channels, proj_channels, queries, layers, row_dim)
    return BoQModel(replace(BOQ_RESNET_CARD, input_size=sizes, descriptor_dim=head.out_dim), net, head)


BOQ_DINO_CARD = ModelCard(
    paper="Ali-bey et al., BoQ: A Place is Worth a Bag of Learnable Queries, CVPR 2024",
    description="DINOv2 ViT-B/14 (last 2 blocks trained) + BoQ (384 channels, 64 queries, 2 blocks, "
                "32 rows), 12288-D",
    input_size={"street": (322, 322)},
    descriptor_dim=12288,
    query_view="street",
    reference_view="street",
    recipe=_recipe(224, "[R] amaralibey/Bag-of-Queries train.py / hubconf.py: GSV-Cities at "
                        "224x224, tested at 322x322; DINOv2's last 2 blocks trained"),
    presets={"tiny": {**BOQ_TINY, "kwargs": {"dims": (64, 2, 1), "grid": 4, "proj_channels": 64,
                                              "queries": 4, "row_dim": 4, "trainable_blocks": 2},
                      "params_m": 0.344}},
    params_m=95.207,
    schema=schemas.BOQ_DINO,
    notes=BOQ_NOTES,
)


@register_model(card=BOQ_DINO_CARD)
def boq_dinov2(
    input_size: dict[str, Size] | None = None,
    dims: tuple[int, int, int] = VITB14,
    grid: int = 37,
    proj_channels: int = 384,
    queries: int = 64,
    layers: int = 2,
    row_dim: int = 32,
    trainable_blocks: int = 2,
) -> BoQModel:
    sizes = patch_sizes("boq_dinov2", BOQ_DINO_CARD, input_size)
    net = DinoV2(tuple(dims), grid=grid)
    if not 0 <= trainable_blocks <= len(net.blocks):
        raise UsageError(f"boq_dinov2: trainable_blocks must be in [0, {len(net.blocks)}], "
                         f"got {trainable_blocks}")
    net.freeze_stages(len(net.blocks) - trainable_blocks)
    net.norm.requires_grad_(False)  # BoQ reads the last block before the final norm
    head = BoQ(net.embed_dim, proj_channels, queries, layers, row_dim)
    card = replace(BOQ_DINO_CARD, input_size=sizes, descriptor_dim=head.out_dim)
    return BoQModel(card, net, head, backbone_key="dino")
