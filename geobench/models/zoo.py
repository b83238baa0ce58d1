"""The registered models: the three seed papers (mcgra, asavg, lrfr) and the baselines.

Each factory's name is its registry key; its card holds the paper's input sizes, recipe
(read by the training engine as defaults; loss names are keys of geobench.losses) and a
`tiny` preset that trains in minutes on CPU. Provenance tags follow
reference/models.md: [R] official code, [B] paper/abstract, [M] unverified memory,
[A] our assumption where the paper is silent (always a factory argument).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from geobench.errors import UsageError
from geobench.models import schema as schemas
from geobench.models.aggregators import SAFA, MixVPR
from geobench.models.asavg import ASAVGModel
from geobench.models.attention import GSRA, make_attention
from geobench.models.heads import SIZE_FIXED, aggregator_name, make_aggregator
from geobench.models.registry import ModelCard, register_model
from geobench.models.towers import (
    Tower,
    TowerModel,
    build_towers,
    feature_shape,
    make_backbone,
    require_same_size,
)

Size = tuple[int, int]

# Measured on the synthetic world (benchmarks/CALIBRATION.md): at 32x128 inputs and batch 8 /
# lr 1e-4 the tiny models barely moved in minutes; 64x256 panoramas with batch 32 / lr 1e-3 learn.
TINY_RECIPE = {"batch_size": 32, "epochs": 8, "lr": 1e-3, "amp": False, "schedule": {"name": "constant"},
               # the data pipeline the tiny recipes were calibrated with: joint flip only, no
               # photometric augmentation, GPS groups of batch / 4 (the paper cards set theirs)
               "hflip_p": 0.5, "rotate_p": 0.0, "augment": {}, "gps_neighbours": 0,
               "similarity_range": 0}
# Sample4Geo's transforms.py (albumentations): JPEG q 90-100 p 0.5, ColorJitter 0.15 p 0.5,
# AdvancedBlur | Sharpen p 0.3, GridDropout (ground 0.5, satellite 0.4) | CoarseDropout p 0.3.
SAMPLE4GEO_AUGMENT = {"jpeg_p": 0.5, "color_jitter_p": 0.5, "color_jitter": 0.15, "blur_sharpen_p": 0.3,
                      "dropout_p": 0.3, "grid_ratio_query": 0.5, "grid_ratio_reference": 0.4}
# Tiny sizes keep each paper card's geometry (tests/test_learns.py compares the ratios): the
# panorama's aspect and every width ratio between the two views; only the scale shrinks.
TINY_PANO = (56, 308)      # half of CVUSA's 112x616 (SAFA, MC_GRA): ground and polar aerial
TINY_AERIAL = (154, 154)   # Sample4Geo: the panorama is twice the aerial's width (768 / 384)
MCGRA_TINY_PANO = (32, 176)
TINY_ABOUT = ("a recipe of its own, not the paper's scaled: the paper's loss, Adam-family optimiser "
              "at lr 1e-3 without schedule, batch 32, from scratch; shown to learn in "
              "benchmarks/CALIBRATION.md")


def _sizes(card: ModelCard, input_size: dict[str, Size] | None, reference_view: str | None = None) -> dict[str, Size]:
    sizes = {k: tuple(v) for k, v in (input_size or card.input_size).items()}
    ref = reference_view or card.reference_view
    for view in (card.query_view, ref):
        if view not in sizes:
            raise UsageError(f"input_size needs an entry for view {view!r} (got {sorted(sizes)}).")
    return {"query": sizes[card.query_view], "reference": sizes[ref], **sizes}  # type: ignore[dict-item]


def _card(card: ModelCard, sizes: dict[str, Size], descriptor_dim: int, **changes: Any) -> ModelCard:
    views = {k: v for k, v in sizes.items() if k not in ("query", "reference")}
    return replace(card, input_size=views, descriptor_dim=descriptor_dim, **changes)


# --- mcgra -----------------------------------------------------------------------------
MCGRA_CARD = ModelCard(
    paper="Hou et al., Feature Relation Guided Cross-View Image Based Geo-Localization, Remote Sens. 2023",
    description="ResNet-50 (to layer3) + MC_GRA attention + MixVPR, polar aerial, two branches",
    input_size={"ground": (112, 616), "polar": (112, 616)},
    descriptor_dim=4096,
    polar=True,
    query_view="ground",
    reference_view="polar",
    recipe={
        "loss": "soft_margin_triplet", "loss_args": {"gamma": 10.0, "distance": "euclidean"},
        "optimizer": "adam", "lr": 1e-5, "weight_decay": 1e-4,
        "schedule": {"name": "multistep", "milestones": [30, 50], "gamma": 0.1},
        "batch_size": 8, "epochs": 60, "amp": False,
        "provenance": "[B] Adam 1e-5 / 1e-6 after 30 / 1e-7 after 50 epochs, wd 1e-4, batch 8, γ=10 on "
        "Euclidean distances (paper §3.4; no official code found; SAFA's squared distance is "
        "loss_args distance=squared), all 2B(B-1) triplets; total epochs not given [A: 60]",
    },
    presets={"tiny": {
        "kwargs": {"backbone": "resnet_micro", "mixvpr_dim": 64, "mix_depth": 1, "out_rows": 2},
        # A third of the paper's 112x616 (same aspect): its deformable step is the zoo's slowest.
        "input_size": {"ground": MCGRA_TINY_PANO, "polar": MCGRA_TINY_PANO},
        "recipe": TINY_RECIPE, "params_m": 4.924, "about": TINY_ABOUT,
    }},
    params_m=21.778,
    schema=schemas.MCGRA,
    notes="Paper-silent choices [A] (arguments): separate branch weights (share_weights), MixVPR "
    "1024→1024 depth 4 rows 4 (4096-D), MC_GRA reduction 8 / context channels 1 / DCNv2 / sum pooling "
    "(paper eq. 5) / learnable position encoding, no backbone freezing. Ablations (paper Tables 4-5): "
    "attention='maxpool' (the baseline, read as a size-preserving 3x3 stride-1 max pooling), 'cbam' or 'none', "
    "deformable=False, branches='context'|'relation'; aggregator='salad'|'gem'|'safa'. polar=False gives the "
    "paper's VIGOR setting (aerial 256x256).",
)


@register_model(card=MCGRA_CARD)
def mcgra(
    input_size: dict[str, Size] | None = None,
    attention: str = "mcgra",
    deformable: bool = True,
    polar: bool = True,
    share_weights: bool = False,
    backbone: str = "resnet50",
    mixvpr_dim: int = 1024,
    mix_depth: int = 4,
    out_rows: int = 4,
    freeze_stages: int = 0,
    attention_args: dict[str, Any] | None = None,
    branches: str = "both",
    aggregator: str = "mixvpr",
    aggregator_args: dict[str, Any] | None = None,
) -> TowerModel:
    """MC_GRA model. Ablations (paper Tables 4-5 and beyond): attention='maxpool' (the paper's
    baseline) | 'cbam' | 'none', deformable=False, branches='context' | 'relation', polar=False,
    aggregator='salad' | 'gem' | 'safa' (mixvpr_dim, mix_depth, out_rows configure MixVPR)."""
    ref_view = "polar" if polar else "aerial"
    if not polar:  # the paper's VIGOR setting: plain aerial images, 256x256 [B]
        input_size = {k: v for k, v in (input_size or MCGRA_CARD.input_size).items() if k != "polar"}
        input_size.setdefault("aerial", (256, 256))
    sizes = _sizes(MCGRA_CARD, input_size, ref_view)
    args = dict(attention_args or {})
    if attention == "mcgra":
        args.setdefault("deformable", deformable)
        args.setdefault("branches", branches)
    else:
        _refuse_mcgra_only(attention, deformable=(deformable, True), branches=(branches, "both"))
    agg = aggregator_name(aggregator)
    mix = {"out_channels": mixvpr_dim, "mix_depth": mix_depth, "out_rows": out_rows}

    def make(size: Size) -> Tower:
        bb = make_backbone(backbone, 3)
        bb.freeze_stages(freeze_stages)
        c, h, w = feature_shape(bb, *size)
        att = make_attention(attention, c, h, w, **args)
        return Tower(bb, att, make_aggregator(agg, c, h, w, mix, aggregator_args))

    if share_weights:
        require_same_size("mcgra", {k: sizes[k] for k in ("query", "reference")})
    towers = build_towers(share_weights, sizes, make)
    dim = next(iter(towers.values())).aggregator.out_dim
    card = _card(MCGRA_CARD, sizes, dim, polar=polar, reference_view=ref_view)
    return TowerModel(card, towers, fixed_size=True)


def _refuse_mcgra_only(attention: str, **given: tuple[Any, Any]) -> None:
    """deformable / branches configure MC_GRA: refuse them beside another attention."""
    changed = [k for k, (value, default) in given.items() if value != default]
    if changed:
        raise UsageError(f"mcgra argument(s) {', '.join(changed)} configure attention='mcgra', not "
                         f"attention={attention!r}: drop them or use attention='mcgra'.")


# --- mixvpr ----------------------------------------------------------------------------
MIXVPR_CARD = ModelCard(
    paper="Ali-bey et al., MixVPR: Feature Mixing for Visual Place Recognition, WACV 2023",
    description="ResNet-50 (to layer3) + MixVPR, one shared network (VPR baseline)",
    input_size={"street": (320, 320)},
    descriptor_dim=4096,
    query_view="street",
    reference_view="street",
    recipe={
        "loss": "multi_similarity", "loss_args": {"alpha": 1.0, "beta": 50.0, "base": 0.0},
        "miner": {"name": "multi_similarity", "epsilon": 0.1},
        "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3,
        "schedule": {"name": "multistep", "milestones": [5, 10, 15, 25, 45], "gamma": 0.3},
        "warmup_steps": 650, "warmup_from": "step", "batch_size": 240, "images_per_place": 4,
        "epochs": 80, "amp": True,
        "places": "utm_cell", "hflip_p": 0.0, "augment": {"randaugment_ops": 3, "randaugment_magnitude": 9},
        "provenance": "[R] amaralibey/MixVPR: GSV-Cities 120 places x 4 images (batch_size counts "
        "pairs: 240 pairs = 480 images), places shuffled within their city, 320x320, "
        "RandAugment(num_ops=3) and no flip; on datasets "
        "without GSV-Cities place ids a place is a CosPlace-style 10 m UTM cell, places of a batch "
        "more than 25 m apart",
    },
    presets={"tiny": {
        "kwargs": {"backbone": "resnet_micro", "mixvpr_dim": 64, "mix_depth": 1, "out_rows": 2, "freeze_stages": 0},
        "input_size": {"street": (64, 64)},
        # One pair per place in the synthetic world: no places x images batches, no miner. The
        # paper's SGD (lr 0.05, 650 warm-up steps) does not scale to a 1e-3 budget of ~200
        # steps (its lr would still be ~6e-5 after 40 steps): Adam like the other tiny recipes.
        "recipe": {**TINY_RECIPE, "loss": "soft_margin_triplet", "loss_args": {"gamma": 10.0},
                   "images_per_place": 1, "miner": "none", "optimizer": "adam", "warmup_steps": 0,
                   "weight_decay": 0.0},
        "params_m": 2.043, "about": TINY_ABOUT,
    }},
    params_m=10.881,
    schema=schemas.MIXVPR_ARGS,
    notes="conv1/bn1/layer1/layer2 frozen as in MixVPR (freeze_stages=2). For cross-view use pass "
    "input_size with the two views' (equal) size. The tiny preset trains with the soft-margin triplet. "
    "As main.py: one forward over all places x images (joint BatchNorm statistics); warm-up "
    "(step + 1) / 650 x lr by global step (warmup_from: step), MultiStepLR by epoch, and a milestone "
    "reached during the warm-up is lost; one step and whole schedules equal the official code "
    "(tests/test_train_golden.py).",
)


@register_model(card=MIXVPR_CARD)
def mixvpr(
    input_size: dict[str, Size] | None = None,
    backbone: str = "resnet50",
    mixvpr_dim: int = 1024,
    mix_depth: int = 4,
    out_rows: int = 4,
    freeze_stages: int = 2,
) -> TowerModel:
    sizes = _sizes(MIXVPR_CARD, input_size)
    require_same_size("mixvpr", {k: v for k, v in sizes.items() if k not in ("query", "reference")})

    def make(size: Size) -> Tower:
        bb = make_backbone(backbone, 3)
        bb.freeze_stages(freeze_stages)
        c, h, w = feature_shape(bb, *size)
        return Tower(bb, None, MixVPR(c, h, w, mixvpr_dim, mix_depth, 1.0, out_rows))

    card = _card(MIXVPR_CARD, sizes, mixvpr_dim * out_rows)
    return TowerModel(card, build_towers(True, sizes, make), fixed_size=True, joint_batch=True)


# --- safa ------------------------------------------------------------------------------
SAFA_CARD = ModelCard(
    paper="Shi et al., Spatial-Aware Feature Aggregation for Cross-View Image Based Geo-Localization, NeurIPS 2019",
    description="VGG-16 + spatial-aware aggregation (8 heads), polar aerial, two branches",
    input_size={"ground": (112, 616), "polar": (112, 616)},
    descriptor_dim=4096,
    polar=True,
    query_view="ground",
    reference_view="polar",
    recipe={
        "loss": "soft_margin_triplet", "loss_args": {"gamma": 10.0, "count_diagonal": True},
        "optimizer": "adam_tf", "lr": 1e-5, "batch_size": 32, "epochs": 100,
        "schedule": {"name": "constant"}, "amp": False,
        "provenance": "[R] official train_cvusa.py: weighted soft-margin triplet γ=10 on squared "
        "distances (all B² terms over B(B-1)), TensorFlow Adam(1e-5, 0.9, 0.999, ε̂ 1e-8), "
        "batch 32, 100 epochs, dropout keep 0.8",
    },
    presets={"tiny": {
        "kwargs": {"backbone": "vgg_micro", "heads": 4, "pool5": False},
        "input_size": {"ground": TINY_PANO, "polar": TINY_PANO},
        "recipe": TINY_RECIPE, "params_m": 0.12, "about": TINY_ABOUT,
    }},
    params_m=29.534,
    schema=schemas.SAFA,
    notes="As the official TensorFlow code: VGG-16 with 2x2 'SAME' max pools (odd sizes round up) "
    "and one more after conv5_3, so 4x20 maps (N = 80) at 112x616; dropout 0.2 (keep 0.8) after "
    "conv4_1-conv5_3; channel mean pooling; 29,533,696 params (2 x (14,714,688 + 52,160)). "
    "pooling='max', pool5=False, dropout=0 give geobench's earlier variant (channel max, 7x39 maps). "
    "The tiny preset (64x256 inputs, half the paper's height) drops pool5 so its map keeps the "
    "official 4 rows (4x16). Training as train_cvusa.py, checked step by step against it: its "
    "loss also sums the B positives' own log 2 terms over B(B-1) (count_diagonal: the logged loss is "
    "log 2/(B-1) higher, 0.022 at batch 32, gradients unchanged; false gives the paper's mean), and "
    "its optimiser is TensorFlow's Adam, whose ε sits before the bias correction (optimizer adam_tf; "
    "adam is torch's placement). The spatial-aware heads declare L1/L2 regularisers that the official "
    "loss never adds, so there is no weight decay.",
)


@register_model(card=SAFA_CARD)
def safa(
    input_size: dict[str, Size] | None = None,
    backbone: str = "vgg16",
    heads: int = 8,
    share_weights: bool = False,
    pooling: str = "mean",
    pool5: bool = True,
    dropout: float = 0.2,
) -> TowerModel:
    """pooling='mean' | 'max' over channels; pool5 keeps VGG's last max pool; dropout on conv4-5."""
    sizes = _sizes(SAFA_CARD, input_size)

    def make(size: Size) -> Tower:
        bb = make_backbone(backbone, 5, final_pool=pool5, same_pool=True, dropout=dropout)
        c, h, w = feature_shape(bb, *size)
        return Tower(bb, None, SAFA(c, h, w, heads, pooling))

    if share_weights:
        require_same_size("safa", {k: sizes[k] for k in ("query", "reference")})
    towers = build_towers(share_weights, sizes, make)
    card = _card(SAFA_CARD, sizes, next(iter(towers.values())).aggregator.out_dim)
    return TowerModel(card, towers, fixed_size=True)


