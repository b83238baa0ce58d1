"""Benchmark: geobench's exact evaluation next to what users would run instead.

Peers, written here from the published recipes (no code copied), on the same descriptors
and threads:
- research script (SAFA / Sample4Geo evaluation style): the full query×reference
  similarity matrix as one torch product, then a loop over queries counting, per query,
  the references more similar than its positive;
- faiss `IndexFlatIP.search` with k = the R@1% K (VG-benchmark style): top-k only, no
  rank beyond k.
Rows carry `peer` and ratio = geobench ÷ peer for time and peak memory (peak RSS of each
path in a fresh process, descriptors included). Where the peer's full matrix would not
fit in this machine's memory it is not run; the row says so.
"""
from __future__ import annotations

import numpy as np

from geobench.bench import MB, interleaved, make_row, peak_rss_subprocess, selected

STAGE = "eval"
RESEARCH = "research script: torch full matrix + per-query loop"
FAISS = "faiss IndexFlatIP top-k"


def _data(nq: int, nr: int, dim: int):
    from geobench.bench.eval import make_data

    return make_data(nq, nr, dim, seed=3)


def geobench_path(q: np.ndarray, r: np.ndarray, positives) -> float:
    from geobench.eval.evaluate import evaluate

    return float(evaluate(q, r, positives, "cvusa").metrics["r@1"])


def research_path(q: np.ndarray, r: np.ndarray, positives, k1: int) -> float:
    """Full similarity matrix, then one Python iteration per query (the research loop)."""
    import torch

    qt, rt = torch.from_numpy(q), torch.from_numpy(r)
    sim = qt @ rt.T
    gt = positives.indices[positives.indptr[:-1]]
    hits = np.zeros(3)
    for i in range(sim.shape[0]):
        ranking = int((sim[i] > sim[i, int(gt[i])]).sum())
        for j, k in enumerate((1, 5, k1)):
            if ranking < k:
                hits[j] += 1
    return float(100.0 * hits[0] / sim.shape[0])


def faiss_path(q: np.ndarray, r: np.ndarray, positives, k1: int) -> float:
    """Exact inner-product index, top-k1 neighbours; recall from the top-k list only."""
    import faiss

    index = faiss.IndexFlatIP(q.shape[1])
    index.add(r)
    _, idx = index.search(q, k1)
    gt = positives.indices[positives.indptr[:-1]]
    return float(100.0 * np.mean(idx[:, 0] == gt))


def _peak(fn, *args) -> float:
    """Peak RSS (MB) of fn(*args) in a fresh process, descriptors included."""
    child = peak_rss_subprocess(_measure_child, fn, *args)
    return child.result


def _measure_child(fn, nq: int, nr: int, dim: int, *extra) -> float:
    from geobench.bench import peak_during
    from geobench.progress import set_quiet

    set_quiet(True)
    small = _data(8, 64, dim)
    fn(*small, *extra)  # imports and first-call set-up are not the method's memory
    q, r, positives = _data(nq, nr, dim)
    with peak_during() as mem:
        fn(q, r, positives, *extra)
    return (mem.added + q.nbytes + r.nbytes) / MB


def _available_mb() -> float:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def _case_rows(case: str, nq: int, nr: int, dim: int, k1: int, quick: bool) -> list[dict]:
    rows = []
    matrix_mb = nq * nr * 4 / MB
    fits = 3 * matrix_mb < _available_mb()
    note = f"R@1% K={k1}; same descriptors, same threads"
    if not fits:
        rows.append(make_row(STAGE, case, "time vs research", None, None, "s", "",
                             peer=RESEARCH, note=f"not run: the full {nq}x{nr} matrix needs "
                             f"{matrix_mb / 1024:.0f} GB, this machine has "
                             f"{_available_mb() / 1024:.0f} GB available"))
    q, r, positives = _data(nq, nr, dim)
    fns = {"geobench": lambda: geobench_path(q, r, positives),
           "faiss": lambda: faiss_path(q, r, positives, k1)}
    if fits:
        fns["research"] = lambda: research_path(q, r, positives, k1)
    t = interleaved(fns, repeat=3 if quick else 2, warmup=1)
    peers = [("faiss", FAISS, faiss_path)] + ([("research", RESEARCH, research_path)]
                                               if fits else [])
    mem_geobench = _peak(geobench_path, nq, nr, dim)
    for key, peer, fn in peers:
        rows.append(make_row(STAGE, case, f"time vs {key}", t["geobench"], t[key], "s", "",
                             samples=t.ratios("geobench", key), peer=peer, note=note))
        rows.append(make_row(STAGE, case, f"peak_memory vs {key}", mem_geobench,
                             _peak(fn, nq, nr, dim, k1), "MB", "", peer=peer,
                             note="peak RSS in a fresh process, descriptors included"))
    return rows


def run(quick: bool) -> list[dict]:
    from geobench.eval.protocols import one_percent_k
    from geobench.progress import set_quiet

    set_quiet(True)
    sizes = [("cvusa-like", 4096, 4096, 1024)] if quick else [
        ("cvusa", 8884, 8884, 1024), ("vigor", 52605, 90618, 1024)]
    rows = []
    for name, nq, nr, dim in sizes:
        case = f"{name} {nq}x{nr} D={dim} vs peers"
        if selected(case):
            rows += _case_rows(case, nq, nr, dim, max(1, one_percent_k(nr, "floor")), quick)
    return rows
