"""`geobench report`: tables, recall@K curves, paper reference rows and CI checks.

Everything here reads stored files (metrics.csv, results.h5, the packaged
data/paper_results.csv) and returns frames, strings or paths; the CLI prints them.
"""
from __future__ import annotations

import difflib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from geobench.errors import DataError, SchemaError, UnknownNameError, UsageError

if TYPE_CHECKING:
    import pandas as pd

KEY = ("run", "dataset", "split", "protocol")
FORMATS = ("rich", "md", "csv", "latex")
# Higher is better for every metric compared by --check, except these.
LOWER_IS_BETTER = ("error_mean_m", "error_median_m")
PAPER_FAMILIES = {
    "cvusa": ("cvusa",), "cvact": ("cvact_val", "cvact_test"),
    "vigor": ("vigor_same", "vigor_cross"),
    "university1652": ("u1652_d2s", "u1652_s2d"), "u1652": ("u1652_d2s", "u1652_s2d"),
    "msls": ("msls_val_740", "msls_val_all"),
}


def collect(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Every metrics.csv under `paths` (files or folders, searched recursively), one row
    per file: no row is ever dropped (the same file reached twice is read once).

    A row's `run` is a readable label of where it came from: the folder of its
    metrics.csv relative to the report root it was found under, without the trailing
    `eval/<dataset>-<split>` (or `eval`) that `geobench eval` adds; the name written in
    the file moves to `run_name`, the full relative folder to `id`. When two rows would
    share (run, variant, dataset, split, protocol), their labels grow (root folder name,
    then absolute path) until they differ.
    """
    import pandas as pd

    from geobench.eval.results import read_metrics

    found: dict[Path, tuple[Path, Path]] = {}  # resolved file -> (root, file)
    for p in map(Path, paths or ["."]):
        if p.is_file():
            files = [p]
        elif p.is_dir():
            files = _metrics_files(p)
        else:
            raise DataError(f"{p}: no such file or folder; pass run folders or metrics.csv files")
        for f in files:
            found.setdefault(f.resolve(), (p.parent if p.is_file() else p, f))
    if not found:
        raise DataError(f"no metrics.csv under {', '.join(map(str, paths or ['.']))}; "
                        f"run `geobench eval` first")
    items = sorted(found.values(), key=lambda rf: rf[1].stat().st_mtime)
    frames = []
    for root, f in items:
        frame = read_metrics(f)
        frame["path"] = str(f.parent)
        frame["run_name"] = frame["run"]
        # relative as written, not resolved: a run folder linked into the root stays inside it
        rel = Path(os.path.relpath(f.parent.absolute(), root.absolute())).as_posix()
        frame["id"] = rel
        run_rel = [_run_folder(rel, r) for _, r in frame.iterrows()]
        frame["run"] = [r or root.resolve().name for r in run_rel]
        frame["_root"] = root.resolve().name
        frame["_abs"] = [str(root.resolve() / r) for r in run_rel]
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True, sort=False)
    _unclash(table)
    table["kind"] = "run"
    return table.drop(columns=["_root", "_abs"]).reset_index(drop=True)


def _metrics_files(root: Path) -> list[Path]:
    """Every metrics.csv under `root`, following symlinked folders (a run linked into a
    report folder is a run too); each real folder is visited once, so a link loop ends."""
    found, seen = [], set()
    for here, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        if "metrics.csv" in files:
            found.append(Path(here) / "metrics.csv")
    return sorted(found)


def _run_folder(rel: str, row: pd.Series) -> str:
    """The run folder (relative to its root, "" for the root) of a metrics.csv's folder."""
    parts = [] if rel == "." else rel.split("/")
    folder = f"{row['dataset']}-{row['split']}"
    label = row.get("checkpoint")
    names = {folder} | ({f"{folder}-{label}"} if isinstance(label, str) and label else set())
    if len(parts) >= 2 and parts[-2] == "eval" and parts[-1] in names:
        parts = parts[:-2]
    elif parts and parts[-1] == "eval":
        parts = parts[:-1]
    return "/".join(parts)


def _row_key(table: pd.DataFrame) -> pd.Series:
    cols = ["run", "variant", "checkpoint", "dataset", "split", "protocol"]
    cols = [c for c in cols if c in table.columns]
    return table[cols].astype(object).fillna("").astype(str).agg("\x1f".join, axis=1)


def _unclash(table: pd.DataFrame) -> None:
    """Rename rows whose key collides: first the root folder's name + the run label, then
    the absolute folder; rows of distinct files always end up distinct."""
    for rename in (lambda r: f"{r['_root']}/{r['run']}",
                   lambda r: r["_abs"]):
        clash = _row_key(table).duplicated(keep=False)
        if not clash.any():
            return
        table.loc[clash, "run"] = [rename(r) for _, r in table[clash].iterrows()]


def paper_rows(name: str) -> pd.DataFrame:
    """Published numbers for a dataset family (cvusa, cvact, vigor, university1652, msls) or
    one protocol, marked kind="paper", from the packaged data/paper_results.csv."""
    from importlib.resources import files

    import pandas as pd

    known = sorted(set(PAPER_FAMILIES) | {p for v in PAPER_FAMILIES.values() for p in v})
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"--paper {name!r}: no published numbers.{hint} "
                               f"Known: {', '.join(known)}")
    protocols = PAPER_FAMILIES.get(name, (name,))
    with files("geobench.data").joinpath("paper_results.csv").open("r", encoding="utf-8") as fh:
        data = pd.read_csv(fh, dtype={"method": str, "protocol": str, "source": str})
    data = data[data["protocol"].isin(protocols)]
    rows = pd.DataFrame({
        "run": "[paper] " + data["method"], "dataset": data["protocol"].map(_family),
        "split": "test", "protocol": data["protocol"], "model": data["method"],
    })
    for col in ("r@1", "r@5", "r@10", "r@1%", "hit_rate", "ap"):
        rows[col] = data[col].astype(float)
    rows["k_rule"] = data["k_rule"].fillna("")
    rows["note"] = [_paper_note(pos, dis) for pos, dis in zip(data["positives"], data["distractors"])]
    rows["source"] = "[" + data["provenance"] + "] " + data["source"]
    rows["kind"] = "paper"
    return rows.reset_index(drop=True)


