"""Record torchvision's ConvNeXt-T stochastic depth as LRFR's code builds it, for a test.

Run where torchvision is importable:

    python benchmarks/make_drop_path_golden.py [--out tests/fixtures/drop_path_golden.json]

LRFR (WenjianGan/LRFR models/backbone.py) takes torchvision.models.convnext_tiny, whose
default stochastic_depth_prob is 0.1, and keeps `features[:-2]` (stages 1-3, 15 blocks).
The file holds each kept block's StochasticDepth probability and mode, and the per-sample
multipliers (0 or 1/(1-p)) each block applied in one train-mode forward of a batch of
BATCH after torch.manual_seed(SEED): blocks with p = 0 draw nothing, the others one
bernoulli_ of shape (B, 1, 1, 1) each, in order, so geobench's drop path run after the
same seed must apply the same multipliers (tests/test_drop_path.py).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torchvision

FORMAT = "geobench-drop-path-golden/1"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "drop_path_golden.json"
SEED, BATCH, SIZE = 5, 16, 32


def record() -> dict:
    torch.manual_seed(0)
    net = torchvision.models.convnext_tiny(weights=None)
    kept = torch.nn.Sequential(*list(net.features.children())[:-2]).train()
    blocks = [m for m in kept.modules() if isinstance(m, torchvision.ops.StochasticDepth)]
    multipliers: list[list[float]] = []

    def hook(module, inputs, output):
        # Per sample: output / input on one element that is not zero (the residual branch).
        x, y = inputs[0].flatten(1), output.flatten(1)
        j = x.abs().argmax(dim=1, keepdim=True)
        multipliers.append((y.gather(1, j) / x.gather(1, j)).squeeze(1).tolist())

    for b in blocks:
        b.register_forward_hook(hook)
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(SEED)
    with torch.no_grad():
        kept(x)
    return {"format": FORMAT, "torchvision": torchvision.__version__, "torch": torch.__version__,
            "seed": SEED, "batch": BATCH, "size": SIZE,
            "p": [b.p for b in blocks], "mode": [b.mode for b in blocks], "multipliers": multipliers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    data = record()
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {args.out}: {len(data['p'])} blocks, p {data['p'][0]:.4f} .. {data['p'][-1]:.4f}")


if __name__ == "__main__":
    main()
