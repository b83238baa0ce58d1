"""results.h5 and metrics.csv: atomic writers, validating readers.

results.h5: /ranks (Nq,) int64 (g: references strictly more similar than the best
positive; n_reference marks a query without positives), /tied_nonpositives and
/tied_positives (t, p: references scored exactly like the best positive, see
`geobench.eval.ties`), /curve/k and /curve/recall
(percent, every K up to max(100, K of R@1%)), /topk/indices and /topk/scores,
/per_query/<name> (hit, ap, error_m where the protocol has them), optionally
/descriptors/query|reference and /query/uids, /reference/uids; attributes: schema,
protocol, ties (the policy of the metrics and curve), k_1pct, one_percent_rule, run,
dataset, split, model, checkpoint_sha256, dataset_sha256, features_sha256, versions
(geobench, python, numpy, pandas, h5py, torch), created_at, metrics (JSON), plan (JSON);
each dataset carries a `description` attribute.
metrics.csv: one row; METRICS_COLUMNS, then r@K for other K, then protocol extras.
results.h5 is written first, so a metrics.csv always has complete results beside it.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geobench.errors import DataError, SchemaError
from geobench.eval.ties import REFERENCE as TIES_REFERENCE
from geobench.fileio import atomic_h5, atomic_open, h5_bytes

if TYPE_CHECKING:
    import pandas as pd

    from geobench.eval.records import EvalResult, Provenance

SCHEMA = "geobench.results/1"
RESULTS_FILE, METRICS_FILE = "results.h5", "metrics.csv"
METRICS_COLUMNS = ("run", "dataset", "split", "protocol", "model", "n_query", "n_reference",
                   "r@1", "r@5", "r@10", "r@1%", "k_1pct")
TEXT_COLUMNS = ("run", "dataset", "split", "protocol", "model", "variant", "preset", "model_args",
                "weights", "weights_sha256", "ties", "checkpoint", "dataset_sha256")
_INT_COLUMNS = ("n_query", "n_reference", "k_1pct", "n_no_positive", "n_tied_queries")
_ATTR_TEXT = ("protocol", "one_percent_rule", "run", "dataset", "split", "model", "ties",
              "checkpoint_sha256", "dataset_sha256", "features_sha256", "created_at")


@dataclass
class StoredResults:
    path: Path
    attrs: dict[str, Any]
    ranks: np.ndarray
    curve_k: np.ndarray
    curve_recall: np.ndarray
    topk_indices: np.ndarray
    topk_scores: np.ndarray
    per_query: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    tied_nonpositives: np.ndarray | None = None  # absent in files of older versions
    tied_positives: np.ndarray | None = None
    n_positives: np.ndarray | None = None


def _versions() -> dict[str, str]:
    import h5py

    from geobench.prepared import versions

    out = {**versions(), "h5py": h5py.__version__}
    try:  # the evaluation itself needs no torch (features files); record it when present
        import torch

        out["torch"] = torch.__version__
    except ImportError:
        out["torch"] = ""
    return out


def metrics_row(result: EvalResult, provenance: Provenance) -> dict[str, Any]:
    """The metrics.csv row: fixed columns, then other r@K, then extras."""
    row: dict[str, Any] = {"run": provenance.run, "dataset": provenance.dataset,
                           "split": provenance.split, "protocol": result.protocol.name,
                           "model": provenance.model, "n_query": result.n_query,
                           "n_reference": result.n_reference}
    if provenance.variant:  # a geobench model: which ablation row, and how it was built
        row.update(variant=provenance.variant, preset=provenance.preset,
                   model_args=json.dumps(provenance.model_args, sort_keys=True),
                   weights=_weights_text(provenance.weights),
                   # the full hash of the bytes the run started from (issue 11 provenance)
                   weights_sha256=str((provenance.weights or {}).get("sha256") or ""))
    if provenance.checkpoint:  # a run's evaluation: which of its checkpoints was scored
        row["checkpoint"] = provenance.checkpoint
    if provenance.dataset_sha256:  # reports compare only evaluations of the same dataset
        row["dataset_sha256"] = provenance.dataset_sha256
    values = result.metrics
    for key in METRICS_COLUMNS[7:]:
        row[key] = values[key]
    row["ties"] = result.ties
    for key, value in values.items():
        if key not in row:
            row[key] = value
    return row


def _weights_text(record: dict[str, Any]) -> str:
    """A short label of the starting weights: name (and sha256 prefix) or '' when unknown."""
    if not record:
        return ""
    name = str(record.get("name") or record.get("source") or "")
    sha = str(record.get("sha256") or "")
    return f"{name}@{sha[:12]}" if name and sha else name or json.dumps(record, sort_keys=True, default=str)


def write_results(out_dir: str | Path, result: EvalResult, provenance: Provenance, *,
                  descriptors: tuple[np.ndarray, np.ndarray] | None = None,
                  query_uids: list[str] | None = None,
                  reference_uids: list[str] | None = None) -> tuple[Path, Path]:
    """Write OUT/results.h5 then OUT/metrics.csv, each atomically."""
    import h5py

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory; pass another --out")
    out.mkdir(parents=True, exist_ok=True)
    row = metrics_row(result, provenance)
    attrs = {"schema": SCHEMA, "protocol": result.protocol.name,
             "one_percent_rule": result.protocol.one_percent_rule,
             "ties": result.ties, "ties_reference": TIES_REFERENCE,
             "k_1pct": int(result.k_one_percent), "run": provenance.run,
             "dataset": provenance.dataset, "split": provenance.split, "model": provenance.model,
             "checkpoint_sha256": provenance.checkpoint_sha256,
             "checkpoint": provenance.checkpoint,
             "dataset_sha256": provenance.dataset_sha256,
             "features_sha256": provenance.features_sha256,
             "n_query": int(result.n_query), "n_reference": int(result.n_reference),
             "versions": json.dumps(_versions()),
             "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "metrics": json.dumps(row, default=float),
             "plan": json.dumps(asdict(result.plan)), "seconds": float(result.seconds),
             "extra": json.dumps(provenance.extra, default=str),
             "preset": provenance.preset, "variant": provenance.variant,
             "model_args": json.dumps(provenance.model_args, sort_keys=True, default=str),
             "weights": json.dumps(provenance.weights, sort_keys=True, default=str)}
    results_path, metrics_path = out / RESULTS_FILE, out / METRICS_FILE
    data = h5_bytes(result.ranks, result.tied_nonpositives, result.tied_positives,
                    result.n_positives, np.asarray(result.curve_k),
                    np.asarray(result.curve_recall), np.asarray(result.topk_indices),
                    np.asarray(result.topk_scores), *map(np.asarray, result.per_query.values()),
                    *(descriptors or ()), query_uids, reference_uids)
    with atomic_h5(results_path, data) as h5:
        h5.attrs.update(attrs)
        _dataset(h5, "ranks", np.asarray(result.ranks, dtype=np.int64))
        if result.tied_nonpositives is not None:
            _dataset(h5, "tied_nonpositives", np.asarray(result.tied_nonpositives, np.int64))
            _dataset(h5, "tied_positives", np.asarray(result.tied_positives, np.int64))
        if result.n_positives is not None:
            _dataset(h5, "n_positives", np.asarray(result.n_positives, np.int64))
        _dataset(h5, "curve/k", np.asarray(result.curve_k, dtype=np.int64))
        _dataset(h5, "curve/recall", np.asarray(result.curve_recall, dtype=np.float64))
        _dataset(h5, "topk/indices", np.asarray(result.topk_indices, dtype=np.int64))
        _dataset(h5, "topk/scores", np.asarray(result.topk_scores, dtype=np.float32))
        for name, values in result.per_query.items():
            h5.create_dataset(f"per_query/{name}", data=np.asarray(values))
        if descriptors is not None:  # copied in blocks: they may be streamed from disk
            for name, src in zip(("descriptors/query", "descriptors/reference"), descriptors,
                                 strict=True):
                out = h5.create_dataset(name, shape=src.shape, dtype=src.dtype)
                for s in range(0, src.shape[0], 1 << 16):
                    out[s:s + (1 << 16)] = src[s:s + (1 << 16)]
        for name, uids in (("query/uids", query_uids), ("reference/uids", reference_uids)):
            if uids is not None:
                h5.create_dataset(name, data=np.asarray(uids, dtype=object),
                                  dtype=h5py.string_dtype())
    write_metrics(metrics_path, [row])
    return results_path, metrics_path


# What each dataset holds, stored as its `description` attribute so the file reads alone.
DESCRIPTIONS = {
    "ranks": "per query, g = number of references strictly more similar than its best "
             "positive (0-based rank under the optimistic policy: 0 means top-1); "
             "n_reference for a query without positives",
    "tied_nonpositives": "per query, t = non-positive references whose score equals the "
                         "best positive's (canonical float64 score)",
    "tied_positives": "per query, p = positives whose score equals the best positive's "
                      "(itself included; 0 without positives). With g and t any tie policy "
                      "is recomputed: P(X >= j) = C(t,j)/C(t+p,j), hit@K = P(g + X < K)",
    "n_positives": "per query, the number of distinct positives (chance level: "
                   "R@K of a random ranking = 1 - C(Nr - n, K) / C(Nr, K))",
    "curve/k": "K = 1..max(100, K of R@1%)",
    "curve/recall": "R@K in percent over all queries under the file's tie policy",
    "topk/indices": "per query, 0-based reference row numbers of the most similar "
                    "references, by score descending (equal scores: lower row first)",
    "topk/scores": "float32 inner products aligned with /topk/indices",
}


def _dataset(h5: Any, name: str, data: np.ndarray) -> None:
    h5.create_dataset(name, data=data).attrs["description"] = DESCRIPTIONS[name]


def _format(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{float(value):.10g}"
    return str(value)


def write_metrics(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write metrics rows (a union of their keys as columns, fixed ones first) atomically."""
    import csv

    columns = list(METRICS_COLUMNS)
    for row in rows:
        columns += [k for k in row if k not in columns]
    with atomic_open(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_format(row.get(c, "")) for c in columns])
    return Path(path)


