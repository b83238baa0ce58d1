"""Golden outputs of released place-recognition models, from their official code.

Run in a side environment with torch and torchvision (never a geobench dependency), with
git checkouts of the official repositories:

    /path/to/side/python benchmarks/make_released_golden.py \
        --megaloc MEGALOC_CHECKOUT --dinov2 DINOV2_CHECKOUT --salad SALAD_CHECKOUT \
        --boq BOQ_CHECKOUT --cosplace COSPLACE_CHECKOUT --eigenplaces EIGENPLACES_CHECKOUT

Every network is built by its own code, its weights overwritten by
tests/golden_weights.fill (deterministic by parameter name, so nothing large is stored),
and run in eval mode on seeded inputs of non-square sizes (position embeddings are
interpolated). tests/fixtures/released_golden.npz keeps the outputs;
tests/test_released_golden.py builds geobench's networks the same way and compares.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "released_golden.npz"
sys.path.insert(0, str(ROOT / "tests"))
from golden_weights import fill_state, images  # noqa: E402

CASES = {  # name: (seed, n, h, w)
    "megaloc": (0, 2, 182, 252),
    "dinov2_vits14_reg": (1, 2, 126, 98),
    "dinov2_vits14": (2, 1, 98, 140),
    "dino_salad": (3, 2, 112, 168),
    "boq_resnet50": (4, 2, 96, 128),
    "boq_dinov2": (5, 2, 112, 154),
    "cosplace": (6, 2, 96, 128),
    "eigenplaces": (7, 2, 112, 96),
}


def _load(model) -> None:
    import torch

    state = {k: torch.from_numpy(v) for k, v in fill_state(model.state_dict()).items()}
    model.load_state_dict(state, strict=True)
    model.eval()


def megaloc(checkout: Path) -> dict[str, np.ndarray]:
    import torch

    sys.path.insert(0, str(checkout))
    import megaloc_model
    from megaloc_model import MegaLoc  # the official file

    # The full layout (names and shapes) of the released model, built without memory.
    with torch.device("meta"):
        full = MegaLoc()
    keys = np.array([f"{k}:{'x'.join(map(str, v.shape))}" for k, v in full.state_dict().items()])
    # Outputs at a depth of 2 blocks and 512 output dims (the released model has 12 and 8448,
    # 229 M parameters: too slow for a test); every other size is the released one.
    defaults = list(megaloc_model.DINOv2.__init__.__defaults__)
    defaults[4] = 2  # depth
    megaloc_model.DINOv2.__init__.__defaults__ = tuple(defaults)
    model = MegaLoc(feat_dim=512)
    _load(model)
    seed, n, h, w = CASES["megaloc"]
    with torch.no_grad():
        out = model(torch.from_numpy(images(seed, n, h, w))).numpy()
    return {"megaloc": out, "megaloc.keys": keys}


def dinov2(checkout: Path) -> dict[str, np.ndarray]:
    import torch

    sys.path.insert(0, str(checkout))
    from dinov2.hub.backbones import dinov2_vits14, dinov2_vits14_reg

    out = {}
    for name, build in (("dinov2_vits14_reg", dinov2_vits14_reg), ("dinov2_vits14", dinov2_vits14)):
        model = build(pretrained=False)
        _load(model)
        seed, n, h, w = CASES[name]
        with torch.no_grad():
            f = model.forward_features(torch.from_numpy(images(seed, n, h, w)))
        out[f"{name}.cls"] = f["x_norm_clstoken"].numpy()
        out[f"{name}.patches"] = f["x_norm_patchtokens"].numpy()
    return out


def salad(checkout: Path, dinov2_checkout: Path) -> dict[str, np.ndarray]:
    """serizba/salad's backbone wrapper and aggregator, composed as its VPRModel does
    (backbone then aggregator; VPRModel itself needs pytorch-lightning), with the hub's
    dinov2_vitb14 built from the local dinov2 checkout instead of torch.hub."""
    import torch

    sys.path.insert(0, str(dinov2_checkout))
    from dinov2.hub.backbones import dinov2_vitb14

    hub_load = torch.hub.load
    torch.hub.load = lambda repo, name, *a, **k: dinov2_vitb14(pretrained=False)
    sys.path.insert(0, str(checkout))
    try:
        from models import helper
        backbone = helper.get_backbone("dinov2_vitb14", {"num_trainable_blocks": 4,
                                                         "return_token": True, "norm_layer": True})
    finally:
        torch.hub.load = hub_load
    aggregator = helper.get_aggregator("SALAD", {"num_channels": 768, "num_clusters": 64,
                                                 "cluster_dim": 128, "token_dim": 256})
    model = torch.nn.Module()
    model.backbone, model.aggregator = backbone, aggregator
    keys = np.array([f"{k}:{'x'.join(map(str, v.shape))}" for k, v in model.state_dict().items()])
    backbone.model.blocks = backbone.model.blocks[:3]  # 3 of 12 blocks: a test-sized network
    backbone.num_trainable_blocks = 1
    _load(model)
    seed, n, h, w = CASES["dino_salad"]
    with torch.no_grad():
        out = aggregator(backbone(torch.from_numpy(images(seed, n, h, w)))).numpy()
    return {"dino_salad": out, "dino_salad.keys": keys}


def _keys(model) -> np.ndarray:
    return np.array([f"{k}:{'x'.join(map(str, v.shape))}" for k, v in model.state_dict().items()])


def boq(checkout: Path, dinov2_checkout: Path) -> dict[str, np.ndarray]:
    """amaralibey/Bag-of-Queries hubconf's VPRModel with its BoQ and backbones (random
    torchvision ResNet-50; the hub's dinov2_vitb14 from the local dinov2 checkout)."""
    import torch

    sys.path.insert(0, str(dinov2_checkout))
    from dinov2.hub.backbones import dinov2_vitb14

    sys.path.insert(0, str(checkout / "src"))
    import backbones as boq_backbones
    from boq import BoQ

    sys.path.insert(0, str(checkout))
    import hubconf

    out = {}
    resnet = boq_backbones.ResNet("resnet50", pretrained=False, crop_last_block=True)
    model = hubconf.VPRModel(resnet, BoQ(resnet.out_channels, 512, 64, 2, 16384 // 512))
    out["boq_resnet50.keys"] = _keys(model)
    _load(model)
    seed, n, h, w = CASES["boq_resnet50"]
    with torch.no_grad():
        out["boq_resnet50"] = model(torch.from_numpy(images(seed, n, h, w)))[0].numpy()

    hub_load = torch.hub.load
    torch.hub.load = lambda repo, name, *a, **k: dinov2_vitb14(pretrained=False)
    try:
        dino = boq_backbones.DinoV2()
    finally:
        torch.hub.load = hub_load
    model = hubconf.VPRModel(dino, BoQ(dino.out_channels, 384, 64, 2, 12288 // 384))
    out["boq_dinov2.keys"] = _keys(model)
    dino.dino.blocks = dino.dino.blocks[:3]  # 3 of 12 blocks: a test-sized network
    dino.unfreeze_n_blocks = 1
    _load(model)
    seed, n, h, w = CASES["boq_dinov2"]
    with torch.no_grad():
        out["boq_dinov2"] = model(torch.from_numpy(images(seed, n, h, w)))[0].numpy()
    return out


def gemfc(name: str, checkout: Path, package: str, dim: int) -> dict[str, np.ndarray]:
    """CosPlace / EigenPlaces `GeoLocalizationNet` (ResNet-50, `dim`-D) from the checkout,
    with torchvision's ResNet-50 built without its ImageNet file."""
    import importlib

    import torch
    import torchvision

    real, hub_load = torchvision.models.resnet50, torch.hub.load
    torchvision.models.resnet50 = lambda *a, **k: real(weights=None)
    # EigenPlaces starts from CosPlace's file (torch.hub): its values are overwritten below.
    torch.hub.load = lambda *a, **k: torch.nn.Module()
    sys.path.insert(0, str(checkout))
    try:
        network = importlib.import_module(f"{package}.{package.split('_')[0]}_network")
        cls = getattr(network, "GeoLocalizationNet", None) or network.GeoLocalizationNet_
        model = cls("ResNet50", dim)
    finally:
        torchvision.models.resnet50, torch.hub.load = real, hub_load
        sys.path.remove(str(checkout))
    out = {f"{name}.keys": _keys(model)}
    _load(model)
    seed, n, h, w = CASES[name]
    with torch.no_grad():
        out[name] = model(torch.from_numpy(images(seed, n, h, w))).numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megaloc", type=Path, required=True)
    ap.add_argument("--dinov2", type=Path, required=True)
    ap.add_argument("--salad", type=Path, required=True)
    ap.add_argument("--boq", type=Path, required=True)
    ap.add_argument("--cosplace", type=Path, required=True)
    ap.add_argument("--eigenplaces", type=Path, required=True)
    args = ap.parse_args()
    import torch

    torch.manual_seed(0)
    arrays = {**megaloc(args.megaloc), **dinov2(args.dinov2), **salad(args.salad, args.dinov2),
              **boq(args.boq, args.dinov2),
              **gemfc("cosplace", args.cosplace, "cosplace_model", 128),
              **gemfc("eigenplaces", args.eigenplaces, "eigenplaces_model", 256)}
    arrays["versions.torch"] = np.array(torch.__version__)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KB): {sorted(arrays)}")


if __name__ == "__main__":
    main()
