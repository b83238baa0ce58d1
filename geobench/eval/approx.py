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
from dataclasses import dataclass, replace

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
    nprobe: int | str | None = None    # IVF cells visited, or "auto" (tuned, see `tune`)
    ef_search: int | str | None = None  # HNSW search breadth, or "auto"
    train_size: int | None = None  # training sample; default from the index and the budget
    device: str | None = None    # "cuda" puts the index on a GPU when faiss has GPU support
    seed: int = 0
    tuned: tuple[str, ...] = ()  # parameters chosen by `tune` (marked "auto" in the label)

    @property
    def label(self) -> str:
        params = []
        for name, value in (("nprobe", self.nprobe), ("efSearch", self.ef_search)):
            if value:
                params.append(f"{name}={value}" + (" auto" if name in self.tuned else ""))
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


def preflight(search: str, nprobe: int | None, ef_search: int | None, dim: int,
              n_reference: int) -> None:
    """What can be known about --search before any image is embedded: faiss present, the
    factory buildable at this descriptor size, enough references to train its lists, and
    --nprobe / --ef-search applicable to it."""
    factory = parse_search(search)
    if factory is None:
        return
    faiss = _faiss()
    try:
        index = faiss.index_factory(int(dim), factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1].split(":")[-1].strip()
        raise UsageError(f"--search faiss:{factory}: faiss cannot build it for {dim}-dimensional "
                         f"descriptors ({detail}); see faiss's index_factory strings, e.g. "
                         f"IVF4096,Flat") from None
    lists = _n_lists(faiss, index)
    if not index.is_trained and lists > n_reference:
        raise UsageError(f"--search faiss:{factory}: its {lists} lists need at least {lists} "
                         f"references to train, the gallery has {n_reference}; use at most "
                         f"IVF{max(1, n_reference // 39)} (faiss wants ~39 per list) or "
                         f"--search exact")
    _set_params(faiss, index, ApproxOptions(factory, nprobe, ef_search))


def _n_lists(faiss, index) -> int:
    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except (RuntimeError, AttributeError):
        return 1


def _set_params(faiss, index, options: ApproxOptions, only: str | None = None) -> None:
    """Set the search parameters given (auto ones only check that the index has them)."""
    space = faiss.GpuParameterSpace() if "Gpu" in type(index).__name__ else faiss.ParameterSpace()
    for name, value in (("nprobe", options.nprobe), ("efSearch", options.ef_search)):
        if value is None or (only and name != only):
            continue
        if value == AUTO:
            value = _grid_start(name)
        try:
            space.set_index_parameter(index, name, int(value))
        except RuntimeError:
            flag = "--nprobe" if name == "nprobe" else "--ef-search"
            raise UsageError(f"{flag} does not apply to faiss:{options.factory} (it has no "
                             f"{name}); drop it") from None


@dataclass
class ApproxRun:
    """An approximate search: its result, the options it ran with (auto parameters
    resolved), the metrics it adds (loss on the exact sample, speed-up, build and tuning
    seconds, chosen parameters) and notes for the user."""

    result: SearchResult
    options: ApproxOptions
    values: dict
    notes: list[str]


def parse_param(flag: str, value) -> int | str | None:
    """--nprobe / --ef-search: None, a positive integer or auto."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text == AUTO:
        return AUTO
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise UsageError(f"{flag} {value!r}: use a positive integer or auto (tuned on the exact "
                     f"sample to --max-loss)")


def check_auto(nprobe, ef_search, sample: int) -> bool:
    """Whether a parameter is auto; auto needs an exact sample to tune on."""
    auto = [f for f, v in (("--nprobe", nprobe), ("--ef-search", ef_search)) if v == AUTO]
    if auto and sample <= 0:
        raise UsageError(f"{auto[0]} auto tunes on the exact sample: set --exact-sample above 0")
    return bool(auto)


def check_max_loss(max_loss: float) -> float:
    if not 0.0 <= float(max_loss) <= 100.0:
        raise UsageError(f"--max-loss {max_loss}: use points of R@1 between 0 and 100, e.g. 1")
    return float(max_loss)


def approximate_search(query, reference, positives: CSR, *, k: int, keep: int,
                       options: ApproxOptions, memory_bytes: int = 2 << 30,
                       sample: int = 0, policy: str = "expected",
                       max_loss: float = 1.0) -> ApproxRun:
    """Build the index, tune its auto parameters on `sample` exactly searched queries,
    search (ranks from the top `k`, the top `keep` <= k neighbours stored) and measure
    the R@1 lost on the sample under the run's tie `policy`."""
    options = replace(options, nprobe=parse_param("--nprobe", options.nprobe),
                      ef_search=parse_param("--ef-search", options.ef_search))
    check_max_loss(max_loss)
    auto = check_auto(options.nprobe, options.ef_search, sample)
    start = time.perf_counter()
    index = build_index(reference, options, memory_bytes)
    values: dict = {"index_build_s": time.perf_counter() - start}
    exact = exact_sample(query, reference, positives, sample, memory_bytes, policy)
    notes: list[str] = []
    if auto:
        start = time.perf_counter()
        options, notes = tune(index, query, reference, exact, options, max_loss, memory_bytes)
        values["tune_s"] = time.perf_counter() - start
    start = time.perf_counter()
    res = search_index(index, query, reference, positives, k=k, keep=keep,
                       device=options.device or "cpu", memory_bytes=memory_bytes)
    values.update(loss_summary(exact, res.ranks, time.perf_counter() - start))
    for name, value in (("nprobe", options.nprobe), ("ef_search", options.ef_search)):
        if value is not None:
            values[name] = int(value)
    if not auto and values.get("r@1_lost", 0.0) > max_loss and _tunable(index):
        notes.append(f"the index lost {values['r@1_lost']:.1f} points of R@1 on the exact "
                     f"sample; --nprobe auto / --ef-search auto tune it to --max-loss")
    return ApproxRun(res, options, values, notes)


