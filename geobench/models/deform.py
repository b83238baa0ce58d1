"""Deformable convolution v1 and v2 (modulated): torchvision's op, or a plain-PyTorch fallback.

Same contract as `torchvision.ops.deform_conv2d`, so weights and offsets move between the
two unchanged:

* offset: (B, 2·G·kh·kw, Ho, Wo); for offset group g and kernel tap k = i·kw + j,
  channel 2(g·K + k) holds Δy and 2(g·K + k) + 1 holds Δx (K = kh·kw).
* mask: (B, G·kh·kw, Ho, Wo), multiplied onto each sampled value (DCNv2); None means v1.
* input channel c belongs to offset group c // (C / G); weight groups are inferred from
  weight.shape[1] exactly as in torchvision.
* bilinear sampling with zero outside: a sample at (y, x) reads its four integer taps
  floor(y)+{0,1} × floor(x)+{0,1}; taps outside the image count 0 (so a sample with
  y ≤ -1, y ≥ H, x ≤ -1 or x ≥ W is 0).
* gradients: those of that formula with floor() held constant, so at a sample that lands
  exactly on a whole pixel the offset gradient is the right-hand derivative (towards
  the next pixel), as torchvision's kernels compute it. MC_GRA starts there: its offset
  predictors are zero-initialised.

`deform_conv2d` runs torchvision's kernel (CPU and CUDA) when `torchvision.ops` imports
and passes a small self-check on that device type; otherwise the fallback here: one
`grid_sample(align_corners=True, padding_mode="zeros")` over the input zero-padded to
2^a + 1 rows and columns (which keeps whole-pixel samples exact, see `_sampling_grid`),
then one batched matmul; no Python loops over pixels. Its memory is K times the sampled
input, fine for the small maps this is used on (MC_GRA). On CUDA, grid_sample's backward
accumulates with atomics, so gradients are not bitwise deterministic unless
torch.use_deterministic_algorithms(True) is set.
`backend=` forces one path ("geobench" or "torchvision"); the golden fixtures
(benchmarks/make_deform_golden.py) test both against torchvision's outputs and gradients.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geobench.errors import UsageError

__all__ = ["deform_conv2d", "deform_backend", "DeformConv2d", "DeformableConvBlock"]

BACKENDS = ("auto", "geobench", "torchvision")

IntPair = int | tuple[int, int]


def _pair(value: IntPair, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise UsageError(f"deform_conv2d: {name} must be an int or a pair of ints, got {value!r}")
    return pair  # type: ignore[return-value]


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def _grid_extent(n: int) -> int:
    """Smallest 2^a + 1 >= max(n, 2): the padded size whose grid step 2 / (2^a) is exact."""
    return (1 << max(0, (max(n, 2) - 2).bit_length())) + 1


def _sampling_grid(
    offset: Tensor, extent: tuple[int, int], kernel: tuple[int, int],
    stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int],
) -> Tensor:
    """grid_sample grid (B·G, K, Ho·Wo, 2) holding normalised (y, x) sampling positions.

    `extent` (H', W') is the zero-padded input, each 2^a + 1, so the normalising step
    2 / (2^a) is a power of two: pixel -> grid -> pixel is then exact for whole pixels,
    grid_sample floors them onto themselves and its offset gradient is the right-hand
    derivative (with an arbitrary size, rounding puts some a hair below the pixel).
    The (y, x) order is for an input transposed to (…, W, H): it lets the grid be a
    permuted view of one fused multiply-add over the offsets in their own (dy, dx)
    layout, instead of an interleaving copy (torch.stack on the last dim is slow on CPU).
    """
    b, _, ho, wo = offset.shape
    (hp, wp), (kh, kw), k = extent, kernel, kernel[0] * kernel[1]
    off = offset.reshape(b, -1, k, 2, ho, wo)  # (B, G, K, [dy, dx], Ho, Wo)
    dev, dt = offset.device, offset.dtype
    # align_corners=True maps -1 / +1 onto the first / last pixel centre.
    sy, sx = 2.0 / (hp - 1), 2.0 / (wp - 1)
    tap_y = (torch.arange(kh, device=dev, dtype=dt) * dilation[0]).repeat_interleave(kw)
    tap_x = (torch.arange(kw, device=dev, dtype=dt) * dilation[1]).repeat(kh)
    pos_y = torch.arange(ho, device=dev, dtype=dt) * stride[0] - padding[0]
    pos_x = torch.arange(wo, device=dev, dtype=dt) * stride[1] - padding[1]
    base_y = ((tap_y[:, None, None] + pos_y[None, :, None]) * sy - 1.0).expand(k, ho, wo)
    base_x = ((tap_x[:, None, None] + pos_x[None, None, :]) * sx - 1.0).expand(k, ho, wo)
    base = torch.stack((base_y, base_x), dim=1)  # (K, 2, Ho, Wo): small, batch-free
    scale = torch.tensor([sy, sx], device=dev, dtype=dt).view(2, 1, 1)
    grid = torch.addcmul(base, off, scale)  # (B, G, K, 2, Ho, Wo)
    return grid.view(-1, k, 2, ho * wo).transpose(2, 3)


_TORCHVISION: dict[str, Callable[..., Tensor] | None] = {}  # per device type, checked once


def _self_check(op: Callable[..., Tensor], device: str) -> bool:
    """torchvision's op runs on `device` and agrees with the fallback on a small case."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 5, 6, generator=g, dtype=torch.float64)
    off = torch.randn(1, 18, 5, 6, generator=g, dtype=torch.float64) * 1.5
    mask = torch.rand(1, 9, 5, 6, generator=g, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    want = _fallback(x, off, w, None, (1, 1), (1, 1), (1, 1), mask)
    got = op(x.to(device), off.to(device), w.to(device), None, (1, 1), (1, 1), (1, 1), mask.to(device))
    return bool(torch.allclose(got.cpu(), want, atol=1e-9))


def _torchvision_op(device_type: str) -> Callable[..., Tensor] | None:
    if device_type not in _TORCHVISION:
        op = None
        try:
            from torchvision.ops import deform_conv2d as tv_op

            op = tv_op if _self_check(tv_op, device_type) else None
        # A torchvision built for another torch fails in many ways (ImportError, missing
        # operator RuntimeError, no kernel for the device): any of them means "use ours".
        except Exception:  # noqa: BLE001
            op = None
        _TORCHVISION[device_type] = op
    return _TORCHVISION[device_type]


def deform_backend(device: str | torch.device = "cpu") -> str:
    """Which kernel `deform_conv2d(backend="auto")` runs on `device`: torchvision or geobench."""
    return "torchvision" if _torchvision_op(torch.device(device).type) is not None else "geobench"


def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    mask: Tensor | None = None,
    backend: str = "auto",
) -> Tensor:
    """Deformable convolution (v1; v2 when `mask` is given), torchvision's semantics.

    backend: "auto" (torchvision's kernel when it works here, else ours), "geobench"
    (always ours) or "torchvision" (refuse to run without it).
    """
    stride_, padding_ = _pair(stride, "stride"), _pair(padding, "padding")
    dilation_ = _pair(dilation, "dilation")
    _check(input, offset, weight, stride_, padding_, dilation_, mask)
    if backend not in BACKENDS:
        raise UsageError(f"deform_conv2d: backend must be one of {' | '.join(BACKENDS)}, got {backend!r}")
    op = None if backend == "geobench" else _torchvision_op(input.device.type)
    if op is None and backend == "torchvision":
        raise UsageError(
            f"deform_conv2d: torchvision.ops.deform_conv2d is not importable or not working on "
            f"{input.device.type} here; install the torchvision built for torch {torch.__version__} "
            f"or use backend='auto'"
        )
    if op is not None:
        return op(input, offset.to(input.dtype), weight, bias, stride_, padding_, dilation_,
                  None if mask is None else mask.to(input.dtype))
    return _fallback(input, offset, weight, bias, stride_, padding_, dilation_, mask)


