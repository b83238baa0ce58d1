"""Training pairs from a prepared index, and the place each pair shows (see places.py).

A pair is a query row and a reference row of the same split linked by positives.csv or,
where the dataset gives no links for the split, by a shared `item`. Where a split has
`train_positive` links (the VG adapters write them within the training radius, 10 m)
only those are pairs: the wider `positive` links (25 m) are evaluation positives, and
the band between the radii is neither positive nor negative in training (NetVLAD).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from geobench.errors import DataError
from geobench.prepared import INDEX_FILE, POSITIVES_FILE, Prepared
from geobench.train.places import (
    CELL_M,
    NEGATIVE_RADIUS_M,
    PairFacts,
    Places,
    assign_places,
    resolve_definition,
)

TRAIN_KINDS = ("positive", "train_positive")


@dataclass(frozen=True)
class ViewSource:
    """Where the images of one model view come from in the index."""

    model_view: str   # the view the model embeds ("polar", "aerial", "ground", ...)
    index_view: str   # the view of the index rows ("aerial" when polar is computed on the fly)

    @property
    def on_the_fly_polar(self) -> bool:
        return self.model_view == "polar" and self.index_view == "aerial"


def view_source(prepared: Prepared, rows: pd.DataFrame, model_view: str, what: str) -> ViewSource:
    """Pick the index view that feeds `model_view`: itself, or aerial rows for polar."""
    present = set(rows["view"])
    if model_view in present:
        return ViewSource(model_view, model_view)
    if model_view == "polar" and "aerial" in present:
        return ViewSource("polar", "aerial")
    raise DataError(f"{prepared.root / INDEX_FILE}: no {what} rows of view {model_view!r} "
                    f"(found {', '.join(sorted(present)) or 'none'}); prepare the dataset with "
                    f"that view or pick a model whose card takes these views")


@dataclass(frozen=True)
class PairSet:
    """Matched (query, reference) pairs of one split, as absolute paths, and their places."""

    query_paths: tuple[str, ...]
    reference_paths: tuple[str, ...]
    query: ViewSource
    reference: ViewSource
    places: Places
    query_ids: np.ndarray | None = None      # (P,) the query row of each pair (shared images)
    reference_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.query_paths)

    @property
    def location(self) -> np.ndarray:
        """(P,) place id per pair (the sampler's unit)."""
        return self.places.place

    @property
    def xy(self) -> np.ndarray:
        """(L, 2) UTM easting/northing per place (NaN unknown)."""
        return self.places.xy

    @property
    def n_locations(self) -> int:
        return len(self.places)


def negative_radius(prepared: Prepared) -> float:
    """The dataset's evaluation radius (a reference beyond it is a negative), else 25 m."""
    params = prepared.manifest.get("parameters") or {}
    value = params.get("eval_radius_m") if isinstance(params, dict) else None
    return float(value) if value else NEGATIVE_RADIUS_M


def _links(prepared: Prepared, split: str, queries: pd.DataFrame, refs: pd.DataFrame):
    links = prepared.positives
    links = links[(links["split"] == split) & links["kind"].isin(TRAIN_KINDS)]
    narrow = links["kind"] == "train_positive"
    if narrow.any():
        links = links[narrow]
    if not links.empty:
        pairs = links[["query", "reference"]].drop_duplicates()
        pairs = pairs[pairs["query"].isin(queries["uid"]) & pairs["reference"].isin(refs["uid"])]
        return pairs, f"{POSITIVES_FILE} links", bool(narrow.any())
    q = queries.loc[queries["item"] != "", ["uid", "item"]]
    r = refs.loc[refs["item"] != "", ["uid", "item"]]
    pairs = q.merge(r, on="item", suffixes=("_q", "_r"))
    pairs = pairs.rename(columns={"uid_q": "query", "uid_r": "reference"})[["query", "reference"]]
    return pairs, "shared item ids", False


def _xy(rows: pd.DataFrame) -> np.ndarray:
    return np.stack([pd.to_numeric(rows[c], errors="coerce").to_numpy(dtype=float)
                     for c in ("utm_e", "utm_n")], axis=1)


def build_pairs(prepared: Prepared, split: str, query_view: str, reference_view: str,
                places: str = "auto", cell_m: float = CELL_M) -> PairSet:
    queries = prepared.select(split=split, role="query")
    refs = prepared.select(split=split, role="reference")
    if queries.empty or refs.empty:
        raise DataError(f"{prepared.root / INDEX_FILE}: split {split!r} has {len(queries)} query "
                        f"and {len(refs)} reference rows; training needs both (choose another "
                        f"train_split or re-prepare the dataset)")
    qsrc = view_source(prepared, queries, query_view, f"{split} query")
    rsrc = view_source(prepared, refs, reference_view, f"{split} reference")
    queries = queries[queries["view"] == qsrc.index_view]
    refs = refs[refs["view"] == rsrc.index_view]
    pairs, how, narrow = _links(prepared, split, queries, refs)
    if len(pairs) < 2:
        raise DataError(f"{prepared.root}: split {split!r} has {len(pairs)} matched "
                        f"{qsrc.index_view}/{rsrc.index_view} pairs (from {how}); training needs "
                        f"at least 2: check {POSITIVES_FILE} kinds positive/train_positive")
    q_pos = pd.Index(queries["uid"]).get_indexer(pairs["query"])
    r_pos = pd.Index(refs["uid"]).get_indexer(pairs["reference"])
    qrows, rows = queries.iloc[q_pos], refs.iloc[r_pos]
    facts = PairFacts(query=q_pos.astype(np.int64), reference=r_pos.astype(np.int64),
                      query_item=qrows["item"].fillna("").astype(str).to_numpy(),
                      reference_item=rows["item"].fillna("").astype(str).to_numpy(),
                      query_xy=_xy(qrows), reference_xy=_xy(rows),
                      city=qrows["city"].fillna("").astype(str).to_numpy())
    definition = resolve_definition(places, facts, narrow)
    placed = assign_places(facts, definition, negative_radius_m=negative_radius(prepared),
                           cell_m=cell_m, where=str(prepared.root))
    qpaths = tuple(str(p) for p in prepared.paths(qrows))
    rpaths = tuple(str(p) for p in prepared.paths(rows))
    return PairSet(qpaths, rpaths, qsrc, rsrc, placed, facts.query, facts.reference)
