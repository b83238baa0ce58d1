"""`geobench viz examples`: retrieval examples from a results.h5 — one row per query.

Each row shows the query image, then its top-K references framed green (positive),
yellow (semi-positive) or red (not a positive), titled with rank, score and, where both
images have GPS, the distance in metres. Ground truth and image paths come from the
prepared dataset the results were computed on (positives.csv, index.csv), so the figure
shows exactly what the evaluation counted.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geobench.errors import DataError, UsageError
from geobench.viz import figure as F

SELECT = ("worst", "best", "random")
TILE_PX = 150


@dataclass
class Tile:
    uid: str
    path: Path | None       # None: not in the dataset index
    label: str
    kind: str = "query"     # query | positive | semi_positive | negative
    polar_of: bool = False  # the reference row is a polar image; `path` is its aerial


@dataclass
class ExampleRow:
    query: Tile
    rank: int
    references: list[Tile] = field(default_factory=list)


@dataclass
class Examples:
    rows: list[ExampleRow]
    title: str
    data: Path


def results_file(path: str | Path) -> Path:
    from geobench.eval.results import RESULTS_FILE

    p = Path(path)
    f = p / RESULTS_FILE if p.is_dir() else p
    if not f.is_file():
        raise DataError(f"{f}: no results.h5 here; pass a folder written by `geobench eval`")
    return f


def _uids(h5_path: Path, name: str, n: int) -> list[str]:
    import h5py

    with h5py.File(h5_path, "r") as h5:
        if name not in h5:
            raise DataError(f"{h5_path}:/{name}: the results carry no image ids, so images "
                            f"cannot be found; re-run `geobench eval` with a features file "
                            f"that has /query/uids and /reference/uids")
        uids = [u.decode() if isinstance(u, bytes) else str(u) for u in h5[name][...]]
    if len(uids) != n:
        raise DataError(f"{h5_path}:/{name}: {len(uids)} ids for {n} rows; the file is damaged, "
                        f"re-run `geobench eval`")
    return uids


def dataset_of(attrs: dict[str, Any], data: str | Path | None, where: Path) -> Path:
    """--data if given, else the prepared dataset recorded in the results."""
    if data is not None:
        return Path(data)
    try:
        extra = json.loads(attrs.get("extra", "{}") or "{}")
    except json.JSONDecodeError:
        extra = {}
    recorded = extra.get("data") or attrs.get("data")
    if not recorded:
        raise UsageError(f"{where}: the results do not record their prepared dataset; pass "
                         f"--data DS")
    return Path(recorded)


def same_dataset(attrs: dict[str, Any], prepared: Any, uids: list[str], where: Path) -> None:
    """Refuse a prepared dataset other than the one the results were computed on: its
    images would be drawn under these ranks (or as grey tiles)."""
    recorded = str(attrs.get("dataset_sha256") or "")
    found = prepared.dataset_hash()
    if recorded and found and recorded != found:
        raise DataError(f"{prepared.root}: not the prepared dataset {where} was computed on "
                        f"(its index.csv sha256 {found[:12]}, the results record "
                        f"{recorded[:12]}); pass the dataset they were evaluated on with --data")
    known = set(prepared.index["uid"])
    missing = [u for u in uids if u not in known]
    if missing:
        raise DataError(f"{prepared.root}: {len(missing)} of the {len(uids)} images of {where} "
                        f"are not in its index.csv (e.g. {missing[0]}); pass the dataset they "
                        f"were evaluated on with --data")


def _select(ranks: np.ndarray, n_reference: int, how: str, n: int, seed: int) -> np.ndarray:
    if how not in SELECT:
        raise UsageError(f"--select {how!r}: use one of {', '.join(SELECT)}")
    valid = np.flatnonzero(ranks < n_reference)  # queries with at least one positive
    if how == "random":
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(valid, size=min(n, len(valid)), replace=False))
    key = -ranks[valid] if how == "worst" else ranks[valid]
    return valid[np.lexsort((valid, key))][:n]


def load_examples(results: str | Path, data: str | Path | None = None, *, queries: int = 8,
                  query_uids: list[str] | None = None, k: int = 5, select: str = "worst",
                  seed: int = 0) -> Examples:
    """The rows of an examples figure, read from results.h5 and the prepared dataset."""
    from geobench.eval.results import read_results
    from geobench.prepared import read_prepared

    path = results_file(results)
    stored = read_results(path)
    nq, nr = len(stored.ranks), int(stored.attrs.get("n_reference", 0))
    if k > stored.topk_indices.shape[1]:
        raise UsageError(f"--k {k}: {path} stores only the top {stored.topk_indices.shape[1]}; "
                         f"re-run `geobench eval --save-topk {k}` or pass a smaller --k")
    qids, rids = _uids(path, "query/uids", nq), _uids(path, "reference/uids", nr)
    prepared = read_prepared(dataset_of(stored.attrs, data, path))
    same_dataset(stored.attrs, prepared, qids + rids, path)
    title = " · ".join(str(stored.attrs.get(a)) for a in ("model", "dataset", "split", "protocol")
                       if stored.attrs.get(a))
    return examples_from(stored.ranks, stored.topk_indices, stored.topk_scores, qids, rids,
                         prepared, str(stored.attrs.get("split", "")), queries=queries,
                         query_uids=query_uids, k=k, select=select, seed=seed,
                         title=title or path.parent.name, where=path)


def examples_from(ranks: np.ndarray, topk_indices: np.ndarray, topk_scores: np.ndarray,
                  qids: list[str], rids: list[str], prepared: Any, split: str, *,
                  queries: int = 8, query_uids: list[str] | None = None, k: int = 5,
                  select: str = "worst", seed: int = 0, title: str = "",
                  where: Path | str = "the results") -> Examples:
    """Example rows from ranks and top-K (in memory: `eval` results or a training run's
    periodic evaluation) and the prepared dataset they index."""
    from geobench.eval.metrics import great_circle_m

    if k < 1:
        raise UsageError(f"--k {k}: show at least one reference")
    index = prepared.index.set_index("uid", drop=False)
    abs_paths = dict(zip(prepared.index["uid"], prepared.paths(), strict=True))
    links = prepared.positives
    if split:
        links = links[links["split"] == split]
    truth = {(q, r): kind for q, r, kind in zip(links["query"], links["reference"], links["kind"],
                                                 strict=True)}
    if query_uids:
        position = {u: i for i, u in enumerate(qids)}
        unknown = [u for u in query_uids if u not in position]
        if unknown:
            raise UsageError(f"--query {unknown[0]}: not a query of {where}; pick uids from "
                             f"the dataset's index.csv ({split or 'its'} split)")
        chosen = np.asarray([position[u] for u in query_uids])
    else:
        chosen = _select(np.asarray(ranks), len(rids), select, queries, seed)
    aerial_of = _aerial_sources(prepared.index)

    def tile(uid: str, label: str, kind: str) -> Tile:
        shown = aerial_of.get(uid, uid)
        return Tile(uid, abs_paths.get(shown), label, kind, uid in aerial_of)

    def latlon(uid: str) -> tuple[float, float] | None:
        if uid not in index.index:
            return None
        lat, lon = index.at[uid, "lat"], index.at[uid, "lon"]
        return None if np.isnan(lat) or np.isnan(lon) else (float(lat), float(lon))

    rows = []
    for qi in chosen:
        q = qids[qi]
        rank = int(ranks[qi])
        row = ExampleRow(tile(q, f"query {q}\nbest positive at rank {rank + 1}", "query"), rank)
        q_ll = latlon(q)
        for j in range(min(k, topk_indices.shape[1])):
            ri = int(topk_indices[qi, j])
            if ri < 0:
                break
            r = rids[ri]
            kind = {"positive": "positive", "semi_positive": "semi_positive",
                    "train_positive": "positive"}.get(truth.get((q, r), ""), "negative")
            text = f"#{j + 1}  {float(topk_scores[qi, j]):.3f}"
            r_ll = latlon(r)
            if q_ll and r_ll:
                d = great_circle_m(np.array([q_ll[0]]), np.array([q_ll[1]]),
                                   np.array([r_ll[0]]), np.array([r_ll[1]]))[0]
                text += f"\n{d:,.0f} m"
            row.references.append(tile(r, text, kind))
        rows.append(row)
    return Examples(rows, title, prepared.root)


def _aerial_sources(index: Any) -> dict[str, str]:
    """Polar reference uid -> uid of the aerial image of the same item (shown instead)."""
    polar = index[index["view"] == "polar"]
    aerial = index[index["view"] == "aerial"]
    if polar.empty or aerial.empty:
        return {}
    by_item = dict(zip(zip(aerial["split"], aerial["item"], strict=True), aerial["uid"], strict=True))
    return {u: by_item[(s, i)] for u, s, i in zip(polar["uid"], polar["split"], polar["item"],
                                                  strict=True) if (s, i) in by_item}


def _image(t: Tile, height: int, polar_strip: bool) -> np.ndarray | None:
    """The tile's pixels at `height` rows, or None when the file is missing or unreadable."""
    import cv2

    if t.path is None or not Path(t.path).is_file():
        return None
    from geobench.errors import DataError
    from geobench.imagefile import decode_image

    try:  # a damaged file is drawn as missing, and libjpeg's raw warning stays silent
        img = decode_image(t.path)
    except DataError:
        return None
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if polar_strip and t.kind != "query" and img.shape[0] == img.shape[1]:
        from geobench.geometry.polar import polar_transform

        img = polar_transform(img, size=(height, 4 * height))
    return F.fit(img, height)


