"""The benchmark collector, files, regression check and CLI, driven by fake stage modules."""
from __future__ import annotations

import csv
import textwrap

import numpy as np
import pytest

import geobench.bench as bench
from geobench.bench import BenchRow, make_row, parse_target
from geobench.bench.check import check_rows, read_baseline
from geobench.bench.collect import BenchOptions, BenchRun, StageResult, collect, resolve_stages
from geobench.bench.output import read_bench_h5, write_bench
from geobench.errors import SchemaError, UnknownNameError

GOOD = """
import os
from geobench.bench import make_row

def run(quick):
    slow = float(os.environ.get("FAKE_SLOWDOWN", "1.0"))
    return [
        make_row("{stage}", "matmul 64x64", "time", 1.1 * slow, 1.0, "s", "<=1.3", quick=quick),
        make_row("{stage}", "remap 750px", "throughput", 80.0 / slow, 100.0, "img/s", ">=0.85"),
        make_row("{stage}", "wait", "wait_fraction", 0.05, None, "fraction", "<=0.1"),
        make_row("{stage}", "forward", "throughput", 12.0, None, "img/s", ""),
    ]
"""
RAISES = """
def run(quick):
    raise RuntimeError("boom in the stage")
"""
MALFORMED = """
def run(quick):
    return [{{"stage": "{stage}", "case": "x", "metric": "time", "value": "fast"}}]
"""
CRASHES = """
import os
def run(quick):
    os._exit(7)
"""


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """Point the stages at generated modules: prep/eval good, train raises, mine missing."""
    pkg = tmp_path / "fakestages"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    kinds = {"prep": GOOD, "eval": GOOD, "train": RAISES, "models": MALFORMED,
             "synthetic": CRASHES}
    for stage, text in kinds.items():
        (pkg / f"{stage}.py").write_text(textwrap.dedent(text.format(stage=stage)))
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = {s: f"fakestages.{s}" for s in bench.STAGES}
    monkeypatch.setattr(bench, "STAGE_MODULES", modules)
    import geobench.bench.collect as collect_mod

    monkeypatch.setattr(collect_mod, "STAGE_MODULES", modules)
    monkeypatch.delenv("FAKE_SLOWDOWN", raising=False)
    return modules


# --------------------------------------------------------------------------- rows, helpers


def test_targets_and_status():
    assert parse_target("<=1.3") == ("<=", 1.3)
    assert parse_target("≥0.85") == (">=", 0.85)
    assert parse_target(">=") == (">=", None)
    assert parse_target("") == (None, None)
    with pytest.raises(ValueError):
        parse_target("1.3")
    row = BenchRow.from_dict(make_row("eval", "c", "time", 2.6, 2.0, "s", "<=1.3"), "eval")
    assert row.ratio == pytest.approx(1.3) and row.status == "pass"
    assert BenchRow.from_dict(make_row("eval", "c", "time", 2.7, 2.0, "s", "<=1.3")).status == "miss"
    up = BenchRow.from_dict(make_row("prep", "c", "tp", 80.0, 100.0, "img/s", ">=0.85"))
    assert up.status == "miss" and up.judged == pytest.approx(0.8)
    # floorless rows are judged on their value; extra keys land in params
    free = BenchRow.from_dict(dict(stage="train", case="w", metric="f", value=np.float32(0.05),
                                   unit="fraction", target="<=0.1", workers=2))
    assert free.ratio is None and free.status == "pass" and free.params == "workers=2"
    assert BenchRow.from_dict(make_row("x", "c", "m", 1.0, None, "s")).status == "info"


def test_malformed_rows_are_refused():
    with pytest.raises(ValueError, match="not a finite number"):
        BenchRow.from_dict(dict(case="c", metric="m", value=float("inf")), "eval")
    with pytest.raises(ValueError, match="lacks key"):
        BenchRow.from_dict(dict(case="c", value=1.0), "eval")
    with pytest.raises(ValueError, match="came from stage"):
        BenchRow.from_dict(dict(stage="prep", case="c", metric="m", value=1.0), "eval")


