"""`geobench demo`: the whole pipeline at toy size, and its error path."""
from __future__ import annotations

import json


def test_demo_runs_end_to_end_and_reuses_its_world(invoke, tmp_path):
    out = tmp_path / "demo"
    args = ("demo", "--out", out, "--pairs", 40, "--test-pairs", 10, "--epochs", 1, "--quiet")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    for label in ("chance (random ranking)", "safa tiny, untrained", "safa tiny, 1 steps"):
        assert label in result.stdout  # 40 pairs at batch 32: one full batch per epoch
    assert "recall@K curve:" in result.stdout
    png = out / "recall_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["n_query"] == 10 and summary["n_reference"] == 10
    chance, untrained, trained = summary["rows"]
    assert chance["r@1"] == 10.0 and chance["r@10"] == 100.0
    assert 0 <= trained["r@1"] <= 100
    assert (out / "run" / "eval" / "synthetic-cvusa-test" / "metrics.csv").is_file()
    # the untrained evaluation is a run of its own, next to the trained one
    kept = out / "untrained" / "eval" / "synthetic-cvusa-test" / "metrics.csv"
    assert kept.is_file()
    report = invoke("report", out, "--format", "csv")
    assert report.exit_code == 0 and {"untrained", "run"} <= set(
        line.split(",")[0] for line in report.stdout.splitlines()[1:])
    import cv2

    grid = cv2.imread(str(out / "examples.png"))
    assert grid is not None and grid.shape[0] > 400  # six query rows
    html = (out / "report.html").read_text()
    assert "geobench demo" in html and html.count("data:image/png;base64,") >= 2

    world = (out / "data" / "index.csv").stat().st_mtime_ns
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert (out / "data" / "index.csv").stat().st_mtime_ns == world


def test_demo_unknown_model_fails_before_writing(invoke, tmp_path):
    out = tmp_path / "demo"
    result = invoke("demo", "--out", out, "--model", "safaa", "--quiet")
    assert result.exit_code == 2
    assert "unknown model 'safaa'. Did you mean safa" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