def read_paper_results():
    """The packaged data/paper_results.csv as a frame (one row per method x protocol)."""
    from importlib.resources import files

    import pandas as pd

    with files("geobench.data").joinpath("paper_results.csv").open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh, dtype=str, keep_default_na=False)


def _paper_note(positives: object, distractors: object) -> str:
    """What makes a published row differ from the geobench protocol of the same name."""
    notes = []
    if isinstance(positives, str) and positives and positives != "protocol":
        notes.append(f"positives: {positives}")
    if isinstance(distractors, str) and distractors:
        notes.append(f"distractors {distractors}")
    return "; ".join(notes)


def _family(protocol: str) -> str:
    for family, protocols in PAPER_FAMILIES.items():
        if protocol in protocols:
            return family
    return protocol


def sort_rows(table: pd.DataFrame, by: str | None,
              ascending: bool | None = None) -> pd.DataFrame:
    """Sort by a column (numbers descending and text ascending unless told, NaN last);
    None keeps file order."""
    from pandas.api.types import is_numeric_dtype

    if not by:
        return table
    if by not in table.columns:
        close = difflib.get_close_matches(by, list(table.columns), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"--sort {by!r}: no such column.{hint} Columns: "
                         f"{', '.join(map(str, table.columns))}")
    if ascending is None:
        ascending = not is_numeric_dtype(table[by])
    return table.sort_values(by, ascending=ascending, na_position="last", kind="stable")


def display_columns(table: pd.DataFrame) -> list[str]:
    """Key, R@1/5/10, R@1% (+K), other R@K, extras; empty columns dropped."""
    base = ["run", "checkpoint", "dataset", "split", "protocol", "model", "variant", "r@1", "r@5",
            "r@10", "r@1%"]
    extra_k = sorted((c for c in table.columns if c.startswith("r@") and c not in base
                      and c[2:].isdigit()), key=lambda c: int(c[2:]))
    extras = [c for c in ("hit_rate", "ap", "error_median_m", "error_mean_m", "n_no_positive")
              if c in table.columns]
    if "search" in table.columns:  # approximate rows are labelled with their index
        extras += ["r@1_lost", "search"]
    cols = [c for c in base + extra_k + extras if c in table.columns]
    cols = [c for c in cols if not table[c].isna().all() and not (table[c] == "").all()]
    if "source" in table.columns and (table.get("kind") == "paper").any():
        cols += [c for c in ("k_rule", "note") if c in table.columns and (table[c].fillna("") != "").any()]
        cols.append("source")
    return cols


def _cell(row: pd.Series, col: str) -> str:
    value = row.get(col)
    if col == "r@1%" and value is not None and not _missing(value):
        k = row.get("k_1pct")
        return f"{value:.2f}" + ("" if _missing(k) else f" (K={int(k)})")
    if _missing(value):
        return "–" if col.startswith(("r@", "hit", "ap", "error")) else ""
    if col == "n_no_positive":
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _missing(value: object) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


_HEADERS = {"r@1%": "R@1%", "r@1_lost": "R@1 lost", "k_rule": "R@1% K rule", "hit_rate": "Hit",
            "ap": "AP", "error_median_m": "median err (m)",
            "error_mean_m": "mean err (m)", "n_no_positive": "no pos."}


def _header(col: str) -> str:
    return _HEADERS.get(col, col.replace("r@", "R@") if col.startswith("r@") else col)


def text_cells(table: pd.DataFrame) -> tuple[list[str], list[str], list[list[str]]]:
    """(columns, headers, cells) of the displayed table: one formatting for every output."""
    cols = display_columns(table)
    cells = [[_cell(row, c) for c in cols] for _, row in table.iterrows()]
    return cols, [_header(c) for c in cols], cells


