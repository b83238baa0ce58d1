"""CLI behaviour owned by the foundation: help, datasets listing, error formatting."""
from __future__ import annotations

import yaml

COMMANDS = ("datasets", "download", "prepare", "polar", "crop", "mine", "models", "train",
            "eval", "report", "bench", "doctor", "demo")


def test_help_lists_every_command(invoke):
    result = invoke("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_help_lists_commands_in_data_flow_order(invoke):
    # the commands live in several modules (geobench/cli/); --help keeps one order
    listed = invoke("--help").output.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listed if line.strip()] == [*COMMANDS, "viz"]


def test_every_command_has_help_and_quiet(invoke):
    for name in COMMANDS:
        result = invoke(name, "--help")
        assert result.exit_code == 0, (name, result.output)
        assert "--quiet" in result.output, name


def test_datasets_lists_catalog(invoke):
    result = invoke("datasets")
    assert result.exit_code == 0, result.output
    for name in ("cvusa", "vigor", "university1652", "tokyo247", "synthetic"):
        assert name in result.stdout


def test_dataset_card(invoke):
    result = invoke("datasets", "vigor")
    assert result.exit_code == 0
    assert "Zhu, Yang, Chen" in result.stdout and "vigor_same" in result.stdout


def test_unknown_dataset_is_one_line_error(invoke):
    result = invoke("datasets", "cvsua")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "unknown dataset 'cvsua'. Did you mean cvusa" in lines[0]
    assert "Traceback" not in result.output


def test_broken_catalog_is_reported(invoke, tmp_path, monkeypatch):
    bad = tmp_path / "datasets.yaml"
    bad.write_text(yaml.safe_dump({"schema": "geobench.datasets/1", "datasets": {"x": {"task": "cvgl"}}}))
    monkeypatch.setenv("GEOBENCH_CATALOG", str(bad))
    result = invoke("datasets")
    assert result.exit_code == 2
    assert f"error: {bad}: datasets.x: missing field(s)" in result.stderr


def test_bad_option_value_exits_nonzero(invoke):
    result = invoke("datasets", "--no-such-option")
    assert result.exit_code != 0


def test_prepare_synthetic_each_layout_names_itself_and_its_protocol(invoke, tmp_path):
    import json

    from geobench.prepared import read_prepared

    expected = {"cvusa": "cvusa", "vigor": "vigor_same", "vg": "vg25"}
    for layout, protocol in expected.items():
        out = tmp_path / layout
        result = invoke("prepare", "synthetic", "--out", out, "--layout", layout, "--pairs", 6,
                        "--test-pairs", 4, "--cities", 1, "--difficulty", "easy", "--workers", 1,
                        "--quiet")
        assert result.exit_code == 0, result.output
        assert "prepared synthetic" in result.stdout
        ds = read_prepared(out, check_files=True)
        assert ds.name == f"synthetic-{layout}"
        assert json.loads((out / "manifest.json").read_text())["protocol"] == protocol
        assert set(ds.index["split"]) >= {"train", "test"}
        assert len(ds.positives) > 0


def test_prepare_synthetic_refuses_existing_output(invoke, tmp_path):
    out = tmp_path / "ds"
    (out / "raw").mkdir(parents=True)
    (out / "raw" / "keep.txt").write_text("mine")
    result = invoke("prepare", "synthetic", "--out", out, "--pairs", 4, "--test-pairs", 2, "--quiet")
    assert result.exit_code == 2
    assert "already exists and is not empty" in result.stderr
    assert (out / "raw" / "keep.txt").read_text() == "mine"
    assert not (out / "index.csv").exists()
