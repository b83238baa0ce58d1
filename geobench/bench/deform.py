"""Benchmark: deformable convolution (geobench.models.deform) against im2col convolution.

The floor is the same convolution written as `F.unfold` + one matmul (im2col), which
moves the same K·C·Ho·Wo column tensor as the deformable version but samples on the
grid instead of bilinearly; the ratio is the price of the deformable sampling. A second
row gives plain `F.conv2d` (the vendor kernel) as information. Forward and
forward+backward, at the MC_GRA shape (2-channel pooled 7×39 map) and a mid-size map.
Rows carry stage "models"; `geobench.bench.models` can append `run(quick)` to its rows.
"""
from __future__ import annotations

from typing import Any

from geobench.bench import bench_threads, interleaved, make_row, planted, selected

STAGE = "models"
# (label, B, C_in, C_out, H, W, k)
CASES = [
    ("mcgra 2ch 7x39 k5", 32, 2, 1, 7, 39, 5),
    ("mid 64ch 56x56 k3", 4, 64, 64, 56, 56, 3),
]
QUICK_CASES = [CASES[0], ("mid 64ch 28x28 k3", 4, 64, 64, 28, 28, 3)]
TARGET = "<="  # regression-checked only: the price of bilinear sampling has no published bound


def _fns(b: int, c: int, co: int, h: int, w: int, k: int, train: bool) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from geobench.models.deform import deform_conv2d

    g = torch.Generator().manual_seed(0)
    p = k // 2
    x = torch.randn(b, c, h, w, generator=g, requires_grad=train)
    weight = torch.randn(co, c, k, k, generator=g, requires_grad=train)
    offset = (torch.randn(b, 2 * k * k, h, w, generator=g) * 2).requires_grad_(train)
    mask = torch.rand(b, k * k, h, w, generator=g).requires_grad_(train)

    def im2col():
        cols = F.unfold(x, k, padding=p)  # (B, C·K, H·W)
        return (weight.view(co, -1) @ cols).view(b, co, h, w)

    fns = {
        "deform": lambda: deform_conv2d(x, offset, weight, padding=p, mask=mask),
        "im2col": im2col,
        "conv2d": lambda: F.conv2d(x, weight, padding=p),
    }
    if not train:
        def no_grad(fn):
            def run():
                with torch.no_grad():
                    fn()
            return run
        return {name: no_grad(fn) for name, fn in fns.items()}

    def step(fn):
        def run():
            fn().square().mean().backward()
        return run
    return {name: step(fn) for name, fn in fns.items()}


def run(quick: bool) -> list[dict]:
    rows = []
    # sub-millisecond calls: each sample loops for ~50 ms, 7 (floor, deform) pairs per row
    repeat = 7 if quick else 11
    for label, b, c, co, h, w, k in QUICK_CASES if quick else CASES:
        for train in (False, True):
            mode = "fwd+bwd" if train else "fwd"
            case = f"deform_conv2d v2 {label} B={b} {mode}"
            if not selected(case):
                continue
            fns = _fns(b, c, co, h, w, k, train)
            fns["deform"] = planted(case, fns["deform"])
            t = interleaved(fns, repeat=repeat, min_seconds=0.05)
            rows.append(make_row(STAGE, case, "time", t["deform"], t["im2col"], "s", TARGET,
                                 samples=t.ratios("deform", "im2col"),
                                 floor_is="unfold+matmul", threads=bench_threads()))
            rows.append(make_row(STAGE, case, "time_vs_conv2d", t["deform"], t["conv2d"], "s", "",
                                 samples=t.ratios("deform", "conv2d"),
                                 floor_is="F.conv2d", threads=bench_threads()))
    return rows