# --- convnext_gap (Sample4Geo) ---------------------------------------------------------------
CONVNEXT_GAP_CARD = ModelCard(
    paper="Deuser et al., Sample4Geo: Hard Negative Sampling For Cross-View Geo-Localisation, ICCV 2023",
    description="one shared ConvNeXt-B, global average pooling + LayerNorm (timm head.norm), InfoNCE",
    input_size={"ground": (140, 768), "aerial": (384, 384)},
    descriptor_dim=1024,
    query_view="ground",
    reference_view="aerial",
    recipe={
        "loss": "infonce", "loss_args": {"temperature": 0.07, "label_smoothing": 0.1},
        "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01,
        "schedule": {"name": "cosine"}, "warmup_epochs": 1, "batch_size": 128, "epochs": 40,
        "amp": True, "grad_clip": 100.0, "sampling": "gps+similarity",
        "gps_neighbours": 64, "similarity_range": 128,
        "hflip_p": 0.5, "rotate_p": 0.75, "augment": SAMPLE4GEO_AUGMENT,
        "provenance": "[R] Skyy93/Sample4Geo CVUSA/CVACT config (VIGOR ground 384x768, U-1652 384x384 "
        "and 1 epoch, warm-up 0.1): neighbour_select 64 / neighbour_range 128 (gps_neighbours / "
        "similarity_range: the 32 nearest or most similar and 32 of the next 96 at random join each "
        "anchor's batch), prob_flip 0.5 (ground and aerial together), prob_rotate 0.75 (aerial quarter "
        "turn, panorama rolled with it), transforms.py's photometric pipeline (augment); places: the "
        "dataset's item ids (one pair per id in a batch)",
    },
    presets={"tiny": {
        "kwargs": {"backbone": "convnext_micro"},
        "input_size": {"ground": TINY_PANO, "aerial": TINY_AERIAL},
        "recipe": TINY_RECIPE, "params_m": 0.092,
    }},
    params_m=87.566,
    schema=schemas.CONVNEXT_GAP,
    notes="Any input size works (no size-fixed layer). Learnable InfoNCE temperature lives in the loss. "
    "Schedule as transformers' get_cosine_schedule_with_warmup (the first warm-up step at lr 0); one "
    "step and whole schedules equal the official code (tests/test_train_golden.py).",
)


