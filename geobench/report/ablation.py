"""`geobench report --ablation`: runs pivoted into an ablation table, as papers print them.

Rows are variants (the `variant` column of metrics.csv, e.g. ``mcgra attention=cbam``;
features-file runs without one use their model name), columns are R@1 / R@5 / R@10 /
R@1% per dataset (dataset/protocol when a dataset was evaluated under several protocols).
Several runs of one variant on one dataset (seeds) are averaged and counted; the spread
is shown as ± one standard deviation.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from geobench.errors import DataError, UsageError

if TYPE_CHECKING:
    import pandas as pd

METRICS = ("r@1", "r@5", "r@10", "r@1%")
FORMATS = ("rich", "md", "csv", "latex")


def _label(row: pd.Series) -> str:
    for col in ("variant", "model", "run"):
        value = row.get(col)
        if isinstance(value, str) and value:
            return value
    return "?"


def ablation_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per variant; per dataset group the mean, std and count of each metric.

    Returned columns: variant, then `<group> <metric>`, `<group> <metric> sd` and
    `<group> runs` for each group, in order of first appearance.
    """
    import pandas as pd

    runs = rows[rows["kind"] == "run"] if "kind" in rows.columns else rows
    if runs.empty:
        raise DataError("--ablation: no evaluated runs to tabulate; pass run folders with metrics.csv")
    runs = runs.assign(_variant=[_label(r) for _, r in runs.iterrows()])
    per_dataset = runs.groupby("dataset")["protocol"].nunique()
    runs = runs.assign(_group=[d if per_dataset[d] == 1 else f"{d}/{p}"
                               for d, p in zip(runs["dataset"], runs["protocol"])])
    groups = list(dict.fromkeys(runs["_group"]))
    out = pd.DataFrame({"variant": list(dict.fromkeys(runs["_variant"]))})
    for group in groups:
        part = runs[runs["_group"] == group]
        stats = part.groupby("_variant", sort=False)
        for metric in METRICS:
            if metric not in part.columns:
                continue
            out[f"{group} {metric}"] = out["variant"].map(stats[metric].mean())
            out[f"{group} {metric} sd"] = out["variant"].map(stats[metric].std(ddof=1))
        out[f"{group} runs"] = out["variant"].map(stats.size()).fillna(0).astype(int)
        ks = part["k_1pct"].dropna().unique() if "k_1pct" in part.columns else []
        out.attrs[f"{group} k_1pct"] = int(ks[0]) if len(ks) == 1 else None
    out.attrs["groups"] = groups
    return out


def _value(mean: float, sd: float, n: int) -> str:
    import math

    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if n > 1 and sd == sd:  # NaN-safe: sd is NaN for a single run
        return f"{mean:.2f} ± {sd:.2f}"
    return f"{mean:.2f}"


def _cells(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    headers = ["variant"]
    keys: list[tuple[str, str]] = []
    for group in table.attrs.get("groups", []):
        for metric in METRICS:
            if f"{group} {metric}" in table.columns:
                k = table.attrs.get(f"{group} k_1pct")
                name = metric.replace("r@", "R@") + (f" (K={k})" if metric == "r@1%" and k else "")
                headers.append(f"{group} {name}")
                keys.append((group, metric))
    cells = []
    for _, row in table.iterrows():
        line = [str(row["variant"])]
        for group, metric in keys:
            line.append(_value(row[f"{group} {metric}"], row[f"{group} {metric} sd"],
                               int(row[f"{group} runs"])))
        cells.append(line)
    return headers, cells


def render_ablation(table: pd.DataFrame, fmt: str = "rich", width: int = 160) -> str:
    """The pivot as a rich table, Markdown, LaTeX (booktabs) or CSV (raw means, sd, runs)."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return table.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    headers, cells = _cells(table)
    if fmt == "md":
        lines = ["| " + " | ".join(headers) + " |", "|---|" + "|".join("--:" for _ in headers[1:]) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        return "\n".join(lines) + "\n"
    if fmt == "latex":
        from geobench.report.table import _latex

        return _latex(headers, cells, ["variant"] + ["r@"] * (len(headers) - 1)).replace("±", r"$\pm$")
    import io

    from rich.console import Console
    from rich.table import Table

    out = Table(title="ablation (mean ± sd over runs)", title_justify="left")
    for i, h in enumerate(headers):
        out.add_column(h, justify="left" if i == 0 else "right")
    for row in cells:
        out.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=False, color_system=None).print(out)
    return buffer.getvalue()
