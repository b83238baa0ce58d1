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
