"""Spatial attention modules: CBAM, RGA-S, MC_GRA (the MC_GRA paper) and GSRA (LRFR).

Every module maps (B, C, H, W) -> (B, C, H, W). RGA-S, MC_GRA and GSRA stack the N×N
relation matrix as 2N channels, so their layer shapes fix the spatial size: they refuse
other sizes. Shapes and defaults follow reference/models.md §2; the choices the papers
leave open are constructor arguments (documented on each class).
"""
from __future__ import annotations

import torch
from torch import nn

from geobench.models.aggregators import check_feature_size
from geobench.models.deform import deform_conv2d

ATTENTIONS = ("mcgra", "cbam", "rga", "gsra", "maxpool", "none")
MCGRA_BRANCHES = ("both", "context", "relation")


def conv_bn(cin: int, cout: int, relu: bool = True, k: int = 1, bias: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def relation_stack(theta: torch.Tensor, phi: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pairwise affinities as a (B, 2N, H, W) map: at node j, [R(j, :) ; R(:, j)].

    theta, phi: (B, c, N) embeddings; R = θᵀφ, r_ij = θ(x_i)ᵀ φ(x_j).
    """
    b, _, n = theta.shape
    r = torch.bmm(theta.transpose(1, 2), phi)  # (B, N, N)
    r_in = r.transpose(1, 2).reshape(b, n, h, w)  # channel k at node j = R[j, k]
    r_out = r.reshape(b, n, h, w)  # channel k at node j = R[k, j]
    return torch.cat([r_in, r_out], dim=1)


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hid = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hid, 1, bias=False), nn.ReLU(), nn.Conv2d(hid, channels, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    """CBAM (Woo et al. 2018): channel then spatial attention. residual=True is LRFR's F'' + F."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7, residual: bool = False) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.channel(x)
        y = y * self.spatial(y)
        return y + x if self.residual else y


class RGASpatial(nn.Module):
    """RGA-S (Zhang et al., CVPR 2020): relation-aware global spatial attention, no residual."""

    def __init__(self, channels: int, in_h: int, in_w: int, cha_ratio: int = 8, spa_ratio: int = 8, down_ratio: int = 8) -> None:
        super().__init__()
        self.in_h, self.in_w = in_h, in_w
        n = in_h * in_w
        c_i, n_i = max(channels // cha_ratio, 1), max(n // spa_ratio, 1)
        self.gx = conv_bn(channels, c_i)
        self.theta = conv_bn(channels, c_i)
        self.phi = conv_bn(channels, c_i)
        self.gg = conv_bn(2 * n, n_i)
        k = 1 + n_i
        hid = max(k // down_ratio, 1)
        self.w = nn.Sequential(conv_bn(k, hid), conv_bn(hid, 1, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_size(self, x, self.in_h, self.in_w)
        h, w = self.in_h, self.in_w
        rel = self.gg(relation_stack(self.theta(x).flatten(2), self.phi(x).flatten(2), h, w))
        g_x = self.gx(x).mean(dim=1, keepdim=True)
        return x * torch.sigmoid(self.w(torch.cat([g_x, rel], dim=1)))


class ContextConv(nn.Module):
    """k×k convolution of the pooled map, deformable (DCNv2 by default) or standard.

    The offset/mask predictor is a zero-initialised k×k conv on the same input, so the
    module starts as 0.5 × a plain convolution (DCNv2) and learns its sampling offsets.
    """

    def __init__(self, cin: int, cout: int, k: int, deformable: bool = True, modulated: bool = True) -> None:
        super().__init__()
        self.k, self.deformable, self.modulated = k, deformable, modulated
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)
        if deformable:
            taps = k * k
            self.offset = nn.Conv2d(cin, (3 if modulated else 2) * taps, k, padding=k // 2)
            nn.init.zeros_(self.offset.weight)
            nn.init.zeros_(self.offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.deformable:
            return self.conv(x)
        taps = self.k * self.k
        om = self.offset(x)
        offset = om[:, : 2 * taps]
        mask = torch.sigmoid(om[:, 2 * taps :]) if self.modulated else None
        return deform_conv2d(
            x, offset, self.conv.weight, self.conv.bias, padding=(self.k // 2, self.k // 2), mask=mask
        )


class MCGRA(nn.Module):
    """MC_GRA (Hou et al., Remote Sens. 2023): context + global-relation guided spatial attention.

    (a) context branch (paper eq. 5-6): S = max_c f1×1(F) + mean_c f1×1(F) (pool="sum"; "cat"
        stacks the two as CBAM does), U' = f1×1([D3×3(S); D5×5(S)]) with deformable convs
        (deformable=False is the paper's standard-convolution ablation);
    (b) relation branch (eq. 7-10): θ, φ = ReLU(BN(1×1)), r_i = [R(i,:), R(:,i)] (2N channels),
        embedded to N/rel_ratio channels as in RGA-S; optional learnable position encoding
        added to F before θ, φ (the paper mentions "position coding" without details);
    (c) fusion (eq. 11-13): M = f1×1([U'; S]) -> 1 channel, A = σ(W2 ReLU(W1 M)) with 1×1
        conv + BN, F' = A ⊙ F.
    Paper-silent choices (reduction=8, context_channels=1, fuse_hidden=8, rel_ratio=8,
    DCNv2, position_encoding=True) are arguments. branches="context" or "relation" keeps one
    branch (ablation): the fusion conv then sees only that branch's channels.
    """

    def __init__(
        self,
        channels: int,
        in_h: int,
        in_w: int,
        reduction: int = 8,
        pool: str = "sum",
        context_channels: int = 1,
        deformable: bool = True,
        modulated: bool = True,
        rel_ratio: int = 8,
        fuse_hidden: int = 8,
        position_encoding: bool = True,
        branches: str = "both",
    ) -> None:
        super().__init__()
        if pool not in ("sum", "cat"):
            raise ValueError(f"pool must be 'sum' or 'cat', got {pool!r}")
        if branches not in MCGRA_BRANCHES:
            from geobench.errors import UsageError

            raise UsageError(f"MC_GRA branches must be one of {' | '.join(MCGRA_BRANCHES)}, got {branches!r}")
        self.in_h, self.in_w, self.pool = in_h, in_w, pool
        self.context, self.relation = branches in ("both", "context"), branches in ("both", "relation")
        n, c_r = in_h * in_w, max(channels // reduction, 1)
        fuse_in = 0
        if self.context:  # (a) multiscale deformable context
            self.reduce = conv_bn(channels, c_r)
            cin = 1 if pool == "sum" else 2
            self.ctx3 = ContextConv(cin, context_channels, 3, deformable, modulated)
            self.ctx5 = ContextConv(cin, context_channels, 5, deformable, modulated)
            self.ctx_fuse = nn.Conv2d(2 * context_channels, 1, 1)
            fuse_in += 1
        self.register_parameter("pos", None)
        if self.relation:  # (b) global relations
            if position_encoding:
                self.pos = nn.Parameter(torch.zeros(1, channels, in_h, in_w))
                nn.init.trunc_normal_(self.pos, std=0.02)
            self.theta = conv_bn(channels, c_r)
            self.phi = conv_bn(channels, c_r)
            n_r = max(n // rel_ratio, 1)
            self.rel_embed = conv_bn(2 * n, n_r)
            fuse_in += n_r
        # (c) fusion into one spatial map
        self.fuse = nn.Conv2d(fuse_in, 1, 1)
        self.gate = nn.Sequential(conv_bn(1, fuse_hidden), conv_bn(fuse_hidden, 1, relu=False))

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial attention A (B, 1, H, W) in [0, 1]."""
        check_feature_size(self, x, self.in_h, self.in_w)
        parts = []
        if self.context:
            fr = self.reduce(x)
            mx, avg = fr.amax(dim=1, keepdim=True), fr.mean(dim=1, keepdim=True)
            s = mx + avg if self.pool == "sum" else torch.cat([mx, avg], dim=1)
            parts.append(self.ctx_fuse(torch.cat([self.ctx3(s), self.ctx5(s)], dim=1)))
        if self.relation:
            xp = x + self.pos if self.pos is not None else x
            rel = relation_stack(self.theta(xp).flatten(2), self.phi(xp).flatten(2), self.in_h, self.in_w)
            parts.append(self.rel_embed(rel))
        m = self.fuse(torch.cat(parts, dim=1))
        return torch.sigmoid(self.gate(m))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)


class MaxPoolBaseline(nn.Module):
    """The MC_GRA paper's ablation baseline: "max pooling" in place of the attention module.

    The paper (Table 4) says only that max pooling replaced MC_GRA "for fixed algorithm
    parameters". We read it as a parameter-free k x k max pooling with stride 1 and
    "same" padding, so the map keeps its size and the aggregator after it is unchanged
    (a strided pooling would change MixVPR's input size, i.e. the other parameters).
    """

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            from geobench.errors import UsageError

            raise UsageError(f"max-pooling baseline kernel_size must be odd and >= 1 (size-preserving), "
                             f"got {kernel_size}")
        self.pool = nn.MaxPool2d(kernel_size, stride=1, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


class GSRA(nn.Module):
    """GSRA (LRFR, Gan et al. 2025): grouped coordinate + global-relation attention.

    x is split into G groups of c = C/G channels; each group gets w = σ(x_h) ⊙ σ(x_w) ⊙ σ(g)
    (coordinate pooling along H and W, and a relation map g from the N×N affinity), then
    GroupNorm and a channel shuffle. No residual.
    """

    def __init__(self, channels: int, in_h: int, in_w: int, groups: int = 32) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"GSRA channels ({channels}) must be divisible by groups ({groups})")
        self.in_h, self.in_w, self.groups = in_h, in_w, groups
        c, n = channels // groups, in_h * in_w
        self.coord = nn.Conv2d(c, c, 1)
        self.theta = conv_bn(c, c)
        self.phi = conv_bn(c, c)
        # no ReLU between the two convs; ReLU at the end makes g >= 0
        self.relation = nn.Sequential(
            nn.Conv2d(2 * n, n // 2, 1, bias=False),
            nn.BatchNorm2d(n // 2),
            nn.Conv2d(n // 2, 1, 1, bias=False),
            nn.BatchNorm2d(1),
            nn.ReLU(),
        )
        self.norm = nn.GroupNorm(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_size(self, x, self.in_h, self.in_w)
        b, ch, h, w = x.shape
        g = self.groups
        xg = x.reshape(b * g, ch // g, h, w)
        x_h = xg.mean(dim=3, keepdim=True)  # (BG, c, H, 1)
        x_w = xg.mean(dim=2, keepdim=True).transpose(2, 3)  # (BG, c, W, 1)
        hw = self.coord(torch.cat([x_h, x_w], dim=2))
        x_h, x_w = hw[:, :, :h], hw[:, :, h:].transpose(2, 3)
        rel = self.relation(relation_stack(self.theta(xg).flatten(2), self.phi(xg).flatten(2), h, w))
        out = self.norm(xg * torch.sigmoid(x_h) * torch.sigmoid(x_w) * torch.sigmoid(rel))
        return out.reshape(b, g, ch // g, h, w).transpose(1, 2).reshape(b, ch, h, w)


def make_attention(kind: str, channels: int, in_h: int, in_w: int, **kwargs) -> nn.Module:
    """Attention by name ('mcgra', 'cbam', 'rga', 'gsra', 'maxpool', 'none'), for ablations."""
    if kind == "mcgra":
        return MCGRA(channels, in_h, in_w, **kwargs)
    if kind == "cbam":
        return CBAM(channels, **kwargs)
    if kind == "rga":
        return RGASpatial(channels, in_h, in_w, **kwargs)
    if kind == "gsra":
        return GSRA(channels, in_h, in_w, **kwargs)
    if kind == "maxpool":
        return MaxPoolBaseline(**kwargs)
    if kind == "none":
        return nn.Identity()
    from geobench.errors import UsageError

    raise UsageError(f"unknown attention {kind!r}: use one of {', '.join(ATTENTIONS)}.")
