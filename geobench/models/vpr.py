"""Released visual place recognition models built on DINOv2, with the official layouts.

Each model's state-dict names are the official ones, so the publisher's file loads key for
key with `--weights` (no renaming):

- `megaloc` (gmberton/MegaLoc, MIT): DINOv2 ViT-B/14 -> SALAD over the patch map and the
  class token (64 clusters x 256 + a 256-D token) -> Linear(16,640 -> 8,448) -> L2.
  Keys `backbone.*` (DINOv2 without `mask_token`), `aggregator.agg.*`, `aggregator.linear.*`.
- `dino_salad` (serizba/salad, GPL-3.0: its code is never vendored; the architecture is
  written here from its description): the hub's DINOv2 ViT-B/14 -> SALAD (64 clusters x 128
  + a 256-D token = 8,448-D). Keys `backbone.model.*` (the hub model, `mask_token` included)
  and `aggregator.*`, as in the released `dino_salad.ckpt`.
"""
from __future__ import annotations

from dataclasses import replace

from torch import Tensor, nn

from geobench.errors import UsageError
from geobench.models import schema as schemas
from geobench.models.aggregators import SALAD
from geobench.models.backbones.dinov2 import VITB14, DinoV2
from geobench.models.base import GeoModel
from geobench.models.registry import ModelCard, register_model

Size = tuple[int, int]
PATCH = 14
# The tiny presets train on worlds with one pair per place (like mixvpr's): no places x
# images batches and no miner, the soft-margin triplet instead.
TINY_RECIPE = {"batch_size": 32, "epochs": 8, "lr": 1e-3, "amp": False,
               "schedule": {"name": "constant"}, "loss": "soft_margin_triplet",
               "loss_args": {"gamma": 10.0}, "images_per_place": 1, "miner": "none"}


class SaladHead(nn.Module):
    """SALAD over (class token, patch map), optionally projected by a linear layer
    (MegaLoc's `Aggregator`: `agg` then `linear`)."""

    def __init__(self, channels: int, clusters: int, cluster_dim: int, token_dim: int,
                 hidden: int, out_dim: int | None) -> None:
        super().__init__()
        self.agg = SALAD(channels, clusters, cluster_dim, token_dim, hidden=hidden)
        self.linear = nn.Linear(self.agg.out_dim, out_dim) if out_dim else None
        self.out_dim = out_dim or self.agg.out_dim

    def forward(self, fmap: Tensor, token: Tensor) -> Tensor:
        v = self.agg(fmap, token)
        return v if self.linear is None else self.linear(v)


class Holder(nn.Module):
    """Keeps a module under the attribute name a released checkpoint uses (`backbone.model`)."""

    def __init__(self, name: str, module: nn.Module) -> None:
        super().__init__()
        self.add_module(name, module)
        self.held = name

    def forward(self, *args, **kwargs):  # what callers of `model.backbone` expect
        return getattr(self, self.held)(*args, **kwargs)


class DinoModel(GeoModel):
    """One DINOv2 network shared by every view, and a head over its tokens.

    `backbone_key` is where the DINOv2 sits in the released layout ("" for `backbone.*`,
    "model" for `backbone.model.*`)."""

    view_agnostic = True

    def __init__(self, card: ModelCard, backbone: DinoV2, aggregator: nn.Module,
                 backbone_key: str = "") -> None:
        super().__init__(card)
        self.backbone = Holder(backbone_key, backbone) if backbone_key else backbone
        self.dino = backbone_key
        self.aggregator = aggregator

    @property
    def vit(self) -> DinoV2:
        return getattr(self.backbone, self.dino) if self.dino else self.backbone

    def encode(self, images: Tensor, branch: str) -> Tensor:
        token, fmap = self.vit.tokens(images)
        return self.aggregator(fmap, token)  # every head takes (patch map, class token)


def patch_sizes(name: str, card: ModelCard, input_size: dict[str, Size] | None) -> dict[str, Size]:
    """The views' sizes, each side a multiple of the patch size (DINOv2 cuts 14-px patches)."""
    sizes = {k: (int(v[0]), int(v[1])) for k, v in (input_size or card.input_size).items()}
    for view, (h, w) in sizes.items():
        if h % PATCH or w % PATCH or h <= 0 or w <= 0:
            near = (max(PATCH, round(h / PATCH) * PATCH), max(PATCH, round(w / PATCH) * PATCH))
            raise UsageError(f"model {name!r}: input_size {view} {h}x{w} is not a multiple of "
                             f"{PATCH} px on each side; use {near[0]}x{near[1]} (the official "
                             f"code rounds to the nearest multiple the same way)")
    return sizes


