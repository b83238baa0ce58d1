"""`geobench demo`: synthetic world -> tiny model -> evaluation, end to end.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from geobench.cli.common import Quiet, command, difficulty_option, print_table
from geobench.guard import claim_output


@command("demo", examples=[
    "geobench demo",
    "geobench demo --model safa --difficulty standard --epochs 5",
])
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Demo output directory.")] = Path("geobench-demo"),
    model: Annotated[str, typer.Option(help="Registered cross-view model (its tiny preset).")
                     ] = "safa",
    difficulty: Annotated[Optional[str], typer.Option(
        help="Synthetic world difficulty: easy | standard | hard [default easy].")] = None,
    preset: Annotated[Optional[str], typer.Option(
        hidden=True, help="Deprecated alias of --difficulty.")] = None,
    pairs: Annotated[int, typer.Option(help="Training pairs.")] = 600,
    test_pairs: Annotated[int, typer.Option(help="Test pairs (gallery size).")] = 200,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the world and the training.")] = 0,
    quiet: Quiet = False,
) -> None:
    """Synthetic world → train a tiny model → evaluate → recall table and curve."""
    from geobench.demo import DemoOptions, run_demo

    preset = difficulty_option(difficulty, preset, "easy")
    options = DemoOptions(out=out, model=model, preset=preset, pairs=pairs,
                          test_pairs=test_pairs, epochs=epochs, seed=seed)
    with claim_output(out, "demo"):  # run_demo checks every option before building anything
        summary = run_demo(options)
    rows = [[r["model"], *(f"{r[k]:.2f}" for k in ("r@1", "r@5", "r@10", "r@1%"))]
            for r in summary.rows]
    print_table(f"synthetic world, test split ({test_pairs} queries)",
                ["", "R@1", "R@5", "R@10", "R@1%"], rows)
    typer.echo(f"recall@K curve: {summary.curve_png}")
    typer.echo(f"retrieval examples: {summary.examples_png}")
    typer.echo(f"HTML report: {summary.report_html}")
    typer.echo(f"results: {summary.metrics_csv}")
    typer.echo("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in summary.stage_seconds.items())
               + f"; total {summary.seconds:.0f} s")
