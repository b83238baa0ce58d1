"""`geobench eval --features` and `geobench report` through the CLI (CliRunner)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from geobench.eval.csr import CSR
from geobench.eval.features import write_features
from geobench.eval.results import read_results


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def feats(tmp_path):
    rng = np.random.default_rng(5)
    r = unit(rng.standard_normal((150, 12)))
    r[100:120] = r[0:20]  # exact ties
    q = unit(r[:60] + 0.6 * rng.standard_normal((60, 12)))
    rows = [[i] if i % 7 else [] for i in range(60)]
    return write_features(tmp_path / "f.h5", q, r, CSR.from_lists(rows),
                          attrs={"model": "toy", "dataset": "toy", "split": "test"})


def one_error_line(result, *needles):
    lines = result.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert result.exit_code != 0 and len(errors) == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_eval_features_writes_results_and_prints_the_table(invoke, feats, tmp_path):
    result = invoke("eval", "--features", feats, "--out", tmp_path / "out", "--k", "1,5,20",
                    "--save-topk", "4", "-q")
    assert result.exit_code == 0, result.output
    assert "R@1" in result.stdout and "R@20" in result.stdout and "(K=1)" in result.stdout
    assert "9 of 60 queries have no positive" in result.stderr
    stored = read_results(tmp_path / "out" / "results.h5")
    assert stored.topk_indices.shape == (60, 4) and stored.attrs["protocol"] == "pairs"
    assert (tmp_path / "out" / "metrics.csv").read_text().startswith("run,dataset,split,protocol")


def test_ranks_do_not_depend_on_the_memory_budget(invoke, feats, tmp_path):
    ranks = []
    for memory in ("2GB", "16KB", "3KB"):
        out = tmp_path / memory
        result = invoke("eval", "--features", feats, "--out", out, "--memory", memory, "-q",
                        "--protocol", "cvusa")
        assert result.exit_code == 0, result.output
        stored = read_results(out / "results.h5")
        ranks.append(stored.ranks)
        assert stored.attrs["k_1pct"] == 1
    assert all(np.array_equal(ranks[0], r) for r in ranks[1:])


def test_eval_error_paths(invoke, feats, tmp_path):
    out = tmp_path / "o"
    one_error_line(invoke("eval", "--features", tmp_path / "nope.h5", "--out", out),
                   "nope.h5", "file not found")
    one_error_line(invoke("eval", "--features", feats, "--out", out, "--memory", "lots"),
                   "--memory 'lots'")
    one_error_line(invoke("eval", "--features", feats, "--out", out, "--k", "1,x"), "--k '1,x'")
    one_error_line(invoke("eval", "--features", feats, "--out", out, "--protocol", "vigor"),
                   "unknown protocol 'vigor'", "vigor_same")
    one_error_line(invoke("eval", "--features", feats), "--out DIR is required")
    one_error_line(invoke("eval"), "--features F.h5")
    assert not out.exists()


def test_bad_features_are_refused_and_nothing_is_written(invoke, feats, tmp_path):
    with h5py.File(feats, "a") as h5:
        data = h5["reference/descriptors"][...]
        del h5["reference/descriptors"]
        h5["reference/descriptors"] = data * 2.0
    out = tmp_path / "o"
    one_error_line(invoke("eval", "--features", feats, "--out", out),
                   "/reference/descriptors", "not L2-normalised", "--normalise")
    assert not (out / "metrics.csv").exists() and not (out / "results.h5").exists()
    result = invoke("eval", "--features", feats, "--out", out, "--normalise", "-q")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "normalised" in result.stderr
    assert (out / "metrics.csv").exists()
    with h5py.File(feats, "a") as h5:
        del h5["reference/descriptors"]
        h5["reference/descriptors"] = unit(np.ones((150, 10)))
    one_error_line(invoke("eval", "--features", feats, "--out", tmp_path / "o2"),
                   "/reference/descriptors: dimension D=10")


def test_report_table_plot_paper_and_check(invoke, feats, tmp_path):
    for name in ("a", "b"):
        assert invoke("eval", "--features", feats, "--out", tmp_path / "runs" / name,
                      "--protocol", "cvusa", "-q").exit_code == 0
    result = invoke("report", tmp_path / "runs", "--format", "md", "--paper", "cvusa",
                    "--sort", "r@1")
    assert result.exit_code == 0, result.output
    assert "| a |" in result.stdout and "[paper] Sample4Geo" in result.stdout
    csv = invoke("report", tmp_path / "runs", "--table", "--format", "csv")
    assert csv.exit_code == 0 and csv.stdout.startswith("run,dataset,split,protocol")
    baseline = tmp_path / "baseline.csv"
    baseline.write_text(csv.stdout)
    png = tmp_path / "c.png"
    ok = invoke("report", tmp_path / "runs", "--plot", png, "--check", baseline,
                "--tolerance", "0.5")
    assert ok.exit_code == 0, ok.output
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    text = baseline.read_text().splitlines()
    header = text[0].split(",")
    col = header.index("r@1")
    cells = text[1].split(",")
    cells[col] = str(float(cells[col]) + 5)
    baseline.write_text("\n".join([text[0], ",".join(cells)] + text[2:]) + "\n")
    bad = invoke("report", tmp_path / "runs", "--check", baseline, "--tolerance", "1")
    assert bad.exit_code == 1
    assert "FAIL" in bad.stdout and "r@1" in bad.stdout and "dropped" in bad.stderr
    one_error_line(invoke("report", tmp_path / "runs", "--format", "html"), "--format 'html'")
    one_error_line(invoke("report", tmp_path / "nothing"), "nothing")
    one_error_line(invoke("report", tmp_path / "runs", "--paper", "cvus"), "cvusa")
    one_error_line(invoke("report", tmp_path / "runs", "--plot", tmp_path), "is a folder")
    one_error_line(invoke("report", tmp_path / "runs", "--plot", tmp_path / "c.foo"),
                   "unsupported extension '.foo'", ".png")
    assert invoke("report", tmp_path / "runs", "--plot", tmp_path / "c.pdf", "--chance",
                  "-q").exit_code == 0 and (tmp_path / "c.pdf").read_bytes()[:4] == b"%PDF"


def test_eval_tie_policies_and_the_collapsed_warning(invoke, tmp_path):
    ones = unit(np.ones((50, 4)))
    path = write_features(tmp_path / "c.h5", ones[:5], ones, CSR.from_lists([[i] for i in range(5)]))
    r1 = {}
    for policy in ("expected", "optimistic", "pessimistic"):
        result = invoke("eval", "--features", path, "--out", tmp_path / policy, "--ties", policy,
                        "-q")
        assert result.exit_code == 0, result.output
        assert "descriptors look collapsed: 5 of 5 queries" in result.stderr
        stored = read_results(tmp_path / policy / "results.h5")
        assert stored.attrs["ties"] == policy and stored.tied_nonpositives.tolist() == [49] * 5
        r1[policy] = stored.metrics["r@1"]
    assert r1 == pytest.approx({"expected": 2.0, "optimistic": 100.0, "pessimistic": 0.0})
    one_error_line(invoke("eval", "--features", path, "--out", tmp_path / "x", "--ties", "fair"),
                   "--ties 'fair'", "expected")
    assert not (tmp_path / "x").exists()
