"""Capture golden outputs of torchvision.ops.deform_conv2d for geobench's CPU tests.

Run where torchvision is importable (e.g. the GPU machine):

    python benchmarks/make_deform_golden.py [--out tests/fixtures/deform_golden.pt] [--device cuda]

It saves, for a few configurations, the float64 inputs (input, offset, mask, weight,
bias, grad_output), torchvision's output and its gradients w.r.t. every input;
tests/test_deform.py compares geobench.models.deform against the file when it exists.
The case generation and the comparison live here so the test exercises the same code.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

FORMAT = "geobench-deform-golden/1"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "deform_golden.pt"

# name, (B, C_in, H, W), (C_out, kh, kw), stride, padding, dilation, groups, offset_groups, mask
CASES: list[tuple[Any, ...]] = [
    ("v1_3x3", (2, 4, 7, 9), (6, 3, 3), (1, 1), (1, 1), (1, 1), 1, 1, False),
    ("v2_3x3", (2, 4, 7, 9), (6, 3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True),
    ("v2_5x5_s2", (1, 2, 11, 8), (3, 5, 5), (2, 2), (2, 2), (1, 1), 1, 1, True),
    ("v2_dil2_groups", (2, 4, 9, 10), (4, 3, 3), (1, 2), (2, 1), (2, 1), 2, 2, True),
    ("v2_rect_kernel", (1, 3, 6, 7), (2, 3, 2), (1, 1), (1, 0), (1, 1), 1, 3, True),
    ("v2_width1", (1, 2, 5, 1), (2, 3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True),
]


def _inputs(case: tuple[Any, ...], gen: torch.Generator) -> dict[str, Any]:
    name, (b, c, h, w), (co, kh, kw), stride, padding, dilation, groups, og, use_mask = case
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    k = kh * kw

    def rand(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale

    return {
        "name": name, "stride": stride, "padding": padding, "dilation": dilation,
        "input": rand(b, c, h, w),
        # σ = 2.5 px sends many samples outside the image, which is where rules differ.
        "offset": rand(b, 2 * og * k, ho, wo, scale=2.5),
        "mask": torch.rand(b, og * k, ho, wo, generator=gen, dtype=torch.float64) if use_mask else None,
        "weight": rand(co, c // groups, kh, kw, scale=0.5),
        "bias": rand(co),
        "grad_output": rand(b, co, ho, wo),
    }


def run_case(fn: Callable[..., torch.Tensor], case: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """Output of `fn` (a deform_conv2d) and its gradients w.r.t. every tensor input."""
    names = ["input", "offset", "weight", "bias"] + (["mask"] if case["mask"] is not None else [])
    leaves = {n: case[n].to(device).clone().requires_grad_(True) for n in names}
    out = fn(
        leaves["input"], leaves["offset"], leaves["weight"], leaves["bias"],
        stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
        mask=leaves.get("mask"),
    )
    out.backward(case["grad_output"].to(device))
    result = {"output": out.detach().cpu()}
    result.update({f"grad_{n}": leaves[n].grad.detach().cpu() for n in names})
    return result


def make_golden(fn: Callable[..., torch.Tensor], device: str = "cpu", source: str = "") -> dict[str, Any]:
    gen = torch.Generator().manual_seed(20240611)
    cases = []
    for case in CASES:
        inputs = _inputs(case, gen)
        cases.append({**inputs, **run_case(fn, inputs, device)})
    return {"format": FORMAT, "source": source, "device": device, "cases": cases}


def compare_golden(data: dict[str, Any], fn: Callable[..., torch.Tensor]) -> dict[str, float]:
    """Max absolute difference per case and quantity between `fn` and the stored golden."""
    if data.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file (format={data.get('format')!r}); regenerate it")
    errors: dict[str, float] = {}
    for case in data["cases"]:
        ours = run_case(fn, case)
        for key, value in ours.items():
            errors[f"{case['name']}:{key}"] = (value - case[key]).abs().max().item()
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--device", default="cpu", help="torchvision kernel to capture: cpu or cuda")
    args = parser.parse_args(argv)
    try:
        import torchvision
        from torchvision.ops import deform_conv2d
    except ImportError:
        print("torchvision is not importable here; run this where it is (e.g. the GPU box)", file=sys.stderr)
        return 1
    data = make_golden(deform_conv2d, args.device, f"torchvision {torchvision.__version__}, torch {torch.__version__}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    torch.save(data, tmp)
    tmp.replace(args.out)  # atomic: a half-written fixture would fail the tests confusingly
    print(f"wrote {len(data['cases'])} cases to {args.out} ({data['source']}, {args.device})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
