"""Benchmark: exact chunked evaluation against one dense matrix product.

Cases (quick mode scales them down): CVUSA test size (8,884 x 8,884, D=4096) and VIGOR
same-area size (52,605 queries x 90,618 references, D=1024). Descriptors are random unit
vectors with a planted positive per query, so ranks look like a trained model's.

Rows:
- time: the whole `evaluate` (ranks, top-100, metrics) against the floor, ONE dense
  float32 product q @ r.T of the same size into a preallocated output on the same
  threads (timed in alternation). At VIGOR size the dense output (19 GB) does not fit,
  so the floor is a dense product of a query slab against all references, scaled by
  Nq / slab (products scale linearly in Nq).
- peak_memory: peak RSS of the evaluation in a fresh process, above the interpreter and
  libraries, against the --memory budget plus the descriptors themselves.
- mismatches: ranks and tie counts (t, p) against a brute-force full matrix on a subset
  with exact ties; the timed rows use the default tie policy (expected).
"""
from __future__ import annotations

import numpy as np

from geobench.bench import MB, interleaved, make_row, peak_rss_subprocess, selected

STAGE = "eval"


def make_data(nq: int, nr: int, dim: int, seed: int = 0, noise: float = 1.2):
    """Unit descriptors; query i's positive is reference i (a noisy copy of it)."""
    from geobench.eval.csr import CSR

    rng = np.random.default_rng(seed)
    r = rng.standard_normal((nr, dim), dtype=np.float32)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    q = np.empty((nq, dim), dtype=np.float32)
    step = 8192
    for s in range(0, nq, step):
        n = min(step, nq - s)
        block = r[s:s + n] + noise * rng.standard_normal((n, dim), dtype=np.float32) / np.sqrt(dim)
        q[s:s + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    positives = CSR(np.arange(nq + 1, dtype=np.int64), np.arange(nq, dtype=np.int64))
    return q, r, positives


def _evaluate(q, r, positives, memory: int):
    from geobench.eval.evaluate import EvalOptions, evaluate

    return evaluate(q, r, positives, "vigor_same", EvalOptions(memory_bytes=memory))


def memory_case(nq: int, nr: int, dim: int, memory: int) -> dict:
    """Run in a fresh process: peak RSS of one evaluation above libraries + descriptors."""
    import torch  # noqa: F401  (library code is loaded before the baseline)

    from geobench.bench import peak_during
    from geobench.progress import set_quiet

    set_quiet(True)
    q, r, positives = make_data(nq, nr, dim)
    tq, tr, tp = make_data(8, 64, dim)
    _evaluate(tq, tr, tp, memory)  # import and warm every module first
    with peak_during() as mem:
        result = _evaluate(q, r, positives, memory)
    return {"base": mem.base, "peak": mem.peak, "exact": mem.exact,
            "descriptors": q.nbytes + r.nbytes, "r@1": result.metrics["r@1"],
            "blocks": f"{result.plan.block_queries}x{result.plan.block_references}"}


def _time_case(name: str, nq: int, nr: int, dim: int, memory: int, slab: int | None,
               repeat: int) -> dict | None:
    case = f"{name} {nq}x{nr} D={dim} memory={memory // MB}MB"
    if not selected(case):
        return None
    q, r, positives = make_data(nq, nr, dim)
    rows_floor = slab or nq
    out = np.zeros((rows_floor, nr), dtype=np.float32)
    out.fill(1.0)  # touch every page: the floor must not pay first-touch page faults
    q_floor = q[:rows_floor]
    result = {}

    def chunked():
        result["r"] = _evaluate(q, r, positives, memory)

    best = interleaved({"chunked": chunked, "dense": lambda: np.matmul(q_floor, r.T, out=out)},
                       repeat=repeat, warmup=0)
    scale = nq / rows_floor
    floor = best["dense"] * scale
    note = "floor = one dense q @ r.T into a preallocated output, same threads"
    if slab:
        note += f"; extrapolated from a {slab}-query slab x all references"
    plan = result["r"].plan
    return make_row(STAGE, case, "time", best["chunked"], floor, "s", "<=1.3",
                    samples=[x / scale for x in best.ratios("chunked", "dense")], note=note,
                    blocks=f"{plan.block_queries}x{plan.block_references}",
                    backend=plan.backend, dense_matrix_mb=round(nq * nr * 4 / MB))


def _exactness(quick: bool) -> dict:
    from geobench.eval.search import SearchOptions, search

    nq, nr, dim = (300, 3000, 64) if quick else (1000, 20000, 128)
    q, r, positives = make_data(nq, nr, dim, seed=1)
    r[nr // 2:nr // 2 + nq] = r[:nq]  # exact duplicates of every positive
    q[: nq // 10] = r[nr - nq // 10:]  # queries identical to some reference
    scores = q.astype(np.float64) @ r.astype(np.float64).T
    best = scores[np.arange(nq), np.arange(nq)][:, None]
    want = (scores > best).sum(axis=1)
    want_tied = (scores == best).sum(axis=1) - 1  # the positive itself is not a non-positive
    bad = 0
    for options in (SearchOptions(), SearchOptions(block_queries=37, block_references=501)):
        got = search(q, r, positives, options=options)
        bad += int(np.count_nonzero((got.ranks != want) | (got.tied_nonpositives != want_tied)
                                    | (got.tied_positives != 1)))
    return make_row(STAGE, f"ranks vs brute force {nq}x{nr} D={dim} with ties, 2 block plans",
                    "mismatches", bad, None, "queries", "<=0")


def run(quick: bool) -> list[dict]:
    from geobench.progress import set_quiet

    set_quiet(True)
    if quick:
        cases = [("cvusa-like", 4096, 4096, 4096, 2 << 30, None, 4),
                 ("vigor-like", 4096, 32768, 1024, 256 << 20, None, 4)]
        mem = (4096, 16384, 1024, 64 << 20)
    else:
        cases = [("cvusa", 8884, 8884, 4096, 2 << 30, None, 3),
                 ("vigor", 52605, 90618, 1024, 2 << 30, 4096, 3)]
        mem = (52605, 90618, 1024, 2 << 30)
    rows = [row for row in (_time_case(*case) for case in cases) if row is not None]
    nq, nr, dim, memory = mem
    child = peak_rss_subprocess(memory_case, nq, nr, dim, memory).result
    used = child["peak"] - child["base"] + child["descriptors"]
    rows.append(make_row(STAGE, f"peak memory {nq}x{nr} D={dim} memory={memory // MB}MB",
                         "peak_memory", used / MB, (memory + child["descriptors"]) / MB, "MB",
                         "<=1.0", exact=child["exact"], blocks=child["blocks"],
                         dense_matrix_mb=round(nq * nr * 4 / MB),
                         note="floor = --memory budget + descriptors; value = peak RSS above "
                              "the loaded libraries, descriptors included"))
    rows.append(_exactness(quick))
    return rows