def test_timeit_and_interleaved():
    samples = bench.time_samples(lambda: sum(range(1000)), repeat=3, warmup=0)
    assert len(samples) == 3 and bench.timeit(lambda: None, repeat=2) <= max(samples) + 1
    best = bench.interleaved({"a": lambda: sum(range(100)), "b": lambda: None}, repeat=2)
    assert set(best) == {"a", "b"} and all(v >= 0 for v in best.values())


def test_threads_context_restores():
    with bench.threads(1):
        import os

        assert os.environ["OMP_NUM_THREADS"] == "1"
    assert bench.bench_threads() >= 1


def test_peak_rss_subprocess_sees_the_allocation():
    mem = bench.peak_rss_subprocess(np.ones, (2000, 10000))  # 160 MB of float64
    assert mem.result.shape == (2000, 10000)
    assert mem.exact and 140 * bench.MB < mem.delta < 400 * bench.MB
    small = bench.peak_rss_subprocess(np.ones, (10,))
    assert small.delta < 40 * bench.MB


def setup_then_block() -> tuple[int, int, bool]:
    """In a child: 80 MB of set-up kept alive, then a block that peaks 40 MB higher."""
    kept = np.ones((1000, 10000))
    with bench.peak_during() as mem:
        float(np.ones((1000, 5000)).sum())
    return mem.added, int(kept.nbytes), mem.exact


def test_peak_during_counts_the_block_not_the_set_up():
    added, kept, exact = bench.peak_rss_subprocess(setup_then_block).result
    assert exact and kept == 80_000_000
    assert 35 * bench.MB < added < 60 * bench.MB  # the block's 40 MB, not the set-up's 80


def test_peak_rss_subprocess_reports_failure():
    with pytest.raises(RuntimeError, match="ValueError"):
        bench.peak_rss_subprocess(int, "not a number")


# --------------------------------------------------------------------------- collector


def test_resolve_stages():
    assert resolve_stages("all") == bench.STAGES
    assert resolve_stages("eval,prep") == ("prep", "eval")
    with pytest.raises(UnknownNameError, match="did you mean eval"):
        resolve_stages("evla")


@pytest.mark.parametrize("isolate", [True, False])
def test_collect_keeps_going_after_failures(fakes, isolate):
    stages = ("prep", "mine", "eval", "models", "train") + (("synthetic",) if isolate else ())
    run = collect(BenchOptions(stages=stages, quick=True, isolate=isolate, quiet=True))
    by_stage = {s.stage: s for s in run.stages}
    assert [r.status for r in by_stage["prep"].rows] == ["pass", "miss", "pass", "info"]
    assert len(by_stage["eval"].rows) == 4 and not by_stage["eval"].failed
    assert by_stage["eval"].rows[0].params == "quick=True"
    errors = {r.stage: r.error for r in run.errors}
    assert "fakestages/mine.py is missing" in errors["mine"]
    assert "boom in the stage" in errors["train"] and "train.py:3" in errors["train"]
    assert "malformed row" in errors["models"] and "not a finite number" in errors["models"]
    if isolate:
        assert "exit code 7" in errors["synthetic"]
    assert all("\n" not in e for e in errors.values())


def test_files_written_and_read_back(fakes, tmp_path):
    run = collect(BenchOptions(stages=("prep", "mine"), quick=True, quiet=True))
    out = tmp_path / "out"
    paths = write_bench(run, out)
    assert [p.name for p in paths] == ["bench.csv", "bench.h5"]
    with open(out / "bench.csv", newline="") as handle:
        recs = list(csv.DictReader(handle))
    assert [r["status"] for r in recs] == ["pass", "miss", "pass", "info", "error"]
    assert float(recs[0]["ratio"]) == pytest.approx(1.1)
    assert read_bench_h5(out / "bench.h5") == run.rows
    assert sorted(p.name for p in out.iterdir()) == ["bench.csv", "bench.h5"]  # no temp files
    import h5py

    with h5py.File(out / "bench.h5") as h5:
        assert h5.attrs["quick"] and h5["stages/mine"].attrs["failed"]
    from geobench.bench.output import markdown_table

    md = markdown_table(run.rows).splitlines()
    assert len(md) == 2 + len(run.rows) and md[2].startswith("| prep | matmul 64x64 | time |")
    assert md[-1].endswith("| error |")


