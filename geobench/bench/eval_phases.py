"""Benchmark: exact search at every common descriptor size, and where the time goes.

- `exact search NqxNr D=256|512|1024`: the in-process evaluation (ranks, tie counts,
  top-100, metrics) against ONE numpy float32 product of the same size on the same
  threads. Targets: <=1.5 at D=256, <=1.2 at D>=512 (the smaller D, the cheaper the
  product, the more the per-element passes after it weigh). The row's params give each
  search phase as a fraction of the product: products, passes (rank counts and top-K),
  rescoring (exact re-scoring of near-ties).
- `eval --features ... command`: `evaluate_features` end to end (read and validate the
  features file, search, metrics, write results.h5 + metrics.csv) against the same
  product, and one information row per phase. Quick: 4096x16384 D=1024 (<=1.5); full:
  20,000x60,000 at D=1024 (<=1.15) and 30,000x60,000 at D=256 (<=1.3), issue 26.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from geobench.bench import interleaved, make_row, selected

STAGE = "eval"
TARGETS = {256: "<=1.5", 512: "<=1.2", 1024: "<=1.2"}


def _product(q: np.ndarray, r: np.ndarray):
    out = np.empty((q.shape[0], r.shape[0]), dtype=np.float32)
    out.fill(1.0)  # the floor must not pay first-touch page faults
    return lambda: np.matmul(q, r.T, out=out)


def _phases(result, product: float) -> dict[str, float]:
    return {f"{k}_x_product": round(v / product, 3) for k, v in result.phases.items()}


def _sweep_row(nq: int, nr: int, dim: int, repeat: int) -> dict | None:
    from geobench.bench.eval import make_data
    from geobench.eval.evaluate import evaluate

    case = f"exact search {nq}x{nr} D={dim}"
    if not selected(case):
        return None
    q, r, positives = make_data(nq, nr, dim, seed=5)
    keep = {}

    def run():
        keep["r"] = evaluate(q, r, positives, "cvusa")

    t = interleaved({"search": run, "product": _product(q, r)}, repeat=repeat, warmup=1)
    # the phase clock is wall time inside the library; scale it to the product's wall time
    wall = time.perf_counter()
    _product(q, r)()
    wall = time.perf_counter() - wall
    return make_row(STAGE, case, "time", t["search"], t["product"], "s", TARGETS[dim],
                    samples=t.ratios("search", "product"),
                    note="floor = one numpy float32 q @ r.T into a preallocated output",
                    **_phases(keep["r"], wall))


def _command_rows(nq: int, nr: int, dim: int, repeat: int, target: str) -> list[dict]:
    from geobench.bench.eval import make_data
    from geobench.eval.evaluate import EvalOptions, evaluate_features
    from geobench.eval.features import read_features, write_features

    case = f"eval --features {nq}x{nr} D={dim} command"
    if not selected(case):
        return []
    q, r, positives = make_data(nq, nr, dim, seed=6)
    rows = []
    with tempfile.TemporaryDirectory(prefix="geobench-bench-eval-") as tmp:
        path = write_features(Path(tmp) / "features.h5", q, r, positives)
        options = EvalOptions(protocol="cvusa")

        def command():
            summary = evaluate_features(path, Path(tmp) / "out", options)
            totals.append(summary.result)

        totals: list = []
        t = interleaved({"command": command, "product": _product(q, r)}, repeat=repeat,
                        warmup=1, clock=time.perf_counter)  # imports are not the command
        rows.append(make_row(STAGE, case, "time", t["command"], t["product"], "s", target,
                             samples=t.ratios("command", "product"),
                             note="read, validate, search, metrics, write; wall time "
                                  "(the read, validation and write touch files)"))
        reads = []
        for _ in range(2):  # the read + validation alone, outside the timed command
            start = time.perf_counter()
            read_features(path)
            reads.append(time.perf_counter() - start)
        read = float(np.median(reads))
        result = totals[-1]
        search = result.phases
        parts = {"read+validate": read, **search,
                 "metrics": result.seconds - sum(search.values()),
                 "write": max(0.0, t.samples["command"][-1] - read - result.seconds)}
        for name, value in parts.items():
            rows.append(make_row(STAGE, case, f"phase: {name}", value, t["product"], "s", "",
                                 note="wall seconds of the last command run"))
    return rows


def run(quick: bool) -> list[dict]:
    from geobench.progress import set_quiet

    set_quiet(True)
    nq, nr = (4096, 16384) if quick else (8884, 8884)
    repeat = 3
    rows = [row for row in (_sweep_row(nq, nr, d, repeat) for d in (256, 512, 1024))
            if row is not None]
    if quick:
        return rows + _command_rows(nq, nr, 1024, 2, "<=1.5")
    for nq, nr, dim, target in ((20_000, 60_000, 1024, "<=1.15"), (30_000, 60_000, 256, "<=1.3")):
        rows += _command_rows(nq, nr, dim, 3, target)
    return rows