def render_examples(examples: Examples, out: str | Path, fmt: str | None = None, *,
                    polar_strip: bool = False, tile_px: int = TILE_PX) -> tuple[Path, list]:
    """Draw the grid into `out`; returns the file and, per row, the pixel boxes
    (x0, y0, x1, y1) of its tiles in the saved raster (top-left origin) with their kinds."""
    out = Path(out)
    fmt = F.output_format(out, fmt)
    fig, boxes = examples_figure(examples, polar_strip=polar_strip, tile_px=tile_px)
    return F.save(fig, out, fmt), boxes


def examples_figure(examples: Examples, *, polar_strip: bool = False,
                    tile_px: int = TILE_PX) -> tuple[Any, list]:
    """The grid as a matplotlib Figure, and the pixel boxes of its tiles."""
    from matplotlib import rc_context

    if not examples.rows:
        raise DataError("no query with a positive to show; check the results' split")
    frame_px = max(3, tile_px // 25)
    grid = []
    for row in examples.rows:
        tiles = [row.query, *row.references]
        grid.append([(t, _image(t, tile_px, polar_strip)) for t in tiles])
    ncol = max(len(r) for r in grid)
    # Column widths from the widest image in each column (queries are often panoramas).
    widths = [max((img.shape[1] / img.shape[0] if img is not None else 1.0)
                  for row in grid for j, (_, img) in enumerate(row) if j == c) for c in range(ncol)]
    dpi = 100
    row_in = tile_px / dpi * 1.45
    fig = F.new_figure(sum(widths) * tile_px / dpi * 1.12 + 0.4, row_in * len(grid) + 0.8, dpi)
    boxes: list[list[tuple[tuple[int, int, int, int], str]]] = []
    with rc_context(F.STYLE):
        gs = fig.add_gridspec(len(grid), ncol, width_ratios=widths, left=0.01, right=0.99,
                              top=1 - 0.75 / fig.get_figheight(), bottom=0.01, wspace=0.08,
                              hspace=0.45)
        for i, row in enumerate(grid):
            placed = []
            for j, (t, img) in enumerate(row):
                ax = fig.add_subplot(gs[i, j])
                ax.set_axis_off()
                w = round(widths[j] * tile_px)
                if img is None:
                    img = F.placeholder(tile_px, w if j == 0 else tile_px)
                    ax.text(0.5, 0.5, f"missing\n{Path(str(t.path or t.uid)).name}",
                            ha="center", va="center", transform=ax.transAxes, fontsize=7)
                if t.kind != "query":
                    img = F.framed(img, F.FRAME[t.kind], frame_px)
                ax.imshow(img, interpolation="nearest")
                ax.set_title(t.label, fontsize=7 if j else 8, loc="center")
                placed.append((ax, t.kind))
            boxes.append(placed)
        fig.suptitle(f"Retrieval examples: {examples.title}  (green positive, yellow "
                     f"semi-positive, red wrong)", fontsize=9)
        fig.canvas.draw()
    height = fig.bbox.height
    pixel_boxes = []
    for placed in boxes:
        row_boxes = []
        for ax, kind in placed:
            # The image fills the axes' data limits (imshow keeps the image's aspect).
            (x0, y0), (x1, y1) = ax.transData.transform(
                [(ax.get_xlim()[0], ax.get_ylim()[0]), (ax.get_xlim()[1], ax.get_ylim()[1])])
            row_boxes.append(((int(round(min(x0, x1))), int(round(height - max(y0, y1))),
                               int(round(max(x0, x1))), int(round(height - min(y0, y1)))), kind))
        pixel_boxes.append(row_boxes)
    return fig, pixel_boxes
