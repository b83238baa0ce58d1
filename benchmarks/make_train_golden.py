"""Golden training steps and learning-rate schedules from the papers' official training code.

Run in a side environment with torch, torchvision, timm, transformers and
pytorch-metric-learning (never geobench dependencies), with work trees of the official
repositories (git clones of Skyy93/Sample4Geo, WenjianGan/LRFR, amaralibey/MixVPR):

    /path/to/side/python benchmarks/make_train_golden.py \
        --sample4geo SAMPLE4GEO --lrfr LRFR --mixvpr MIXVPR

For each network it builds the official model class at a tiny size (the backbone
factories the official code calls are swapped for the same architecture with fewer
channels: timm ConvNeXt (1,1,1,1)/(16,32,48,64), torchvision ConvNeXt of the same shape,
torchvision ResNet with one bottleneck per stage), fills every weight from `init_value`
(a numpy rule keyed by the official parameter name, so geobench can rebuild the same
start without storing it), and runs 3 training steps on one fixed batch (`batch_images`)
with the official loss, optimiser, scheduler and training function. It records the loss,
the lr each step used, every parameter's gradient norm per step, and after 3 steps each
parameter's norm plus 32 of its values. Dropout and stochastic depth are 0 on both sides
(random masks cannot be matched across two programs). LRFR runs in float64: its tiny
GSRA makes float32 gradients ill-conditioned (the official code's own float32 and
float64 gradient norms differ by up to 0.8 %). The official lr of every step of
whole simulated schedules is recorded too. Output: tests/fixtures/train_golden.pt, read
by tests/test_train_golden.py.
"""
from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "train_golden.pt"
SEED = 23
STEPS = 3
SAMPLES = 32  # values kept per parameter after the steps


def init_value(name: str, shape: tuple[int, ...], seed: int = SEED) -> np.ndarray:
    """A deterministic start for parameter/buffer `name` (official naming), fp32."""
    u = np.random.default_rng([seed, zlib.crc32(name.encode())]).uniform(-1, 1, shape)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_mean":
        v = 0.1 * u
    elif leaf == "running_var":
        v = 1.0 + 0.1 * u
    elif leaf in ("gamma", "layer_scale"):  # ConvNeXt layer scale: large enough to matter
        v = 0.5 + 0.2 * u
    elif len(shape) >= 2:
        v = u * np.sqrt(3.0 / max(1, int(np.prod(shape[1:]))))
    elif leaf == "weight":
        v = 1.0 + 0.2 * u
    else:
        v = 0.1 * u
    return np.asarray(v, dtype=np.float32)


def batch_images(shape: tuple[int, ...], which: int, seed: int = SEED) -> np.ndarray:
    return np.random.default_rng([seed, 1000 + which]).standard_normal(shape).astype(np.float32)


def sample_indices(name: str, numel: int, seed: int = SEED) -> np.ndarray:
    if numel <= SAMPLES:
        return np.arange(numel)
    rng = np.random.default_rng([seed, 7, zlib.crc32(name.encode())])
    return np.sort(rng.choice(numel, SAMPLES, replace=False))


def fill(module, skip: tuple[str, ...] = ()) -> list[list]:
    """Set every float tensor of module.state_dict() from init_value; returns [name, shape]."""
    import torch

    keys = []
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point() or name in skip:
                continue
            t.copy_(torch.from_numpy(init_value(name, tuple(t.shape))))
            keys.append([name, list(t.shape)])
    return keys


def final_params(module) -> dict:
    import torch

    out = {}
    for name, p in module.named_parameters():
        flat = p.detach().reshape(-1)
        idx = torch.from_numpy(sample_indices(name, flat.numel()))
        out[name] = {"norm": float(flat.norm()), "idx": idx, "val": flat[idx].clone()}
    return out