@register_model(card=CONVNEXT_GAP_CARD)
def convnext_gap(input_size: dict[str, Size] | None = None, backbone: str = "convnext_b", drop_path_rate: float = 0.0) -> TowerModel:
    sizes = _sizes(CONVNEXT_GAP_CARD, input_size)
    bb = make_backbone(backbone, 4, head_norm=True, drop_path_rate=drop_path_rate)
    card = _card(CONVNEXT_GAP_CARD, sizes, bb.out_channels)
    return TowerModel(card, {"shared": Tower(bb, backbone_head=True)}, fixed_size=False)


# --- lrfr ----------------------------------------------------------------------------------
LRFR_CARD = ModelCard(
    paper="Gan et al., Learning Robust Feature Representation for Cross-View Image Geo-Localization, IEEE GRSL 2025",
    description="ConvNeXt-T (to stage 3) + GSRA + SALAD (no global token), shared weights",
    input_size={"drone": (384, 384), "aerial": (384, 384)},
    descriptor_dim=8192,
    query_view="drone",
    reference_view="aerial",
    recipe={
        "loss": "semi_soft_tri_hard", "loss_args": {"alpha": 10.0},
        "optimizer": "adamw", "lr": 1e-4, "weight_decay": 0.01,
        "schedule": {"name": "linear", "stretch": 1.05}, "warmup_epochs": 0,
        "batch_size": 32, "epochs": 40, "amp": True, "grad_clip": 100.0, "seed": 1,
        "hflip_p": 0.5, "rotate_p": 0.75, "augment": {**SAMPLE4GEO_AUGMENT, "grid_ratio_query": 0.4},
        "provenance": "[R] WenjianGan/LRFR train_university.py (University-1652): prob_flip 0.5 (drone "
        "and satellite together), the satellite turned by RandomRotate90 (k uniform in 0-3: rotate_p "
        "0.75, the drone view alone), datasets/university.py's photometric pipeline (GridDropout 0.4 "
        "on both views); places: the building ids (one pair per building in a batch)",
    },
    presets={"tiny": {
        "kwargs": {"backbone": "convnext_micro", "gsra_groups": 4, "clusters": 8, "cluster_dim": 8, "salad_hidden": 64},
        "input_size": {"drone": (64, 64), "aerial": (64, 64)},
        # From scratch the semi-hard loss collapses: the random network's SALAD descriptors are
        # nearly one vector per view (cos 0.98) and its single selected negative drives the two
        # views antipodal (d+ = d- = 4, loss log 2 for 180 steps, plain or polar aerial alike);
        # with all 2B(B-1) triplets the loss leaves log 2 (0.77 -> 0.40 in 180 steps), though
        # test R@1 stays low in that budget (benchmarks/CALIBRATION.md).
        "recipe": {**TINY_RECIPE, "loss": "soft_margin_triplet", "loss_args": {"gamma": 10.0}},
        "params_m": 0.052,
        "about": TINY_ABOUT.replace("the paper's loss", "the soft-margin triplet over all pairs "
                                    "(not the paper's semi-hard one)"),
    }},
    params_m=13.174,
    schema=schemas.LRFR,
    notes="GSRA fixes the input size; with shared weights [A, as the Sample4Geo-derived code] both views "
    "must have one size (share_weights=False for CVUSA-style ground/aerial sizes). SALAD dropout 0.3. "
    "Stochastic depth 0.1 as torchvision's convnext_tiny, which the official code builds (per sample, "
    "rising linearly over the 18 blocks of the full network; drop_path_rate=0 turns it off). "
    "Linear decay to 0 at int(1.05 x steps), as the official get_linear_schedule_with_warmup; one step "
    "(dropout and stochastic depth off) and whole schedules equal the official code "
    "(tests/test_train_golden.py).",
)


