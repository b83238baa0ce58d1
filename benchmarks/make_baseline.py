"""Re-take benchmarks/baseline/bench.csv: every row's repetitions from several whole runs.

    python benchmarks/make_baseline.py --runs 3 --out benchmarks/baseline/bench.csv

runs `geobench bench all --quick --threads 1` RUNS times (or takes existing run folders
with --from), then writes per row the median of all repetitions, the repetitions
themselves grouped by run (`samples`, what the regression gate compares against), the
smallest worsening its noise lets the gate detect (`noise`) and the gate factor - 1
(`tolerance`). How it was taken (machine, load average of each run, repetitions,
versions) goes to `method.json` beside the CSV. With --stage, only that stage's rows are
replaced in an existing baseline.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from geobench.bench import stats
from geobench.bench.check import DEFAULT_TOLERANCE, read_baseline
from geobench.bench.noise import noise_baseline, write_baseline


def _g(x: float | None) -> str:
    return "" if x is None else f"{x:.3g}"


def run_meta(folder: Path) -> dict:
    """Provenance of one run from its bench.h5 (machine, load, versions)."""
    import h5py

    with h5py.File(folder / "bench.h5", "r") as h5:
        attrs = {k: h5.attrs[k] for k in ("created_at", "platform", "cpu_count", "threads",
                                          "loadavg_start", "loadavg_end", "versions",
                                          "geobench", "python")}
    out = {k: (v.item() if hasattr(v, "item") else v) for k, v in attrs.items()}
    out["versions"] = json.loads(out["versions"])
    return out


def merge(new: list, old_path: Path, stages: set[str]) -> list:
    """Keep the old baseline's rows of the stages not re-taken, in their place."""
    if not old_path.is_file():
        return new
    from geobench.bench.noise import detectable

    kept = []
    for entry in read_baseline(old_path):
        if entry.row.stage not in stages:
            kept.append((entry, detectable(entry.samples()), len(entry.runs) or 1))
    from geobench.bench import STAGES

    place = {s: i for i, s in enumerate(STAGES)}
    return sorted(kept + new, key=lambda e: place.get(e[0].row.stage, len(STAGES)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="bench runs to take")
    parser.add_argument("--stage", default="all", help="stage(s) to run, as `geobench bench`")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for floor and measurement (the CI check uses 1)")
    parser.add_argument("--from", dest="sources", nargs="*", default=[],
                        help="existing run folders (with bench.csv, bench.h5) instead of new runs")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="gate factor - 1 stored for every row")
    parser.add_argument("--out", default="benchmarks/baseline/bench.csv")
    parser.add_argument("--keep", help="also keep the run folders here")
    parser.add_argument("--rows", help="only the cases this regular expression matches "
                                       "(`geobench bench --rows`)")
    args = parser.parse_args()
    out = Path(args.out)
    folders = [Path(p) for p in args.sources]
    with tempfile.TemporaryDirectory(prefix="geobench-baseline-") as tmp:
        work = Path(args.keep or tmp)
        for i in range(args.runs if not folders else 0):
            folder = work / f"run{i}"
            print(f"run {i + 1}/{args.runs}", file=sys.stderr, flush=True)
            code = subprocess.call([sys.executable, "-m", "geobench", "bench", args.stage,
                                    "--quick", "--no-smoke", "--quiet", "--threads", str(args.threads),
                                    "--out", str(folder)]
                                   + (["--rows", args.rows] if args.rows else []),
                                   stdout=subprocess.DEVNULL)
            if code not in (0, 1):  # 1: a stage failed; its rows are left out of the baseline
                return code
            folders.append(folder)
        entries = noise_baseline([f / "bench.csv" for f in folders], tolerance=args.tolerance)
        metas = [run_meta(f) for f in folders]
    if args.stage != "all":
        entries = merge(entries, out, {e[0].row.stage for e in entries})
    write_baseline(entries, out)
    method = {
        "command": f"geobench bench {args.stage} --quick --threads {args.threads}"
                   + (f" --rows '{args.rows}'" if args.rows else ""),
        "runs": len(folders),
        "tolerance": args.tolerance,
        "gate": {"z": stats.Z, "alpha": stats.ALPHA, "min_samples": stats.MIN_SAMPLES},
        "repetitions": {"models tiny": 5, "models paper (mcgra)": 3, "deform_conv2d": 7,
                        "eval time": 4, "mine time": 7, "prep polar": 5,
                        "memory, exactness, train, synthetic": 1},
        "clock": "process CPU time on one thread (wall time for multi-process rows)",
        "machine": {k: metas[-1][k] for k in ("platform", "cpu_count", "python")},
        "versions": metas[-1]["versions"],
        "per_run": [{k: m[k] for k in ("created_at", "loadavg_start", "loadavg_end")}
                    for m in metas],
    }
    if args.stage != "all" and (out.parent / "method.json").is_file():
        previous = json.loads((out.parent / "method.json").read_text(encoding="utf-8"))
        method = {**previous, f"retaken {args.stage}": method}
    (out.parent / "method.json").write_text(json.dumps(method, indent=2) + "\n",
                                            encoding="utf-8")
    for entry, noise, n in entries:
        r = entry.row
        gate = ("" if noise != noise else "gated" if noise <= entry.tolerance
                else f"noisy: detects > {noise:.0%}")
        print(f"{r.stage:10s} {r.case[:48]:48s} {r.metric[:16]:16s} {_g(r.judged):>8s} "
              f"({n} runs) {gate}")
    print(f"wrote {out} and {out.parent / 'method.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
