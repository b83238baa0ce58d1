"""`geobench models` and `geobench models NAME`: tables on stdout, close-match errors."""
from __future__ import annotations

from typer.testing import CliRunner

from geobench.cli import app

runner = CliRunner()


def test_models_lists_every_model_with_its_card_summary():
    res = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for name in ("mcgra", "asavg", "lrfr", "safa", "mixvpr", "convnext_gap"):
        assert name in res.stdout
    assert "ground -> polar" in res.stdout and "112x616" in res.stdout and "21.78" in res.stdout


def test_models_name_shows_parameters_descriptor_sizes_and_recipe():
    res = runner.invoke(app, ["models", "lrfr"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for text in ("8192", "13.174", "drone 384x384", "semi_soft_tri_hard", "recipe.lr", "preset tiny",
                 "argument gsra_groups"):
        assert text in res.stdout, text


def test_unknown_model_is_a_one_line_close_match_error(invoke):
    res = invoke("models", "mcgr")
    assert res.exit_code == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown model 'mcgr'. Did you mean mcgra" in lines[0]
    assert "geobench models" in lines[0] and "Traceback" not in res.output


def test_models_name_shows_the_recipes_starting_weights():
    res = runner.invoke(app, ["models", "mixvpr"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    line = next(s for s in res.stdout.splitlines() if "weights (paper recipe)" in s)
    assert "resnet50.tv_in1k" in line and "resnet50-0676ba61.pth" in line
    also = next(s for s in res.stdout.splitlines() if "weights (also fit)" in s)
    assert "resnet50.tv2_in1k" in also and "resnet50.tv_in1k" not in also
