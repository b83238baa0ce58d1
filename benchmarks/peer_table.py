"""The README's "geobench vs what you would run instead" table from a bench run.

    python benchmarks/peer_table.py DIR/bench.csv

prints one Markdown line per peer row (rows with a `peer`): what was compared, geobench's
figure, the peer's, and geobench ÷ peer (below 1: geobench takes less time or memory;
for throughputs above 1 is better).
"""
from __future__ import annotations

import csv
import sys


def _g(text: str) -> str:
    if not text:
        return ""
    x = float(text)
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def table(path: str) -> str:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("peer")]
    lines = ["| stage | case | metric | peer | geobench | peer's | unit | geobench ÷ peer |",
             "|---|---|---|---|---:|---:|---|---:|"]
    for r in rows:
        ratio = _g(r["ratio"]) or next((p.split("=", 1)[1] for p in r["params"].split(";")
                                        if p.startswith("note=")), "")
        lines.append(f"| {r['stage']} | {r['case']} | {r['metric']} | {r['peer']} | "
                     f"{_g(r['value'])} | {_g(r['floor'])} | {r['unit']} | {ratio} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/peer_table.py DIR/bench.csv")
    sys.stdout.write(table(sys.argv[1]))
