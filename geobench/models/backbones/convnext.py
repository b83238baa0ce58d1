"""ConvNeXt-T/B with timm's parameter names; torchvision weight files are renamed on load.

Naming (timm, chosen because Sample4Geo's checkpoints use it): `stem.0` (4×4 s4 conv),
`stem.1` (LayerNorm2d), `stages.i.downsample.{0,1}` (LayerNorm2d, 2×2 s2 conv; absent in
stage 0), `stages.i.blocks.j.{conv_dw,norm,mlp.fc1,mlp.fc2,gamma}`, `head.norm`, `head.fc`.
`torchvision_to_timm` / `timm_to_torchvision` map to and from torchvision's
`features.N...`/`classifier.N` names (LRFR's weights); loading detects them by itself.
Truncated after stage 3 (LRFR): ConvNeXt-T gives 384 channels at stride 16.
"""
from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from geobench.errors import UsageError
from geobench.models.backbones.base import (
    Backbone,
    LayerNorm2d,
    check_stages,
    drop_path,
    linear_rates,
    maybe_load,
)

TINY = ((3, 3, 9, 3), (96, 192, 384, 768))
BASE = ((3, 3, 27, 3), (128, 256, 512, 1024))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvNeXtBlock(nn.Module):
    """DWConv7×7 → LayerNorm (channels-last) → MLP ×4 → layer scale → drop path → residual."""

    def __init__(self, dim: int, drop_path: float = 0.0, ls_init: float = 1e-6) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)
        self.gamma = nn.Parameter(torch.full((dim,), ls_init))
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv_dw(x).permute(0, 2, 3, 1)
        y = self.mlp(self.norm(y)) * self.gamma
        return x + drop_path(y.permute(0, 3, 1, 2), self.drop_path, self.training)


class ConvNeXtStage(nn.Module):
    def __init__(self, c_in: int, c_out: int, depth: int, rates: list[float], ls_init: float) -> None:
        super().__init__()
        self.downsample: nn.Module = nn.Identity()
        if c_in != c_out:
            self.downsample = nn.Sequential(LayerNorm2d(c_in, eps=1e-6), nn.Conv2d(c_in, c_out, 2, stride=2))
        self.blocks = nn.Sequential(*[ConvNeXtBlock(c_out, rates[j], ls_init) for j in range(depth)])

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


class ConvNeXt(Backbone):
    """ConvNeXt. `head_norm` adds timm's `head.norm` (Sample4Geo's descriptor is
    LN(GAP(x)), timm `num_classes=0`); `num_classes` > 0 adds `head.fc` as well."""

    def __init__(
        self, depths: tuple[int, ...] = TINY[0], dims: tuple[int, ...] = TINY[1],
        num_stages: int = 4, drop_path_rate: float = 0.0, ls_init: float = 1e-6,
        head_norm: bool = False, num_classes: int = 0,
    ) -> None:
        super().__init__()
        check_stages("ConvNeXt", num_stages, len(depths))
        if (head_norm or num_classes) and num_stages != len(depths):
            raise UsageError("ConvNeXt: a head needs all stages (num_stages=4)")
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), LayerNorm2d(dims[0], eps=1e-6))
        # Rates over the full network, so truncated variants keep the published schedule.
        rates = linear_rates(drop_path_rate, sum(depths))
        stages, start = [], 0
        for i in range(num_stages):
            c_in = dims[max(i - 1, 0)]
            stages.append(ConvNeXtStage(c_in, dims[i], depths[i], rates[start:start + depths[i]], ls_init))
            start += depths[i]
        self.stages = nn.ModuleList(stages)
        self.stage_channels = tuple(dims[:num_stages])
        self.stage_strides = tuple(4 * 2**i for i in range(num_stages))
        self.head = None
        if head_norm or num_classes:
            self.head = nn.Module()
            self.head.norm = LayerNorm2d(dims[-1], eps=1e-6)
            self.head.fc = nn.Linear(dims[-1], num_classes) if num_classes else None
        dropped = [f"stages.{i}." for i in range(num_stages, len(depths))]
        if self.head is None:
            dropped.append("head.")
        elif not num_classes:
            dropped.append("head.fc.")
        self.dropped_prefixes = tuple(dropped)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def stage_modules(self, index: int) -> list[nn.Module]:
        return [self.stem, self.stages[0]] if index == 0 else [self.stages[index]]

    def run_stage(self, index: int, x: Tensor) -> Tensor:
        if index == 0:
            x = self.stem(x)
        return self.stages[index](x)

    def forward_head(self, features: Tensor) -> Tensor:
        """LN(GAP(features)), then the classifier when there is one."""
        if self.head is None:
            raise UsageError("ConvNeXt.forward_head: built without a head; pass head_norm=True")
        x = self.head.norm(features.mean(dim=(2, 3), keepdim=True)).flatten(1)
        return x if self.head.fc is None else self.head.fc(x)

    def convert_state_dict(self, state: dict[str, Tensor]) -> tuple[dict[str, Tensor], str | None]:
        if any(_TV_KEY.match(k) for k in state):
            return torchvision_to_timm(state), "torchvision"
        return state, None