@register_model(card=LRFR_CARD)
def lrfr(
    input_size: dict[str, Size] | None = None,
    backbone: str = "convnext_t",
    gsra_groups: int = 32,
    clusters: int = 128,
    cluster_dim: int = 64,
    salad_hidden: int = 512,
    dropout: float = 0.3,
    share_weights: bool = True,
    query_view: str = "drone",
    gsra: bool = True,
    aggregator: str = "salad",
    aggregator_args: dict[str, Any] | None = None,
    drop_path_rate: float = 0.1,
) -> TowerModel:
    """query_view='ground' (with share_weights=False and a ground size) runs it on CVUSA-style data.

    Ablations: gsra=False (no attention), aggregator='gem' | 'mixvpr' | 'safa' (clusters,
    cluster_dim, salad_hidden and dropout configure SALAD; aggregator_args the others).
    drop_path_rate: stochastic depth of the ConvNeXt blocks, rising linearly over all 18
    (torchvision's convnext_tiny default 0.1, which LRFR's code builds)."""
    base = replace(LRFR_CARD, query_view=query_view)
    sizes = _sizes(base, input_size)
    agg = aggregator_name(aggregator)
    salad = {"clusters": clusters, "cluster_dim": cluster_dim, "hidden": salad_hidden, "dropout": dropout}

    def make(size: Size) -> Tower:
        bb = make_backbone(backbone, 3, drop_path_rate=drop_path_rate)
        c, h, w = feature_shape(bb, *size)
        head = make_aggregator(agg, c, h, w, salad if agg == "salad" else None, aggregator_args)
        return Tower(bb, GSRA(c, h, w, gsra_groups) if gsra else None, head)

    # GSRA and the MixVPR / SAFA heads fix the map size; SALAD and GeM take any.
    fixed = gsra or agg in SIZE_FIXED
    if share_weights and fixed:
        require_same_size("lrfr", {k: sizes[k] for k in (query_view, base.reference_view)})
    towers = build_towers(share_weights, sizes, make)
    card = _card(base, sizes, next(iter(towers.values())).aggregator.out_dim)
    return TowerModel(card, towers, fixed_size=fixed)


