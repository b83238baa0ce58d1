"""Approximate search with faiss (`eval --search faiss:FACTORY`), for galleries too large
for exact search to be practical.

The index is any faiss `index_factory` string (Flat, IVF4096,Flat, IVF4096,PQ64, HNSW32,
OPQ64,IVF4096,PQ64, ...) over inner products. It is trained on a sample, filled and
searched in blocks sized from the memory budget. A query's rank is the position of its
first positive in the approximate top-k list (k covers every reported cut-off, the R@1%
K and the curve); a positive beyond k counts as a miss. Results made this way are marked
`approximate` with the factory and parameters, so they are never mixed with exact ones;
`exact_sample` queries are also searched exactly to report the recall the index loses.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from geobench.errors import UsageError
from geobench.eval.csr import CSR
from geobench.eval.plan import BlockPlan, pair_scores
from geobench.eval.search import SearchResult
from geobench.progress import bar

PREFIX = "faiss:"


@dataclass(frozen=True)
class ApproxOptions:
    factory: str                 # faiss index_factory string
    nprobe: int | None = None    # IVF cells visited
    ef_search: int | None = None  # HNSW search breadth
    train_size: int | None = None  # training sample; default from the index and the budget
    device: str | None = None    # "cuda" puts the index on a GPU when faiss has GPU support
    seed: int = 0

    @property
    def label(self) -> str:
        params = [f"nprobe={self.nprobe}"] if self.nprobe else []
        params += [f"efSearch={self.ef_search}"] if self.ef_search else []
        return PREFIX + self.factory + (f" ({', '.join(params)})" if params else "")


def parse_search(text: str) -> str | None:
    """'exact' -> None; 'faiss:FACTORY' -> FACTORY."""
    text = (text or "exact").strip()
    if text == "exact":
        return None
    if text.startswith(PREFIX) and text[len(PREFIX):].strip():
        return text[len(PREFIX):].strip()
    raise UsageError(f"--search {text!r}: use exact or faiss:FACTORY, e.g. faiss:Flat, "
                     f"faiss:IVF4096,Flat, faiss:IVF4096,PQ64 or faiss:HNSW32")


def _faiss():
    try:
        import faiss
    except ImportError:
        raise UsageError("--search faiss:... needs faiss: pip install faiss-cpu (or faiss-gpu)") from None
    return faiss


def _rows(x, idx: np.ndarray) -> np.ndarray:
    """Rows `idx` (sorted) of an array or an HDF5 dataset, as float32."""
    return np.asarray(x[np.sort(idx)] if not isinstance(x, np.ndarray) else x[idx],
                      dtype=np.float32)


def build_index(reference, options: ApproxOptions, memory_bytes: int):
    """Create, train (on a sample) and fill the index in blocks."""
    faiss = _faiss()
    nr, dim = reference.shape
    try:
        index = faiss.index_factory(int(dim), options.factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1].split(":")[-1].strip()
        raise UsageError(f"--search faiss:{options.factory}: faiss cannot build it ({detail}); "
                         f"see faiss's index_factory strings, e.g. IVF4096,Flat") from None
    if options.device and options.device.startswith("cuda"):
        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
            raise UsageError("--device cuda with --search faiss: this faiss has no GPU support; "
                             "install faiss-gpu or use --device cpu")
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    row_bytes = 4 * dim
    block = max(1024, memory_bytes // (2 * row_bytes))
    if not index.is_trained:
        # faiss asks for ~39-256 training points per centroid; cap by the budget.
        wanted = options.train_size or min(nr, max(50_000, 256 * _n_lists(faiss, index)))
        n_train = int(min(nr, wanted, max(1024, memory_bytes // (2 * row_bytes))))
        rng = np.random.default_rng(options.seed)
        sample = np.sort(rng.choice(nr, size=n_train, replace=False))
        try:
            index.train(_rows(reference, sample))
        except RuntimeError as exc:
            detail = str(exc).strip().splitlines()[-1]
            raise UsageError(f"--search faiss:{options.factory}: training on {n_train} "
                             f"references failed ({detail}); use fewer lists or a larger "
                             f"gallery") from None
    with bar("faiss add", total=-(-nr // block)) as progress:
        for r0 in range(0, nr, block):
            index.add(np.ascontiguousarray(reference[r0:r0 + block], dtype=np.float32))
            progress.advance(1)
    _set_params(faiss, index, options)
    return index


def _n_lists(faiss, index) -> int:
    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except (RuntimeError, AttributeError):
        return 1


def _set_params(faiss, index, options: ApproxOptions) -> None:
    space = faiss.GpuParameterSpace() if "Gpu" in type(index).__name__ else faiss.ParameterSpace()
    for name, value in (("nprobe", options.nprobe), ("efSearch", options.ef_search)):
        if value is None:
            continue
        try:
            space.set_index_parameter(index, name, int(value))
        except RuntimeError:
            flag = "--nprobe" if name == "nprobe" else "--ef-search"
            raise UsageError(f"{flag} does not apply to faiss:{options.factory} (it has no "
                             f"{name}); drop it") from None


def approximate_search(query, reference, positives: CSR, *, k: int, keep: int,
                       options: ApproxOptions, memory_bytes: int = 2 << 30) -> SearchResult:
    """The SearchResult of an approximate top-k search (see the module docstring): ranks
    from the top `k`, the top `keep` (<= k) neighbours stored."""
    index = build_index(reference, options, memory_bytes)
    return search_index(index, query, reference, positives, k=k, keep=keep,
                        device=options.device or "cpu", memory_bytes=memory_bytes)


def search_index(index, query, reference, positives: CSR, *, k: int, keep: int,
                 device: str = "cpu", memory_bytes: int = 2 << 30) -> SearchResult:
    """Search a built index in query blocks; ranks from the top `k`, top `keep` stored."""
    nq, dim = query.shape
    nr = reference.shape[0]
    k = int(max(1, min(k, nr)))
    keep = int(max(0, min(keep, k)))
    pos = positives.unique()
    # per query row: faiss distances + labels, positive lookups, the float32 query
    bq = int(max(1, min(nq, memory_bytes // max(1, 40 * k + 4 * dim))))
    ranks = np.empty(nq, dtype=np.int64)
    top_i = np.empty((nq, keep), dtype=np.int64)
    top_s = np.empty((nq, keep), dtype=np.float32)
    with bar("faiss search", total=-(-nq // bq)) as progress:
        for q0 in range(0, nq, bq):
            q1 = min(nq, q0 + bq)
            d, i = index.search(np.ascontiguousarray(query[q0:q1], dtype=np.float32), k)
            found = _first_positive(i, q0, pos)
            ranks[q0:q1] = np.where(found >= 0, found, nr)
            top_s[q0:q1], top_i[q0:q1] = d[:, :keep], i[:, :keep]
            progress.advance(1)
    rows = pos.row_ids()
    scores = pair_scores(query, reference, rows, pos.indices)
    order = np.lexsort((pos.indices, -scores, rows))
    pos = CSR(pos.indptr, pos.indices[order])
    above = np.full(len(rows), -1, dtype=np.int64)
    has = pos.lengths > 0
    above[pos.indptr[:-1][has]] = ranks[has]
    plan = BlockPlan(bq, nr, "faiss", device, 0.0)
    return SearchResult(ranks=ranks, positives=pos, positive_scores=scores[order], above=above,
                        topk_indices=top_i, topk_scores=top_s, n_reference=nr, plan=plan)


def _first_positive(top_i: np.ndarray, q0: int, positives: CSR) -> np.ndarray:
    """Per query of the block starting at q0, the position of its first positive in its
    top-k row, or -1 (faiss marks missing neighbours with -1)."""
    nb, k = top_i.shape
    lo, hi = positives.indptr[q0], positives.indptr[q0 + nb]
    if hi == lo:
        return np.full(nb, -1, dtype=np.int64)
    rows = np.repeat(np.arange(nb, dtype=np.int64), np.diff(positives.indptr[q0:q0 + nb + 1]))
    width = int(max(top_i.max(initial=0), positives.indices[lo:hi].max())) + 1
    keys = rows * width + positives.indices[lo:hi]  # sorted: rows ascending, indices sorted
    cand = np.arange(nb, dtype=np.int64)[:, None] * width + np.maximum(top_i, 0)
    at = np.searchsorted(keys, cand).clip(max=len(keys) - 1)
    hit = (keys[at] == cand) & (top_i >= 0)
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1).astype(np.int64)


def recall_lost(query, reference, positives: CSR, approx_ranks: np.ndarray, sample: int,
                approx_seconds: float, memory_bytes: int, seed: int = 0) -> dict[str, float]:
    """Exact search on `sample` random queries: R@1 exact and approximate on that sample,
    the points lost and the approximate search's speed-up per query."""
    from geobench.eval.plan import SearchOptions
    from geobench.eval.search import search

    nq = query.shape[0]
    n = int(min(sample, nq))
    if n <= 0:
        return {}
    idx = np.sort(np.random.default_rng(seed).choice(nq, size=n, replace=False))
    sub = CSR.from_lists([positives.row(int(i)) for i in idx])
    t = time.perf_counter()
    exact = search(_rows(query, idx), reference, sub, options=SearchOptions(memory_bytes),
                   progress="exact sample")
    exact_per_query = (time.perf_counter() - t) / n
    r1_exact = 100.0 * float(np.mean(exact.ranks < 1))
    r1_approx = 100.0 * float(np.mean(approx_ranks[idx] < 1))
    return {"exact_sample": n, "r@1_exact_sample": r1_exact, "r@1_approx_sample": r1_approx,
            "r@1_lost": r1_exact - r1_approx,
            "speedup": exact_per_query / (approx_seconds / nq) if approx_seconds > 0 else float("nan")}
