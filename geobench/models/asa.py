"""The ASA-VG paper's modules: SFE (structural feature enhancement) and ASA (scene alignment).

SFE re-weights a feature map by a line mask computed with fixed Sobel-like kernels on the
channel sum. ASA slides a perspective (query) feature map around a panorama feature map
(circularly, the panorama wraps at ±180°), scores every horizontal offset by correlation
and crops the panorama at the best one. The crop depends on the query, so retrieval with
ASA is pair-dependent: `correlate_all` scores all pairs' offsets at once with an FFT.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geobench.errors import UsageError

SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


class SFE(nn.Module):
    """SFE: F' = F + F ⊙ ReLU(BN(sqrt(Gx² + Gy² + eps))), G from the channel-summed map.

    The kernels are fixed buffers (not parameters). The paper gives them only as
    "vertical / horizontal line" kernels: Sobel (default) is an assumption (`kernel`).
    eps keeps the sqrt differentiable at flat regions.
    """

    def __init__(self, kernel: tuple[tuple[float, ...], ...] = SOBEL_X, eps: float = 1e-6) -> None:
        super().__init__()
        kx = torch.tensor(kernel, dtype=torch.float32)
        self.register_buffer("kernels", torch.stack([kx, kx.t()]).unsqueeze(1))  # (2, 1, k, k)
        self.eps = eps
        self.bn = nn.BatchNorm2d(1)

    def line_mask(self, x: torch.Tensor) -> torch.Tensor:
        s = x.sum(dim=1, keepdim=True)
        k = self.kernels.to(s.dtype)
        g = F.conv2d(s, k, padding=k.shape[-1] // 2)  # (B, 2, H, W): Gx, Gy
        mag = torch.sqrt(g.pow(2).sum(dim=1, keepdim=True) + self.eps)
        return F.relu(self.bn(mag))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x * self.line_mask(x)


def _check_pair(q: torch.Tensor, p: torch.Tensor) -> None:
    if q.dim() != 4 or p.dim() != 4 or q.shape[1:3] != p.shape[1:3] or q.shape[-1] > p.shape[-1]:
        raise UsageError(
            f"ASA needs perspective and panorama feature maps with equal channels and height and a "
            f"panorama at least as wide: got {tuple(q.shape)} and {tuple(p.shape)}; resize the images "
            f"to the model card's input sizes."
        )


def correlate_all(q: torch.Tensor, p: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """c[i, j, s] = Σ_{c,h,w} Q_i[c,h,w] · P_j[c,h,(s+w) mod Wp] for all pairs: (Nq, Np, Wp).

    Circular cross-correlation along the width by FFT. normalize=True L2-normalises every
    location's channel vector first (sum of cosine similarities over the window).
    """
    _check_pair(q, p)
    if normalize:
        q, p = F.normalize(q, dim=1), F.normalize(p, dim=1)
    wp = p.shape[-1]
    fq = torch.fft.rfft(q.float().flatten(1, 2), n=wp, dim=-1)  # (Nq, C·H, F)
    fp = torch.fft.rfft(p.float().flatten(1, 2), n=wp, dim=-1)  # (Np, C·H, F)
    spec = torch.einsum("ikf,jkf->ijf", fq.conj(), fp)
    return torch.fft.irfft(spec, n=wp, dim=-1)


def correlate_pairs(q: torch.Tensor, p: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Offset scores of matched pairs (Q_b, P_b): (B, Wp)."""
    _check_pair(q, p)
    if q.shape[0] != p.shape[0]:
        raise ValueError("correlate_pairs needs as many panoramas as queries")
    if normalize:
        q, p = F.normalize(q, dim=1), F.normalize(p, dim=1)
    wp = p.shape[-1]
    fq = torch.fft.rfft(q.float().flatten(1, 2), n=wp, dim=-1)
    fp = torch.fft.rfft(p.float().flatten(1, 2), n=wp, dim=-1)
    return torch.fft.irfft((fq.conj() * fp).sum(dim=1), n=wp, dim=-1)


def crop_circular(p: torch.Tensor, offsets: torch.Tensor, width: int) -> torch.Tensor:
    """Crop P_b[..., s_b : s_b + width] with wrap-around: (B, C, H, width).

    A gather, so gradients reach the panorama features (not the offsets).
    """
    wp = p.shape[-1]
    idx = (offsets.view(-1, 1) + torch.arange(width, device=p.device).view(1, -1)) % wp  # (B, w)
    idx = idx.view(idx.shape[0], 1, 1, width).expand(-1, p.shape[1], p.shape[2], -1)
    return torch.gather(p, 3, idx)


class ASA(nn.Module):
    """Adaptive scene alignment: crop each panorama map at its best offset for a query map."""

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize

    def offsets(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return correlate_pairs(q, p, self.normalize).argmax(dim=-1)

    def forward(self, q: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Align P_b to Q_b for every b: (aligned panorama maps (B, C, H, Wq), offsets (B,))."""
        s = self.offsets(q, p)
        return crop_circular(p, s, q.shape[-1]), s

    def align_all(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Best offset of every panorama j for every query i: (Nq, Np) int64."""
        with torch.no_grad():
            return correlate_all(q, p, self.normalize).argmax(dim=-1)