# --------------------------------------------------------------------------- regression check


def _rows(slow: float) -> list[BenchRow]:
    return [BenchRow.from_dict(make_row("eval", "mm", "time", 1.1 * slow, 1.0, "s", "<=1.3")),
            BenchRow.from_dict(make_row("eval", "tp", "throughput", 90 / slow, 100, "img/s",
                                        ">=0.85")),
            BenchRow.from_dict(make_row("eval", "info", "throughput", 7 * slow, None, "img/s"))]


def _baseline(tmp_path, rows, tolerance=None):
    run = BenchRun((StageResult("eval", tuple(rows), 1.0),))
    write_bench(run, tmp_path / "base")
    path = tmp_path / "base" / "bench.csv"
    if tolerance is not None:
        with open(path, newline="") as handle:
            recs = list(csv.DictReader(handle))
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(recs[0]) + ["tolerance"])
            writer.writeheader()
            for rec in recs:
                writer.writerow(dict(rec, tolerance=tolerance))
    return path


def test_check_catches_planted_regression(tmp_path):
    base = read_baseline(_baseline(tmp_path, _rows(1.0)))
    ok = check_rows(_rows(1.15), base, tolerance=0.25)
    assert not ok.failed
    # one baseline run: its scatter is unknown, so rows are "noisy" (gated above ~53%)
    assert {line.verdict for line in ok.lines} == {"noisy", "skipped"}
    bad = check_rows(_rows(1.6), base, tolerance=0.25)
    assert [(line.metric, line.verdict) for line in bad.failed] == [
        ("time", "regression"), ("throughput", "regression")]
    assert bad.failed[0].change == pytest.approx(0.6)
    assert "60% worse" in bad.failed[0].describe()
    better = check_rows(_rows(0.5), base, tolerance=0.25)
    assert not better.failed and "improved" in {line.verdict for line in better.lines}
    gone = check_rows(_rows(1.0)[:1], base)
    assert [line.verdict for line in gone.failed] == ["missing", "missing"]
    other_stage = [BenchRow.from_dict(make_row("prep", "x", "t", 1, 1, "s", "<=2"))]
    assert not check_rows(other_stage, base).failed  # eval did not run: nothing to compare


def test_per_row_tolerance_and_override(tmp_path):
    base = read_baseline(_baseline(tmp_path, _rows(1.0), tolerance=0.6))
    assert base[0].tolerance == 0.6
    assert not check_rows(_rows(1.5), base).failed
    # a one-run baseline: changes must also clear the assumed 10% run-to-run scatter (~53%)
    assert not check_rows(_rows(1.5), base, tolerance=0.1).failed
    assert check_rows(_rows(1.8), base, tolerance=0.1).failed


