"""Benchmark (part of `geobench bench eval`): descriptors larger than the memory budget.

A features.h5 whose descriptors are several times `--memory` is evaluated by
`evaluate_features` in a fresh process, so the search streams the references from disk
block by block. Rows:
- peak_memory: peak RSS of that process above its loaded libraries, against the budget
  plus the in-memory links (target <= 1.0); what is left above it is the constant that
  must not grow with the file (the note gives it in MB);
- time: the whole evaluation (read, validate, search, write) against the floor, the same
  float32 products q @ r.T done in memory in slabs (target <= 1.5, reads included);
- read_rate: bytes the search read from the file per second, against one sequential read
  of the same file (information: on a file in the page cache both are memory speeds).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from geobench.bench import MB, make_row, peak_rss_subprocess, selected

STAGE = "eval"


def stream_case(path: str, out: str, memory: int) -> dict:
    """In a fresh process: evaluate a features file within `memory`, with its peak."""
    import torch  # noqa: F401  (libraries load before the baseline)

    from geobench.bench import peak_during
    from geobench.eval.evaluate import EvalOptions, evaluate_features
    from geobench.progress import set_quiet

    set_quiet(True)
    with peak_during() as mem:
        t = time.perf_counter()
        summary = evaluate_features(path, out, EvalOptions(protocol="pairs", memory_bytes=memory,
                                                           save_topk=10))
        seconds = time.perf_counter() - t
    plan = summary.result.plan
    return {"base": mem.base, "peak": mem.peak, "exact": mem.exact, "seconds": seconds,
            "streamed": any("streamed from disk" in n for n in summary.notes),
            "block_queries": plan.block_queries, "block_references": plan.block_references}


def run(quick: bool) -> list[dict]:
    from geobench.bench.eval import make_data
    from geobench.eval.features import write_features

    nq, nr, dim, memory = ((2048, 65536, 512, 32 * MB) if quick
                           else (8192, 1_048_576, 1024, 512 * MB))
    case = f"streamed features {nq}x{nr} D={dim} memory={memory // MB}MB"
    if not selected(case):
        return []
    with tempfile.TemporaryDirectory(prefix="geobench-bench-stream-") as tmp:
        q, r, positives = make_data(nq, nr, dim)
        path = Path(tmp) / "f.h5"
        write_features(path, q, r, positives)
        size = path.stat().st_size
        slab = min(nq, 1024)
        out = np.empty((slab, nr), dtype=np.float32)
        t = time.perf_counter()
        for s in range(0, nq, slab):
            np.matmul(q[s:s + slab], r.T, out=out[:min(slab, nq - s)])
        floor = time.perf_counter() - t
        del q, r, out
        t = time.perf_counter()
        with path.open("rb") as fh:
            while fh.read(64 * MB):
                pass
        read_rate = size / (time.perf_counter() - t)
        child = peak_rss_subprocess(stream_case, str(path), str(Path(tmp) / "out"), memory).result
    used = child["peak"] - child["base"]
    small = positives.indices.nbytes + positives.indptr.nbytes
    n_blocks = -(-nq // child["block_queries"])
    read_bytes = n_blocks * nr * dim * 4 + nq * dim * 4
    note = (f"file {size / MB:.0f} MB = {size / memory:.1f}x the budget; streamed="
            f"{child['streamed']}; blocks {child['block_queries']}x{child['block_references']}")
    return [
        make_row(STAGE, case, "peak_memory", used / MB, (memory + small) / MB, "MB", "<=1.0",
                 exact=child["exact"], note=note + f"; floor = budget + links; above it: "
                 f"{(used - memory - small) / MB:.0f} MB"),
        make_row(STAGE, case, "time", child["seconds"], floor, "s", "<=1.5",
                 note="floor = the same float32 products in memory, in slabs; value = the "
                      "whole evaluate_features (read, validate, search, write)"),
        make_row(STAGE, case, "read_rate", read_bytes / child["seconds"] / MB, read_rate / MB,
                 "MB/s", None, note="floor = one sequential read of the file (page cache "
                                    "when it fits in memory)"),
    ]
