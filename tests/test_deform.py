"""Deformable convolution against plain conv, shifted conv, a float64 loop and torchvision."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from geobench.errors import UsageError
from geobench.models.deform import DeformableConvBlock, DeformConv2d, deform_conv2d

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "deform_golden.pt"
D64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _bilinear(img: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """torchvision's rule, written out: zero outside, missing taps count zero."""
    _, h, w = img.shape
    out = torch.zeros(img.shape[0], dtype=img.dtype)
    if y <= -1 or y >= h or x <= -1 or x >= w:
        return out
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0
    for yy, xx, wt in ((y0, x0, (1 - ly) * (1 - lx)), (y0, x0 + 1, (1 - ly) * lx),
                       (y0 + 1, x0, ly * (1 - lx)), (y0 + 1, x0 + 1, ly * lx)):
        if 0 <= yy < h and 0 <= xx < w:
            out = out + wt * img[:, yy, xx]
    return out


def loop_deform(x, offset, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), mask=None):
    """One output pixel, one tap, one offset group at a time (the definition)."""
    b, c, h, w = x.shape
    co, cg, kh, kw = weight.shape
    k, groups = kh * kw, c // cg
    n_off = offset.shape[1] // (2 * k)
    ho = _out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _out_size(w, kw, stride[1], padding[1], dilation[1])
    out = torch.zeros(b, co, ho, wo, dtype=x.dtype)
    cpo = c // n_off
    for bi in range(b):
        for oy in range(ho):
            for ox in range(wo):
                cols = torch.zeros(c, k, dtype=x.dtype)
                for g in range(n_off):
                    for i in range(kh):
                        for j in range(kw):
                            t = i * kw + j
                            dy = offset[bi, 2 * (g * k + t), oy, ox].item()
                            dx = offset[bi, 2 * (g * k + t) + 1, oy, ox].item()
                            py = oy * stride[0] - padding[0] + i * dilation[0] + dy
                            px = ox * stride[1] - padding[1] + j * dilation[1] + dx
                            v = _bilinear(x[bi, g * cpo:(g + 1) * cpo], py, px)
                            m = 1.0 if mask is None else mask[bi, g * k + t, oy, ox].item()
                            cols[g * cpo:(g + 1) * cpo, t] = v * m
                per = co // groups
                for gi in range(groups):
                    wmat = weight[gi * per:(gi + 1) * per].reshape(per, cg * k)
                    out[bi, gi * per:(gi + 1) * per, oy, ox] = wmat @ cols[gi * cg:(gi + 1) * cg].reshape(-1)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


CONFIGS = [  # (B, C, H, W), (Cout, kh, kw), stride, padding, dilation, groups, offset_groups
    ((2, 4, 6, 7), (3, 3, 3), (1, 1), (1, 1), (1, 1), 1, 1),
    ((1, 2, 7, 6), (2, 3, 3), (2, 2), (1, 1), (1, 1), 1, 1),
    ((1, 2, 8, 9), (2, 3, 3), (1, 1), (2, 2), (2, 2), 1, 2),
    ((1, 4, 5, 8), (4, 3, 2), (1, 2), (1, 0), (1, 1), 2, 4),
    ((2, 2, 6, 6), (2, 5, 5), (1, 1), (2, 2), (1, 1), 2, 1),
]