_TV_KEY = re.compile(r"^features\.\d+\.")
_TV_BLOCK = {"block.0": "conv_dw", "block.2": "norm", "block.3": "mlp.fc1", "block.5": "mlp.fc2"}
_TIMM_BLOCK = {v: k for k, v in _TV_BLOCK.items()}


def torchvision_to_timm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename torchvision ConvNeXt keys to timm's; keys it does not know pass unchanged."""
    out = {}
    for key, value in state.items():
        new = key
        m = re.match(r"^features\.(\d+)\.(\d+)\.(.+)$", key)
        if m:
            idx, sub, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            if idx == 0:
                new = f"stem.{sub}.{rest}"
            elif idx % 2 == 0:
                new = f"stages.{idx // 2}.downsample.{sub}.{rest}"
            elif rest == "layer_scale":
                new, value = f"stages.{idx // 2}.blocks.{sub}.gamma", value.reshape(-1)
            else:
                part, _, tail = rest.rpartition(".")
                if part in _TV_BLOCK:
                    new = f"stages.{idx // 2}.blocks.{sub}.{_TV_BLOCK[part]}.{tail}"
        elif key.startswith("classifier.0."):
            new = "head.norm." + key[len("classifier.0."):]
        elif key.startswith("classifier.2."):
            new = "head.fc." + key[len("classifier.2."):]
        out[new] = value
    return out


def timm_to_torchvision(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of `torchvision_to_timm` (for exporting to torchvision's ConvNeXt)."""
    out = {}
    for key, value in state.items():
        new = key
        if m := re.match(r"^stem\.(\d+)\.(.+)$", key):
            new = f"features.0.{m.group(1)}.{m.group(2)}"
        elif m := re.match(r"^stages\.(\d+)\.downsample\.(\d+)\.(.+)$", key):
            new = f"features.{2 * int(m.group(1))}.{m.group(2)}.{m.group(3)}"
        elif m := re.match(r"^stages\.(\d+)\.blocks\.(\d+)\.gamma$", key):
            new, value = f"features.{2 * int(m.group(1)) + 1}.{m.group(2)}.layer_scale", value.reshape(-1, 1, 1)
        elif m := re.match(r"^stages\.(\d+)\.blocks\.(\d+)\.(conv_dw|norm|mlp\.fc1|mlp\.fc2)\.(\w+)$", key):
            part = _TIMM_BLOCK[m.group(3)]
            new = f"features.{2 * int(m.group(1)) + 1}.{m.group(2)}.{part}.{m.group(4)}"
        elif key.startswith("head.norm."):
            new = "classifier.0." + key[len("head.norm."):]
        elif key.startswith("head.fc."):
            new = "classifier.2." + key[len("head.fc."):]
        out[new] = value
    return out


def _build(spec, pretrained_path, num_stages, kwargs) -> ConvNeXt:
    return maybe_load(ConvNeXt(spec[0], spec[1], num_stages=num_stages, **kwargs), pretrained_path)


def convnext_tiny(pretrained_path: str | None = None, num_stages: int = 4, **kwargs) -> ConvNeXt:
    """ConvNeXt-T: 768 channels at stride 32 (28.589 M params with the 1000-class head)."""
    return _build(TINY, pretrained_path, num_stages, kwargs)


def convnext_tiny_stage3(pretrained_path: str | None = None, **kwargs) -> ConvNeXt:
    """ConvNeXt-T up to stage 3 (LRFR): 384 channels at stride 16."""
    return _build(TINY, pretrained_path, 3, kwargs)


def convnext_base(pretrained_path: str | None = None, num_stages: int = 4, **kwargs) -> ConvNeXt:
    """ConvNeXt-B: 1024 channels at stride 32 (Sample4Geo, with head_norm=True)."""
    return _build(BASE, pretrained_path, num_stages, kwargs)


def convnext_base_stage3(pretrained_path: str | None = None, **kwargs) -> ConvNeXt:
    """ConvNeXt-B up to stage 3: 512 channels at stride 16."""
    return _build(BASE, pretrained_path, 3, kwargs)