class Recorder:
    """Optimiser pre-step hook: the lr used and each parameter's gradient norm."""

    def __init__(self, module, optimizer, clip: float | None) -> None:
        self.names = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self.clip, self.lr, self.grads = clip, [], []
        optimizer.register_step_pre_hook(self)

    def __call__(self, optimizer, args, kwargs) -> None:
        self.lr.append(float(optimizer.param_groups[0]["lr"]))
        norms = {}
        for n, p in self.names:
            g = p.grad
            if self.clip is not None and g is not None:  # clipped by value: norms would differ
                assert float(g.abs().max()) < self.clip, f"{n}: gradient clipped"
            norms[n] = float(g.norm()) if g is not None else 0.0
        self.grads.append(norms)


def _patched(module, attr, replacement):
    real = getattr(module, attr)
    setattr(module, attr, replacement)
    return lambda: setattr(module, attr, real)


def _zero_dropout(model) -> None:
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


# --- Sample4Geo ---------------------------------------------------------------------------
S4G = {"batch": 4, "ground": (32, 128), "aerial": (64, 64), "steps_per_epoch": 2, "epochs": 2,
       "warmup_epochs": 1, "lr": 1e-3, "clip_grad": 100.0, "label_smoothing": 0.1}


def sample4geo(checkout: Path) -> dict:
    import timm
    import torch
    from timm.models.convnext import ConvNeXt
    from transformers import get_cosine_schedule_with_warmup

    sys.path.insert(0, str(checkout))
    from sample4geo.loss import InfoNCE
    from sample4geo.model import TimmModel
    from sample4geo.trainer import train

    def micro(name, pretrained=False, num_classes=0, **kw):
        return ConvNeXt(depths=(1, 1, 1, 1), dims=(16, 32, 48, 64), num_classes=num_classes, **kw)

    undo = _patched(timm, "create_model", micro)
    try:
        model = TimmModel("convnext_micro", pretrained=False, img_size=64)
    finally:
        undo()
    keys = fill(model, skip=("logit_scale",))  # the official start, log(1/0.07)
    c = S4G
    loss_fn = InfoNCE(torch.nn.CrossEntropyLoss(label_smoothing=c["label_smoothing"]), device="cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=c["lr"])  # train_cvusa.py
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, num_training_steps=c["steps_per_epoch"] * c["epochs"],
        num_warmup_steps=c["steps_per_epoch"] * c["warmup_epochs"])
    b = c["batch"]
    query = torch.from_numpy(batch_images((b, 3, *c["ground"]), 0))
    reference = torch.from_numpy(batch_images((b, 3, *c["aerial"]), 1))
    rec = Recorder(model, optimizer, c["clip_grad"])
    config = SimpleNamespace(verbose=False, device="cpu", clip_grad=c["clip_grad"],
                             scheduler="cosine", gpu_ids=(0,))
    losses = []
    for _ in range(STEPS):  # the official epoch function over a one-batch loader
        losses.append(train(config, model, [(query, reference, torch.arange(b))], loss_fn,
                            optimizer, scheduler, scaler=None))
    return {"config": c, "keys": keys, "loss": losses, "lr": rec.lr, "grad_norms": rec.grads,
            "params": final_params(model)}


# --- LRFR ---------------------------------------------------------------------------------
LRFR = {"dtype": "float64", "batch": 4, "size": (64, 64), "steps_per_epoch": 3, "epochs": 2, "lr": 1e-4,
        "clip_grad": 100.0, "alpha": 10, "gsra_ratio": 4, "clusters": 8, "cluster_dim": 8}


def _tv_convnext_micro(weights=None, **kw):
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    setting = [CNBlockConfig(16, 32, 1), CNBlockConfig(32, 48, 1), CNBlockConfig(48, 64, 1),
               CNBlockConfig(64, None, 1)]
    return ConvNeXt(setting, stochastic_depth_prob=0.0)


