"""LSKNet-T/S (Li et al., "Large Selective Kernel Network", ICCV 2023), official names.

Parameter names follow the official repository (zcablii/LSKNet), so its backbone files
load: `patch_embed{i}.proj/.norm`, `block{i}.{j}.norm1/norm2/layer_scale_{1,2}`,
`block{i}.{j}.attn.proj_1/proj_2/spatial_gating_unit.{conv0,conv_spatial,conv1,conv2,
conv_squeeze,conv}`, `block{i}.{j}.mlp.fc1/dwconv.dwconv/fc2`, `norm{i}` (i from 1).
Stage i: overlapping patch embedding (7×7 s4, then 3×3 s2) → blocks → LayerNorm over
channels. Strides 4/8/16/32. Spec: reference/models.md §1.2.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from geobench.errors import UsageError
from geobench.models.backbones.base import (
    Backbone,
    check_stages,
    drop_path,
    linear_rates,
    maybe_load,
)

LSKNET_T = ((32, 64, 160, 256), (3, 3, 5, 2))
LSKNET_S = ((64, 128, 320, 512), (2, 2, 4, 2))


class LSKblock(nn.Module):
    """Large selective kernel: two stacked depthwise convs (RF 5 and 23), spatially
    selected by a 2-channel attention map from mean/max channel pooling."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, 7, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, dim // 2, 1)
        self.conv2 = nn.Conv2d(dim, dim // 2, 1)
        self.conv_squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.conv = nn.Conv2d(dim // 2, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        small = self.conv0(x)
        large = self.conv_spatial(small)
        small, large = self.conv1(small), self.conv2(large)
        both = torch.cat([small, large], dim=1)
        pooled = torch.cat([both.mean(dim=1, keepdim=True), both.amax(dim=1, keepdim=True)], dim=1)
        sel = torch.sigmoid(self.conv_squeeze(pooled))
        return x * self.conv(small * sel[:, 0:1] + large * sel[:, 1:2])


class Attention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = LSKblock(dim)
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x))))


class DWConv(nn.Module):
    """A wrapper only so the parameter is named `dwconv.dwconv` as in the official code."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.dwconv(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x))))
        return self.drop(self.fc2(x))


class Block(nn.Module):
    """Pre-norm (BatchNorm) residual block: attention then MLP, each with layer scale 1e-2."""

    def __init__(self, dim: int, mlp_ratio: float, drop: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = Attention(dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), 1e-2))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), 1e-2))
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        y = self.layer_scale_1[:, None, None] * self.attn(self.norm1(x))
        x = x + drop_path(y, self.drop_path, self.training)
        y = self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x))
        return x + drop_path(y, self.drop_path, self.training)


class OverlapPatchEmbed(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x))


class LSKNet(Backbone):
    """LSKNet backbone; `num_classes` > 0 adds the ImageNet classifier `head` (GAP + linear)."""

    def __init__(
        self, embed_dims: tuple[int, ...] = LSKNET_T[0], depths: tuple[int, ...] = LSKNET_T[1],
        mlp_ratios: tuple[float, ...] = (8, 8, 4, 4), num_stages: int = 4,
        drop_rate: float = 0.0, drop_path_rate: float = 0.0, num_classes: int = 0,
    ) -> None:
        super().__init__()
        check_stages("LSKNet", num_stages, len(depths))
        if num_classes and num_stages != len(depths):
            raise UsageError("LSKNet: a classification head needs all stages (num_stages=4)")
        rates = linear_rates(drop_path_rate, sum(depths))
        start = 0
        for i in range(num_stages):
            c_in = 3 if i == 0 else embed_dims[i - 1]
            kernel, stride = (7, 4) if i == 0 else (3, 2)
            setattr(self, f"patch_embed{i + 1}", OverlapPatchEmbed(c_in, embed_dims[i], kernel, stride))
            blocks = [Block(embed_dims[i], mlp_ratios[i], drop_rate, rates[start + j]) for j in range(depths[i])]
            setattr(self, f"block{i + 1}", nn.ModuleList(blocks))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(embed_dims[i], eps=1e-6))
            start += depths[i]
        self.stage_channels = tuple(embed_dims[:num_stages])
        self.stage_strides = tuple(4 * 2**i for i in range(num_stages))
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes else None
        dropped = [f"{p}{i + 1}." for i in range(num_stages, len(depths)) for p in ("patch_embed", "block", "norm")]
        self.dropped_prefixes = tuple(dropped + ([] if num_classes else ["head."]))
        self._init_weights()

    def _init_weights(self) -> None:
        # The official init: He-normal on fan-out for convs, truncated normal for linears.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def stage_modules(self, index: int) -> list[nn.Module]:
        return [getattr(self, f"{p}{index + 1}") for p in ("patch_embed", "block", "norm")]

    def run_stage(self, index: int, x: Tensor) -> Tensor:
        x = getattr(self, f"patch_embed{index + 1}")(x)
        for block in getattr(self, f"block{index + 1}"):
            x = block(x)
        norm = getattr(self, f"norm{index + 1}")
        return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()

    def forward_head(self, features: Tensor) -> Tensor:
        if self.head is None:
            raise UsageError("LSKNet.forward_head: built without a head; pass num_classes > 0")
        return self.head(features.mean(dim=(2, 3)))


def lsknet_t(pretrained_path: str | None = None, num_stages: int = 4, **kwargs) -> LSKNet:
    """LSKNet-T: dims 32/64/160/256, depths 3/3/5/2 (3.99 M backbone params)."""
    model = LSKNet(LSKNET_T[0], LSKNET_T[1], num_stages=num_stages, **kwargs)
    return maybe_load(model, pretrained_path)


def lsknet_s(pretrained_path: str | None = None, num_stages: int = 4, **kwargs) -> LSKNet:
    """LSKNet-S: dims 64/128/320/512, depths 2/2/4/2 (13.84 M backbone params)."""
    model = LSKNet(LSKNET_S[0], LSKNET_S[1], num_stages=num_stages, **kwargs)
    return maybe_load(model, pretrained_path)