def render(table: pd.DataFrame, fmt: str = "rich", width: int = 160) -> str:
    """The table as text: a rich table, Markdown, CSV (raw numbers) or LaTeX."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return table.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    cols, headers, cells = text_cells(table)
    if fmt == "md":
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        return "\n".join(lines) + "\n"
    if fmt == "latex":
        return _latex(headers, cells, cols)
    return _rich(headers, cells, table, width)


def _latex(headers: list[str], cells: list[list[str]], cols: list[str]) -> str:
    def esc(text: str) -> str:
        text = text.replace("\\", "\x00")
        for a, b in (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$"),
                     ("{", r"\{"), ("}", r"\}"), ("–", "--")):
            text = text.replace(a, b)
        return text.replace("\x00", r"\textbackslash{}")

    align = "".join("r" if c.startswith(("r@", "hit", "ap", "error", "n_")) else "l" for c in cols)
    lines = [rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(esc(h) for h in headers) + r" \\", r"\midrule"]
    lines += [" & ".join(esc(c) for c in row) + r" \\" for row in cells]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _rich(headers: list[str], cells: list[list[str]], table: pd.DataFrame, width: int) -> str:
    import io

    from rich.console import Console
    from rich.table import Table

    out = Table(show_lines=False)
    for h in headers:
        out.add_column(h, justify="right" if h.startswith(("R@", "Hit", "AP")) else "left")
    kinds = list(table["kind"]) if "kind" in table.columns else ["run"] * len(cells)
    for row, kind in zip(cells, kinds, strict=True):
        out.add_row(*row, style="dim italic" if kind == "paper" else None)
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=False, color_system=None).print(out)
    return buffer.getvalue()


@dataclass
class CheckResult:
    ok: bool
    lines: list[str]  # one per compared metric: key, metric, baseline, current, delta, verdict
    failures: int


def check_table(current: pd.DataFrame, baseline: str | Path, tolerance: float) -> CheckResult:
    """Compare against a baseline CSV (metrics.csv rows or `report --format csv`):
    fail when a metric drops by more than `tolerance` points or a baseline row is gone."""
    from geobench.eval.results import read_metrics

    if tolerance < 0:
        raise UsageError(f"--tolerance must be >= 0 points, got {tolerance}")
    base = read_metrics(baseline)
    if base.empty:
        raise SchemaError(f"{baseline}: no rows to compare against")
    runs = current[current["kind"] == "run"] if "kind" in current.columns else current
    cols = KEY + (("variant",) if "variant" in base.columns and "variant" in runs.columns else ())
    index = {tuple(str(r[k]) for k in cols): r for _, r in runs.iterrows()}
    by_name: dict[tuple[str, ...], list] = {}  # a metrics.csv baseline names runs by folder
    for _, r in runs.iterrows():
        name_key = (str(r.get("run_name", r["run"])),) + tuple(str(r[k]) for k in cols[1:])
        by_name.setdefault(name_key, []).append(r)
    metric_cols = [c for c in base.columns if c.startswith("r@") or c in
                   ("hit_rate", "ap") + LOWER_IS_BETTER]
    lines, failures = [], 0
    for i, (_, brow) in enumerate(base.iterrows()):
        if str(brow.get("kind", "run")) == "paper":
            continue
        key = tuple(str(brow[k]) for k in cols)
        name = "/".join(key[:len(KEY)])
        if key not in index and len(by_name.get(key, [])) > 1:
            lines.append(f"FAIL {name}: in {baseline} (line {i + 2}) it matches "
                         f"{len(by_name[key])} runs; use a baseline written by "
                         f"`geobench report --format csv` (unique run labels)")
            failures += 1
            continue
        if key not in index and len(by_name.get(key, [])) == 1:
            index[key] = by_name[key][0]
        if key not in index:
            lines.append(f"FAIL {name}: in {baseline} (line {i + 2}) but not in the current results")
            failures += 1
            continue
        crow = index[key]
        for col in metric_cols:
            b, c = brow.get(col), crow.get(col)
            if _missing(b):
                continue
            if _missing(c):
                lines.append(f"FAIL {name} {col}: baseline {b:.2f}, missing now")
                failures += 1
                continue
            drop = (c - b) if col in LOWER_IS_BETTER else (b - c)
            bad = drop > tolerance + 1e-9
            failures += bad
            lines.append(f"{'FAIL' if bad else 'ok  '} {name} {col}: baseline {b:.2f} -> "
                         f"{c:.2f} ({c - b:+.2f})")
    return CheckResult(failures == 0, lines, failures)


def plot_curves(table: pd.DataFrame, out_png: str | Path, chance: bool = False) -> Path:
    """Recall@K curves (log K) from the results.h5 beside each run's metrics.csv, one
    panel per (dataset, protocol), one line per run; paper R@1/5/10 as markers."""
    from geobench.report.plot import plot_curves as _plot

    return _plot(table, out_png, chance=chance)