def test_bad_baseline_names_file_and_line(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("stage,case,metric,value,floor,ratio,unit,target\n"
                    "eval,a,time,1,1,1,s,<=1.3\neval,b,time,x,1,1,s,<=1.3\n")
    with pytest.raises(SchemaError, match=r"b\.csv:3: column 'value'"):
        read_baseline(path)
    path.write_text("stage,case\n")
    with pytest.raises(SchemaError, match=r"b\.csv:1: baseline lacks column"):
        read_baseline(path)


# --------------------------------------------------------------------------- CLI


def test_cli_bench_writes_and_checks(fakes, invoke, tmp_path, monkeypatch):
    out = tmp_path / "run1"
    result = invoke("bench", "prep", "--quick", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert "remap" in result.output and "miss" in result.output
    assert (out / "bench.csv").is_file() and (out / "bench.h5").is_file()
    baseline = out / "bench.csv"

    same = invoke("bench", "prep", "--quick", "--out", tmp_path / "run2", "--check", baseline,
                  "--quiet")
    assert same.exit_code == 0, same.output
    assert (tmp_path / "run2" / "bench-check.csv").is_file()

    monkeypatch.setenv("FAKE_SLOWDOWN", "1.6")  # a planted 60% regression
    slow = invoke("bench", "prep", "--quick", "--out", tmp_path / "run3", "--check", baseline,
                  "--quiet")
    assert slow.exit_code == 1
    lines = [ln for ln in slow.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 2 and "regression prep/matmul 64x64/time" in lines[0]
    assert str(baseline) in lines[0]
    loose = invoke("bench", "prep", "--quick", "--out", tmp_path / "run4", "--check", baseline,
                   "--tolerance", "70", "--quiet")  # percent of the baseline ratio
    assert loose.exit_code == 0, loose.output
    old_unit = invoke("bench", "prep", "--quick", "--out", tmp_path / "run5", "--check",
                      baseline, "--tolerance", "0.7", "--quiet")  # a fraction, as it used to be
    assert old_unit.exit_code == 1 and "--tolerance 0.7 is read as 0.7%" in old_unit.stderr


def test_cli_bench_stage_errors_exit_nonzero(fakes, invoke, tmp_path):
    result = invoke("bench", "all", "--quick", "--out", tmp_path / "o", "--quiet")
    assert result.exit_code == 1
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert {e.split()[2].rstrip(":") for e in errors} == {"mine", "models", "train", "synthetic"}
    with open(tmp_path / "o" / "bench.csv", newline="") as handle:
        statuses = [r["status"] for r in csv.DictReader(handle)]
    assert statuses.count("error") == 4 and statuses.count("pass") == 4


def test_cli_bench_usage_errors(fakes, invoke, tmp_path):
    bad = invoke("bench", "evla", "--out", tmp_path / "o")
    assert bad.exit_code != 0 and "did you mean eval" in bad.stderr
    missing = invoke("bench", "prep", "--out", tmp_path / "o", "--check", tmp_path / "nope.csv")
    assert missing.exit_code != 0 and "nope.csv does not exist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    neg = invoke("bench", "prep", "--out", tmp_path / "o", "--tolerance", "-1")
    assert neg.exit_code != 0 and "--tolerance" in neg.stderr
    assert not (tmp_path / "o").exists()  # nothing measured, nothing written


def test_noise_baseline_keeps_every_run(tmp_path):
    from geobench.bench.noise import noise_baseline, write_baseline

    paths = [_baseline(tmp_path / f"r{i}", _rows(slow)) for i, slow in
             enumerate((1.0, 1.1, 0.95))]
    entries = noise_baseline(paths, tolerance=0.2)
    (mm, _, n), (tp, _, _), (info, _, _) = [(e.row, e.tolerance, n) for e, _, n in entries]
    assert n == 3 and mm.ratio == pytest.approx(1.1) and tp.ratio == pytest.approx(0.9)
    assert info.ratio is None and info.value == pytest.approx(7.0)
    assert entries[0][0].runs == ((1.1,), (1.21,), (1.045,))
    assert 0.2 < entries[0][1] < 1.0  # three runs 15% apart: only big changes are detectable
    write_baseline(entries, tmp_path / "base.csv")
    base = read_baseline(tmp_path / "base.csv")
    assert [b.tolerance for b in base] == [0.2, 0.2, 0.2]
    assert [b.runs for b in base] == [e.runs for e, _, _ in entries]
    assert not check_rows(_rows(1.2), base).failed
    assert check_rows(_rows(2.0), base).failed


def test_stage_from_several_modules_and_duplicate_rows(fakes):
    from geobench.bench.stages import stage_rows

    rows, _ = stage_rows("prep", ("fakestages.prep", "fakestages.nothere"), quick=True)
    assert [r.status for r in rows] == ["pass", "miss", "pass", "info", "error"]
    rows, _ = stage_rows("prep", ("fakestages.prep", "fakestages.prep"), quick=True)
    dup = [r.error for r in rows if r.status == "error"]
    assert len(dup) == 4 and "must be unique" in dup[0]
