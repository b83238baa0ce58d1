"""RUN/log.csv: one row per epoch (loss, lr, throughput, data wait, recall)."""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geobench.fileio import write_text

LOG_FILE = "log.csv"
COLUMNS = ("epoch", "step", "loss", "lr", "images_per_s", "data_wait_frac", "seconds",
           "eval_split", "r@1", "r@5", "r@10", "r@1%", "k_1pct")


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_log(run: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Rewrite RUN/log.csv atomically from all rows so far (the checkpoint keeps them too)."""
    extra = [k for row in rows for k in row if k not in COLUMNS]
    columns = list(COLUMNS) + sorted(set(extra), key=extra.index)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_fmt(row.get(c)) for c in columns])
    path = Path(run) / LOG_FILE
    write_text(path, buf.getvalue())
    return path
