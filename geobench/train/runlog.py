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


def epoch_line(model: str, row: dict[str, Any], total_steps: int) -> None:
    """One line per epoch on stderr when it is not a terminal (CI logs, nohup).

    A terminal has the progress bar; a log file would otherwise show nothing until the end.
    `--quiet` silences it like the bar.
    """
    import sys

    from geobench.progress import is_quiet

    if is_quiet() or sys.stderr.isatty():
        return
    parts = [f"epoch {row['epoch']}", f"step {row['step']}/{total_steps}",
             f"loss {row['loss']:.4f}", f"lr {row['lr']:.3g}",
             f"{row['images_per_s']:.1f} img/s"]
    parts += [f"{k} {row[k]:.2f}" for k in ("r@1", "r@5", "r@10", "r@1%")
              if isinstance(row.get(k), (int, float))]
    print(f"train {model}: " + ", ".join(parts), file=sys.stderr, flush=True)