def _is_metric(col: str) -> bool:
    return (col in METRICS_COLUMNS or col in _INT_COLUMNS or col in ("hit_rate", "ap")
            or col.startswith(("r@", "error_", "acc@")))


def read_metrics(path: str | Path) -> pd.DataFrame:
    """Read and validate a metrics.csv (header, numeric values)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; run `geobench eval` to create it")
    try:
        frame = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False,
                            na_values={c: [""] for c in METRICS_COLUMNS[5:]})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path}: not a readable metrics CSV ({exc}); re-run `geobench eval`") from None
    missing = [c for c in METRICS_COLUMNS if c not in frame.columns]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {', '.join(missing)}; expected a metrics.csv "
                          f"written by `geobench eval`")
    for col in frame.columns:
        if col in TEXT_COLUMNS:
            continue
        converted = pd.to_numeric(frame[col].replace("", np.nan), errors="coerce")
        bad = converted.isna() & frame[col].notna() & (frame[col].astype(str) != "")
        if bad.any() and not _is_metric(col):
            continue  # an extra text column (e.g. path, source of a report CSV)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise SchemaError(f"{path}:{i + 2}: {col} {frame[col].iloc[i]!r} is not a number")
        integer = col in _INT_COLUMNS and converted.notna().all()
        frame[col] = converted.astype(np.int64 if integer else np.float64)
    return frame


def read_results(path: str | Path) -> StoredResults:
    """Read and validate a results.h5 (schema version, datasets, shapes)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; run `geobench eval` to create it")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise SchemaError(f"{path}: not a readable HDF5 file ({exc}); re-run `geobench eval`") from None
    with h5:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v.item() if isinstance(v, np.generic)
                     else v) for k, v in h5.attrs.items()}
        if attrs.get("schema") != SCHEMA:
            raise SchemaError(f"{path}: schema {attrs.get('schema')!r}, expected {SCHEMA!r}; "
                              f"re-run `geobench eval` with this version")

        def get(name: str) -> np.ndarray:
            if name not in h5:
                raise SchemaError(f"{path}:/{name}: missing dataset; re-run `geobench eval`")
            return h5[name][...]

        ranks, k, recall = get("ranks"), get("curve/k"), get("curve/recall")
        top_i, top_s = get("topk/indices"), get("topk/scores")
        nq = int(attrs.get("n_query", -1))
        if ranks.ndim != 1 or len(ranks) != nq:
            raise SchemaError(f"{path}:/ranks: shape {ranks.shape}, expected ({nq},) from n_query")
        if k.shape != recall.shape or k.ndim != 1:
            raise SchemaError(f"{path}:/curve/recall: shape {recall.shape} does not match "
                              f"/curve/k {k.shape}")
        if top_i.shape != top_s.shape or top_i.ndim != 2 or top_i.shape[0] != nq:
            raise SchemaError(f"{path}:/topk/indices: shape {top_i.shape}, expected ({nq}, K) "
                              f"matching /topk/scores {top_s.shape}")
        per_query = {name: h5["per_query"][name][...] for name in h5.get("per_query", {})}
        tied = {name: h5[name][...] for name in ("tied_nonpositives", "tied_positives",
                                                 "n_positives") if name in h5}
        for name, values in tied.items():
            if values.shape != ranks.shape:
                raise SchemaError(f"{path}:/{name}: shape {values.shape}, expected ({nq},)")
        try:
            metrics = json.loads(attrs.get("metrics", "{}"))
        except json.JSONDecodeError:
            raise SchemaError(f"{path}: attribute 'metrics' is not valid JSON") from None
    return StoredResults(path, attrs, ranks, k, recall, top_i, top_s, per_query, metrics,
                         tied.get("tied_nonpositives"), tied.get("tied_positives"),
                         tied.get("n_positives"))
