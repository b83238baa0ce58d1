"""Golden key/shape fixtures from the real libraries and the papers' official code.

Run in a side environment that has torchvision and timm (never geobench dependencies):

    /path/to/side/python benchmarks/make_backbone_golden.py \
        --lrfr LRFR_CHECKOUT --sample4geo SAMPLE4GEO_CHECKOUT --mixvpr MIXVPR_CHECKOUT

It writes tests/fixtures/backbone_keys.json: for each network the ordered state-dict keys
with their shapes (no values, so it stays small), the torchvision weight URLs of the
catalog's backbones, and the library versions. Networks are built with random weights
(nothing is downloaded). The official checkouts (git clones of WenjianGan/LRFR,
Skyy93/Sample4Geo, amaralibey/MixVPR) are optional; their model classes are imported
from the checkout and instantiated with the published configuration, so the released
checkpoints' key layouts are recorded without their (large) files. tests/test_pretrained_golden.py
compares geobench against the file in the normal environment.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "backbone_keys.json"


def keys(module) -> list[list]:
    return [[k, list(v.shape)] for k, v in module.state_dict().items()]


def torchvision_nets() -> tuple[dict, dict]:
    import torchvision.models as tvm

    nets = {"torchvision.resnet50": tvm.resnet50(weights=None),
            "torchvision.vgg16": tvm.vgg16(weights=None),
            "torchvision.convnext_tiny": tvm.convnext_tiny(weights=None),
            "torchvision.convnext_base": tvm.convnext_base(weights=None)}
    enums = {"ResNet50_Weights.IMAGENET1K_V1": tvm.ResNet50_Weights.IMAGENET1K_V1,
             "ResNet50_Weights.IMAGENET1K_V2": tvm.ResNet50_Weights.IMAGENET1K_V2,
             "VGG16_Weights.IMAGENET1K_V1": tvm.VGG16_Weights.IMAGENET1K_V1,
             "ConvNeXt_Tiny_Weights.IMAGENET1K_V1": tvm.ConvNeXt_Tiny_Weights.IMAGENET1K_V1,
             "ConvNeXt_Base_Weights.IMAGENET1K_V1": tvm.ConvNeXt_Base_Weights.IMAGENET1K_V1}
    return {k: keys(v) for k, v in nets.items()}, {k: w.url for k, w in enums.items()}


def timm_nets() -> tuple[dict, dict]:
    import timm

    names = ("convnext_tiny", "convnext_base")
    nets = {f"timm.{n}": keys(timm.create_model(n, pretrained=False)) for n in names}
    hub = {}
    for tag in ("convnext_tiny.fb_in1k", "convnext_base.fb_in1k", "convnext_base.fb_in22k_ft_in1k_384"):
        cfg = timm.models.get_pretrained_cfg(tag)
        hub[tag] = {"hf_hub_id": cfg.hf_hub_id, "url": cfg.url or ""}
    return nets, hub


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lrfr(checkout: Path) -> list[list]:
    """LRFR's GeoModel with train_university.py's configuration (ConvNeXt-T, GSRA, SALAD)."""
    import torchvision

    real = torchvision.models.convnext_tiny
    torchvision.models.convnext_tiny = lambda weights=None, **kw: real(weights=None, **kw)
    sys.path.insert(0, str(checkout))
    try:
        from models.model import GeoModel  # the checkout's package
        config = SimpleNamespace(backbone="ConvNeXt", attention="GSRA", aggregation="SALAD",
                                 num_channels=384, img_size=384, num_clusters=128, cluster_dim=64)
        return keys(GeoModel(config))
    finally:
        sys.path.remove(str(checkout))
        for name in [m for m in sys.modules if m == "models" or m.startswith("models.")]:
            del sys.modules[name]
        torchvision.models.convnext_tiny = real


def sample4geo(checkout: Path) -> list[list]:
    """Sample4Geo's TimmModel as its CVUSA/CVACT/VIGOR/U-1652 scripts build it."""
    module = _load(checkout / "sample4geo" / "model.py", "s4g_model")
    return keys(module.TimmModel("convnext_base.fb_in22k_ft_in1k_384", pretrained=False, img_size=384))


def mixvpr(checkout: Path) -> list[list]:
    """MixVPR's VPRModel parts as its README loads the released 4096-D ResNet-50 checkpoint.

    VPRModel (a LightningModule, whose loss and miner hold no tensors) has exactly two
    modules with state: `backbone` and `aggregator`; they are built from the checkout.
    """
    import torch

    resnet = _load(checkout / "models" / "backbones" / "resnet.py", "mixvpr_resnet")
    agg = _load(checkout / "models" / "aggregators" / "mixvpr.py", "mixvpr_agg")
    model = torch.nn.Module()
    model.backbone = resnet.ResNet("resnet50", pretrained=False, layers_to_freeze=2, layers_to_crop=[4])
    model.aggregator = agg.MixVPR(in_channels=1024, in_h=20, in_w=20, out_channels=1024,
                                  mix_depth=4, mlp_ratio=1, out_rows=4)
    return keys(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lrfr", type=Path)
    parser.add_argument("--sample4geo", type=Path)
    parser.add_argument("--mixvpr", type=Path)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    import timm
    import torch
    import torchvision

    nets, urls = torchvision_nets()
    timm_keys, hub = timm_nets()
    nets.update(timm_keys)
    official = {}
    for name, func, checkout in (("lrfr", lrfr, args.lrfr), ("sample4geo", sample4geo, args.sample4geo),
                                 ("mixvpr", mixvpr, args.mixvpr)):
        if checkout is not None:
            official[name] = func(checkout)
    data = {"versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                         "timm": timm.__version__},
            "torchvision_urls": urls, "timm_pretrained": hub, "networks": nets, "official": official}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    sizes = {k: len(v) for k, v in {**nets, **official}.items()}
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes): {sizes}")


if __name__ == "__main__":
    main()
