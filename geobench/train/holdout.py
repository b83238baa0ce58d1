"""Which split selects best.pt: the dataset's own `val`, else one carved from train.

Model selection must never see the test split. CVUSA-style datasets ship only train and
test, so a validation split is carved from train *by location*: the train images are
grouped into connected places (a query and its positive references, images sharing an
item id), a seeded random share of the places becomes the split `val`, and the model
trains on the rest only, so no place is in both. The carve exists in memory only (the
prepared dataset is not modified) and is recorded in the run's config.json.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from geobench.errors import UsageError

VAL = "val"


@dataclass(frozen=True)
class Validation:
    split: str = VAL           # the split best.pt is selected on ("" when none)
    source: str = "none"       # dataset | carved from train | none
    fraction: float = 0.0      # carved share of the train places
    seed: int = 0
    n_places: int = 0          # places (locations) in the validation split
    n_queries: int = 0

    def to_json(self) -> dict[str, Any]:
        # How far best.pt can be trusted, next to where it comes from (config.json).
        reliable = selection_reliable(self.n_queries)
        return {**asdict(self), "min_queries": MIN_SELECTION_QUERIES,
                "selection_reliable": bool(self.split) and reliable,
                "eval_default": "best" if self.split and reliable else "last"}


def usable(prepared: Any, split: str) -> bool:
    return {"query", "reference"} <= set(prepared.select(split=split)["role"])


def places(index: Any, positives: Any) -> np.ndarray:
    """Connected place id per index row: links of positives.csv and shared item ids."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(index)
    row_of = {u: i for i, u in enumerate(index["uid"])}
    a = positives["query"].map(row_of)
    b = positives["reference"].map(row_of)
    ok = a.notna() & b.notna()
    src, dst = list(a[ok].astype(int)), list(b[ok].astype(int))
    items = index["item"].fillna("").astype(str).to_numpy()
    has = np.flatnonzero(items != "")
    if len(has):  # chain the rows of each item id
        order = has[np.argsort(items[has], kind="stable")]
        same = items[order[1:]] == items[order[:-1]]
        src += list(order[1:][same])
        dst += list(order[:-1][same])
    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def selection(prepared: Any, train_split: str, eval_split: str | None, fraction: float,
              seed: int) -> tuple[Any, Validation]:
    """(the prepared dataset to train and select on, how best.pt is selected)."""
    if eval_split == "test":
        raise UsageError("eval_split test: best.pt is never selected on the test split; use "
                         "--eval-test to also report test metrics (labelled test_*), and leave "
                         "the selection to val (the dataset's or one carved from train)")
    if not 0.0 <= fraction < 1.0:
        raise UsageError(f"--val-fraction {fraction}: a share of the train places in [0, 1), "
                         f"e.g. 0.1 (0: no validation, no best.pt)")
    wanted = eval_split or VAL
    if usable(prepared, wanted):
        n = len(prepared.select(split=wanted, role="query"))
        return prepared, Validation(wanted, "dataset", n_queries=n)
    if eval_split not in (None, VAL):
        raise UsageError(f"eval_split {eval_split!r} has no query or no reference rows; choose "
                         f"another split or leave it unset (val, carved from train)")
    if fraction == 0.0:
        return prepared, Validation("", "none")
    return carve(prepared, train_split, fraction, seed)


def carve(prepared: Any, train_split: str, fraction: float, seed: int) -> tuple[Any, Validation]:
    index, links = prepared.index, prepared.positives
    train = np.flatnonzero((index["split"] == train_split).to_numpy())
    rows = index.iloc[train]
    place = places(rows, links[links["split"] == train_split])
    is_query = (rows["role"] == "query").to_numpy()
    n_q = np.bincount(place, weights=is_query, minlength=place.max() + 1).astype(np.int64)
    n_r = np.bincount(place, weights=~is_query, minlength=place.max() + 1).astype(np.int64)
    has_both = np.flatnonzero((n_q > 0) & (n_r > 0))
    if len(has_both) < 3:
        raise UsageError(f"{prepared.root}: split {train_split!r} has {len(has_both)} matched "
                         f"places, too few to carve a validation split from; pass "
                         f"--val-fraction 0 (no best.pt) or prepare a dataset with a val split")
    order = np.random.default_rng(seed).permutation(has_both)[:len(has_both) - 2]
    # the fewest places whose queries reach the share (at least one; two stay for training)
    cum = np.cumsum(n_q[order])
    n_take = max(1, int(np.searchsorted(cum, fraction * int(is_query.sum()))) + 1)
    take = order[:min(n_take, len(order))]
    count = int(n_q[take].sum())
    held = np.isin(place, take)
    new_index = index.copy()
    new_index.iloc[train[held], new_index.columns.get_loc("split")] = VAL
    moved = set(new_index["uid"].iloc[train[held]])
    new_links = links.copy()
    mask = (new_links["split"] == train_split) & new_links["query"].isin(moved)
    new_links.loc[mask, "split"] = VAL
    # train_positive links count as positives of the held-out split's evaluation
    new_links.loc[mask & (new_links["kind"] == "train_positive"), "kind"] = "positive"
    carved = replace(prepared, index=new_index, positives=new_links)
    return carved, Validation(VAL, f"carved from {train_split}", float(fraction), int(seed),
                              len(take), count)


# --- how much the choice of best.pt can be trusted ------------------------------------------
# Below this many validation queries one query moves R@1 by more than half a point and the
# 95 % interval of a single R@1 near 50 % is wider than +-7 points: best.pt is then picked on
# noise, so `geobench eval` defaults to the last checkpoint and the run says so.
MIN_SELECTION_QUERIES = 200
BOOTSTRAP_SAMPLES = 2000


def selection_reliable(n_queries: int) -> bool:
    return n_queries >= MIN_SELECTION_QUERIES


def top1_hits(result: Any) -> np.ndarray:
    """Per query, the expected top-1 hit (0..1) of an EvalResult under random tie order:
    rank 0 with t tied non-positives and p tied positives is a hit with chance p / (p + t)."""
    first = (np.asarray(result.ranks) == 0).astype(np.float64)
    t, p = result.tied_nonpositives, result.tied_positives
    if t is None or p is None:
        return first
    t, p = np.asarray(t, np.float64), np.asarray(p, np.float64)
    share = np.divide(p, p + t, out=np.zeros_like(p), where=(p + t) > 0)
    return first * share


def paired_interval(a: np.ndarray, b: np.ndarray, seed: int = 0,
                    samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float, float]:
    """R@1(a) - R@1(b) in points over the same queries, with a 95 % paired-bootstrap interval
    (queries resampled with replacement, the two checkpoints' hits kept together)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired hits of one query set expected, got {a.shape} and {b.shape}")
    diff = a - b
    rows = np.random.default_rng(seed).integers(0, len(diff), size=(samples, len(diff)))
    means = diff[rows].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return 100.0 * float(diff.mean()), 100.0 * float(lo), 100.0 * float(hi)
