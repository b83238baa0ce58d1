"""The statistical regression gate: repetitions, noise, significance and re-measurement."""
from __future__ import annotations

import csv
import re
import textwrap
import time

import numpy as np
import pytest

import geobench.bench as bench
from geobench.bench import BenchRow, make_row
from geobench.bench.check import check_rows, confirm, rows_pattern
from geobench.bench.stats import compare, format_samples, parse_samples

RNG = np.random.default_rng(0)


def runs_of(centres, sigma=0.05, n=7, rng=RNG):
    """Log-normal repetitions around each run's centre."""
    return [list(c * np.exp(sigma * rng.standard_normal(n))) for c in centres]


def test_interleaved_keeps_every_pair_and_loops_short_calls():
    calls = {"a": 0, "b": 0}

    def count(name):
        def fn():
            calls[name] += 1
            sum(range(2000))
        return fn

    t = bench.interleaved({"a": count("a"), "b": count("b")}, repeat=4, warmup=0,
                          min_seconds=0.002)
    assert len(t.samples["a"]) == len(t.samples["b"]) == 4
    assert calls["a"] > 4 + 1  # looped to reach min_seconds per sample
    assert t["a"] == pytest.approx(np.median(t.samples["a"]))
    assert t.ratios("a", "b") == pytest.approx([x / y for x, y in zip(t.samples["a"],
                                                                      t.samples["b"])])
    row = BenchRow.from_dict(make_row("eval", "c", "time", t["a"], t["b"], "s", "<=",
                                      samples=t.ratios("a", "b")))
    assert row.ratio == pytest.approx(np.median(t.ratios("a", "b"))) and len(row.samples) == 4


def test_same_code_passes_and_real_changes_fail():
    base = runs_of([2.0, 2.1, 1.95])
    assert compare("<=", base, runs_of([2.05])[0]).verdict(1.25) == "ok"
    slow = compare("<=", base, runs_of([4.0])[0])
    assert slow.verdict(1.25) == "regression" and slow.change == pytest.approx(1.0, abs=0.15)
    assert slow.p_worse < 0.01
    # throughputs: lower is worse
    assert compare(">=", base, runs_of([1.0])[0]).verdict(1.25) == "regression"
    assert compare(">=", base, runs_of([4.0])[0]).verdict(1.25) == "improved"
    assert compare("<=", base, runs_of([2.3])[0]).verdict(1.25) == "ok"  # below the factor


def test_run_to_run_shifts_are_noise_not_regressions():
    # tight repetitions, but whole runs wander by ~30%: a 35% shift of one run is not
    # evidence (a rank test on samples alone would call it p < 0.001)
    base = runs_of([2.0, 2.6, 1.8, 2.4], sigma=0.02)
    shifted = compare("<=", base, runs_of([2.9], sigma=0.02)[0])
    assert shifted.p_worse < 0.01 and shifted.change > 0.25
    assert shifted.detectable > 0.35 and shifted.verdict(1.25) == "noisy"
    assert compare("<=", base, runs_of([6.0], sigma=0.02)[0]).verdict(1.25) == "regression"


def test_one_outlier_does_not_carry_a_regression():
    base = runs_of([1.0, 1.0, 1.0], sigma=0.01)
    now = [1.0, 1.01, 0.99, 1.0, 9.0, 1.0, 1.02]
    assert compare("<=", base, now).verdict(1.25) == "ok"


def test_a_short_baseline_assumes_run_to_run_scatter():
    one = compare("<=", runs_of([2.0], sigma=0.01), runs_of([2.6], sigma=0.01)[0])
    assert one.detectable > 0.5 and one.verdict(1.25) == "noisy"  # 30% is not enough
    assert compare("<=", runs_of([2.0], sigma=0.01),
                   runs_of([4.0], sigma=0.01)[0]).verdict(1.25) == "regression"