# --- asavg ---------------------------------------------------------------------------------
ASAVG_CARD = ModelCard(
    paper="Visual Geo-Localization Based on Spatial Structure Feature Enhancement and Adaptive Scene "
    "Alignment, Electronics 2025",
    description="LSKNet (to stage 3) + SFE after stage 2 + ASA alignment + MixVPR; perspective query vs "
    "panorama reference, pair-dependent scoring",
    input_size={"perspective": (224, 224), "ground": (224, 1344)},
    descriptor_dim=4096,
    query_view="perspective",
    reference_view="ground",
    recipe={
        "loss": "soft_margin_triplet", "loss_args": {"gamma": 10.0, "distance": "euclidean"},
        "optimizer": "adam", "lr": 1e-5, "weight_decay": 1e-4,
        "schedule": {"name": "multistep", "milestones": [30, 50], "gamma": 0.1},
        "batch_size": 8, "epochs": 60, "amp": False, "pairwise_training": True,
        "provenance": "[B] weighted soft-margin triplet on Euclidean distances (§3.5; no official code "
        "found) between each query and every panorama cropped at its best-aligned window for that query "
        "(pairwise_training); optimiser/schedule/batch not given [A: MC_GRA's, same institute]",
    },
    presets={"tiny": {
        "kwargs": {"backbone": "lsknet_micro", "mixvpr_dim": 32, "mix_depth": 1, "out_rows": 2},
        # The paper's 6x panorama width (224 / 224x1344): a 60° query spans the 32 px window
        # ASA aligns; at 32x128 a query covered 21 px of it and never matched its crop's scale.
        "input_size": {"perspective": (32, 32), "ground": (32, 192)},
        "recipe": TINY_RECIPE, "params_m": 0.035, "about": TINY_ABOUT,
    }},
    params_m=6.840,
    schema=schemas.ASAVG,
    rerank=50,
    notes="[A] (arguments): LSKNet-S shared by both views, stage-3 maps into ASA (paper: stage 3), Sobel "
    "kernels, per-location L2-normalised correlation, MixVPR 1024 x 4 rows, panorama 6x the query width "
    "(60° FOV). embed(panorama) is a shortlist descriptor: `geobench eval` re-ranks a global-search "
    "shortlist of K=50 [A: the paper does not describe inference] with the aligned pair score "
    "(--rerank K, --rerank 0 for the shortlist descriptor alone).",
)


