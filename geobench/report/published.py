"""`geobench report RUNS --check paper:METHOD[@PROTOCOL]`: gate runs against a published row.

Each run is compared with the row of data/paper_results.csv for its protocol: a metric
fails when the run is more than `tolerance` points below the published value. Only like
is compared with like: R@1% only when the authors' K rule is the protocol's, and a row
whose positives differ from the protocol (Sample4Geo's one-to-one CVACT-test) is skipped,
as is a run that is not comparable with a published real-dataset, exact-search number
(`_not_comparable`: a synthetic world, an approximate index, optimistic ties that counted
tied queries as hits). With nothing left to compare the check fails.
"""
from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from geobench.errors import DataError, UnknownNameError, UsageError
from geobench.report.table import CheckResult, _missing, read_paper_results

if TYPE_CHECKING:
    import pandas as pd

PREFIX = "paper:"
COMPARED = ("r@1", "r@5", "r@10", "r@1%", "hit_rate", "ap")
# geobench's R@1% rules (eval/protocols.py) as paper_results.csv writes them.
RULE_TEXT = {"floor": "floor(N/100)", "vigor": "floor(N/100)+1", "u1652": "round(N/100)+1"}


def is_published_spec(text: object) -> bool:
    return str(text).startswith(PREFIX)


def _rows(spec: str) -> tuple[str, pd.DataFrame]:
    body = spec[len(PREFIX):]
    method, _, protocol = body.partition("@")
    data = read_paper_results()
    methods = list(dict.fromkeys(data["method"]))
    match = [m for m in methods if m.lower() == method.strip().lower()]
    if not match:
        close = difflib.get_close_matches(method, methods, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"--check {spec!r}: no published rows for method {method!r}.{hint} "
                               f"Write paper:METHOD or paper:METHOD@PROTOCOL; methods: {', '.join(methods)}")
    rows = data[data["method"] == match[0]]
    if protocol:
        rows = rows[rows["protocol"] == protocol.strip()]
        if rows.empty:
            raise UnknownNameError(f"--check {spec!r}: {match[0]} has published rows for "
                                   f"{', '.join(data[data['method'] == match[0]]['protocol'])}, not {protocol!r}")
    return match[0], rows


def check_spec(check: object) -> None:
    """What `--check` names exists: a published method (and protocol) or a baseline file."""
    from pathlib import Path

    if is_published_spec(check):
        _rows(str(check))
    elif not Path(str(check)).is_file():
        raise DataError(f"--check {check}: baseline file not found; pass a metrics CSV (e.g. "
                        f"written by `geobench report --format csv`) or paper:METHOD")


def _run_rule(protocol: str) -> str | None:
    from geobench.eval.protocols import get_protocol

    try:
        return RULE_TEXT.get(get_protocol(protocol).one_percent_rule)
    except Exception:  # noqa: BLE001 - an unknown protocol has no rule to compare
        return None


def _not_comparable(run: pd.Series, method: str) -> str | None:
    """Why a run cannot be held against a published row, or None."""
    dataset, protocol = str(run.get("dataset", "")), str(run["protocol"])
    if dataset.startswith("synthetic"):
        return (f"{dataset} is a synthetic world, {method}'s row was measured on the real "
                f"{protocol} dataset")
    search = run.get("search")
    if isinstance(search, str) and search and search != "exact":
        return (f"approximate search ({search}) is not the exact search of a published "
                f"evaluation; re-evaluate with --search exact")
    tied = run.get("n_tied_queries")
    if str(run.get("ties", "")) == "optimistic" and (_missing(tied) or float(tied) > 0):
        count = "an unknown number of" if _missing(tied) else str(int(tied))
        return (f"--ties optimistic counted {count} tied queries as hits; re-evaluate with "
                f"--ties expected")
    return None


def check_published(current: pd.DataFrame, spec: str, tolerance: float) -> CheckResult:
    """Compare every run evaluated under one of METHOD's published protocols with its row."""
    if tolerance < 0:
        raise UsageError(f"--tolerance must be >= 0 points, got {tolerance}")
    method, published = _rows(spec)
    runs = current[current["kind"] == "run"] if "kind" in current.columns else current
    by_protocol = {r["protocol"]: r for _, r in published.iterrows()}
    matched = runs[runs["protocol"].isin(list(by_protocol))]
    if matched.empty:
        raise DataError(f"--check {spec}: no run was evaluated under {' or '.join(by_protocol)} "
                        f"(runs: {', '.join(sorted(set(runs['protocol'].astype(str)))) or 'none'}); "
                        f"evaluate with --protocol {next(iter(by_protocol))}")
    lines, failures, compared = [], 0, 0
    for _, run in matched.iterrows():
        paper = by_protocol[run["protocol"]]
        name = f"{run['run']}/{run['protocol']} vs {method}"
        why = _not_comparable(run, method)
        if why:
            lines.append(f"skip {name}: {why}")
            continue
        if paper["positives"] not in ("", "protocol"):
            lines.append(f"skip {name}: the published row counts positives differently "
                         f"({paper['positives']}), not comparable with protocol {run['protocol']}")
            continue
        if paper["distractors"]:
            lines.append(f"note {name}: the published row has distractors {paper['distractors']}; "
                         f"compare a run prepared the same way")
        for col in COMPARED:
            text = paper.get(col, "")
            if not text or col not in run.index or _missing(run[col]):
                continue
            if col == "r@1%":
                rule, theirs = _run_rule(run["protocol"]), paper["k_rule"]
                if not rule or not theirs.startswith(rule) or theirs.startswith(rule + "+"):
                    lines.append(f"skip {name} r@1%: K rule {theirs or 'unstated'} in the paper, "
                                 f"{rule or 'unknown'} here")
                    continue
            b, c = float(text), float(run[col])
            bad = b - c > tolerance + 1e-9
            failures += bad
            compared += 1
            lines.append(f"{'FAIL' if bad else 'ok  '} {name} {col}: published {b:.2f} -> {c:.2f} "
                         f"({c - b:+.2f}, tolerance {tolerance:g}, ties "
                         f"{run.get('ties') or 'expected'})")
    if not compared:
        failures += 1
        lines.append(f"FAIL {spec}: no metric could be compared (see the skip lines)")
    return CheckResult(failures == 0, lines, failures)
