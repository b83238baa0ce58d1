"""Reports compare like with like (issue 25 §5): the ablation averages only runs that agree
on everything that changes the number, `--check paper:` refuses what a published row cannot
be held against, and `eval --checkpoint last` keeps the best checkpoint's evaluation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geobench.eval.csr import CSR
from geobench.eval.evaluate import EvalOptions, Provenance, evaluate
from geobench.eval.results import write_results
from geobench.report.ablation import ablation_table, render_ablation
from geobench.report.published import check_published
from geobench.report.table import collect
from tests._train_world import register_test_model, write_world


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_run(root, run, noise, *, sha="a" * 64, ties="expected", search="exact",
              dataset="toy", seed=0):
    rng = np.random.default_rng(seed)
    r = unit(np.random.default_rng(9).standard_normal((200, 16)))
    q = unit(r[:100] + noise * rng.standard_normal((100, 16)))
    q[:10] = r[150]  # ten queries tied on one reference: ties matter
    r[151] = r[150]
    res = evaluate(q, r, CSR.from_lists([[i] for i in range(100)]), "cvusa",
                   EvalOptions(save_topk=5, ties=ties, search=search, exact_sample=20))
    write_results(root / run, res, Provenance(run=run, dataset=dataset, split="test",
                                              model="safa", preset="tiny", variant="safa",
                                              dataset_sha256=sha))
    return res.metrics["r@1"]


def test_ablation_never_averages_runs_that_differ_in_what_changes_the_number(tmp_path):
    """Before: two different worlds, tie policies or searches were averaged as seeds
    ("safa 14.75 ± 19.45")."""
    r1 = {"seed0": write_run(tmp_path, "seed0", 0.3, seed=0),
          "seed1": write_run(tmp_path, "seed1", 0.3, seed=1),
          "world2": write_run(tmp_path, "world2", 0.9, sha="b" * 64),
          "optimistic": write_run(tmp_path, "optimistic", 0.3, ties="optimistic"),
          "ivf": write_run(tmp_path, "ivf", 0.3, search="faiss:Flat")}
    pivot = ablation_table(collect([tmp_path]))
    assert list(pivot["variant"]) == ["safa"]
    row = pivot.iloc[0]
    groups = pivot.attrs["groups"]
    assert len(groups) == 4, groups
    seeds = next(g for g in groups if "index aaaaaaaa" in g and "exact" in g and "expected" in g)
    assert row[f"{seeds} runs"] == 2
    assert row[f"{seeds} r@1"] == pytest.approx((r1["seed0"] + r1["seed1"]) / 2)
    world = next(g for g in groups if "index bbbbbbbb" in g)
    assert row[f"{world} runs"] == 1 and row[f"{world} r@1"] == pytest.approx(r1["world2"])
    assert any("ties optimistic" in g for g in groups)
    assert any("faiss:Flat" in g for g in groups)
    text = render_ablation(pivot, "md")
    assert "each cell: mean ± sd over the runs of one variant that agree on dataset" in text
    assert "index sha256 bbbbbbbbbbbb" in text and "search faiss:Flat" in text


def test_ablation_keeps_checkpoints_apart():
    rows = pd.DataFrame([
        {"run": "a", "variant": "safa", "dataset": "toy", "split": "test", "protocol": "cvusa",
         "r@1": 10.0, "checkpoint": "best", "kind": "run"},
        {"run": "a", "variant": "safa", "dataset": "toy", "split": "test", "protocol": "cvusa",
         "r@1": 30.0, "checkpoint": "last", "kind": "run"}])
    pivot = ablation_table(rows)
    assert sorted(pivot["variant"]) == ["safa (best)", "safa (last)"]


def _runs(**over) -> pd.DataFrame:
    row = {"run": "mine", "dataset": "cvusa", "split": "test", "protocol": "cvusa",
           "model": "m", "r@1": 95.0, "r@5": 99.0, "r@10": 99.5, "r@1%": 99.9, "ties": "expected",
           "n_tied_queries": 0, "kind": "run"}
    return pd.DataFrame([{**row, **over}])


@pytest.mark.parametrize("over, reason", [
    ({"dataset": "synthetic-cvusa"}, "is a synthetic world"),
    ({"search": "faiss:IVF64,Flat (nprobe=4)"}, "approximate search"),
    ({"ties": "optimistic", "n_tied_queries": 12}, "counted 12 tied queries as hits"),
])
def test_check_paper_refuses_runs_a_published_row_cannot_judge(over, reason):
    """Before: matched by protocol only, so these passed against SAFA's CVUSA row."""
    result = check_published(_runs(**over), "paper:SAFA@cvusa", tolerance=1.0)
    assert not result.ok
    assert result.lines[0].startswith("skip mine/cvusa vs SAFA") and reason in result.lines[0]
    assert result.lines[-1].startswith("FAIL paper:SAFA@cvusa: no metric could be compared")


def test_check_paper_compares_a_real_exact_run_and_says_its_ties():
    result = check_published(_runs(ties="pessimistic", n_tied_queries=3), "paper:SAFA@cvusa", 1.0)
    assert result.ok
    assert "ok   mine/cvusa vs SAFA r@1: published 89.84 -> 95.00" in result.lines[0]
    assert "ties pessimistic" in result.lines[0]
    assert check_published(_runs(ties="optimistic", n_tied_queries=0), "paper:SAFA@cvusa", 1).ok


def test_eval_of_another_checkpoint_keeps_the_default_evaluation(invoke, tmp_path):
    """Before: `eval --checkpoint last` overwrote the best checkpoint's evaluation in the
    same folder, and the table did not say which checkpoint it scored."""
    from geobench.train.runeval import checkpoint_label

    name = register_test_model()
    ds = write_world(tmp_path, with_val=True)
    run = tmp_path / "run"
    res = invoke("train", name, "--data", ds, "--out", run, "--epochs", "2", "--workers", "0",
                 "--eval-every", "1", "-q")
    assert res.exit_code == 0 and (run / "best.pt").is_file(), res.output
    default = checkpoint_label(run, None)  # best, or last where the val split is too small
    other = {"best": "last", "last": "best"}[default]
    res = invoke("eval", run, "--data", ds, "-q")
    assert res.exit_code == 0 and default in res.stdout, res.output
    kept = run / "eval" / "tinyworld-test" / "metrics.csv"
    before = kept.read_bytes()
    res = invoke("eval", run, "--data", ds, "--checkpoint", other, "-q")
    assert res.exit_code == 0, res.output
    assert "checkpoint" in res.stdout and other in res.stdout  # the table says which
    assert kept.read_bytes() == before  # kept
    assert (run / "eval" / f"tinyworld-test-{other}" / "metrics.csv").is_file()
    report = invoke("report", run, "--format", "csv")
    table = pd.read_csv(__import__("io").StringIO(report.stdout))
    assert sorted(zip(table["run"], table["checkpoint"])) == [("run", "best"), ("run", "last")]
    # naming the default explicitly is the default folder, not a third one
    assert invoke("eval", run, "--data", ds, "--checkpoint", default, "-q").exit_code == 0
    assert sorted(p.name for p in (run / "eval").iterdir()) == sorted(
        ["tinyworld-test", f"tinyworld-test-{other}"])
    assert checkpoint_label(run, str(run / "best.pt")) == "best"
    assert checkpoint_label(run, str(tmp_path / "epoch3.pt")) == "epoch3"