def _tunable(index) -> bool:
    faiss = _faiss()
    return _n_lists(faiss, index) > 1 or "HNSW" in type(faiss.downcast_index(index)).__name__


def search_index(index, query, reference, positives: CSR, *, k: int, keep: int,
                 device: str = "cpu", memory_bytes: int = 2 << 30,
                 progress: str = "faiss search") -> SearchResult:
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
    with bar(progress, total=-(-nq // bq)) as handle:
        for q0 in range(0, nq, bq):
            q1 = min(nq, q0 + bq)
            d, i = index.search(np.ascontiguousarray(query[q0:q1], dtype=np.float32), k)
            found = _first_positive(i, q0, pos)
            ranks[q0:q1] = np.where(found >= 0, found, nr)
            top_s[q0:q1], top_i[q0:q1] = d[:, :keep], i[:, :keep]
            handle.advance(1)
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


AUTO = "auto"
# candidate values tried in increasing order; the first that loses at most --max-loss wins
_GRID = {"nprobe": [2 ** i for i in range(17)], "efSearch": [2 ** i for i in range(4, 15)]}


@dataclass(frozen=True)
class ExactSample:
    """Queries (row numbers, sorted) searched exactly: their R@1 under the run's tie
    policy, and the exact search's seconds per query."""

    rows: np.ndarray
    positives: CSR
    r1: float
    seconds_per_query: float


def exact_sample(query, reference, positives: CSR, sample: int, memory_bytes: int,
                 policy: str, seed: int = 0) -> ExactSample | None:
    """Exact search on `sample` random queries (None when sample <= 0)."""
    from geobench.eval import ties as T
    from geobench.eval.plan import SearchOptions
    from geobench.eval.search import search

    nq = query.shape[0]
    n = int(min(sample, nq))
    if n <= 0:
        return None
    idx = np.sort(np.random.default_rng(seed).choice(nq, size=n, replace=False))
    sub = CSR.from_lists([positives.row(int(i)) for i in idx])
    t = time.perf_counter()
    exact = search(_rows(query, idx), reference, sub, options=SearchOptions(memory_bytes),
                   progress="exact sample")
    seconds = (time.perf_counter() - t) / n
    r1 = T.recall_at(exact.ranks, exact.tied_nonpositives, exact.tied_positives, 1, policy,
                     exact.n_reference)
    return ExactSample(idx, sub, r1, seconds)


def approx_r1(ranks: np.ndarray) -> float:
    """R@1 of approximate ranks (the index order has decided ties: every policy agrees)."""
    return 100.0 * float(np.mean(ranks < 1)) if len(ranks) else float("nan")


def tune(index, query, reference, sample: ExactSample, options: ApproxOptions,
         max_loss: float, memory_bytes: int) -> tuple[ApproxOptions, list[str]]:
    """Options with every `auto` parameter replaced by the smallest grid value whose R@1
    on the exact sample is within `max_loss` points of exact; notes for the user."""
    faiss = _faiss()
    notes: list[str] = []
    queries = _rows(query, sample.rows)
    for field, name in (("nprobe", "nprobe"), ("ef_search", "efSearch")):
        if getattr(options, field) != AUTO:
            continue
        grid = _grid(faiss, index, name, reference.shape[0])
        chosen, loss = grid[-1], float("nan")
        for value in grid:
            _set_params(faiss, index, replace(options, **{field: value}), only=name)
            res = search_index(index, queries, reference, sample.positives, k=1, keep=0,
                               memory_bytes=memory_bytes, progress=f"tuning {name}")
            loss = sample.r1 - approx_r1(res.ranks)
            if loss <= max_loss:
                chosen = value
                break
        else:
            notes.append(f"{name} auto: no {name} up to {grid[-1]} keeps the R@1 loss within "
                         f"{max_loss:g} points (lost {loss:.1f} at {grid[-1]}); the index "
                         f"itself loses recall: use a finer one")
        options = replace(options, **{field: chosen}, tuned=options.tuned + (name,))
    _set_params(faiss, index, options)
    return options, notes


def _grid_start(name: str) -> int:
    return _GRID[name][0]


def _grid(faiss, index, name: str, nr: int) -> list[int]:
    return _grid_values(name, _n_lists(faiss, index) if name == "nprobe" else nr)


def _grid_values(name: str, top: int) -> list[int]:
    """The values tried for `name`, up to `top` (IVF lists; references for efSearch)."""
    if name == "efSearch":
        top = max(_GRID[name][0], min(top, _GRID[name][-1]))
    return [v for v in _GRID[name] if v < top] + [top]


def loss_summary(sample: ExactSample | None, approx_ranks: np.ndarray,
                 search_seconds: float) -> dict[str, float]:
    """R@1 exact (the run's tie policy) and approximate on the sample, the points lost, and
    the speed-up of the index search over exact search per query (index build apart)."""
    if sample is None:
        return {}
    nq = len(approx_ranks)
    r1_approx = approx_r1(approx_ranks[sample.rows])
    per_query = search_seconds / nq if nq else 0.0
    return {"exact_sample": len(sample.rows), "r@1_exact_sample": sample.r1,
            "r@1_approx_sample": r1_approx, "r@1_lost": sample.r1 - r1_approx,
            "speedup": sample.seconds_per_query / per_query if per_query > 0 else float("nan")}
