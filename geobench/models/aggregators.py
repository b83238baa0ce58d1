"""Aggregators: a (B, C, H, W) feature map to one global descriptor (B, D).

MixVPR (Ali-bey et al., WACV 2023), SALAD (Izquierdo & Civera, CVPR 2024; log-domain
Sinkhorn with a dustbin), SAFA spatial-aware aggregation (Shi et al., NeurIPS 2019), GeM
and global average pooling. Shapes and defaults follow reference/models.md §3.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from geobench.errors import UsageError
from geobench.models.base import full_precision


def check_feature_size(module: nn.Module, x: torch.Tensor, in_h: int, in_w: int) -> None:
    """Refuse a feature map whose spatial size differs from the one the layers were built for."""
    if x.dim() != 4 or tuple(x.shape[-2:]) != (in_h, in_w):
        raise UsageError(
            f"{type(module).__name__} was built for {in_h}x{in_w} feature maps but got "
            f"{tuple(x.shape[-2:])}: feed images of the size in the model card (model.card.input_size) "
            f"or rebuild the model with that input_size."
        )


class FeatureMixer(nn.Module):
    """One MixVPR mixer: residual MLP over the flattened spatial axis of every channel."""

    def __init__(self, n: int, mlp_ratio: float = 1.0) -> None:
        super().__init__()
        hidden = int(n * mlp_ratio)
        self.mix = nn.Sequential(
            nn.LayerNorm(n), nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, n)
        )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(x)


class MixVPR(nn.Module):
    """MixVPR: feature mixers on the spatial axis, then channel and row projections.

    Output dimension is out_channels * out_rows (D-major flatten), L2-normalised.
    The spatial size (in_h, in_w) is baked into the layer shapes.
    """

    def __init__(
        self,
        in_channels: int = 1024,
        in_h: int = 20,
        in_w: int = 20,
        out_channels: int = 512,
        mix_depth: int = 1,
        mlp_ratio: float = 1.0,
        out_rows: int = 4,
    ) -> None:
        super().__init__()
        self.in_h, self.in_w = in_h, in_w
        n = in_h * in_w
        self.mix = nn.Sequential(*[FeatureMixer(n, mlp_ratio) for _ in range(mix_depth)])
        self.channel_proj = nn.Linear(in_channels, out_channels)
        self.row_proj = nn.Linear(n, out_rows)
        self.out_dim = out_channels * out_rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_size(self, x, self.in_h, self.in_w)
        x = self.mix(x.flatten(2))  # (B, C, N)
        x = self.channel_proj(x.transpose(1, 2))  # (B, N, D)
        x = self.row_proj(x.transpose(1, 2))  # (B, D, R)
        return F.normalize(x.flatten(1), dim=-1)


def log_sinkhorn(scores: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor, iters: int) -> torch.Tensor:
    """Entropic OT in the log domain (regularisation 1): returns log P with P's marginals ≈ a, b.

    scores (B, M, N); log_a (M,) row masses; log_b (N,) column masses. Ends on a column
    step, so the column marginals hold exactly.
    """
    u = torch.zeros_like(scores[:, :, 0])
    v = torch.zeros_like(scores[:, 0, :])
    for _ in range(iters):
        u = log_a - torch.logsumexp(scores + v.unsqueeze(1), dim=2)
        v = log_b - torch.logsumexp(scores + u.unsqueeze(2), dim=1)
    return scores + u.unsqueeze(2) + v.unsqueeze(1)


class SALAD(nn.Module):
    """SALAD: optimal-transport assignment of local features to clusters, with a dustbin.

    use_token=False is the LRFR variant (no global-token branch): descriptor = m * l.
    With use_token=True, forward takes the global token (B, d) and adds token_dim dims.
    """

    def __init__(
        self,
        num_channels: int = 1536,
        num_clusters: int = 64,
        cluster_dim: int = 128,
        token_dim: int = 256,
        dropout: float = 0.3,
        use_token: bool = True,
        hidden: int = 512,
        sinkhorn_iters: int = 3,
    ) -> None:
        super().__init__()
        self.num_clusters, self.cluster_dim = num_clusters, cluster_dim
        self.use_token, self.sinkhorn_iters = use_token, sinkhorn_iters
        drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.score = nn.Sequential(
            nn.Conv2d(num_channels, hidden, 1), drop, nn.ReLU(), nn.Conv2d(hidden, num_clusters, 1)
        )
        self.cluster_features = nn.Sequential(
            nn.Conv2d(num_channels, hidden, 1), drop, nn.ReLU(), nn.Conv2d(hidden, cluster_dim, 1)
        )
        self.token_features = (
            nn.Sequential(nn.Linear(num_channels, hidden), nn.ReLU(), nn.Linear(hidden, token_dim))
            if use_token
            else None
        )
        self.dust_bin = nn.Parameter(torch.tensor(1.0))
        self.out_dim = num_clusters * cluster_dim + (token_dim if use_token else 0)

    def transport(self, scores: torch.Tensor) -> torch.Tensor:
        """Assignment P (B, m, n) of the n features to the m clusters (dustbin row dropped)."""
        b, m, n = scores.shape
        if n <= m:
            raise UsageError(
                f"SALAD needs more local features than clusters (n={n} <= m={m}): use larger "
                f"input images or fewer clusters (num_clusters)."
            )
        dust = self.dust_bin.to(scores.dtype).expand(b, 1, n)
        s = torch.cat([scores, dust], dim=1)
        norm = -math.log(n + m)
        log_a = torch.full((m + 1,), norm, dtype=s.dtype, device=s.device)
        log_a[-1] = math.log(n - m) + norm
        log_b = torch.full((n,), norm, dtype=s.dtype, device=s.device)
        log_p = log_sinkhorn(s, log_a, log_b, self.sinkhorn_iters) - norm
        return log_p[:, :-1].exp()

    def forward(self, x: torch.Tensor, token: torch.Tensor | None = None) -> torch.Tensor:
        f = self.cluster_features(x).flatten(2)  # (B, l, n)
        # Sinkhorn in float32 (or 64): exp/logsumexp in half precision lose the marginals.
        p = self.transport(full_precision(self.score(x).flatten(2))).to(f.dtype)  # (B, m, n)
        v = F.normalize(torch.einsum("bln,bkn->blk", f, p), dim=1).flatten(1)
        if self.use_token:
            if token is None:
                raise ValueError("SALAD(use_token=True) needs the global token")
            t = F.normalize(self.token_features(token), dim=-1)
            v = torch.cat([t, v], dim=-1)
        return F.normalize(v, dim=-1)


class SAFA(nn.Module):
    """SAFA spatial-aware aggregation: `heads` position-embedding maps from a channel pooling.

    As the official TensorFlow code: the map is pooled over channels (`pooling="mean"`;
    "max" is geobench's earlier variant), each head is a 2-layer FC on the flattened pooled
    map (N -> N/2 -> N, no activation, weights ~ truncated normal σ 0.005, biases 0.1),
    and the descriptor stacks Σ_n F[c, n] A_k[n] head-major (index k·C + c): C * heads dims.
    """

    POOLINGS = ("mean", "max")

    def __init__(self, in_channels: int, in_h: int, in_w: int, heads: int = 8,
                 pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in self.POOLINGS:
            raise UsageError(f"SAFA pooling must be one of {' | '.join(self.POOLINGS)}, got {pooling!r}")
        self.in_h, self.in_w, self.pooling = in_h, in_w, pooling
        n = in_h * in_w
        hid = max(n // 2, 1)
        # TensorFlow's truncated normal redraws beyond 2σ.
        self.w1 = nn.Parameter(nn.init.trunc_normal_(torch.empty(heads, n, hid), 0.0, 0.005, -0.01, 0.01))
        self.b1 = nn.Parameter(torch.full((heads, hid), 0.1))
        self.w2 = nn.Parameter(nn.init.trunc_normal_(torch.empty(heads, hid, n), 0.0, 0.005, -0.01, 0.01))
        self.b2 = nn.Parameter(torch.full((heads, n), 0.1))
        self.out_dim = in_channels * heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_size(self, x, self.in_h, self.in_w)
        pooled = (x.mean(dim=1) if self.pooling == "mean" else x.amax(dim=1)).flatten(1)  # (B, N)
        h = torch.einsum("bn,knh->bkh", pooled, self.w1) + self.b1
        att = torch.einsum("bkh,khn->bkn", h, self.w2) + self.b2  # (B, K, N)
        desc = torch.einsum("bcn,bkn->bkc", x.flatten(2), att)
        return F.normalize(desc.flatten(1), dim=-1)


class GeM(nn.Module):
    """Generalised-mean pooling (learnable p), returns (B, C) un-normalised."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1)).pow(1.0 / self.p)


class GlobalAvgPool(nn.Module):
    """Global average pooling (B, C, H, W) -> (B, C), optionally followed by LayerNorm."""

    def __init__(self, channels: int | None = None, norm: bool = False) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-6) if norm and channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.mean(dim=(-2, -1)))
