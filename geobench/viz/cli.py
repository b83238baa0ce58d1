"""`geobench viz examples|attention`: the figure commands (a Typer group on the main app)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from geobench.cli import Quiet, app, command

viz = typer.Typer(help="Figures: retrieval examples and attention maps.", no_args_is_help=True,
                  rich_markup_mode=None)
app.add_typer(viz, name="viz")


@command("examples", group=viz)
def examples_cmd(
    results: Annotated[Path, typer.Argument(help="Folder with results.h5 (written by "
                                                  "`geobench eval`), or the file.")],
    out: Annotated[Path, typer.Option(help="Figure file (.png, .pdf or .svg).")],
    data: Annotated[Optional[Path], typer.Option(
        help="Prepared dataset; default: the one recorded in the results.")] = None,
    queries: Annotated[int, typer.Option(help="Number of queries (rows).")] = 8,
    query: Annotated[Optional[list[str]], typer.Option(
        help="Show this query uid (repeatable); overrides --queries/--select.")] = None,
    k: Annotated[int, typer.Option("--k", help="References per query.")] = 5,
    select: Annotated[str, typer.Option(help="worst | best | random (by rank of the best "
                                             "positive).")] = "worst",
    seed: Annotated[int, typer.Option(help="Seed of --select random.")] = 0,
    polar_strip: Annotated[bool, typer.Option(
        help="Show aerial references as polar strips instead of the aerial image.")] = False,
    format: Annotated[Optional[str], typer.Option(
        "--format", help="png | pdf | svg; default: from the --out extension.")] = None,
    quiet: Quiet = False,
) -> None:
    """Top-K retrieval examples, one row per query, framed green (positive), yellow
    (semi-positive) or red.

    Example: geobench viz examples runs/safa/eval/cvusa-test --out worst.png --queries 6
    """
    from geobench.viz.examples import load_examples, render_examples

    ex = load_examples(results, data, queries=queries, query_uids=query, k=k, select=select,
                       seed=seed)
    path, _ = render_examples(ex, out, format, polar_strip=polar_strip)
    typer.echo(f"wrote {path} ({len(ex.rows)} queries, top {k})", err=True)


@command("attention", group=viz)
def attention_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory of a trained model.")],
    data: Annotated[Path, typer.Option(help="Prepared dataset.")],
    out: Annotated[Path, typer.Option(help="Folder for the figures.")],
    queries: Annotated[int, typer.Option(help="Number of queries.")] = 4,
    split: Annotated[str, typer.Option(help="Split whose queries are shown.")] = "test",
    checkpoint: Annotated[Optional[Path], typer.Option(
        help="Checkpoint file; default RUN/best.pt, else RUN/checkpoint.pt.")] = None,
    format: Annotated[str, typer.Option("--format", help="png | pdf | svg.")] = "png",
    quiet: Quiet = False,
) -> None:
    """Attention maps (MC_GRA, CBAM, GSRA) and Grad-CAM of the query-positive similarity,
    for both branches of the model.

    Example: geobench viz attention runs/mcgra --data ds/cvusa --out figs/attention
    """
    from geobench.viz.attention import attention_figures

    paths = attention_figures(run, data, out, queries=queries, split=split,
                              checkpoint=str(checkpoint) if checkpoint else None, fmt=format)
    typer.echo(f"wrote {len(paths)} figure(s) to {out}", err=True)