def test_counts_use_differences_not_logs():
    assert compare("<=", [[0.0], [0.0]], [0.0]).verdict(1.25) == "ok"
    assert compare("<=", [[0.0], [0.0]], [3.0]).verdict(1.25) == "regression"


def test_samples_text_round_trip():
    runs = [[1.0, 1.5], [2.25]]
    assert parse_samples(format_samples(runs)) == runs
    assert parse_samples("") == []


def test_selected_and_planted(monkeypatch):
    monkeypatch.delenv("GEOBENCH_BENCH_ROWS", raising=False)
    assert bench.selected("anything")
    monkeypatch.setenv("GEOBENCH_BENCH_ROWS", "^deform .* fwd$")
    assert bench.selected("deform 7x39 fwd") and not bench.selected("deform 7x39 fwd+bwd")

    def work():
        return sum(range(20000))

    monkeypatch.delenv("GEOBENCH_BENCH_PLANT", raising=False)
    assert bench.planted("deform", work) is work
    monkeypatch.setenv("GEOBENCH_BENCH_PLANT", "3:^mine")
    assert bench.planted("deform", work) is work
    monkeypatch.setenv("GEOBENCH_BENCH_PLANT", "3:deform")
    slower = bench.planted("deform", work)
    assert slower() == work()
    start = time.process_time()
    work()
    own = time.process_time() - start
    start = time.process_time()
    slower()
    # the spin runs until 2x the call's own CPU time has passed: a lower bound by construction
    assert time.process_time() - start >= 2 * own * 0.5


# --------------------------------------------------------------------------- CLI re-measure

SAMPLED = """
import os
from pathlib import Path
from geobench.bench import make_row, selected

def run(quick):
    slow = float(os.environ.get("FAKE_SLOWDOWN", "1.0"))
    once = Path(os.environ.get("FAKE_ONCE", "/nonexistent"))
    if once.exists():  # slow on the first run only, as a busy minute would be
        once.unlink()
        slow = 3.0
    reps = [1.0, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97]
    rows = []
    for case in ("deform 7x39", "mine 10k"):
        if selected(case):
            rows.append(make_row("{stage}", case, "time", 2 * slow, 1.0, "s", "<=",
                                 samples=[2 * slow * x for x in reps]))
    return rows
"""