def lrfr(checkout: Path) -> dict:
    import torch
    import torchvision

    sys.path.insert(0, str(checkout))
    from models.aggregation import SALAD
    from models.attention import GSRA
    from models.model import GeoModel
    from utils.losses import get_loss_function
    from utils.optim_sche import get_optim, get_sche
    from utils.trainer import train

    c = LRFR
    side = c["size"][0] // 16
    undo = _patched(torchvision.models, "convnext_tiny", _tv_convnext_micro)
    try:
        config = SimpleNamespace(backbone="ConvNeXt", attention="GSRA", aggregation="SALAD",
                                 num_channels=48, img_size=c["size"][0], num_clusters=c["clusters"],
                                 cluster_dim=c["cluster_dim"])
        model = GeoModel(config)
    finally:
        undo()
    # get_attention has no ratio argument: the same class at the tiny preset's group count.
    model.model.attention = GSRA(48, side * side, ratio=c["gsra_ratio"])
    model.model.aggregation = SALAD(48, c["clusters"], c["cluster_dim"], dropout=0.0)
    _zero_dropout(model)
    keys = fill(model)
    # float64: GSRA's relation BatchNorm makes this tiny net's gradients ill-conditioned
    # (the official code's own float32 and float64 gradients differ by 0.8 %).
    model.double()
    train_cfg = SimpleNamespace(  # train_university.py's Configuration, tiny length
        optimizer="adamw", lr=c["lr"], decay_exclue_bias=False, weight_decay=0.001, momentum=0.9,
        scheduler="linear", epochs=c["epochs"], warmup_epochs=0, lr_end=0.0001,
        loss="SemiTriplet", alpha=c["alpha"], batch_size=c["batch"], clip_grad=c["clip_grad"],
        verbose=False, device="cpu")
    optimizer = get_optim(model, train_cfg)
    scheduler = get_sche(range(c["steps_per_epoch"]), optimizer, train_cfg)
    loss_fn = get_loss_function(train_cfg)
    b = c["batch"]
    query = torch.from_numpy(batch_images((b, 3, *c["size"]), 0)).double()  # satellite in train_university
    reference = torch.from_numpy(batch_images((b, 3, *c["size"]), 1)).double()  # drone
    rec = Recorder(model, optimizer, c["clip_grad"])
    losses = [train(train_cfg, model, [(query, reference, torch.arange(b))], loss_fn, optimizer,
                    scheduler, scaler=None) for _ in range(STEPS)]
    return {"config": c, "keys": keys, "loss": losses, "lr": rec.lr, "grad_norms": rec.grads,
            "params": final_params(model)}


# --- MixVPR -------------------------------------------------------------------------------
MIXVPR = {"places": 4, "per_place": 4, "size": (64, 64), "lr": 0.05, "weight_decay": 1e-3,
          "momentum": 0.9, "warmup_steps": 2, "milestones": [5, 10, 15, 25, 45], "lr_mult": 0.3,
          "out_channels": 64, "mix_depth": 1, "out_rows": 2}