@register_model(card=ASAVG_CARD)
def asavg(
    input_size: dict[str, Size] | None = None,
    backbone: str = "lsknet_s",
    mixvpr_dim: int = 1024,
    mix_depth: int = 4,
    out_rows: int = 4,
    sfe_after_stage: int = 2,
    align_normalize: bool = True,
    n_crops: int | None = None,
    sfe: bool = True,
    asa: bool = True,
    aggregator: str = "mixvpr",
    aggregator_args: dict[str, Any] | None = None,
) -> ASAVGModel:
    """ASA-VG. Ablations: sfe=False or sfe_after_stage=1|2|3, asa=False (no alignment: the whole
    panorama map is aggregated, a plain crop-free descriptor), backbone='lsknet_t' | 'lsknet_s',
    aggregator='salad' | 'gem' | 'safa' (mixvpr_dim, mix_depth, out_rows configure MixVPR)."""
    sizes = _sizes(ASAVG_CARD, input_size)
    bb = make_backbone(backbone, 3)
    if not 1 <= sfe_after_stage <= bb.num_stages:
        raise UsageError(f"asavg sfe_after_stage must be a backbone stage 1..{bb.num_stages} (SFE re-weights "
                         f"that stage's output), got {sfe_after_stage}; use sfe=False to drop SFE.")
    (hq, wq), (hp, wp) = sizes["query"], sizes["reference"]
    if hq != hp or wq > wp:
        raise UsageError(
            f"asavg needs perspective and panorama images of the same height and a panorama at least as "
            f"wide; got {hq}x{wq} and {hp}x{wp}: fix input_size."
        )
    c, h, w = feature_shape(bb, hq, wq)
    name = aggregator_name(aggregator)
    mix = {"out_channels": mixvpr_dim, "mix_depth": mix_depth, "out_rows": out_rows}
    agg = make_aggregator(name, c, h, w, mix, aggregator_args)
    ref_agg = None
    if not asa and agg.size_fixed:
        # Without ASA the panorama map is aggregated whole: a size-fixed head needs its own
        # layers for the panorama's (wider) map; GeM and SALAD are shared by both views.
        _, hr, wr = feature_shape(bb, hp, wp)
        ref_agg = make_aggregator(name, c, hr, wr, mix, aggregator_args)
    card = _card(ASAVG_CARD, sizes, agg.out_dim)
    return ASAVGModel(card, bb, agg, sfe_after_stage, align_normalize, n_crops, sfe=sfe, asa=asa,
                      reference_aggregator=ref_agg, query_map_width=w)
