"""`geobench report --html`: one self-contained HTML file a person opens.

It holds the results table (the terminal's rows and cells, R@1% with its K), the
recall@K curves, the published rows chosen with --paper, retrieval examples for each run
whose images are reachable, and each run's provenance. Images are embedded as data URIs
and no script or network resource is used, so the file can be mailed or archived.
"""
from __future__ import annotations

import base64
import html
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geobench.errors import GeobenchError, UsageError
from geobench.fileio import atomic_open

if TYPE_CHECKING:
    import pandas as pd

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid
#ddd;padding-bottom:.2em}h3{font-size:1.05em}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0}
th,td{padding:.3em .7em;border-bottom:1px solid #e4e4e4;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.paper td{color:#666;font-style:italic}
img{max-width:100%;height:auto;border:1px solid #eee}
.meta{color:#666;font-size:.9em}.note{color:#8a5a00}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;font-size:.88em}
dt{color:#555}dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}
"""


def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _table(table: pd.DataFrame) -> str:
    from geobench.report.table import text_cells

    cols, headers, cells = text_cells(table)
    kinds = list(table["kind"]) if "kind" in table.columns else ["run"] * len(cells)
    numeric = [c.startswith(("r@", "hit", "ap", "error", "n_")) for c in cols]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row, kind in zip(cells, kinds, strict=True):
        tds = "".join(f'<td{" class=num" if n else ""}>{html.escape(v)}</td>'
                      for v, n in zip(row, numeric, strict=True))
        body.append(f'<tr class="{html.escape(str(kind))}">{tds}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _run_config(results_dir: Path) -> dict[str, Any]:
    """The training run's config.json above an eval folder (RUN/eval/<ds>-<split>/)."""
    for parent in (results_dir, *list(results_dir.parents)[:3]):
        f = parent / "config.json"
        if f.is_file():
            try:
                return json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                return {}
    return {}


def _provenance(row: Any) -> str:
    from geobench.eval.results import RESULTS_FILE, read_results

    where = Path(str(row.get("path", "")))
    items: list[tuple[str, str]] = [("results", str(where))]
    try:
        attrs = read_results(where / RESULTS_FILE).attrs
    except GeobenchError as exc:
        return f'<p class="note">{html.escape(str(exc))}</p>'
    for key in ("model", "dataset", "split", "protocol", "k_1pct", "checkpoint_sha256",
                "dataset_sha256", "features_sha256", "created_at"):
        if attrs.get(key) not in (None, ""):
            items.append((key, str(attrs[key])))
    config = _run_config(where)
    for key in ("variant", "preset", "weights", "model_args"):
        if config.get(key) not in (None, "", {}):
            value = config[key]
            items.append((key, value if isinstance(value, str) else json.dumps(value, default=str)))
    try:
        versions = json.loads(attrs.get("versions", "{}"))
        items.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    except json.JSONDecodeError:
        pass
    return "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                            for k, v in items) + "</dl>"


def _examples(row: Any, scratch: Path, i: int, queries: int, k: int) -> str:
    from geobench.viz.examples import load_examples, render_examples

    try:
        ex = load_examples(Path(str(row.get("path", ""))), queries=queries, k=k)
        png, _ = render_examples(ex, scratch / f"examples{i}.png", "png", tile_px=110)
    except GeobenchError as exc:
        return f'<p class="note">retrieval examples not shown: {html.escape(str(exc))}</p>'
    return (f'<img alt="retrieval examples of {html.escape(str(row["run"]))}" '
            f'src="{_png_uri(png)}">')


def write_html(table: pd.DataFrame, out: str | Path, *, examples: bool = True,
               queries: int = 4, k: int = 5, title: str = "geobench report") -> Path:
    """Write the report to `out` atomically; returns its path."""
    from geobench import __version__
    from geobench.report.table import plot_curves

    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--html {out}: give the report a .html file name")
    if out.exists() and out.is_dir():
        raise UsageError(f"--html {out}: is a directory; pass a file such as {out / 'report.html'}")
    runs = table[table["kind"] == "run"] if "kind" in table.columns else table
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="meta">{len(runs)} run(s) · written '
             f'{datetime.now(timezone.utc).isoformat(timespec="seconds")} by geobench '
             f'{html.escape(__version__)}. R@1% is recall at K = 1% of the references; its K '
             f'is shown beside each value. Rows in italics are published numbers.</p>',
             "<h2>Results</h2>", _table(table)]
    with tempfile.TemporaryDirectory(prefix="geobench-report-") as tmp:
        scratch = Path(tmp)
        parts.append("<h2>Recall@K curves</h2>")
        try:
            curves = plot_curves(table, scratch / "curves.png")
            parts.append(f'<img alt="recall@K curves" src="{_png_uri(curves)}">')
        except GeobenchError as exc:
            parts.append(f'<p class="note">curves not shown: {html.escape(str(exc))}</p>')
        parts.append("<h2>Runs</h2>")
        for i, (_, row) in enumerate(runs.iterrows()):
            label = " · ".join(str(row.get(c, "")) for c in ("run", "dataset", "split", "protocol")
                               if str(row.get(c, "")))
            parts.append(f"<h3>{html.escape(label)}</h3>")
            parts.append(_provenance(row))
            if examples:
                parts.append(_examples(row, scratch, i, queries, k))
    doc = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
           + "\n".join(parts) + "</body></html>\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "w") as handle:
        handle.write(doc)
    return out
