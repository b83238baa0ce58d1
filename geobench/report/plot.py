"""Recall@K curve figure for `geobench report --plot` (matplotlib, Agg, no pyplot state)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from geobench.errors import DataError
from geobench.fileio import atomic_path

if TYPE_CHECKING:
    import pandas as pd

_PAPER_MARKERS = "osD^v<>ph*"


def plot_curves(table: pd.DataFrame, out_png: str | Path) -> Path:
    """One panel per (dataset, protocol), one line per run (log-scaled K), the R@1%
    cut-off marked; paper rows of the table as markers at K = 1, 5, 10."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    from geobench.eval.results import RESULTS_FILE, read_results

    runs = table[table["kind"] == "run"] if "kind" in table.columns else table
    curves: dict[tuple[str, str], list] = {}
    for _, row in runs.iterrows():
        path = Path(str(row.get("path", ""))) / RESULTS_FILE
        if not path.is_file():
            continue
        stored = read_results(path)
        key = (str(row["dataset"]), str(row["protocol"]))
        curves.setdefault(key, []).append((str(row["run"]), stored))
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
        for run, stored in items:
            line, = ax.plot(stored.curve_k, stored.curve_recall, linewidth=1.8, label=run)
            k1 = int(stored.attrs.get("k_1pct", 0))
            if 1 <= k1 <= len(stored.curve_recall):
                ax.plot([k1], [stored.curve_recall[k1 - 1]], marker="|", markersize=12,
                        color=line.get_color())
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
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format=out_png.suffix.lstrip(".") or "png")
    return out_png
