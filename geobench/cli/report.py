"""`geobench report` (tables, curves, HTML, baseline checks) and `geobench viz examples |
attention` (figures).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from geobench.cli.common import Quiet, app, command, parse_percent
from geobench.errors import UsageError


@command("report", examples=[
    "geobench report runs --table --paper cvusa",
    "geobench report runs --check baseline.csv --tolerance 1",
])
def report_cmd(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="Runs or folders.")] = None,
    table: Annotated[bool, typer.Option(help="Print the table.")] = False,
    format: Annotated[str, typer.Option("--format", help="rich | md | csv | latex.")] = "rich",
    sort: Annotated[Optional[str], typer.Option(help="Column to sort by.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write recall@K curves to this PNG.")] = None,
    chance: Annotated[bool, typer.Option(help="With --plot: add the recall of a random "
                                         "ranking.")] = False,
    paper: Annotated[Optional[str], typer.Option(help="Add published rows for a dataset.")] = None,
    check: Annotated[Optional[Path], typer.Option(
        metavar="CSV|paper:METHOD[@PROTOCOL]",
        help="Baseline metrics CSV to compare, or paper:METHOD[@PROTOCOL] to gate the runs "
        "against a published row (data/paper_results.csv).")] = None,
    tolerance: Annotated[str, typer.Option(
        help="Allowed drop, in percent points of each metric (recall is a percentage: 1 = one "
             "point of R@1); a trailing % is accepted.")] = "1",
    ablation: Annotated[bool, typer.Option(
        help="Pivot the runs into an ablation table: rows = variants, columns = R@1/R@5/R@10/R@1% "
        "per dataset (--format md | latex | csv).")] = False,
    html: Annotated[Optional[Path], typer.Option(
        help="Write a self-contained HTML report (table, curves, examples, provenance).")] = None,
    quiet: Quiet = False,
) -> None:
    """Collect metrics.csv files into tables and curves; check against a baseline."""
    import pandas as pd

    from geobench.report.table import (
        FORMATS,
        check_table,
        collect,
        paper_rows,
        plot_curves,
        render,
        sort_rows,
    )

    if format not in FORMATS:
        raise UsageError(f"--format {format!r}: use one of {', '.join(FORMATS)}")
    if plot is not None:
        from geobench.report.plot import check_output

        check_output(plot)  # a bad --plot fails before anything is read
    points = parse_percent(tolerance, "--tolerance")  # before any figure or HTML is written
    if check is not None:
        from geobench.report.published import check_spec

        check_spec(check)  # an unknown method or a missing baseline, before any writing
    rows = collect(paths or [Path(".")])
    if paper:
        rows = pd.concat([rows, paper_rows(paper)], ignore_index=True, sort=False)
    rows = sort_rows(rows, sort)
    if ablation:
        from geobench.report.ablation import ablation_table, render_ablation

        typer.echo(render_ablation(ablation_table(rows), format), nl=False)
    elif table or (plot is None and check is None and html is None):
        typer.echo(render(rows, format), nl=False)
    if plot is not None:
        typer.echo(f"wrote {plot_curves(rows, plot, chance=chance)}", err=True)
    if html is not None:
        from geobench.report.html import write_html

        typer.echo(f"wrote {write_html(rows, html)}", err=True)
    if check is not None:
        from geobench.report.published import check_published, is_published_spec

        result = (check_published(rows, str(check), points) if is_published_spec(check)
                  else check_table(rows, check, points))
        typer.echo("\n".join(result.lines))
        if not result.ok:
            typer.echo(f"error: {result.failures} metric(s) dropped by more than {points:g} "
                       f"points against {check} (or rows are missing); see the FAIL lines", err=True)
            raise typer.Exit(1)



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
