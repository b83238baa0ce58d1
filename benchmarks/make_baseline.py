"""Re-take benchmarks/baseline/bench.csv with tolerances from measured run-to-run noise.

    python benchmarks/make_baseline.py --runs 3 --out benchmarks/baseline/bench.csv

runs `geobench bench all --quick --threads 1` RUNS times (or takes existing bench.csv files with
--from), then writes the median ratio of every row with a per-row tolerance of twice the
largest relative deviation seen (at least 25%), and prints the noise table.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from geobench.bench.noise import noise_baseline, write_baseline


def _g(x: float | None) -> str:
    return "" if x is None else f"{x:.3g}"


def markdown(entries) -> str:
    """Median ratio (or value), target, verdict, noise and tolerance per row."""
    lines = ["| stage | case | metric | ratio (median) | target | status | noise | tolerance |",
             "|---|---|---|---:|---|---|---:|---:|"]
    for entry, spread, _runs in entries:
        r = entry.row
        shown = _g(r.ratio) if r.ratio is not None else f"{_g(r.value)} {r.unit}"
        noise = "" if spread != spread else f"±{spread:.0%}"
        lines.append(f"| {r.stage} | {r.case} | {r.metric} | {shown} | {r.target} | {r.status} "
                     f"| {noise} | {entry.tolerance or 0:.0%} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="bench runs to take")
    parser.add_argument("--stage", default="all", help="stage(s) to run, as `geobench bench`")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for floor and measurement (the CI check uses 1)")
    parser.add_argument("--from", dest="sources", nargs="*", default=[],
                        help="existing bench.csv files instead of new runs")
    parser.add_argument("--margin", type=float, default=2.0, help="tolerance / max deviation")
    parser.add_argument("--minimum", type=float, default=0.25, help="smallest tolerance")
    parser.add_argument("--out", default="benchmarks/baseline/bench.csv")
    parser.add_argument("--markdown", help="also write the baseline as a Markdown table here")
    args = parser.parse_args()
    sources = [Path(p) for p in args.sources]
    with tempfile.TemporaryDirectory(prefix="geobench-baseline-") as tmp:
        for i in range(args.runs if not sources else 0):
            out = Path(tmp) / f"run{i}"
            print(f"run {i + 1}/{args.runs}", file=sys.stderr, flush=True)
            code = subprocess.call([sys.executable, "-m", "geobench", "bench", args.stage,
                                    "--quick", "--quiet", "--threads", str(args.threads),
                                    "--out", str(out)],
                                   stdout=subprocess.DEVNULL)
            if code not in (0, 1):  # 1: a stage failed; its rows are left out of the baseline
                return code
            sources.append(out / "bench.csv")
        entries = noise_baseline(sources, margin=args.margin, minimum=args.minimum)
        write_baseline(entries, args.out)
    for entry, spread, n in entries:
        r = entry.row
        print(f"{r.stage:10s} {r.case[:44]:44s} {r.metric[:16]:16s} {r.judged or 0:9.3g} "
              f"noise {spread:6.1%} tol {entry.tolerance or 0:4.0%} ({n} runs)")
    if args.markdown:
        Path(args.markdown).write_text(markdown(entries), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
