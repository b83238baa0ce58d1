"""Evaluation entry points: descriptors + ground truth + protocol -> metrics and files.

`evaluate` is the array-level API (the training engine calls it after embedding a split,
see `geobench.eval.protocols.eval_sets`); `evaluate_features` reads a features file, evaluates
it and writes results.h5 + metrics.csv.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from geobench.errors import UsageError
from geobench.eval import metrics as M
from geobench.eval import ties as T
from geobench.eval.approx import ApproxOptions, approximate_search, check_max_loss, parse_search
from geobench.eval.csr import CSR
from geobench.eval.features import descriptor_bytes, read_features
from geobench.eval.plan import SearchOptions, pair_scores
from geobench.eval.protocols import Protocol, get_protocol, one_percent_k
from geobench.eval.records import EvalResult, Provenance
from geobench.eval.rerank import LABEL as RERANK_LABEL
from geobench.eval.rerank import PairScorer, check_rerank, rerank_result
from geobench.eval.results import write_results
from geobench.eval.search import search
from geobench.fileio import sha256_file

__all__ = ["BASE_KS", "EvalOptions", "EvalResult", "EvalSummary", "Provenance", "evaluate",
           "evaluate_features", "parse_ks", "parse_memory"]

BASE_KS = (1, 5, 10)


@dataclass(frozen=True)
class EvalOptions:
    """Options of one evaluation (the CLI's --protocol/--k/--memory/--save-topk...)."""

    protocol: str | None = None  # None: the features file's protocol attribute, else "pairs"
    ks: tuple[int, ...] = BASE_KS
    memory_bytes: int = 2 << 30
    save_topk: int = 100
    normalise: bool = False  # normalise unnormalised descriptors (with a warning) or refuse
    save_descriptors: bool = False
    backend: str = "auto"
    device: str | None = None
    block_queries: int | None = None
    block_references: int | None = None
    search: str = "exact"            # exact | faiss:FACTORY (approximate, marked as such)
    nprobe: int | str | None = None  # faiss IVF cells visited, or "auto"
    ef_search: int | str | None = None  # faiss HNSW search breadth, or "auto"
    exact_sample: int = 1000         # queries also searched exactly to measure the loss
    max_loss: float = 1.0            # auto parameters: points of R@1 the index may lose
    ties: str = "expected"  # expected | optimistic | pessimistic (geobench.eval.ties)
    # Re-order each query's global top-K by the model's pair score (geobench.eval.rerank);
    # None: the model card's default where a model is evaluated, else off.
    rerank: int | None = None
    # The model card's K when the model re-ranks by default: --rerank 0 is then recorded.
    rerank_default: int = 0

    def search_options(self) -> SearchOptions:
        return SearchOptions(self.memory_bytes, self.backend, self.device,
                             self.block_queries, self.block_references)


def parse_ks(text: str) -> tuple[int, ...]:
    """'1,5,10' -> (1, 5, 10); UsageError on anything else."""
    try:
        ks = tuple(int(p) for p in str(text).replace(" ", "").split(",") if p)
    except ValueError:
        raise UsageError(f"--k {text!r}: expected comma-separated positive integers, "
                         f"e.g. --k 1,5,10") from None
    if not ks or min(ks) < 1:
        raise UsageError(f"--k {text!r}: expected comma-separated positive integers, "
                         f"e.g. --k 1,5,10")
    return ks


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20,
          "mb": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
          "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}


def parse_memory(text: str) -> int:
    """'2GB' / '512MB' / '1.5G' / '1000000' -> bytes (binary units: 1 GB = 2^30 bytes)."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS or float(match.group(1)) <= 0:
        raise UsageError(f"--memory {text!r}: expected a size such as 2GB, 512MB or 1.5G")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size < 1:  # '0.5' is half a byte: no search fits
        raise UsageError(f"--memory {text!r} is {size} bytes; the search needs a budget of at "
                         f"least 1 byte, e.g. 2GB (without a unit the number is bytes)")
    return size


def evaluate(query: np.ndarray, reference: np.ndarray, positives: CSR,
             protocol: str | Protocol = "pairs", options: EvalOptions = EvalOptions(), *,
             semi_positives: CSR | None = None, query_latlon: np.ndarray | None = None,
             reference_latlon: np.ndarray | None = None,
             reranker: PairScorer | None = None) -> EvalResult:
    """Exact chunked search and every metric of `protocol`.

    query (Nq, D), reference (Nr, D): float32 or float16, L2-normalised; positives /
    semi_positives: reference row numbers per query; latlon: (N, 2) degrees.
    reranker: the model's pair score, used when options.rerank > 0 (geobench.eval.rerank).
    """
    proto = get_protocol(protocol)
    policy = T.check_policy(options.ties)
    if options.save_topk < 0:
        raise UsageError(f"--save-topk must be >= 0, got {options.save_topk}")
    check_max_loss(options.max_loss)
    ks = tuple(sorted(set(BASE_KS) | set(proto.ks) | set(options.ks)))
    if min(ks) < 1:
        raise UsageError(f"K values must be positive, got {min(ks)}")
    nq, nr = query.shape[0], reference.shape[0]
    notes: list[str] = []
    positions_given = query_latlon is not None and reference_latlon is not None
    want_error = proto.metre_error and positions_given
    if proto.metre_error and not positions_given:
        notes.append(f"protocol {proto.name}: no query/reference positions, metre error skipped")
    k_search = max(options.save_topk, 1 if want_error else 0)
    k1 = one_percent_k(nr, proto.one_percent_rule)
    factory = parse_search(options.search)
    rerank_k = _rerank_k(options, proto, reranker, factory is not None, nr)
    k_search = max(k_search, rerank_k)
    start = time.perf_counter()
    if factory is None:
        res = search(query, reference, positives, k=k_search, all_positives=proto.ap,
                     options=options.search_options())
    else:
        if proto.ap:
            raise UsageError(f"protocol {proto.name} reports AP, which needs the exact rank of "
                             f"every positive; use --search exact")
        approx = ApproxOptions(factory, options.nprobe, options.ef_search, device=options.device)
        k_rank = max(max(ks), k1, k_search, M.curve_k_max(nr, k1))
        run = approximate_search(query, reference, positives, k=k_rank, keep=k_search,
                                 options=approx, memory_bytes=options.memory_bytes,
                                 sample=options.exact_sample, policy=policy,
                                 max_loss=options.max_loss)
        res, approx = run.result, run.options
    if rerank_k:
        res = rerank_result(res, query, reference, rerank_k, reranker)  # type: ignore[arg-type]
    ranks, t, p = res.ranks, res.tied_nonpositives, res.tied_positives
    counted = t is not None
    if not counted:  # approximate search: the index order has decided ties
        t, p = np.zeros(nq, np.int64), (res.positives.lengths > 0).astype(np.int64)
    values: dict[str, float] = {f"r@{k}": T.recall_at(ranks, t, p, k, policy, nr) for k in ks}
    values["r@1%"] = T.recall_at(ranks, t, p, k1, policy, nr)
    values["k_1pct"] = k1
    per_query: dict[str, np.ndarray] = {}
    has = res.positives.lengths > 0
    if proto.hit_rate:
        if semi_positives is None:
            notes.append(f"protocol {proto.name}: no semi-positives given, hit rate skipped")
        else:
            semi_above, semi_tied = _semi_above(query, reference, res.positives,
                                                res.positive_scores, semi_positives)
            hit = T.vigor_hits(ranks, t, p, semi_above, semi_tied, policy)
            per_query["hit"] = hit if policy == "expected" else hit.astype(bool)
            values["hit_rate"] = 100.0 * float(hit.mean())
    if proto.ap:
        per_query["ap"] = T.average_precision(res.above, res.tied, res.positive_scores,
                                              res.positives.indptr, policy)
        values["ap"] = 100.0 * float(per_query["ap"].mean())
    if want_error:
        top1 = res.topk_indices[:, 0]
        per_query["error_m"] = M.great_circle_m(query_latlon[:, 0], query_latlon[:, 1],
                                                reference_latlon[top1, 0],
                                                reference_latlon[top1, 1])
        values.update(M.error_summary(per_query["error_m"]))
    values["n_no_positive"] = int(np.count_nonzero(~has))
    if not has.all():
        notes.append(f"{values['n_no_positive']} of {nq} queries have no positive; "
                     f"they count as misses")
    if counted:
        values.update(T.tie_summary(t, p))
        warning = T.collapsed_warning(t, p, nr, policy)
        if warning:
            notes.insert(0, warning)
    k_max = M.curve_k_max(nr, k1)
    curve_k, curve_recall = T.recall_curve(ranks, t, p, k_max, policy)
    seconds = time.perf_counter() - start
    if factory is not None:
        values["search"] = approx.label  # type: ignore[assignment]
        values.update(run.values)
        notes.extend(run.notes)
        notes.append(f"approximate search ({approx.label}): ranks come from the top "
                     f"{min(k_rank, nr)} of the index; positives beyond count as misses")
    if rerank_k:
        values["rerank_k"] = rerank_k
        values["rerank"] = RERANK_LABEL  # type: ignore[assignment]
        notes.append(f"re-ranked the global top {rerank_k} of every query with the model's pair "
                     f"score; ranks beyond {rerank_k} come from the global search")
    elif options.rerank_default:
        values["rerank_k"] = 0
        values["rerank"] = (f"off (--rerank 0): global search only; the model card re-ranks "  # type: ignore[assignment]
                            f"the top {options.rerank_default}")
        notes.append(f"not re-ranked (--rerank 0); the model's card re-ranks the global top "
                     f"{options.rerank_default} by default")
    keep = options.save_topk
    return EvalResult(proto, nq, nr, ranks, k1, curve_k, curve_recall, values, per_query,
                      res.topk_indices[:, :keep], res.topk_scores[:, :keep], res.plan, seconds,
                      notes, ties=policy if counted else "index order",
                      tied_nonpositives=t if counted else None,
                      tied_positives=p if counted else None,
                      n_positives=res.positives.lengths.astype(np.int64),
                      phases=dict(getattr(res, "phases", {}) or {}))


evaluate_arrays = evaluate  # the name used in the team's interface notes


def _rerank_k(options: EvalOptions, proto: Protocol, reranker: PairScorer | None,
              approximate: bool, nr: int) -> int:
    """The shortlist size to re-rank (0: off), or a one-line error for what cannot be."""
    k = options.rerank or 0
    check_rerank(k, proto.name, proto.ap, proto.hit_rate)
    if not k:
        return 0
    if reranker is None:
        raise UsageError("--rerank scores image pairs with the model, but a features file holds "
                         "descriptors only: evaluate the run (geobench eval RUN --data DS) or "
                         "pass --rerank 0")
    if approximate:
        raise UsageError("--rerank re-orders an exact shortlist; use --search exact or --rerank 0")
    return min(k, nr)


def _semi_above(query: np.ndarray, reference: np.ndarray, positives: CSR,
                scores: np.ndarray, semi: CSR) -> tuple[np.ndarray, np.ndarray]:
    """Per query, semi-positives (not also positives) strictly above the best positive,
    and those tied with it."""
    if semi.n_rows != positives.n_rows:
        raise UsageError(f"semi-positives have {semi.n_rows} rows for {positives.n_rows} queries")
    semi = semi.unique()
    rows = semi.row_ids()
    best = np.full(positives.n_rows, np.inf)
    has = positives.lengths > 0
    best[has] = scores[positives.indptr[:-1][has]]
    nr = reference.shape[0]
    keep = ~np.isin(rows * nr + semi.indices, positives.row_ids() * nr + positives.indices)
    rows, cols = rows[keep], semi.indices[keep]
    exact = pair_scores(query, reference, rows, cols)
    n = positives.n_rows
    return (np.bincount(rows[exact > best[rows]], minlength=n),
            np.bincount(rows[exact == best[rows]], minlength=n))


@dataclass
class EvalSummary:
    result: EvalResult
    provenance: Provenance
    results_path: Path
    metrics_path: Path
    normalised: bool
    notes: list[str]


def evaluate_features(features_h5: str | Path, out_dir: str | Path,
                      options: EvalOptions = EvalOptions(),
                      provenance: Provenance | None = None,
                      reranker: PairScorer | None = None) -> EvalSummary:
    """`geobench eval --features F.h5 --out DIR`: read, evaluate, write results.h5 + metrics.csv."""
    # Descriptors larger than the memory budget stay on disk and are read block by block.
    stream = descriptor_bytes(features_h5) > options.memory_bytes
    feats = read_features(features_h5, normalise=options.normalise, stream=stream)
    try:
        return _evaluate_read(feats, features_h5, out_dir, options, provenance, reranker)
    finally:
        feats.close()


def _evaluate_read(feats: Any, features_h5: str | Path, out_dir: str | Path,
                   options: EvalOptions, provenance: Provenance | None,
                   reranker: PairScorer | None = None) -> EvalSummary:
    protocol = options.protocol or str(feats.attrs.get("protocol") or "pairs")
    result = evaluate(feats.query, feats.reference, feats.positives, protocol, options,
                      semi_positives=feats.semi_positives, query_latlon=feats.query_latlon,
                      reference_latlon=feats.reference_latlon, reranker=reranker)
    if feats.streamed:
        result.notes.append(f"{features_h5}: descriptors larger than --memory were streamed "
                            f"from disk block by block")
    attrs = feats.attrs
    prov = provenance or Provenance(
        run=str(attrs.get("run") or Path(out_dir).resolve().name),
        dataset=str(attrs.get("dataset", "")), split=str(attrs.get("split", "")),
        model=str(attrs.get("model", "")),
        checkpoint_sha256=str(attrs.get("checkpoint_sha256", "")),
        dataset_sha256=str(attrs.get("dataset_sha256", "")),
        extra={"data": str(attrs["data"])} if attrs.get("data") else {})
    prov = replace(prov, features_sha256=sha256_file(features_h5),  # paths stored absolute
                   extra={**prov.extra, "features": str(Path(features_h5).resolve())})
    descriptors = (feats.query, feats.reference) if options.save_descriptors else None
    results_path, metrics_path = write_results(
        out_dir, result, prov, descriptors=descriptors, query_uids=feats.query_uids,
        reference_uids=feats.reference_uids)
    notes = list(result.notes)
    if feats.normalised:
        notes.insert(0, f"{features_h5}: descriptors were not L2-normalised; normalised them "
                        f"(--normalise)")
    return EvalSummary(result, prov, results_path, metrics_path, feats.normalised, notes)
