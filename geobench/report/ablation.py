"""`geobench report --ablation`: runs pivoted into an ablation table, as papers print them.

Rows are variants (the `variant` column of metrics.csv, e.g. ``mcgra attention=cbam``;
features-file runs without one use their model name), columns are R@1 / R@5 / R@10 /
R@1% per evaluation group. Only runs that agree on everything that changes the number
besides the seed are averaged (GROUP_BY: the dataset and its index hash, split, protocol,
tie policy, search and the K of R@1%; a variant's checkpoint too): a group's label names
whatever distinguishes it from groups of the same dataset, and the notes under the table
say what each cell averages. The spread is shown as ± one standard deviation.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from geobench.errors import DataError, UsageError

if TYPE_CHECKING:
    import pandas as pd

METRICS = ("r@1", "r@5", "r@10", "r@1%")
# What changes a recall besides the seed: runs differing in any of these are never averaged.
GROUP_BY = ("dataset", "dataset_sha256", "split", "protocol", "ties", "search", "k_1pct")


def _text(value: object) -> str:
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _dataset_hash(row: pd.Series) -> str:
    """The index hash of the evaluated dataset: metrics.csv's column, else results.h5's
    attribute (metrics.csv files written before the column existed)."""
    recorded = _text(row.get("dataset_sha256"))
    if recorded or not isinstance(row.get("path"), str):
        return recorded
    from pathlib import Path

    results = Path(row["path"]) / "results.h5"
    if not results.is_file():
        return ""
    import h5py

    try:
        with h5py.File(results, "r") as h5:
            return _text(h5.attrs.get("dataset_sha256", ""))
    except OSError:
        return ""


def _keys(runs: pd.DataFrame) -> pd.DataFrame:
    """GROUP_BY columns as text (missing: exact search, expected ties, unknown hash)."""
    import pandas as pd

    keys = pd.DataFrame(index=runs.index)
    for col in GROUP_BY:
        values = runs[col] if col in runs.columns else pd.Series("", index=runs.index)
        keys[col] = [_text(v) for v in values]
    keys["dataset_sha256"] = [_dataset_hash(r) for _, r in runs.iterrows()]
    keys["search"] = keys["search"].replace("", "exact")
    keys["ties"] = keys["ties"].replace("", "expected")
    return keys


def _group_labels(keys: pd.DataFrame) -> list[str]:
    """dataset, plus whatever differs between groups of the same dataset."""
    distinct = keys.drop_duplicates()
    labels = {}
    for _, key in distinct.iterrows():
        same = distinct[distinct["dataset"] == key["dataset"]]
        parts = [key["dataset"]]
        for col, show in (("dataset_sha256", lambda v: f"index {v[:8]}" if v else "index ?"),
                          ("split", str), ("protocol", str), ("ties", lambda v: f"ties {v}"),
                          ("search", str), ("k_1pct", lambda v: f"K={v}" if v else "K=?")):
            if same[col].nunique() > 1:
                parts.append(show(key[col]))
        labels[tuple(key)] = parts[0] + (f" [{', '.join(parts[1:])}]" if len(parts) > 1 else "")
    return [labels[tuple(k)] for _, k in keys.iterrows()]


def _notes(keys: pd.DataFrame, groups: pd.Series) -> list[str]:
    lines = ["each cell: mean ± sd over the runs of one variant that agree on dataset (index "
             "sha256), split, protocol, ties, search and K of R@1%; runs differing in any of "
             "them are never averaged"]
    for group in dict.fromkeys(groups):
        k = keys[groups == group].iloc[0]
        lines.append(f"{group}: dataset {k['dataset']} (index sha256 "
                     f"{k['dataset_sha256'][:12] or 'not recorded'}), split {k['split']}, "
                     f"protocol {k['protocol']}, ties {k['ties']}, search {k['search']}, "
                     f"R@1% K={k['k_1pct'] or '?'}")
    return lines
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
    runs = runs.assign(_variant=_variants(runs))
    keys = _keys(runs)
    runs = runs.assign(_group=_group_labels(keys))
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
    out.attrs["notes"] = _notes(keys, runs["_group"])
    return out


def _variants(runs: pd.DataFrame) -> list[str]:
    """Variant labels; a variant scored at different checkpoints (best / last) is one row
    per checkpoint, never averaged across them."""
    labels = [_label(r) for _, r in runs.iterrows()]
    if "checkpoint" not in runs.columns:
        return labels
    points = [_text(c) for c in runs["checkpoint"]]
    mixed = {v for v in labels if len({p for lab, p in zip(labels, points) if lab == v}) > 1}
    return [f"{v} ({p or 'checkpoint ?'})" if v in mixed else v for v, p in zip(labels, points)]


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
    notes = table.attrs.get("notes", [])
    if fmt == "md":
        lines = ["| " + " | ".join(headers) + " |", "|---|" + "|".join("--:" for _ in headers[1:]) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"
    if fmt == "latex":
        from geobench.report.table import _latex

        body = _latex(headers, cells, ["variant"] + ["r@"] * (len(headers) - 1))
        return body.replace("±", r"$\pm$") + "".join(f"% {n}\n" for n in notes)
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
    return buffer.getvalue() + "".join(f"{n}\n" for n in notes)
