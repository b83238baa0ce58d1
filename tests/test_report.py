"""geobench.report: collection, formats, sorting, paper rows, --check and curves."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geobench.errors import DataError, UnknownNameError, UsageError
from geobench.eval.csr import CSR
from geobench.eval.evaluate import EvalOptions, Provenance, evaluate
from geobench.eval.results import write_metrics, write_results
from geobench.report.table import check_table, collect, paper_rows, plot_curves, render, sort_rows


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of different quality on one protocol and one on another."""
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(1)
    r = unit(rng.standard_normal((300, 16)))
    pos = CSR.from_lists([[i] for i in range(100)])
    for name, noise, protocol in (("good", 0.2, "cvusa"), ("bad", 0.9, "cvusa"),
                                  ("other", 0.5, "vigor_same")):
        q = unit(r[:100] + noise * rng.standard_normal((100, 16)))
        res = evaluate(q, r, pos, protocol, EvalOptions(save_topk=5))
        write_results(root / name / "eval", res, Provenance(run=name, dataset="toy",
                                                             split="test", model="m"))
    return root


def test_collect_and_sort(runs):
    table = collect([runs])
    assert sorted(table["run"]) == ["bad", "good", "other"]
    ordered = sort_rows(table, "r@1")
    assert ordered["run"].iloc[0] == "good" and ordered["run"].iloc[-1] == "bad"
    assert sort_rows(table, "r@1", ascending=True)["run"].iloc[0] == "bad"
    with pytest.raises(UsageError, match="Did you mean r@1"):
        sort_rows(table, "r@1x")
    with pytest.raises(DataError, match="missing: no such file or folder"):
        collect([runs / "good" / "missing"])
    (runs / "empty").mkdir()
    with pytest.raises(DataError, match="no metrics.csv under"):
        collect([runs / "empty"])


def test_formats(runs):
    table = sort_rows(collect([runs]), "run")
    md = render(table, "md")
    assert md.splitlines()[0].startswith("| run | dataset | split | protocol")
    assert "(K=3)" in md and "| good |" in md
    csv = render(table, "csv")
    back = pd.read_csv(__import__("io").StringIO(csv))
    assert list(back["run"]) == ["bad", "good", "other"] and "k_1pct" in back.columns
    latex = render(table, "latex")
    assert latex.startswith(r"\begin{tabular}") and r"R@1\%" in latex and r"\bottomrule" in latex
    rich = render(table, "rich")
    assert "R@1%" in rich and "good" in rich and "vigor_same" in rich
    with pytest.raises(UsageError, match="--format 'html'"):
        render(table, "html")


def test_paper_rows():
    rows = paper_rows("cvusa")
    safa = rows[rows["model"] == "SAFA"].iloc[0]
    assert safa["r@1"] == pytest.approx(89.84) and safa["kind"] == "paper"
    assert safa["run"] == "[paper] SAFA" and "Shi et al." in safa["source"]
    assert safa["source"].startswith("[compiled] ") and safa["k_rule"] == "floor(N/100)"
    vigor = paper_rows("vigor")
    assert set(vigor["protocol"]) == {"vigor_same", "vigor_cross"}
    s4g = vigor[(vigor["model"] == "Sample4Geo") & (vigor["protocol"] == "vigor_same")].iloc[0]
    assert s4g["hit_rate"] == pytest.approx(89.82)
    assert set(paper_rows("cvact_test")["protocol"]) == {"cvact_test"}
    assert paper_rows("university1652")["ap"].notna().all()
    with pytest.raises(UnknownNameError, match="Did you mean cvusa"):
        paper_rows("cvusaa")
    md = render(pd.concat([rows], ignore_index=True), "md")
    assert "source" in md.splitlines()[0]


def test_check_pass_and_fail(runs, tmp_path):
    table = collect([runs])
    baseline = tmp_path / "baseline.csv"
    base_rows = table.drop(columns=["path", "kind"]).to_dict("records")
    write_metrics(baseline, base_rows)
    result = check_table(table, baseline, tolerance=0.0)
    assert result.ok and result.failures == 0 and any("good" in line for line in result.lines)
    good = table["run"] == "good"
    worse = table.copy()
    worse.loc[good, "r@1"] = worse.loc[good, "r@1"] - 2.5
    assert check_table(worse, baseline, tolerance=3.0).ok
    failed = check_table(worse, baseline, tolerance=1.0)
    assert not failed.ok and failed.failures == 1
    line = next(line for line in failed.lines if line.startswith("FAIL"))
    assert "good/toy/test/cvusa r@1" in line and "(-2.50)" in line
    missing = check_table(table[~good], baseline, tolerance=1.0)
    assert not missing.ok and any("not in the current results" in ln for ln in missing.lines)
    with pytest.raises(UsageError):
        check_table(table, baseline, tolerance=-1)


