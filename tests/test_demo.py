"""`geobench demo`: the whole pipeline at toy size, its error path, and the README's demo
figures (the block between the demo-figures markers) against what `demo` prints."""
from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
# The suite's demo: small enough for every run of the tests; the README documents its figures.
SMALL = "geobench demo --pairs 40 --test-pairs 10 --epochs 1"


def documented_figures() -> dict[str, dict[str, float]]:
    """README demo-figures block: command -> {steps, r@1, r@5, r@10, r@1%}."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- demo-figures -->(.*?)<!-- /demo-figures -->", text, re.S)
    assert block, "README.md has no <!-- demo-figures --> block"
    rows = {}
    for line in block.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`geobench demo"):
            keys = ("steps", "r@1", "r@5", "r@10", "r@1%")
            rows[cells[0].strip("`")] = dict(zip(keys, map(float, cells[1:]), strict=True))
    return rows


def printed_figures(stdout: str) -> dict[str, float]:
    """The trained row of demo's table: `safa tiny, N steps | R@1 | R@5 | R@10 | R@1%`."""
    match = re.search(r"tiny, (\d+) steps\s*│\s*([\d.]+)\s*│\s*([\d.]+)\s*│\s*([\d.]+)\s*│"
                      r"\s*([\d.]+)", stdout)
    assert match, stdout
    return dict(zip(("steps", "r@1", "r@5", "r@10", "r@1%"), map(float, match.groups()),
                    strict=True))


def run_demo(invoke, command: str, out: Path):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the documented figures are measured on one torch thread
    try:
        return invoke(*shlex.split(command)[1:], "--out", out, "--quiet")
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    from typer.testing import CliRunner

    from geobench.cli import app

    out = tmp_path_factory.mktemp("demo") / "demo"
    result = run_demo(lambda *a: CliRunner().invoke(app, [str(x) for x in a]), SMALL, out)
    assert result.exit_code == 0, result.output
    return out, result


def test_demo_runs_end_to_end_and_reuses_its_world(invoke, small_demo):
    out, result = small_demo
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
    again = run_demo(invoke, SMALL, out)
    assert again.exit_code == 0, again.output
    assert (out / "data" / "index.csv").stat().st_mtime_ns == world


def test_the_untrained_evaluation_carries_its_image_ids(small_demo):
    """Before: its results had no /query/uids, so the demo's own HTML report told the user
    to re-run an evaluation they never ran."""
    import h5py

    out, _ = small_demo
    with h5py.File(out / "untrained" / "eval" / "synthetic-cvusa-test" / "results.h5") as h5:
        assert len(h5["query/uids"]) == 10 and len(h5["reference/uids"]) == 10
    html = (out / "report.html").read_text()
    assert "/query/uids" not in html
    assert html.count("data:image/png;base64,") >= 3  # curves + both runs' examples


def test_readme_demo_figures_are_what_demo_prints(small_demo):
    """The README's demo figures are checked, not remembered: the suite's small demo on
    every run; the default `geobench demo` (minutes) with GEOBENCH_DEMO_FIGURES=1."""
    documented = documented_figures()
    assert SMALL in documented and "geobench demo" in documented, documented
    assert printed_figures(small_demo[1].stdout) == documented[SMALL]


@pytest.mark.skipif(os.environ.get("GEOBENCH_DEMO_FIGURES") != "1",
                    reason="the default demo takes minutes: set GEOBENCH_DEMO_FIGURES=1")
def test_readme_default_demo_figures(invoke, tmp_path):
    result = run_demo(invoke, "geobench demo", tmp_path / "demo")
    assert result.exit_code == 0, result.output
    assert printed_figures(result.stdout) == documented_figures()["geobench demo"]


def test_demo_unknown_model_fails_before_writing(invoke, tmp_path):
    out = tmp_path / "demo"
    result = invoke("demo", "--out", out, "--model", "safaa", "--quiet")
    assert result.exit_code == 2
    assert "unknown model 'safaa'. Did you mean safa" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