MEGALOC_CARD = ModelCard(
    paper="Berton & Masone, MegaLoc: One Retrieval to Place Them All, CVPR Workshops 2025",
    description="DINOv2 ViT-B/14 + SALAD (64x256 + 256 token) + linear to 8448-D, one network",
    input_size={"street": (322, 322)},
    descriptor_dim=8448,
    query_view="street",
    reference_view="street",
    recipe={
        "loss": "multi_similarity", "loss_args": {"alpha": 1.0, "beta": 50.0, "base": 0.0},
        "miner": {"name": "multi_similarity", "epsilon": 0.1},
        "optimizer": "adamw", "lr": 1e-5, "weight_decay": 1e-3, "batch_size": 32,
        "images_per_place": 4, "epochs": 4, "schedule": {"name": "constant"}, "amp": True,
        "provenance": "[R] gmberton/MegaLoc megaloc_model.py: architecture and released weights. "
        "[A] fine-tuning defaults (the MixVPR/SALAD family's multi-similarity loss, a small "
        "AdamW step): MegaLoc's own multi-dataset training is not reproduced by geobench",
    },
    presets={"tiny": {
        "kwargs": {"dims": (32, 2, 2), "grid": 4, "clusters": 4, "cluster_dim": 8,
                   "token_dim": 8, "hidden": 16, "out_dim": 64},
        "input_size": {"street": (56, 56)},
        "recipe": TINY_RECIPE,
        "params_m": 0.0496,
    }},
    params_m=228.64,
    schema=schemas.MEGALOC,
    notes="Licence MIT. Weights: HuggingFace gberton/MegaLoc model.safetensors. Official "
    "preprocessing (VPR-methods-evaluation): ImageNet mean/std, each image at its own size "
    "rounded to multiples of 14 px (antialiased resize); pass input_size to match, e.g. "
    "476x644 for 480x640 images. Descriptors are 8448-D, L2-normalised.",
)


@register_model(card=MEGALOC_CARD)
def megaloc(
    input_size: dict[str, Size] | None = None,
    dims: tuple[int, int, int] = VITB14,
    grid: int = 37,
    clusters: int = 64,
    cluster_dim: int = 256,
    token_dim: int = 256,
    hidden: int = 512,
    out_dim: int = 8448,
) -> DinoModel:
    sizes = patch_sizes("megaloc", MEGALOC_CARD, input_size)
    backbone = DinoV2(tuple(dims), grid=grid, mask_token=False)
    head = SaladHead(backbone.embed_dim, clusters, cluster_dim, token_dim, hidden, out_dim)
    return DinoModel(replace(MEGALOC_CARD, input_size=sizes, descriptor_dim=head.out_dim),
                     backbone, head)


DINO_SALAD_CARD = ModelCard(
    paper="Izquierdo & Civera, Optimal Transport Aggregation for Visual Place Recognition "
          "(SALAD), CVPR 2024",
    description="DINOv2 ViT-B/14 (last 4 blocks trained) + SALAD 64x128 + 256 token, 8448-D",
    input_size={"street": (322, 322)},
    descriptor_dim=8448,
    query_view="street",
    reference_view="street",
    recipe={
        "loss": "multi_similarity", "loss_args": {"alpha": 1.0, "beta": 50.0, "base": 0.0},
        "miner": {"name": "multi_similarity", "epsilon": 0.1},
        # 60 places x 4 images: batch_size counts (query, reference) pairs, two images each
        "optimizer": "adamw", "lr": 6e-5, "weight_decay": 9.5e-9, "batch_size": 120,
        "images_per_place": 4, "epochs": 4, "amp": True,
        "schedule": {"name": "linear", "stretch": 1.25},
        "provenance": "[R] serizba/salad main.py: GSV-Cities 60 places x 4 images at 224x224, "
        "AdamW lr 6e-5, weight decay 9.5e-9, LinearLR from 1 to 0.2 over 4,000 steps (about "
        "the 4 epochs; geobench: linear to 0.2 over the run, stretch 1.25), "
        "multi-similarity loss and miner; dinov2_vitb14 with its last 4 blocks trained",
    },
    presets={"tiny": {
        "kwargs": {"dims": (32, 2, 2), "grid": 4, "clusters": 4, "cluster_dim": 8,
                   "token_dim": 8, "hidden": 16, "trainable_blocks": 2},
        "input_size": {"street": (56, 56)},
        "recipe": TINY_RECIPE,
        "params_m": 0.047,
    }},
    params_m=87.991,
    schema=schemas.DINO_SALAD,
    notes="Licence GPL-3.0 (serizba/salad): geobench writes the architecture itself and fetches "
    "the weights (GitHub release v1.0.0 dino_salad.ckpt); the file loads key for key. Official "
    "evaluation: ImageNet mean/std at 322x322 (paper), images rounded to multiples of 14 px.",
)


@register_model(card=DINO_SALAD_CARD)
def dino_salad(
    input_size: dict[str, Size] | None = None,
    dims: tuple[int, int, int] = VITB14,
    grid: int = 37,
    clusters: int = 64,
    cluster_dim: int = 128,
    token_dim: int = 256,
    hidden: int = 512,
    trainable_blocks: int = 4,
) -> DinoModel:
    sizes = patch_sizes("dino_salad", DINO_SALAD_CARD, input_size)
    backbone = DinoV2(tuple(dims), grid=grid)
    if not 0 <= trainable_blocks <= len(backbone.blocks):
        raise UsageError(f"dino_salad: trainable_blocks must be in [0, {len(backbone.blocks)}], "
                         f"got {trainable_blocks}")
    backbone.freeze_stages(len(backbone.blocks) - trainable_blocks)
    head = SaladHead(backbone.embed_dim, clusters, cluster_dim, token_dim, hidden, None)
    card = replace(DINO_SALAD_CARD, input_size=sizes, descriptor_dim=head.out_dim)
    return DinoModel(card, backbone, head.agg, backbone_key="model")
