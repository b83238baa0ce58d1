"""What a model embeds to be evaluated on a split: the protocol's eval sets, the views the
model reads them in, and the image paths.

Shared by the in-memory evaluation (`runeval`) and the features-file writer
(`embedfile`), so neither imports the other.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from geobench.errors import DataError, UsageError
from geobench.prepared import INDEX_FILE, Prepared
from geobench.train.data import ViewSource


def pick_eval_split(prepared: Prepared, wanted: str | None) -> str | None:
    """`wanted` if given (it must have queries and references), else val, else test."""
    def usable(split: str) -> bool:
        return {"query", "reference"} <= set(prepared.select(split=split)["role"])

    if wanted is not None:
        if not usable(wanted):
            raise DataError(f"{prepared.root / INDEX_FILE}: split {wanted!r} has no query or no "
                            f"reference rows; choose another split")
        return wanted
    return next((s for s in ("val", "test") if usable(s)), None)


def default_protocol(prepared: Prepared) -> str:
    """The manifest's protocol, else the catalog's default for the dataset, else `pairs`."""
    from geobench.eval.protocols import protocol_names

    named = prepared.manifest.get("protocol") or prepared.manifest.get("parameters", {}).get("protocol")
    if named in protocol_names():
        return str(named)
    try:
        from geobench.catalog import load_catalog

        spec = load_catalog().get(prepared.name)
    except Exception:  # noqa: BLE001 - a broken catalog must not block evaluation
        spec = None
    if spec is not None and spec.default_protocol in protocol_names():
        return spec.default_protocol
    return "pairs"


def model_view(card: Any, index_view: str) -> ViewSource:
    """How the model embeds rows of `index_view` (aerial rows feed polar models on the fly)."""
    if index_view in card.input_size:
        return ViewSource(index_view, index_view)
    if index_view == "aerial" and "polar" in card.input_size:
        return ViewSource("polar", "aerial")
    raise UsageError(f"the model embeds {', '.join(sorted(card.input_size))} images, not "
                     f"{index_view!r}; pick a protocol or dataset with matching views")


def forced_view(prepared: Prepared, split: str, role: str, card_view: str,
                protocol_views: tuple[str, ...]) -> str | None:
    """The view of the split's `role` rows the model reads: its card's (aerial too for a
    polar model, transformed on the fly) where the protocol allows it and the split has
    such rows; None leaves the choice to the protocol."""
    rows = prepared.select(split=split, role=role)
    for view in (card_view, "aerial") if card_view == "polar" else (card_view,):
        fits = not protocol_views or view in protocol_views
        if fits and (rows["view"] == view).any():
            return view
    return None


def eval_plan(model: Any, prepared: Prepared, split: str, protocol: str | None = None
              ) -> tuple[Any, ViewSource, ViewSource, list[str], list[str]]:
    """The protocol's eval sets for `model` and what it embeds: (sets, query source,
    reference source, query image paths, reference image paths)."""
    from geobench.eval.protocols import eval_sets, get_protocol

    proto = get_protocol(protocol or default_protocol(prepared))
    card = model.card
    sets = eval_sets(prepared, split, proto,
                     query_view=forced_view(prepared, split, "query", card.query_view, proto.query_views),
                     reference_view=forced_view(prepared, split, "reference", card.reference_view,
                                                proto.reference_views))
    out: list[Any] = []
    for role, rows in (("queries", sets.queries), ("references", sets.references)):
        views = set(rows["view"])
        if len(views) != 1:
            raise DataError(f"{prepared.root / INDEX_FILE}: {split} {role} mix views "
                            f"{', '.join(sorted(views))}; pick a protocol that selects one")
        out.append((model_view(card, views.pop()), [str(p) for p in prepared.paths(rows)]))
    (q_src, q_paths), (r_src, r_paths) = out
    return sets, q_src, r_src, q_paths, r_paths


def without_images(model: Any, prepared: Prepared, split: str, protocol: str,
                   bad_paths: set[str]) -> tuple[Any, np.ndarray, np.ndarray]:
    """--on-bad-image skip: the eval sets as if the images `bad_paths` were not in the
    split, and the masks of the query and reference rows (of the full sets) that remain."""
    sets, _, _, q_paths, r_paths = eval_plan(model, prepared, split, protocol)
    q_keep = np.array([p not in bad_paths for p in q_paths], bool)
    r_keep = np.array([p not in bad_paths for p in r_paths], bool)
    drop = set(sets.queries["uid"][~q_keep]) | set(sets.references["uid"][~r_keep])
    pos = prepared.positives
    kept = replace(prepared, index=prepared.index[~prepared.index["uid"].isin(drop)],
                   positives=pos[~pos["query"].isin(drop) & ~pos["reference"].isin(drop)])
    return eval_plan(model, kept, split, protocol)[0], q_keep, r_keep