def _lightning_stub() -> None:
    """main.py subclasses pytorch_lightning.LightningModule; only plain nn.Module behaviour
    is used here (the methods are called directly), so stand-in modules suffice (also for
    the validation-only faiss / prettytable and the data module)."""
    import types

    import torch

    class LightningModule(torch.nn.Module):
        def save_hyperparameters(self, *a, **k):
            pass

        def log(self, *a, **k):
            pass

    pl = types.ModuleType("pytorch_lightning")
    pl.LightningModule = LightningModule
    callbacks = types.ModuleType("pytorch_lightning.callbacks")
    callbacks.Callback = callbacks.ModelCheckpoint = object
    pl.callbacks = callbacks
    sys.modules.setdefault("pytorch_lightning", pl)
    sys.modules.setdefault("pytorch_lightning.callbacks", callbacks)
    # Used only by validation (utils/validation.py), never by a training step.
    for name in ("faiss", "faiss.contrib", "faiss.contrib.torch_utils", "prettytable"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["prettytable"].PrettyTable = object
    dl = types.ModuleType("dataloaders.GSVCitiesDataloader")
    dl.GSVCitiesDataModule = None
    sys.modules.setdefault("dataloaders", types.ModuleType("dataloaders"))
    sys.modules.setdefault("dataloaders.GSVCitiesDataloader", dl)


def _tv_resnet_micro(weights=None, **kw):
    from torchvision.models.resnet import Bottleneck, ResNet

    return ResNet(Bottleneck, [1, 1, 1, 1])


def _vpr_model(checkout: Path, c: dict, optimizer: str = "sgd", lr: float | None = None):
    import torchvision

    sys.path.insert(0, str(checkout))
    _lightning_stub()
    import main as mixvpr_main

    undo = _patched(torchvision.models, "resnet50", _tv_resnet_micro)
    try:
        model = mixvpr_main.VPRModel(
            backbone_arch="resnet50", pretrained=True, layers_to_freeze=2, layers_to_crop=[4],
            agg_arch="MixVPR",
            agg_config={"in_channels": 1024, "in_h": c["size"][0] // 16, "in_w": c["size"][1] // 16,
                        "out_channels": c["out_channels"], "mix_depth": c["mix_depth"],
                        "mlp_ratio": 1, "out_rows": c["out_rows"]},
            lr=lr if lr is not None else c["lr"], optimizer=optimizer,
            weight_decay=c["weight_decay"], momentum=c["momentum"], warmpup_steps=c["warmup_steps"],
            milestones=c["milestones"], lr_mult=c["lr_mult"], loss_name="MultiSimilarityLoss",
            miner_name="MultiSimilarityMiner", miner_margin=0.1)
    finally:
        undo()
    return model


def _lightning_run(model, optimizer, scheduler, steps: int, steps_per_epoch: int, batch=None) -> list:
    """What Lightning 1.x does per step with main.py's hooks: training_step, backward,
    VPRModel.optimizer_step (warm-up, then optimizer.step), zero_grad; the MultiStepLR
    (interval 'epoch') steps after each epoch's last batch. Returns the step losses."""
    losses = []
    for step in range(steps):
        model.trainer = SimpleNamespace(global_step=step)
        if batch is not None:
            out = model.training_step(batch, step % steps_per_epoch)
            out["loss"].backward()
            losses.append(out["loss"].item())
        model.optimizer_step(step // steps_per_epoch, step % steps_per_epoch, optimizer, 0,
                             None, False, False, False)
        optimizer.zero_grad()
        if (step + 1) % steps_per_epoch == 0:
            scheduler.step()
    return losses


def mixvpr(checkout: Path) -> dict:
    import torch

    c = MIXVPR
    model = _vpr_model(checkout, c)
    model.train()
    keys = fill(model)
    [optimizer], [scheduler] = model.configure_optimizers()
    rec = Recorder(model, optimizer, None)
    n = c["places"] * c["per_place"]
    images = torch.from_numpy(batch_images((n, 3, *c["size"]), 0)).view(c["places"], c["per_place"], 3, *c["size"])
    labels = torch.arange(c["places"]).repeat_interleave(c["per_place"]).view(c["places"], c["per_place"])
    losses = _lightning_run(model, optimizer, scheduler, STEPS, 10, (images, labels))
    return {"config": c, "keys": keys, "loss": losses, "lr": rec.lr, "grad_norms": rec.grads,
            "params": final_params(model)}


# --- whole schedules ---------------------------------------------------------------------------
def _lrs(scheduler, optimizer, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()
        scheduler.step()
    return out


def schedules_sample4geo() -> dict:
    """Sample4Geo train_*.py: warm-up and length in epochs x len(loader), stepped per batch."""
    from transformers import get_cosine_schedule_with_warmup

    out = {}
    for spe, epochs, warm in ((7, 5, 1), (3, 40, 1), (5, 4, 0), (1, 12, 2)):
        o = _opt(1e-3)
        s = get_cosine_schedule_with_warmup(o, num_training_steps=spe * epochs, num_warmup_steps=spe * warm)
        out[f"sample4geo_cosine_{spe}x{epochs}_w{warm}"] = {
            "steps_per_epoch": spe, "epochs": epochs, "warmup_epochs": warm, "lr": 1e-3,
            "sequence": _lrs(s, o, spe * epochs)}
    return out


def schedules_lrfr(checkout: Path) -> dict:
    """LRFR utils/optim_sche.py get_sche('linear'): 1.05 x the run, stepped per batch."""
    sys.path.insert(0, str(checkout))
    from utils.optim_sche import get_sche

    out = {}
    for spe, epochs in ((7, 5), (3, 40), (1, 13)):
        o = _opt(1e-4)
        cfg = SimpleNamespace(epochs=epochs, warmup_epochs=0, scheduler="linear", lr=1e-4, lr_end=1e-4)
        s = get_sche(range(spe), o, cfg)
        out[f"lrfr_linear_{spe}x{epochs}"] = {"steps_per_epoch": spe, "epochs": epochs,
                                               "warmup_epochs": 0, "lr": 1e-4,
                                               "sequence": _lrs(s, o, spe * epochs)}
    return out


def schedules_mixvpr(checkout: Path) -> dict:
    """MixVPR main.py: warm-up by global step in optimizer_step, MultiStepLR per epoch."""
    out = {}
    for spe, epochs, warm, milestones in ((4, 12, 6, [2, 5, 8]), (10, 8, 650, [1, 3]),
                                          (3, 20, 5, [1, 2, 5, 10, 15]), (520, 6, 650, [1, 2, 5])):
        c = {**MIXVPR, "warmup_steps": warm, "milestones": milestones}
        model = _vpr_model(checkout, c)
        [o], [s] = model.configure_optimizers()
        rec = Recorder(model, o, None)
        _lightning_run(model, o, s, spe * epochs, spe)
        out[f"mixvpr_multistep_{spe}x{epochs}_w{warm}"] = {
            "steps_per_epoch": spe, "epochs": epochs, "warmup_steps": warm, "lr": c["lr"],
            "milestones": milestones, "gamma": c["lr_mult"], "sequence": rec.lr}
    return out


def _opt(lr):
    import torch

    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def versions() -> dict:
    import pytorch_metric_learning
    import timm
    import torch
    import torchvision
    import transformers

    return {k: str(v) for k, v in (
        ("torch", torch.__version__), ("torchvision", torchvision.__version__), ("timm", timm.__version__),
        ("transformers", transformers.__version__), ("numpy", np.__version__),
        ("pytorch_metric_learning", pytorch_metric_learning.__version__))}


def _fresh_imports() -> None:
    """The checkouts share top-level package names (models, utils): forget the last one's."""
    for name in list(sys.modules):
        if name.split(".")[0] in ("models", "utils", "main", "dataloaders", "sample4geo"):
            del sys.modules[name]


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample4geo", type=Path, required=True)
    ap.add_argument("--lrfr", type=Path, required=True)
    ap.add_argument("--mixvpr", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.manual_seed(SEED)
    data = {"versions": versions(), "seed": SEED, "steps": STEPS, "samples": SAMPLES, "schedules": {}}
    jobs = (("sample4geo", sample4geo, args.sample4geo), ("lrfr", lrfr, args.lrfr),
            ("mixvpr", mixvpr, args.mixvpr), ("schedules", lambda _: schedules_sample4geo(), None),
            ("schedules", schedules_lrfr, args.lrfr), ("schedules", schedules_mixvpr, args.mixvpr))
    for name, fn, path in jobs:
        _fresh_imports()
        base = list(sys.path)
        result = fn(path)
        sys.path[:] = base
        if name == "schedules":
            data[name].update(result)
        else:
            data[name] = result
            print(name, "loss", result["loss"], "lr", result["lr"])
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, out)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
