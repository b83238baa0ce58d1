"""Runs say which row they are: variant in the results files, the ablation pivot, the
published rows (complete and labelled) and `report --check paper:...`."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from geobench.errors import DataError, UnknownNameError
from geobench.eval.csr import CSR
from geobench.eval.evaluate import EvalOptions, Provenance, evaluate
from geobench.eval.protocols import protocol_names
from geobench.eval.results import read_metrics, write_results
from geobench.report.ablation import ablation_table, render_ablation
from geobench.report.published import check_published
from geobench.report.table import collect, read_paper_results


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """Three variants of one model; the CBAM one twice (two seeds), on two datasets."""
    root = tmp_path_factory.mktemp("ablation")
    rng = np.random.default_rng(3)
    r = unit(rng.standard_normal((200, 16)))
    pos = CSR.from_lists([[i] for i in range(100)])
    specs = [("base", "mcgra", 0.2, "cvusa", "toy"), ("cbam1", "mcgra attention=cbam", 0.5, "cvusa", "toy"),
             ("cbam2", "mcgra attention=cbam", 0.6, "cvusa", "toy"), ("pool", "mcgra attention=maxpool", 1.2, "cvusa", "toy"),
             ("base_v", "mcgra", 0.4, "vigor_same", "vig")]
    for run, var, noise, protocol, dataset in specs:
        q = unit(r[:100] + noise * rng.standard_normal((100, 16)))
        res = evaluate(q, r, pos, protocol, EvalOptions(save_topk=5))
        write_results(root / run, res, Provenance(run=run, dataset=dataset, split="test", model="mcgra",
                                                  preset="tiny", variant=var,
                                                  model_args={"attention": var.split("=")[-1]},
                                                  weights={"name": "none"}))
    return root


def test_metrics_and_results_record_the_row(variants):
    row = read_metrics(variants / "cbam1" / "metrics.csv").iloc[0]
    assert (row["variant"], row["preset"], row["weights"]) == ("mcgra attention=cbam", "tiny", "none")
    assert json.loads(row["model_args"]) == {"attention": "cbam"}
    with h5py.File(variants / "cbam1" / "results.h5") as h5:
        assert h5.attrs["variant"] == "mcgra attention=cbam" and h5.attrs["preset"] == "tiny"
        assert json.loads(h5.attrs["model_args"]) == {"attention": "cbam"}


def test_ablation_pivot_averages_seeds_per_variant(variants):
    table = collect([variants])
    pivot = ablation_table(table)
    assert list(pivot["variant"]) == ["mcgra", "mcgra attention=cbam", "mcgra attention=maxpool"]
    cbam = table[table["variant"] == "mcgra attention=cbam"]
    got = pivot.set_index("variant")
    assert got.loc["mcgra attention=cbam", "toy r@1"] == pytest.approx(cbam["r@1"].mean())
    assert got.loc["mcgra attention=cbam", "toy r@1 sd"] == pytest.approx(cbam["r@1"].std(ddof=1))
    assert got.loc["mcgra attention=cbam", "toy runs"] == 2 and got.loc["mcgra", "vig runs"] == 1
    assert np.isnan(got.loc["mcgra attention=maxpool", "vig r@1"])
    md = render_ablation(pivot, "md")
    head = md.splitlines()[0]
    assert head.startswith("| variant | toy R@1 | toy R@5 | toy R@10 | toy R@1% (K=2) | vig R@1")
    assert "| mcgra attention=cbam | " in md and " ± " in md and "–" in md
    latex = render_ablation(pivot, "latex")
    assert r"$\pm$" in latex and r"R@1\% (K=2)" in latex and latex.count(r"\\") == 4
    back = pd.read_csv(__import__("io").StringIO(render_ablation(pivot, "csv")))
    assert list(back["variant"]) == list(pivot["variant"]) and "toy r@1" in back.columns
    assert "mcgra attention=cbam" in render_ablation(pivot, "rich")


def test_report_cli_ablation_and_variant_column(variants, invoke):
    res = invoke("report", variants, "--ablation", "--format", "md")
    assert res.exit_code == 0 and res.output.startswith("| variant |")
    res = invoke("report", variants, "--format", "md")
    assert res.exit_code == 0 and "| variant |" in res.output and "mcgra attention=maxpool" in res.output


# --- published rows ---------------------------------------------------------------------
def test_paper_results_are_complete_and_labelled():
    data = read_paper_results()
    rules = {"floor(N/100)", "floor(N/100)+1", "round(N/100)+1 (full gallery)", "unstated", "n/a"}
    assert set(data["protocol"]) <= set(protocol_names())
    assert set(data["k_rule"]) <= rules and (data.loc[data["r@1%"] != "", "k_rule"] != "n/a").all()
    assert set(data["provenance"]) <= {"paper", "reprint", "compiled", "repository", "unverified"}
    assert set(data["polar"]) <= {"yes", "no"} and (data["source"] != "").all()
    for text in data["source"]:
        assert "Seed" not in text and ".md" not in text and "reference/" not in text
    # Sample4Geo's own evaluation: VIGOR K = floor(N/100), U-1652 without distractors,
    # CVACT test one-to-one on the images found.
    s4g = data[data["method"] == "Sample4Geo"].set_index("protocol")
    assert s4g.loc["vigor_same", "k_rule"] == "floor(N/100)"
    assert (s4g.loc[["u1652_d2s", "u1652_s2d"], "distractors"] == "dropped").all()
    assert s4g.loc["cvact_test", "positives"].startswith("one-to-one")
    assert data.set_index(["method", "protocol"]).loc[("VIGOR", "vigor_same"), "k_rule"] == "floor(N/100)+1"
    # The MC_GRA paper's Table 2 rows, including its polar row in full.
    table2 = data[data["protocol"] == "vigor_same"].set_index("method")
    assert table2.loc["MC_GRA (polar)", ["r@1", "r@5", "r@10", "r@1%"]].tolist() == ["27.54", "51.16", "60.88", "96.78"]
    assert {"Siamese-VGG", "SAFA+Polar", "SAFA+Mining"} <= set(table2.index)
    assert table2.loc["SAFA", "provenance"] == "reprint" and table2.loc["VIGOR", "provenance"] == "reprint"
    # Released VPR models, from their repositories' README tables, on the 740 MSLS val queries.
    msls = data[data["protocol"] == "msls_val_740"].set_index("method")
    assert msls.loc[["BoQ (DINOv2)", "BoQ (ResNet-50)", "DINOv2 SALAD"], "r@1"].tolist() == [
        "93.8", "91.2", "92.2"]
    assert (msls["provenance"] == "repository").all()


def _run_rows(r1: float, r1pct: float, protocol: str = "vigor_same") -> pd.DataFrame:
    return pd.DataFrame([{"run": "mine", "dataset": "vigor", "split": "test", "protocol": protocol,
                          "model": "m", "r@1": r1, "r@5": 96.0, "r@10": 97.5, "r@1%": r1pct,
                          "hit_rate": 90.0, "kind": "run"}])


def test_check_against_a_published_row():
    ok = check_published(_run_rows(77.0, 99.0), "paper:Sample4Geo@vigor_same", tolerance=1.0)
    assert ok.ok and any(line.startswith("ok   mine/vigor_same vs Sample4Geo r@1: published 77.86")
                         for line in ok.lines)
    # Sample4Geo's VIGOR R@1% uses K = floor(N/100); geobench's vigor protocol floor(N/100)+1.
    assert any("skip" in line and "r@1%" in line for line in ok.lines)
    bad = check_published(_run_rows(70.0, 99.0), "paper:sample4geo", tolerance=1.0)
    assert not bad.ok and bad.failures == 1  # r@1 below by more than 1 point
    assert check_published(_run_rows(70.0, 99.0), "paper:Sample4Geo", tolerance=10.0).ok


def test_check_published_refuses_what_cannot_be_compared():
    one_to_one = check_published(_run_rows(70.0, 99.0, "cvact_test"), "paper:Sample4Geo@cvact_test", 1.0)
    assert not one_to_one.ok and "counts positives differently" in one_to_one.lines[0]
    with pytest.raises(DataError, match="no run was evaluated under cvusa"):
        check_published(_run_rows(70.0, 99.0), "paper:MC_GRA@cvusa", 1.0)
    with pytest.raises(UnknownNameError, match="Did you mean Sample4Geo"):
        check_published(_run_rows(70.0, 99.0), "paper:Sample4Ge", 1.0)


def test_report_cli_check_paper(variants, invoke):
    res = invoke("report", variants / "base_v", "--check", "paper:VIGOR@vigor_same", "--tolerance", "100")
    assert res.exit_code == 0, res.output
    assert "published 41.07" in res.output and "r@1%" in res.output
    res = invoke("report", variants / "base_v", "--check", "paper:VIGOR@vigor_same", "--tolerance", "0")
    assert res.exit_code == 1 and "FAIL" in res.output
