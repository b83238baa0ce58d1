"""DINOv2 vision transformers with the parameter names of facebookresearch/dinov2.

A hub checkpoint (`dinov2_vitb14_pretrain.pth`, `..._reg4_pretrain.pth`) or a released
model built on one (MegaLoc, SALAD, BoQ) loads key for key: `cls_token`, `pos_embed`,
`register_tokens`, `mask_token`, `patch_embed.proj`, `blocks.N.{norm1, attn.qkv, attn.proj,
ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}`, `norm`.

`tokens(x)` returns the normalised class token and the patch tokens as a map
(B, C, H/14, W/14), which is what the place-recognition heads aggregate. Position
embeddings are interpolated to any input whose sides are multiples of the patch size,
bicubically with the official 0.1 offset (hub models without registers) or by exact size
with antialiasing (the `_reg` models), so non-square images give the official tokens.

Stages, for freezing (`freeze_stages(n)`, as SALAD trains only the last blocks): stage 0
is the patch embedding with the class/register tokens and the first block, stage i the
i-th block.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geobench.errors import UsageError
from geobench.models.backbones.base import Backbone, drop_path, linear_rates

# (embed_dim, depth, heads) of the hub models; mlp_ratio 4, patch 14, 518-px position grid.
VITS14 = (384, 12, 6)
VITB14 = (768, 12, 12)
VITL14 = (1024, 24, 16)


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, layer_scale: float,
                 drop_path_rate: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim, layer_scale)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layer_scale)
        self.drop_path_rate = drop_path_rate

    def forward(self, x: Tensor) -> Tensor:
        p = self.drop_path_rate
        x = x + drop_path(self.ls1(self.attn(self.norm1(x))), p, self.training)
        return x + drop_path(self.ls2(self.mlp(self.norm2(x))), p, self.training)


class DinoV2(Backbone):
    """A DINOv2 ViT (`dims` = (embed_dim, depth, heads)); `forward` gives the patch map."""

    def __init__(self, dims: tuple[int, int, int] = VITB14, *, patch: int = 14, grid: int = 37,
                 registers: int = 0, mlp_ratio: float = 4.0, layer_scale: float = 1.0,
                 drop_path_rate: float = 0.0, mask_token: bool = True,
                 interpolate_offset: float | None = None, antialias: bool | None = None,
                 num_blocks: int | None = None) -> None:
        super().__init__()
        dim, depth, heads = dims
        depth = depth if num_blocks is None else num_blocks
        self.patch = patch
        self.embed_dim = dim
        self.num_registers = registers
        # The hub's `_reg` models interpolate by exact size with antialiasing; the others
        # by scale factor with a 0.1 offset (dinov2 hubconf / vision_transformer.py).
        self.interpolate_offset = (0.0 if registers else 0.1) if interpolate_offset is None \
            else interpolate_offset
        self.antialias = bool(registers) if antialias is None else antialias
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, registers, dim)) if registers else None
        # Hub checkpoints carry it (DINOv2's masked-image pretraining); nothing here uses
        # it, so it takes no gradient.
        self.mask_token = nn.Parameter(torch.zeros(1, dim), requires_grad=False) if mask_token else None
        if not mask_token:  # MegaLoc drops it; a hub file still loads (the token skipped)
            self.dropped_prefixes = ("mask_token",)
        rates = linear_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, layer_scale, rates[i])
                                    for i in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.stage_channels = (dim,) * depth
        self.stage_strides = (patch,) * depth
        self._reset()

    def _reset(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def position(self, h: int, w: int) -> Tensor:
        """Position embeddings for an h x w patch grid (class position first)."""
        n = self.pos_embed.shape[1] - 1
        m = int(math.sqrt(n))
        if h == w == m:
            return self.pos_embed
        pos = self.pos_embed.float()
        grid = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
        if self.interpolate_offset:
            off = self.interpolate_offset
            kw = {"scale_factor": ((h + off) / m, (w + off) / m)}
        else:
            kw = {"size": (h, w)}
        grid = F.interpolate(grid, mode="bicubic", antialias=self.antialias, **kw)
        grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return torch.cat((pos[:, :1], grid), dim=1).to(self.pos_embed.dtype)

    def embed_tokens(self, x: Tensor) -> Tensor:
        """Image -> token sequence [cls, registers..., patches...] before the blocks."""
        _, _, h, w = x.shape
        if h % self.patch or w % self.patch:
            raise UsageError(f"DINOv2 takes images whose sides are multiples of {self.patch} px; "
                             f"got {h}x{w}: resize them (the model card's input size does)")
        t = self.patch_embed(x)
        t = torch.cat((self.cls_token.expand(len(t), -1, -1), t), dim=1)
        t = t + self.position(h // self.patch, w // self.patch)
        if self.register_tokens is not None:
            t = torch.cat((t[:, :1], self.register_tokens.expand(len(t), -1, -1), t[:, 1:]), dim=1)
        return t

    def tokens(self, x: Tensor, norm: bool = True) -> tuple[Tensor, Tensor]:
        """(class token (B, C), patch map (B, C, H/p, W/p)), after the final norm unless
        `norm=False` (BoQ aggregates the last block's output as it is)."""
        h, w = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        t = self.embed_tokens(x)
        for block in self.blocks:
            t = block(t)
        if norm:
            t = self.norm(t)
        patches = t[:, 1 + self.num_registers:]
        return t[:, 0], patches.transpose(1, 2).reshape(len(t), -1, h, w)

    def forward(self, x: Tensor) -> Tensor:
        return self.tokens(x)[1]

    def run_stage(self, index: int, x: Tensor) -> Tensor:
        raise UsageError("DINOv2 runs as a whole (tokens, not maps, pass between its blocks); "
                         "use forward or tokens")

    def stage_modules(self, index: int) -> list[nn.Module]:
        first = [self.patch_embed] if index == 0 else []
        return first + [self.blocks[index]]

    def freeze_stages(self, n: int) -> None:
        super().freeze_stages(n)
        if n > 0:  # the token parameters belong to stage 0
            for p in (self.cls_token, self.pos_embed, self.register_tokens, self.mask_token):
                if p is not None:
                    p.requires_grad_(False)