def _case(cfg, seed=0, dtype=D64, scale=2.5):
    (b, c, h, w), (co, kh, kw), s, p, d, groups, og = cfg
    g = _gen(seed)
    ho, wo = _out_size(h, kh, s[0], p[0], d[0]), _out_size(w, kw, s[1], p[1], d[1])
    x = torch.randn(b, c, h, w, generator=g, dtype=dtype)
    weight = torch.randn(co, c // groups, kh, kw, generator=g, dtype=dtype)
    bias = torch.randn(co, generator=g, dtype=dtype)
    offset = torch.randn(b, 2 * og * kh * kw, ho, wo, generator=g, dtype=dtype) * scale
    mask = torch.rand(b, og * kh * kw, ho, wo, generator=g, dtype=dtype)
    return x, offset, weight, bias, mask, dict(stride=s, padding=p, dilation=d)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_zero_offsets_equal_conv2d(cfg):
    x, offset, weight, bias, _, geo = _case(cfg)
    groups = x.shape[1] // weight.shape[1]
    ref = F.conv2d(x, weight, bias, groups=groups, **geo)
    zero = torch.zeros_like(offset)
    assert torch.allclose(deform_conv2d(x, zero, weight, bias, **geo), ref, atol=1e-12)
    ones = torch.ones(offset.shape[0], offset.shape[1] // 2, *offset.shape[2:], dtype=D64)
    assert torch.allclose(deform_conv2d(x, zero, weight, bias, mask=ones, **geo), ref, atol=1e-12)
    half = deform_conv2d(x, zero, weight, None, mask=ones * 0.5, **geo)
    assert torch.allclose(half, 0.5 * F.conv2d(x, weight, None, groups=groups, **geo), atol=1e-12)


@pytest.mark.parametrize("dy,dx", [(0, 1), (-2, 0), (1, -3)])
def test_integer_offsets_equal_shifted_conv(dy, dx):
    g = _gen(1)
    x = torch.randn(2, 3, 8, 9, generator=g, dtype=D64)
    weight = torch.randn(4, 3, 3, 3, generator=g, dtype=D64)
    offset = torch.zeros(2, 18, 6, 7, dtype=D64)
    offset[:, 0::2], offset[:, 1::2] = dy, dx
    # shifted[y, x] = x[y + dy, x + dx], zero where that falls outside the image.
    pad = 4
    shifted = F.pad(x, (pad,) * 4)[..., pad + dy:pad + dy + 8, pad + dx:pad + dx + 9]
    out = deform_conv2d(x, offset, weight)
    assert torch.allclose(out, F.conv2d(shifted, weight), atol=1e-12)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_fractional_offsets_match_loop(cfg):
    x, offset, weight, bias, mask, geo = _case(cfg, seed=2)
    for m in (None, mask):
        ours = deform_conv2d(x, offset, weight, bias, mask=m, **geo)
        ref = loop_deform(x, offset, weight, bias, mask=m, **geo)
        assert (ours - ref).abs().max().item() < 1e-10


def test_float32_matches_float64_loop():
    x, offset, weight, bias, mask, geo = _case(CONFIGS[0], seed=3)
    ours = deform_conv2d(x.float(), offset.float(), weight.float(), bias.float(), mask=mask.float(), **geo)
    ref = loop_deform(x, offset, weight, bias, mask=mask, **geo)
    assert ours.dtype == torch.float32
    assert (ours.double() - ref).abs().max().item() < 1e-4


@pytest.mark.parametrize("hw", [(1, 5), (5, 1), (1, 1)])
def test_one_pixel_wide_inputs_match_loop(hw):
    cfg = ((1, 2, *hw), (2, 3, 3), (1, 1), (1, 1), (1, 1), 1, 1)
    x, offset, weight, bias, mask, geo = _case(cfg, seed=4, scale=0.7)
    ours = deform_conv2d(x, offset, weight, bias, mask=mask, **geo)
    ref = loop_deform(x, offset, weight, bias, mask=mask, **geo)
    assert (ours - ref).abs().max().item() < 1e-10


def test_mask_scales_each_tap():
    x, offset, weight, _, mask, geo = _case(CONFIGS[0], seed=5)
    assert deform_conv2d(x, offset, weight, mask=torch.zeros_like(mask), **geo).abs().max() == 0
    # Masking a single tap equals zeroing that tap's weight.
    only = torch.ones_like(mask)
    only[:, 4] = 0
    w_cut = weight.clone()
    w_cut[:, :, 1, 1] = 0
    a = deform_conv2d(x, offset, weight, mask=only, **geo)
    assert torch.allclose(a, deform_conv2d(x, offset, w_cut, **geo), atol=1e-12)


@pytest.mark.parametrize("c,groups,og,stride", [(2, 1, 1, 1), (4, 2, 2, 2)])
def test_gradcheck_all_inputs(c, groups, og, stride):
    g = _gen(6)
    x = torch.randn(1, c, 3, 5, generator=g, dtype=D64, requires_grad=True)
    weight = torch.randn(2, c // groups, 2, 2, generator=g, dtype=D64, requires_grad=True)
    bias = torch.randn(2, generator=g, dtype=D64, requires_grad=True)
    # Bilinear sampling has kinks on the integer lattice: keep fractional parts in (0.2, 0.8);
    # whole parts in [-2, 1] send some taps outside the image.
    wo = 4 // stride
    frac = 0.2 + 0.6 * torch.rand(1, 8 * og, 2, wo, generator=g, dtype=D64)
    whole = torch.randint(-2, 2, (1, 8 * og, 2, wo), generator=g).to(D64)
    offset = (whole + frac).requires_grad_(True)
    mask = torch.rand(1, 4 * og, 2, wo, generator=g, dtype=D64, requires_grad=True)

    def fn(x, offset, weight, bias, mask):
        return deform_conv2d(x, offset, weight, bias, stride=(1, stride), mask=mask)

    assert torch.autograd.gradcheck(fn, (x, offset, weight, bias, mask), eps=1e-6, atol=1e-7)


def test_module_matches_function_and_torchvision_names():
    torch.manual_seed(0)
    conv = DeformConv2d(4, 6, 3, stride=2, padding=1, groups=2).double()
    assert [n for n, _ in conv.named_parameters()] == ["weight", "bias"]
    assert conv.weight.shape == (6, 2, 3, 3)
    x, offset, _, _, mask, _ = _case(((1, 4, 7, 7), (6, 3, 3), (2, 2), (1, 1), (1, 1), 2, 1), seed=7)
    ref = deform_conv2d(x, offset, conv.weight, conv.bias, stride=2, padding=1, mask=mask)
    assert torch.equal(conv(x, offset, mask), ref)


@pytest.mark.parametrize("modulated", [False, True])
def test_block_starts_as_plain_conv_and_learns_offsets(modulated):
    torch.manual_seed(0)
    block = DeformableConvBlock(3, 5, 3, padding=1, modulated=modulated).double()
    names = {n for n, _ in block.named_parameters()}
    assert names == {"weight", "bias", "conv_offset.weight", "conv_offset.bias"}
    assert block.conv_offset.out_channels == (27 if modulated else 18)
    x = torch.randn(2, 3, 6, 7, dtype=D64)
    scale = 0.5 if modulated else 1.0
    ref = scale * F.conv2d(x, block.weight, padding=1) + block.bias.view(1, -1, 1, 1)
    out = block(x)
    assert torch.allclose(out, ref, atol=1e-12)
    out.square().sum().backward()
    assert block.conv_offset.weight.grad.abs().sum() > 0
    assert block.weight.grad.abs().sum() > 0


def test_bad_shapes_raise_one_line_usage_errors():
    x = torch.randn(1, 4, 6, 6)
    w = torch.randn(3, 4, 3, 3)
    with pytest.raises(UsageError, match=r"offset must be \(1, 2·G·9, 4, 4\)") as e:
        deform_conv2d(x, torch.zeros(1, 17, 4, 4), w)
    assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="offset must be"):
        deform_conv2d(x, torch.zeros(1, 18, 5, 5), w)
    with pytest.raises(UsageError, match="mask must be"):
        deform_conv2d(x, torch.zeros(1, 18, 4, 4), w, mask=torch.ones(1, 8, 4, 4))
    with pytest.raises(UsageError, match="does not fit 4 input channels"):
        deform_conv2d(x, torch.zeros(1, 18, 4, 4), torch.randn(3, 3, 3, 3))
    with pytest.raises(UsageError, match="too small"):
        deform_conv2d(torch.randn(1, 4, 2, 2), torch.zeros(1, 18, 1, 1), w)


def _golden_module():
    spec = importlib.util.spec_from_file_location("make_deform_golden", ROOT / "benchmarks" / "make_deform_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_golden_roundtrip_detects_differences(tmp_path):
    """The capture/compare pipeline works and can fail (with our op standing in for torchvision)."""
    golden = _golden_module()
    data = golden.make_golden(deform_conv2d, source="geobench (self-test)")
    torch.save(data, tmp_path / "g.pt")
    loaded = torch.load(tmp_path / "g.pt", weights_only=True)
    assert max(golden.compare_golden(loaded, deform_conv2d).values()) < 1e-12
    # Loop reference agrees with the stored outputs too (so the cases themselves are sane).
    case = loaded["cases"][1]
    ref = loop_deform(case["input"], case["offset"], case["weight"], case["bias"], case["stride"],
                      case["padding"], case["dilation"], case["mask"])
    assert torch.allclose(ref, case["output"], atol=1e-10)
    loaded["cases"][0]["grad_offset"][0, 0, 0, 0] += 1e-3
    assert max(golden.compare_golden(loaded, deform_conv2d).values()) > 1e-4


@pytest.mark.parametrize("backend", ["geobench", "torchvision"])
def test_matches_torchvision_golden(backend):
    """Outputs and input/offset/mask/weight/bias gradients, incl. whole-pixel offsets."""
    from functools import partial

    from geobench.models.deform import deform_backend

    if backend == "torchvision" and deform_backend("cpu") != "torchvision":
        pytest.skip("torchvision.ops is not importable here (the fallback is tested alone)")
    golden = _golden_module()
    data = torch.load(GOLDEN, weights_only=True)
    assert {"zero", "whole", "whole_y"} <= {c["offsets"] for c in data["cases"]}
    errors = golden.compare_golden(data, partial(deform_conv2d, backend=backend))
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-9, f"{worst}: {errors[worst]:.3g} vs {data['source']}"


def test_whole_pixel_offset_gradient_is_right_hand():
    """At whole-pixel samples d/d(offset) is the forward difference (torchvision's side)."""
    g = _gen(3)
    x = torch.randn(1, 2, 5, 6, generator=g, dtype=D64)
    w = torch.randn(2, 2, 3, 3, generator=g, dtype=D64)
    off = torch.randint(-1, 2, (1, 18, 5, 6), generator=g).to(D64).requires_grad_(True)
    deform_conv2d(x, off, w, padding=1, backend="geobench").sum().backward()
    eps = 1e-7
    for idx in [(0, 0, 2, 3), (0, 5, 1, 1), (0, 8, 4, 5), (0, 13, 0, 2)]:
        bumped = off.detach().clone()
        bumped[idx] += eps
        right = (deform_conv2d(x, bumped, w, padding=1).sum() - deform_conv2d(x, off.detach(), w, padding=1).sum()) / eps
        assert off.grad[idx].item() == pytest.approx(right.item(), abs=1e-5)


def test_backend_choice():
    from geobench.models.deform import deform_backend

    x, off, w = torch.randn(1, 2, 4, 4), torch.zeros(1, 18, 4, 4), torch.randn(2, 2, 3, 3)
    assert deform_backend("cpu") in ("geobench", "torchvision")
    with pytest.raises(UsageError, match="backend must be one of"):
        deform_conv2d(x, off, w, padding=1, backend="cuda")
    if deform_backend("cpu") == "geobench":
        with pytest.raises(UsageError, match="torchvision.ops.deform_conv2d is not importable"):
            deform_conv2d(x, off, w, padding=1, backend="torchvision")


def test_benchmark_rows_follow_the_contract(monkeypatch):
    from geobench.bench import BenchRow
    from geobench.bench import deform as bench

    monkeypatch.setattr(bench, "QUICK_CASES", [("tiny", 2, 2, 1, 5, 6, 3)])
    rows = [BenchRow.from_dict(r, stage="models") for r in bench.run(quick=True)]
    assert len(rows) == 4 and all(r.value > 0 and r.floor > 0 and r.ratio > 0 for r in rows)
    assert {r.case for r in rows} == {"deform_conv2d v2 tiny B=2 fwd", "deform_conv2d v2 tiny B=2 fwd+bwd"}
