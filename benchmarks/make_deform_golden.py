"""Capture golden outputs and gradients of torchvision.ops.deform_conv2d for geobench's tests.

Run where torchvision is importable (any machine with a torchvision matching its torch):

    python benchmarks/make_deform_golden.py [--out tests/fixtures/deform_golden.pt] [--device cpu]
    python benchmarks/make_deform_golden.py --check   # geobench's kernels against the file

It saves, for seeded configurations, the float64 inputs (input, offset, mask, weight,
bias, grad_output), torchvision's output and its gradients w.r.t. every input. Offsets
are random (σ = 2.5 px), whole pixels (zero, as MC_GRA's zero-initialised offset
predictors start, and integers reaching past the border) or whole in one axis only:
at whole pixels the offset gradient is a one-sided derivative, and geobench must take
torchvision's (right-hand) side. tests/test_deform.py compares geobench.models.deform
(its own kernel, and torchvision's through it when importable) against the file. The
case generation and the comparison live here so the test exercises the same code.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

FORMAT = "geobench-deform-golden/2"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "deform_golden.pt"

# name, (B, C_in, H, W), (C_out, kh, kw), stride, padding, dilation, groups, offset_groups, mask,
# offsets: "random" (σ 2.5 px), "zero", "whole" (integers in [-3, 3]), "whole_y" (dy whole, dx random)
CASES: list[tuple[Any, ...]] = [
    ("v1_3x3", (2, 4, 7, 9), (6, 3, 3), (1, 1), (1, 1), (1, 1), 1, 1, False, "random"),
    ("v2_3x3", (2, 4, 7, 9), (6, 3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True, "random"),
    ("v2_5x5_s2", (1, 2, 11, 8), (3, 5, 5), (2, 2), (2, 2), (1, 1), 1, 1, True, "random"),
    ("v2_dil2_groups", (2, 4, 9, 10), (4, 3, 3), (1, 2), (2, 1), (2, 1), 2, 2, True, "random"),
    ("v2_rect_kernel", (1, 3, 6, 7), (2, 3, 2), (1, 1), (1, 0), (1, 1), 1, 3, True, "random"),
    ("v2_width1", (1, 2, 5, 1), (2, 3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True, "random"),
    ("v2_zero_offsets", (1, 3, 5, 6), (4, 3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True, "zero"),
    ("v1_zero_offsets", (1, 2, 5, 6), (2, 3, 3), (1, 1), (1, 1), (1, 1), 1, 1, False, "zero"),
    ("v2_whole_offsets", (1, 4, 5, 6), (3, 3, 3), (1, 1), (1, 1), (1, 1), 1, 2, True, "whole"),
    ("v2_mcgra_k5_whole", (1, 2, 5, 9), (1, 5, 5), (1, 1), (2, 2), (1, 1), 1, 1, True, "whole"),
    ("v2_whole_y_only", (1, 3, 6, 6), (2, 3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True, "whole_y"),
]


def _offsets(kind: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    if kind == "random":  # σ = 2.5 px sends many samples outside the image, where rules differ
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * 2.5
    if kind == "zero":
        return torch.zeros(shape, dtype=torch.float64)
    whole = torch.randint(-3, 4, shape, generator=gen).to(torch.float64)
    if kind == "whole":
        return whole
    if kind == "whole_y":  # channels 2k hold dy, 2k+1 dx
        frac = torch.randn(*shape, generator=gen, dtype=torch.float64) * 1.5
        whole[:, 1::2] = frac[:, 1::2]
        return whole
    raise ValueError(f"unknown offset kind {kind!r}")


def _inputs(case: tuple[Any, ...], gen: torch.Generator) -> dict[str, Any]:
    name, (b, c, h, w), (co, kh, kw), stride, padding, dilation, groups, og, use_mask, kind = case
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    k = kh * kw

    def rand(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale

    return {
        "name": name, "stride": stride, "padding": padding, "dilation": dilation, "offsets": kind,
        "input": rand(b, c, h, w),
        "offset": _offsets(kind, (b, 2 * og * k, ho, wo), gen),
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


def check(path: Path) -> int:
    """Compare geobench's deform_conv2d (every backend that runs here) with a golden file."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from functools import partial

    from geobench.models.deform import deform_backend, deform_conv2d

    data = torch.load(path, weights_only=True)
    backends = ["geobench"] + (["torchvision"] if deform_backend("cpu") == "torchvision" else [])
    worst_all = 0.0
    for backend in backends:
        errors = compare_golden(data, partial(deform_conv2d, backend=backend))
        worst = max(errors, key=errors.get)
        grads = max(v for k, v in errors.items() if ":grad_offset" in k)
        print(f"{backend}: {len(data['cases'])} cases vs {data['source']}: worst {worst} "
              f"{errors[worst]:.3g}, worst offset gradient {grads:.3g}")
        worst_all = max(worst_all, errors[worst])
    return 0 if worst_all < 1e-9 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--device", default="cpu", help="torchvision kernel to capture: cpu or cuda")
    parser.add_argument("--check", action="store_true", help="compare geobench with the file at --out")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.out)
    try:
        import torchvision
        from torchvision.ops import deform_conv2d
    except ImportError:
        print("torchvision is not importable here; run this where it is", file=sys.stderr)
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