def _check(input: Tensor, offset: Tensor, weight: Tensor, stride: tuple[int, int],
           padding: tuple[int, int], dilation: tuple[int, int], mask: Tensor | None) -> None:
    """One-line errors for shapes torchvision would reject with a C++ assertion."""
    if input.dim() != 4 or offset.dim() != 4 or weight.dim() != 4:
        raise UsageError(
            f"deform_conv2d: input, offset and weight must be 4-D, got {_shape(input)}, "
            f"{_shape(offset)}, {_shape(weight)}"
        )
    b, c, h, w = input.shape
    c_out, c_per_group, kh, kw = weight.shape
    k = kh * kw
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if ho <= 0 or wo <= 0:
        raise UsageError(f"deform_conv2d: input {_shape(input)} is too small for kernel {kh}x{kw}")
    if c_per_group == 0 or c % c_per_group or c_out % (c // c_per_group):
        raise UsageError(
            f"deform_conv2d: weight {_shape(weight)} does not fit {c} input channels "
            "(in_channels must be groups × weight.shape[1] and out_channels divisible by groups)"
        )
    n_off = offset.shape[1] // (2 * k)
    if (offset.shape[0] != b or n_off == 0 or offset.shape[1] != 2 * n_off * k
            or c % n_off or tuple(offset.shape[2:]) != (ho, wo)):
        raise UsageError(
            f"deform_conv2d: offset must be ({b}, 2·G·{k}, {ho}, {wo}) with G dividing {c}, "
            f"got {_shape(offset)}"
        )
    if mask is not None and tuple(mask.shape) != (b, n_off * k, ho, wo):
        raise UsageError(
            f"deform_conv2d: mask must be ({b}, {n_off * k}, {ho}, {wo}), got {_shape(mask)}"
        )


def _fallback(input: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None,
              stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int],
              mask: Tensor | None) -> Tensor:
    """The plain-PyTorch deformable convolution (arguments already checked)."""
    b, c, h, w = input.shape
    c_out, c_per_group, kh, kw = weight.shape
    k, groups = kh * kw, c // c_per_group
    n_off = offset.shape[1] // (2 * k)
    ho, wo = offset.shape[-2:]
    hp, wp = _grid_extent(h), _grid_extent(w)
    # Zeros beyond the image read as the taps torchvision counts 0: nothing else changes.
    x = F.pad(input, (0, wp - w, 0, hp - h)) if (hp, wp) != (h, w) else input
    grid = _sampling_grid(offset.to(input.dtype), (hp, wp), (kh, kw), stride, padding, dilation)
    x = x.reshape(b * n_off, c // n_off, hp, wp).transpose(2, 3)
    cols = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    cols = cols.view(b, n_off, c // n_off, k, ho, wo)  # from (B·G, C/G, K, Ho·Wo)
    if mask is not None:
        cols = cols * mask.to(input.dtype).reshape(b, n_off, 1, k, ho, wo)
    cols = cols.reshape(b, groups, c_per_group * k, ho * wo)
    out = torch.matmul(weight.reshape(groups, c_out // groups, c_per_group * k), cols)
    out = out.reshape(b, c_out, ho, wo)
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)
    return out


class DeformConv2d(nn.Module):
    """Module form of `deform_conv2d`; parameter names and init follow torchvision."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: IntPair,
        stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1,
        groups: int = 1, bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise UsageError(
                f"DeformConv2d: in_channels {in_channels} and out_channels {out_channels} "
                f"must be divisible by groups {groups}"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor, offset: Tensor, mask: Tensor | None = None) -> Tensor:
        return deform_conv2d(
            input, offset, self.weight, self.bias,
            self.stride, self.padding, self.dilation, mask,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}, bias={self.bias is not None}"
        )


class DeformableConvBlock(DeformConv2d):
    """A deformable conv that predicts its own offsets (and masks for v2) from its input.

    `conv_offset` is a plain conv with the same geometry, zero-initialised so the block
    starts as a regular convolution (v1) or half of one (v2: mask = sigmoid(0) = 0.5), as
    in the DCNv2 paper. Its output holds 2·G·K offset channels in torchvision order, then
    (v2) G·K mask logits — the split mmcv's DCN "pack" modules use, with the same parameter
    names (weight, bias, conv_offset.*), so their checkpoints load.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: IntPair,
        stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1,
        groups: int = 1, offset_groups: int = 1, bias: bool = True, modulated: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        if in_channels % offset_groups:
            raise UsageError(
                f"DeformableConvBlock: in_channels {in_channels} must be divisible by "
                f"offset_groups {offset_groups}"
            )
        self.offset_groups, self.modulated = offset_groups, modulated
        taps = offset_groups * self.kernel_size[0] * self.kernel_size[1]
        self.conv_offset = nn.Conv2d(
            in_channels, (3 if modulated else 2) * taps, self.kernel_size,
            self.stride, self.padding, self.dilation, bias=True,
        )
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, input: Tensor) -> Tensor:  # type: ignore[override]
        pred = self.conv_offset(input)
        taps = self.offset_groups * self.kernel_size[0] * self.kernel_size[1]
        offset = pred[:, : 2 * taps]
        mask = torch.sigmoid(pred[:, 2 * taps:]) if self.modulated else None
        return deform_conv2d(
            input, offset, self.weight, self.bias,
            self.stride, self.padding, self.dilation, mask,
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", offset_groups={self.offset_groups}, modulated={self.modulated}"