@pytest.fixture
def sampled(tmp_path, monkeypatch):
    pkg = tmp_path / "sampledstages"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "prep.py").write_text(textwrap.dedent(SAMPLED.format(stage="prep")))
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = {s: f"sampledstages.{s}" for s in bench.STAGES}
    monkeypatch.setattr(bench, "STAGE_MODULES", modules)
    import geobench.bench.collect as collect_mod

    monkeypatch.setattr(collect_mod, "STAGE_MODULES", modules)
    for var in ("FAKE_SLOWDOWN", "FAKE_ONCE", "GEOBENCH_BENCH_ROWS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _verdicts(path):
    with open(path, newline="") as handle:
        return {r["case"]: r["verdict"] for r in csv.DictReader(handle)}


def test_cli_remeasures_before_failing(sampled, invoke, monkeypatch):
    base_dir = sampled / "base"
    assert invoke("bench", "prep", "--out", base_dir, "--quiet").exit_code == 0
    with open(base_dir / "bench.csv", newline="") as handle:
        assert next(csv.DictReader(handle))["samples"].split()[0] == "2"
    baseline = base_dir / "bench.csv"

    once = sampled / "once"
    once.write_text("")
    monkeypatch.setenv("FAKE_ONCE", str(once))
    fluke = invoke("bench", "prep", "--out", sampled / "r1", "--check", baseline)
    assert fluke.exit_code == 0, fluke.output
    assert "measuring them again" in fluke.stderr
    assert _verdicts(sampled / "r1" / "bench-check.csv") == {"deform 7x39": "unconfirmed",
                                                             "mine 10k": "unconfirmed"}

    monkeypatch.setenv("FAKE_SLOWDOWN", "2.0")
    real = invoke("bench", "prep", "--out", sampled / "r2", "--check", baseline, "--quiet")
    assert real.exit_code == 1
    errors = [ln for ln in real.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 2 and "again 4" in errors[0] and "100% worse" in errors[0]


def test_cli_rows_narrow_measurement_and_check(sampled, invoke):
    baseline = sampled / "base" / "bench.csv"
    assert invoke("bench", "prep", "--out", sampled / "base", "--quiet").exit_code == 0
    only = invoke("bench", "prep", "--rows", "deform", "--out", sampled / "r", "--check",
                  baseline, "--quiet")
    assert only.exit_code == 0, only.output
    # a one-run baseline cannot show run-to-run scatter: the gate assumes 10% and says so
    assert _verdicts(sampled / "r" / "bench-check.csv") == {"deform 7x39": "noisy"}
    bad = invoke("bench", "prep", "--rows", "(", "--out", sampled / "x")
    assert bad.exit_code != 0 and "--rows" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_confirm_keeps_only_regressions_seen_twice(tmp_path):
    from geobench.bench.check import BaselineRow

    def row(case, ratio):
        return BenchRow.from_dict(make_row("eval", case, "time", ratio, 1.0, "s", "<=",
                                           samples=[ratio * x for x in (1, 1.01, 0.99)]))

    base = [BaselineRow(row(c, 1.0), 0.25, ((1.0, 1.01, 0.99), (1.0, 0.98, 1.02),
                                            (1.01, 1.0, 0.99))) for c in ("a (1)", "b", "c")]
    first = check_rows([row("a (1)", 2.0), row("b", 2.0), row("c", 1.0)], base)
    assert [line.verdict for line in first.suspects] == ["regression", "regression"]
    pattern = rows_pattern(first.suspects)
    assert pattern == r"^a\ \(1\)$|^b$"
    again = check_rows([row("a (1)", 2.1), row("b", 1.0)], base, rows=pattern)
    final = confirm(first, again)
    assert [(line.case, line.verdict) for line in final.lines] == [
        ("a (1)", "regression"), ("b", "unconfirmed"), ("c", "ok")]
    assert final.lines[0].again == pytest.approx(2.1) and final.lines[1].again == 1.0
    assert [line.case for line in final.failed] == ["a (1)"]


def test_peer_rows_round_trip(tmp_path):
    from geobench.bench.collect import BenchRun, StageResult
    from geobench.bench.output import read_bench_h5, write_bench

    rows = (BenchRow.from_dict(make_row("eval", "c vs peers", "time vs faiss", 0.8, 0.6, "s",
                                        "", samples=[1.3, 1.4], peer="faiss IndexFlatIP")),
            BenchRow.from_dict(make_row("eval", "vigor vs peers", "time vs research", None,
                                        None, "s", "", peer="research", note="not run: 19 GB")))
    assert rows[0].peer == "faiss IndexFlatIP" and rows[0].ratio == pytest.approx(1.35)
    assert rows[1].status == "info" and "not run" in rows[1].params
    write_bench(BenchRun((StageResult("eval", rows, 1.0),)), tmp_path)
    assert read_bench_h5(tmp_path / "bench.h5") == list(rows)
    with open(tmp_path / "bench.csv", newline="") as handle:
        recs = list(csv.DictReader(handle))
    assert [r["peer"] for r in recs] == ["faiss IndexFlatIP", "research"]
    assert recs[0]["samples"] == "1.3 1.4"


def test_search_reports_its_phases():
    from geobench.bench.eval import make_data
    from geobench.eval.search import search

    q, r, positives = make_data(40, 300, 16)
    res = search(q, r, positives, k=5)
    assert set(res.phases) == {"products", "passes", "rescoring"}
    assert all(v >= 0 for v in res.phases.values())


# --------------------------------------------------------------------------- smoke and gate

def test_smoke_measures_each_case_once_without_warmup(monkeypatch):
    calls = []
    monkeypatch.setenv(bench.SMOKE_ENV, "1")
    t = bench.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                          repeat=5, warmup=1)
    assert t.samples["a"] and len(t.samples["a"]) == len(t.samples["b"]) == 1
    assert calls == ["a", "b"]  # one round, no warm-up
    assert len(bench.time_samples(lambda: None, repeat=7)) == 1
    monkeypatch.setenv(bench.SMOKE_ENV, "")
    assert len(bench.time_samples(lambda: None, repeat=7)) == 7


def test_gated_pattern_names_exactly_the_cases_with_a_direction():
    from geobench.bench.check import BaselineRow, gated_pattern

    rows = [BaselineRow(BenchRow.from_dict(make_row("eval", case, "time", 1.0, 1.0, "s", t)), None)
            for case, t in (("a (x=1)", "<=1.3"), ("b.c", ">="), ("info", ""), ("a (x=1)", ""))]
    pattern = gated_pattern(rows)
    assert pattern == r"^a\ \(x=1\)$|^b\.c$"
    assert [bool(re.search(pattern, c)) for c in ("a (x=1)", "b.c", "bxc", "info")] == [
        True, True, False, False]


SMOKED = """
from geobench.bench import make_row, selected, smoke

def run(quick):
    rows = []
    for case, target in (("gated 1", "<="), ("info 2", "")):
        if selected(case):
            rows.append(make_row("{stage}", case, "time", 2.0, 1.0, "s", target,
                                 smoke=int(smoke()), samples=[2.0, 2.01, 1.99]))
    return rows
"""


def test_quick_is_a_smoke_run_and_the_gate_measures_only_gated_rows(tmp_path, monkeypatch,
                                                                      invoke):
    pkg = tmp_path / "smokedstages"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mine.py").write_text(textwrap.dedent(SMOKED.format(stage="mine")))
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = {s: f"smokedstages.{s}" for s in bench.STAGES}
    import geobench.bench.collect as collect_mod

    monkeypatch.setattr(collect_mod, "STAGE_MODULES", modules)
    monkeypatch.delenv("GEOBENCH_BENCH_ROWS", raising=False)
    monkeypatch.delenv(bench.SMOKE_ENV, raising=False)
    assert invoke("bench", "mine", "--quick", "--out", tmp_path / "base", "-q").exit_code == 0
    with open(tmp_path / "base" / "bench.csv", newline="") as handle:
        base = {r["case"]: r["params"] for r in csv.DictReader(handle)}
    assert base == {"gated 1": "smoke=1", "info 2": "smoke=1"}
    gate = invoke("bench", "all", "--quick", "--out", tmp_path / "gate", "--check",
                  tmp_path / "base" / "bench.csv")
    assert gate.exit_code == 0, gate.output
    with open(tmp_path / "gate" / "bench.csv", newline="") as handle:
        measured = {r["case"]: r["params"] for r in csv.DictReader(handle)}
    assert measured == {"gated 1": "smoke=0"}  # full repetitions, the info case skipped
    assert _verdicts(tmp_path / "gate" / "bench-check.csv") == {"gated 1": "noisy"}
    assert "bench: prep" not in gate.stderr  # stages without gated rows are not started
    full = invoke("bench", "mine", "--quick", "--no-smoke", "--out", tmp_path / "full", "-q")
    assert full.exit_code == 0, full.output
    with open(tmp_path / "full" / "bench.csv", newline="") as handle:
        assert {r["params"] for r in csv.DictReader(handle)} == {"smoke=0"}


@pytest.mark.parametrize("direction, sign", [("<=", 1.0), (">=", -1.0)])
def test_a_zero_valued_row_keeps_its_direction(direction, sign):
    # counts that can be 0 (mismatches) skip the log model; positive change = worse
    assert compare(direction, [[0.0, 0.0]], [2.0, 2.0]).change == sign * 2.0
    assert compare(direction, [[0.0, 4.0, 4.0]], [2.0]).change == sign * -0.5
    assert compare(direction, [[3.0]], [0.0]).change == sign * -1.0
