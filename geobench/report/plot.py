"""Recall@K curve figure for `geobench report --plot` (matplotlib, Agg, no pyplot state)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from geobench.errors import DataError, UsageError
from geobench.fileio import atomic_path

if TYPE_CHECKING:
    import pandas as pd

_PAPER_MARKERS = "osD^v<>ph*"


def check_output(out: str | Path) -> Path:
    """A file name whose extension matplotlib writes; one-line errors otherwise."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    if out.is_dir():
        raise UsageError(f"--plot {out}: is a folder; give a file name such as "
                         f"{out / 'curves.png'}")
    kinds = sorted(FigureCanvasAgg(Figure()).get_supported_filetypes())
    if out.suffix.lstrip(".").lower() not in kinds:
        raise UsageError(f"--plot {out}: unsupported extension {out.suffix or '(none)'!r}; "
                         f"use one of {', '.join('.' + k for k in kinds)}")
    return out


def _legend(row: pd.Series, k1: int) -> str:
    """Model and variant (the variant string starts with the model name)."""
    name = str(row.get("variant") or "") or str(row.get("model") or "") or str(row["run"])
    return f"{name} (R@1% at K={k1})" if k1 else name


def plot_curves(table: pd.DataFrame, out_png: str | Path, chance: bool = False) -> Path:
    """One panel per (dataset, protocol), one line per run (log-scaled K) labelled with
    its model and variant (and its run when two lines would share a label), the R@1%
    cut-off marked and its K in the legend; paper rows as markers at K = 1, 5, 10;
    `chance`: the recall of a random ranking as a dotted line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    from geobench.eval.results import RESULTS_FILE, read_results

    out_png = check_output(out_png)
    runs = table[table["kind"] == "run"] if "kind" in table.columns else table
    curves: dict[tuple[str, str], list] = {}
    for _, row in runs.iterrows():
        path = Path(str(row.get("path", ""))) / RESULTS_FILE
        if not path.is_file():
            continue
        stored = read_results(path)
        key = (str(row["dataset"]), str(row["protocol"]))
        label = _legend(row, int(stored.attrs.get("k_1pct", 0)))
        curves.setdefault(key, []).append((label, str(row["run"]), stored))
    for items in curves.values():
        labels = [label for label, _, _ in items]
        items[:] = [(f"{label} · {run}" if labels.count(label) > 1 else label, run, stored)
                    for label, run, stored in items]
    if not curves:
        raise DataError("--plot: no results.h5 beside the collected metrics.csv files; "
                        "re-run `geobench eval` (it writes both)")
    papers = table[table["kind"] == "paper"] if "kind" in table.columns else table.iloc[:0]
    n = len(curves)
    cols = min(n, 2)
    rows = -(-n // cols)
    fig = Figure(figsize=(6.5 * cols, 4.6 * rows), dpi=110)
    FigureCanvasAgg(fig)
    for i, ((dataset, protocol), items) in enumerate(sorted(curves.items())):
        ax = fig.add_subplot(rows, cols, i + 1)
        for label, _, stored in items:
            line, = ax.plot(stored.curve_k, stored.curve_recall, linewidth=1.8, label=label)
            k1 = int(stored.attrs.get("k_1pct", 0))
            if 1 <= k1 <= len(stored.curve_recall):
                ax.plot([k1], [stored.curve_recall[k1 - 1]], marker="|", markersize=12,
                        color=line.get_color())
        if chance:
            _chance(ax, items)
        for j, (_, prow) in enumerate(papers[papers["protocol"] == protocol].iterrows()):
            ks = [k for k in (1, 5, 10) if prow.get(f"r@{k}") == prow.get(f"r@{k}")]
            ax.plot(ks, [prow[f"r@{k}"] for k in ks], linestyle="none", color="0.35",
                    marker=_PAPER_MARKERS[j % len(_PAPER_MARKERS)], markersize=5,
                    label=str(prow["run"]))
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())  # no 2×10⁰ labels between decades
        ax.set_xlabel("K (log scale)")
        ax.set_ylabel("Recall@K (%)")
        ax.set_ylim(0, 100.5)
        ax.set_title(f"{dataset} · {protocol}" if dataset else protocol)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    fig.suptitle("Recall@K (| marks the R@1% cut-off)", fontsize="medium")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format=out_png.suffix.lstrip(".").lower())
    return out_png


def _chance(ax, items: list) -> None:
    """The random-ranking curve of the panel's first run with positive counts (files of
    older versions lack them: one positive per query is assumed)."""
    import numpy as np

    from geobench.eval.ties import chance_curve

    stored = next((s for _, _, s in items if s.n_positives is not None), items[0][2])
    n_pos = stored.n_positives if stored.n_positives is not None else (stored.ranks < int(
        stored.attrs["n_reference"])).astype(np.int64)
    k, recall = chance_curve(n_pos, int(stored.attrs["n_reference"]), len(stored.curve_k))
    ax.plot(k, recall, linestyle=":", color="0.4", linewidth=1.2, label="chance")