def test_plot_is_a_non_empty_png(runs, tmp_path):
    table = pd.concat([collect([runs]), paper_rows("cvusa")], ignore_index=True)
    out = plot_curves(table, tmp_path / "curves.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with pytest.raises(DataError, match="no results.h5"):
        plot_curves(paper_rows("cvusa"), tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def _write_run(folder, noise, model="m", variant="", seed=0):
    rng = np.random.default_rng(seed)
    r = unit(rng.standard_normal((200, 16)))
    q = unit(r[:50] + noise * rng.standard_normal((50, 16)))
    res = evaluate(q, r, CSR.from_lists([[i] for i in range(50)]), "cvusa", EvalOptions(save_topk=3))
    prov = Provenance(run="run", dataset="toy", split="test", model=model)
    if variant:
        from dataclasses import replace

        prov = replace(prov, variant=variant) if hasattr(prov, "variant") else prov
    write_results(folder / "eval" / "toy-test", res, prov)


def test_same_named_runs_in_different_folders_are_all_kept(tmp_path):
    # two runs literally named `run` (as the demo's) under different parents
    _write_run(tmp_path / "demo" / "run", 0.2)
    _write_run(tmp_path / "other" / "run", 0.9, seed=1)
    table = collect([tmp_path])
    assert sorted(table["run"]) == ["demo/run", "other/run"] and len(table) == 2
    assert set(table["run_name"]) == {"run"}
    md = render(table, "md")
    assert "| demo/run |" in md and "| other/run |" in md and "(K=2)" in md
    # two roots whose runs have the same relative path: labels grow with the root name
    a, b = tmp_path / "a" / "runs", tmp_path / "b" / "runs"
    _write_run(a / "x", 0.3)
    _write_run(b / "x", 0.3, seed=2)
    both = collect([a, b])
    assert len(both) == 2 and both["run"].nunique() == 2
    assert sorted(both["run"]) == sorted([str(a.resolve() / "x"), str(b.resolve() / "x")])
    # the same file reached twice is one row
    assert len(collect([tmp_path / "demo", tmp_path / "demo" / "run"])) == 1
    # --check with a baseline of folder names: ambiguous names fail, unique ones match
    baseline = tmp_path / "base.csv"
    write_metrics(baseline, table.assign(run=table["run_name"]).drop(
        columns=["path", "kind", "id", "run_name"]).to_dict("records"))
    result = check_table(table, baseline, tolerance=0.0)
    assert not result.ok and "matches 2 runs" in result.lines[0]
    own = tmp_path / "own.csv"
    own.write_text(render(table, "csv"))
    assert check_table(table, own, tolerance=0.0).ok


def test_plot_legend_chance_and_bad_outputs(tmp_path):
    _write_run(tmp_path / "p" / "run", 0.4, model="safa")
    _write_run(tmp_path / "q" / "run", 0.8, model="safa", seed=3)
    table = collect([tmp_path])
    from geobench.report import plot as P

    labels = []
    real = P._legend
    P._legend = lambda row, k1: labels.append(real(row, k1)) or labels[-1]
    try:
        out = plot_curves(table, tmp_path / "c.svg", chance=True)
    finally:
        P._legend = real
    assert out.read_text().lstrip().startswith(("<?xml", "<svg")) and "chance" in out.read_text()
    assert labels == ["safa (R@1% at K=2)"] * 2
    for bad, needle in ((tmp_path, "is a folder"), (tmp_path / "c.txt", "unsupported extension")):
        with pytest.raises(UsageError, match=needle):
            plot_curves(table, bad)
    from geobench.eval.ties import chance_curve

    k, rec = chance_curve(np.array([1, 1, 2, 0]), 100, 100)
    assert rec[0] == pytest.approx(100 * (1 / 100 + 1 / 100 + 2 / 100) / 4)
    assert rec[-1] == pytest.approx(75.0)


def test_check_treats_a_rise_in_metre_error_as_a_drop(runs, tmp_path):
    table = collect([runs])
    table["error_mean_m"] = 10.0
    baseline = tmp_path / "baseline.csv"
    write_metrics(baseline, table.drop(columns=["path", "kind"]).to_dict("records"))
    good = table["run"] == "good"
    worse, better = table.copy(), table.copy()
    worse.loc[good, "error_mean_m"] = 12.5   # 2.5 m more error: worse
    better.loc[good, "error_mean_m"] = 7.5   # 2.5 m less: better, never a failure
    failed = check_table(worse, baseline, tolerance=1.0)
    assert not failed.ok and failed.failures == 1
    assert any(ln.startswith("FAIL") and "error_mean_m" in ln for ln in failed.lines)
    assert check_table(worse, baseline, tolerance=3.0).ok
    assert check_table(better, baseline, tolerance=0.0).ok
