"""Named evaluation protocols (DESIGN.md "Named evaluation protocols").

A protocol fixes what an evaluation means: which images are queries and references,
which ground-truth links count as positives, the R@1% cut-off rule (the field's rules
differ by one, see reference/datasets.md §8), the K values reported and the extras
(VIGOR hit rate and metre error, University-1652 AP). Ties are a separate choice of the
evaluation (`geobench.eval.ties`: expected rank by default).
Queries without any positive count as misses (as the VG benchmark divides by all
queries).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import numpy as np

from geobench.errors import DataError, UnknownNameError
from geobench.eval.csr import CSR

ONE_PERCENT_RULES = {
    "floor": "K = floor(Nr/100) (SAFA, DSM, TransGeo, Sample4Geo)",
    "vigor": "K = floor(0.01*Nr)+1 (official VIGOR validate_top)",
    "u1652": "K = round(0.01*Nr)+1 (University-1652 baseline CMC index)",
}


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    # Views in order of preference; eval_sets takes the first present in the split
    # (or the model's view, e.g. "polar"). Empty: every view.
    query_views: tuple[str, ...] = ()
    reference_views: tuple[str, ...] = ()
    positive_kinds: tuple[str, ...] = ("positive",)
    one_percent_rule: str = "floor"
    ks: tuple[int, ...] = (1, 5, 10)
    hit_rate: bool = False  # VIGOR: needs semi-positives
    ap: bool = False  # University-1652 trapezoidal AP over every positive
    metre_error: bool = False  # VIGOR: top-1 centre vs query position, if positions given
    source: str = ""


_PROTOCOLS: dict[str, Protocol] = {}


def _add(protocol: Protocol) -> None:
    if protocol.one_percent_rule not in ONE_PERCENT_RULES:
        raise ValueError(f"{protocol.name}: unknown R@1% rule {protocol.one_percent_rule!r}")
    _PROTOCOLS[protocol.name] = protocol


_add(Protocol("cvusa", "CVUSA test: ground panorama -> aerial, one positive per query",
              ("ground",), ("aerial", "polar"), source="SAFA/DSM/Sample4Geo"))
_add(Protocol("cvact_val", "CVACT val: ground panorama -> aerial, same panoId (8,884 pairs)",
              ("ground",), ("aerial", "polar"), source="SAFA/TransGeo"))
_add(Protocol("cvact_test", "CVACT test: any aerial within 5 m (UTM) of the query counts",
              ("ground",), ("aerial", "polar"),
              source="OriCNN RecallGeo.m"))
for _name, _what in (("vigor_same", "same-area"), ("vigor_cross", "cross-area")):
    _add(Protocol(_name, f"VIGOR {_what}: R@K on the positive, hit rate with the semi-positives, "
                  "metre error of the top-1 centre", ("ground",), ("aerial",),
                  one_percent_rule="vigor", hit_rate=True, metre_error=True,
                  source="VIGOR train_SAFA.py validate_top"))
_add(Protocol("u1652_d2s", "University-1652 drone -> satellite: R@K (CMC) and AP",
              ("drone",), ("aerial",), one_percent_rule="u1652", ap=True,
              source="University1652-Baseline evaluate_gpu.py"))
_add(Protocol("u1652_s2d", "University-1652 satellite -> drone: R@K (CMC) and AP",
              ("aerial",), ("drone",), one_percent_rule="u1652", ap=True,
              source="University1652-Baseline evaluate_gpu.py"))
_add(Protocol("vg25", "VG (Pitts, SF-XL, MSLS, Tokyo): any reference within 25 m; R@N over all "
              "queries", ks=(1, 5, 10, 20),
              source="deep-visual-geo-localization-benchmark test.py"))
# MSLS val's two query sets (datasets/msls.py); scored as vg25, named apart so that results
# and published rows (paper_results.csv) say which set they are.
_add(Protocol("msls_val_740", "MSLS val, the papers' 740 queries (MixVPR/GSV-Cities "
              "msls_val_qIdx list): any reference within 25 m", ks=(1, 5, 10, 20),
              source="amaralibey/MixVPR dataloaders/val/MapillaryDataset.py"))
_add(Protocol("msls_val_all", "MSLS val, every query VPR-datasets-downloader puts in val/queries: "
              "any reference within 25 m", ks=(1, 5, 10, 20),
              source="gmberton/VPR-datasets-downloader format_mapillary.py"))
_add(Protocol("pairs", "generic: the explicit positives of the features file or dataset",
              source="geobench"))


def protocol_names() -> list[str]:
    return sorted(_PROTOCOLS)


def get_protocol(name: str | Protocol) -> Protocol:
    if isinstance(name, Protocol):
        return name
    try:
        return _PROTOCOLS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), protocol_names(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"unknown protocol {name!r}.{hint} Known protocols: "
                               f"{', '.join(protocol_names())}") from None


def one_percent_k(n_reference: int, rule: str) -> int:
    """K for R@1% under a rule, written out beside the value (at least 1)."""
    if rule == "floor":
        k = n_reference // 100
    elif rule == "vigor":
        k = int(n_reference * 0.01) + 1
    elif rule == "u1652":
        k = round(n_reference * 0.01) + 1  # Python's round, as the baseline
    else:
        raise UnknownNameError(f"unknown R@1% rule {rule!r}; use one of "
                               f"{', '.join(ONE_PERCENT_RULES)}")
    return max(1, int(k))


@dataclass
class EvalSets:
    """Rows to embed for one protocol on a prepared split, and their ground truth."""

    queries: Any  # pandas.DataFrame, index.csv rows
    references: Any
    positives: CSR
    semi_positives: CSR | None
    query_latlon: np.ndarray | None
    reference_latlon: np.ndarray | None


def eval_sets(prepared: Any, split: str, protocol: str | Protocol, *,
              query_view: str | None = None, reference_view: str | None = None) -> EvalSets:
    """Select a prepared dataset's queries/references for `protocol` and link positives.

    `query_view` / `reference_view` override the protocol's preferred views (a polar
    model passes reference_view="polar", a limited-FoV one query_view="perspective").
    The RUN mode of `geobench eval` embeds `queries` and `references` (in this order)
    and passes the descriptors with these links to `geobench.eval.evaluate.evaluate`.
    """
    proto = get_protocol(protocol)
    index = prepared.index
    split_rows = index[index["split"] == split]

    def pick(role: str, views: tuple[str, ...], forced: str | None) -> Any:
        rows = split_rows[split_rows["role"] == role]
        if forced is not None:
            return rows[rows["view"] == forced]
        if not views:
            return rows
        present = [v for v in views if (rows["view"] == v).any()]
        return rows[rows["view"] == present[0]] if present else rows.iloc[:0]

    queries = pick("query", proto.query_views, query_view)
    references = pick("reference", proto.reference_views, reference_view)
    where = prepared.root / "index.csv"
    if queries.empty:
        raise DataError(f"{where}: no {split} queries with view in "
                        f"{query_view or ', '.join(proto.query_views) or 'any'} for protocol {proto.name}; "
                        f"check --split and --protocol")
    if references.empty:
        raise DataError(f"{where}: no {split} references with view in "
                        f"{reference_view or ', '.join(proto.reference_views) or 'any'} for protocol "
                        f"{proto.name}; check --split and the dataset's views")
    qpos = {u: i for i, u in enumerate(queries["uid"])}
    rpos = {u: i for i, u in enumerate(references["uid"])}
    links = prepared.positives
    links = links[(links["split"] == split) & links["query"].isin(qpos) & links["reference"].isin(rpos)]

    def csr(kinds: tuple[str, ...]) -> CSR:
        sel = links[links["kind"].isin(kinds)]
        return CSR.from_pairs(sel["query"].map(qpos).to_numpy(np.int64),
                              sel["reference"].map(rpos).to_numpy(np.int64), len(queries))

    semi = csr(("semi_positive",)) if proto.hit_rate else None

    def latlon(rows: Any) -> np.ndarray | None:
        values = rows[["lat", "lon"]].to_numpy(np.float64)
        return values if np.isfinite(values).all() else None

    return EvalSets(queries.reset_index(drop=True), references.reset_index(drop=True),
                    csr(proto.positive_kinds), semi, latlon(queries), latlon(references))
