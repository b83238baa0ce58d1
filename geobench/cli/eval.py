"""`geobench eval`: a run, a model's weights or a features file, under a named protocol.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from geobench.cli.common import (
    WEIGHTS_HELP,
    WORKERS_HELP,
    OnBadImage,
    Quiet,
    command,
    warn,
)
from geobench.errors import UsageError, one_line
from geobench.guard import claim_output


@command("eval", examples=[
    "geobench eval runs/safa-tiny --data ds/synth --split test",
    "geobench eval --features features.h5 --out results/mine --protocol cvusa",
])
def eval_cmd(
    run: Annotated[Optional[Path], typer.Argument(help="Run directory of a trained model.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Prepared dataset (RUN mode).")] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate (RUN mode).")] = "test",
    features: Annotated[Optional[Path], typer.Option(help="Features HDF5 of any model.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output directory.")] = None,
    protocol: Annotated[Optional[str], typer.Option(help="Named protocol.")] = None,
    k: Annotated[str, typer.Option("--k", help="Recall cut-offs, comma separated.")] = "1,5,10",
    memory: Annotated[str, typer.Option(help="Memory budget for the search, e.g. 2GB.")] = "2GB",
    save_topk: Annotated[int, typer.Option(help="Top-K neighbours to store.")] = 100,
    normalise: Annotated[bool, typer.Option(
        help="L2-normalise unnormalised descriptors (with a warning) instead of refusing.")] = False,
    save_descriptors: Annotated[bool, typer.Option(
        help="Also store the descriptors in results.h5.")] = False,
    search: Annotated[str, typer.Option(
        help="exact, or faiss:FACTORY for an approximate index (e.g. faiss:IVF4096,Flat, "
             "faiss:HNSW32); approximate results are marked as such.")] = "exact",
    nprobe: Annotated[Optional[str], typer.Option(
        help="faiss IVF cells to visit, or auto: the fewest that lose at most --max-loss "
             "points of R@1 on the exact sample.")] = None,
    ef_search: Annotated[Optional[str], typer.Option(
        help="faiss HNSW efSearch, or auto (as --nprobe auto).")] = None,
    max_loss: Annotated[float, typer.Option(
        help="With --nprobe/--ef-search auto: points of R@1 the index may lose against "
             "exact search on the exact sample.")] = 1.0,
    features_dtype: Annotated[str, typer.Option(
        help="RUN mode: store descriptors in features.h5 as float32 or float16 (half the "
             "file).")] = "float32",
    exact_sample: Annotated[int, typer.Option(
        help="With faiss: also search this many queries exactly and report the R@1 lost.")
                            ] = 1000,
    ties: Annotated[str, typer.Option(
        help="Tied scores: expected (the mean over all orderings, McSherry & Najork 2008), "
             "optimistic or pessimistic.")] = "expected",
    rerank: Annotated[Optional[int], typer.Option(
        help="Re-order each query's global top K by the model's pair score (pair-dependent "
             "models: asavg); ranks beyond K stay those of the global search. 0: off. "
             "[default: the model card's, asavg 50]")] = None,
    model: Annotated[Optional[str], typer.Option(
        help="Evaluate this registered model as loaded from --weights/--pretrained (no RUN); "
             "A,B with --pretrained X,Y and --data D1,D2 evaluates every pair into "
             "OUT/<model>+<weights>/<dataset>/ (finished pairs are skipped).")
    ] = None,
    all_released: Annotated[bool, typer.Option(
        help="With --data D1[,D2] --out DIR: every released model with its published file "
             "(see `geobench models NAME`), one folder per model and dataset.")] = False,
    weights: Annotated[Optional[Path], typer.Option(help=WEIGHTS_HELP)] = None,
    pretrained: Annotated[Optional[str], typer.Option(help="With --model: imagenet or a "
                                                      "weights-catalog entry name.")] = None,
    preset: Annotated[Optional[str], typer.Option(help="With --model: model preset.")] = None,
    allow_unpinned: Annotated[bool, typer.Option(
        help="With --pretrained: fetch a catalog file whose publisher prints no sha256 (e.g. "
             "HuggingFace, DINOv2); its computed sha256 is printed and recorded.")] = False,
    checkpoint: Annotated[Optional[str], typer.Option(
        help="RUN mode: best, last or a checkpoint file [default: best when the run has one].")
    ] = None,
    device: Annotated[Optional[str], typer.Option(
        help="cpu | cuda for embedding and search [default: cuda when available].")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per embedding batch.")] = 32,
    workers: Annotated[int, typer.Option(help=f"Image-loading {WORKERS_HELP}).")] = 2,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="Mixed-precision "
                                                "embedding [default: on with CUDA].")] = None,
    on_bad_image: OnBadImage = "fail",
    quiet: Quiet = False,
) -> None:
    """Evaluate a run on a prepared split, or a features file, under a named protocol."""
    from dataclasses import replace

    from geobench.eval.approx import check_auto, check_max_loss, parse_param, parse_search
    from geobench.eval.evaluate import EvalOptions, evaluate_features, parse_ks, parse_memory
    from geobench.eval.ties import check_policy

    if parse_memory(memory) < SMALL_MEMORY:
        warn(f"--memory {memory} is tiny: the search then runs in very small blocks and can "
             f"be tens of times slower; the default 2GB is right for most machines")

    parse_search(search)  # a bad --search fails before any work
    approx = dict(search=search, nprobe=parse_param("--nprobe", nprobe),
                  ef_search=parse_param("--ef-search", ef_search), exact_sample=exact_sample,
                  max_loss=check_max_loss(max_loss), rerank=rerank)
    check_auto(approx["nprobe"], approx["ef_search"], exact_sample)
    check_policy(ties)
    from geobench.train.runeval import resolve_device

    device = resolve_device(device)
    if device == "cpu":  # the search stays on the CPU too (numpy engine)
        approx["backend"] = "numpy"
    else:
        approx["device"] = device
    embed = dict(batch_size=batch_size, device=device, workers=workers)
    if all_released or "," in (model or "") or "," in str(data or ""):
        if run is not None or features is not None or weights is not None or out is None:
            raise UsageError("a matrix (--model A,B, --data D1,D2 or --all-released) evaluates "
                             "catalog weights: pass --pretrained and --out DIR, no RUN, "
                             "--features or --weights")
        _matrix(model, pretrained, data, out, split, preset, all_released, allow_unpinned,
                EvalOptions(protocol=protocol, ks=parse_ks(k), memory_bytes=parse_memory(memory),
                            save_topk=save_topk, save_descriptors=save_descriptors, ties=ties,
                            **approx), embed)
        return
    if model is not None or weights is not None or pretrained is not None:
        if model is None or run is not None or features is not None or data is None or out is None:
            raise UsageError("--weights/--pretrained evaluate a model without a run: pass "
                             "--model NAME --data DS --out DIR (and no RUN or --features)")
        from geobench.train.runeval import evaluate_weights

        with claim_output(out, "eval", inputs={"--data": data}):
            summary = evaluate_weights(model, data, out, split, EvalOptions(
                protocol=protocol, ks=parse_ks(k), memory_bytes=parse_memory(memory),
                save_topk=save_topk, save_descriptors=save_descriptors, ties=ties, **approx),
                weights=weights, pretrained=pretrained, preset=preset,
                allow_unpinned=allow_unpinned, **embed)
        for note in summary.notes:
            typer.echo(f"warning: {one_line(note)}", err=True)
        _print_eval(summary)
        return
    if features is None:
        if run is None:
            raise UsageError("nothing to evaluate: pass --features F.h5 --out DIR, or a run "
                             "directory RUN --data DS")
        if data is None:
            raise UsageError(f"--data DS is required to evaluate the run {run}: the prepared "
                             f"dataset whose --split {split} is embedded")
        from geobench.train.runeval import (
            check_eval_out,
            check_run_dir,
            default_eval_dir,
            evaluate_run,
        )

        check_run_dir(run, checkpoint)
        if out is not None:
            check_eval_out(run, out)
        options = EvalOptions(protocol=protocol, ks=parse_ks(k), memory_bytes=parse_memory(memory),
                              save_topk=save_topk, save_descriptors=save_descriptors, ties=ties,
                              **approx)
        out_dir = out if out is not None else default_eval_dir(run, data, split, checkpoint)
        # Under torchrun every rank embeds a shard; rank 0 owns the output folder.
        main_rank = int(os.environ.get("RANK", "0") or 0) == 0
        claim = (claim_output(out_dir, "eval", inputs={"--data": data}) if main_rank
                 else contextlib.nullcontext())
        with claim:
            summary = evaluate_run(run, data, split, options, out=out_dir, checkpoint=checkpoint,
                                   amp=amp, features_dtype=features_dtype,
                                   on_bad_image=on_bad_image, **embed)
        if summary is None:  # a non-zero rank of a torchrun job: rank 0 reports
            return
        for note in summary.notes:
            typer.echo(f"warning: {one_line(note)}", err=True)
        _print_eval(summary)
        return
    if run is not None:
        raise UsageError(f"pass either a run directory ({run}) or --features, not both")
    if on_bad_image != "fail":
        warn("--on-bad-image applies to a run directory (images are embedded); a features "
             "file has no images")
    if out is None:
        raise UsageError(f"--out DIR is required with --features {features}: results.h5 and "
                         f"metrics.csv are written there")
    options = EvalOptions(protocol=protocol, ks=parse_ks(k), memory_bytes=parse_memory(memory),
                          save_topk=save_topk, normalise=normalise,
                          save_descriptors=save_descriptors, ties=ties)
    with claim_output(out, "eval"):
        summary = evaluate_features(features, out, replace(options, **approx))
    for note in summary.notes:
        typer.echo(f"warning: {one_line(note)}", err=True)
    _print_eval(summary)


def _matrix(model: str | None, pretrained: str | None, data: Path | None, out: Path,
            split: str, preset: str | None, all_released: bool, allow_unpinned: bool,
            options: Any, embed: dict[str, Any]) -> None:
    from geobench.eval.matrix import plan_matrix, run_matrix, split_list
    from geobench.report.table import collect, render
    from geobench.train.runeval import evaluate_weights

    pairs = plan_matrix(split_list(model, "--model"), split_list(pretrained, "--pretrained"),
                        [Path(d) for d in split_list(str(data) if data else None, "--data")],
                        all_released=all_released, preset=preset, allow_unpinned=allow_unpinned)

    def evaluate(pair: Any, folder: Path) -> None:
        summary = evaluate_weights(pair.model, pair.data, folder, split, options,
                                   pretrained=pair.pretrained, preset=preset,
                                   allow_unpinned=allow_unpinned, **embed)
        for note in summary.notes:
            typer.echo(f"warning: {pair.label}: {one_line(note)}", err=True)

    def said(pair: Any, status: str) -> None:
        typer.echo(f"{status}: {pair.label} -> {out / pair.folder}", err=True)

    guarded = {f"--data {p.data}": p.data for p in pairs}  # --out must not be inside one
    with claim_output(out, "eval", inputs=guarded):
        folders = run_matrix(pairs, out, evaluate, said)
    typer.echo(render(collect([out]), "rich"), nl=False)
    typer.echo(f"wrote {len(folders)} result folders under {out}; `geobench report {out}` "
               f"tables them again", err=True)


SMALL_MEMORY = 16 << 20  # below this the search blocks are too small to be efficient


def _print_eval(summary: Any) -> None:
    """The metrics row as a table on stdout; where the files went on stderr."""
    from geobench.eval.results import read_metrics
    from geobench.report.table import render

    typer.echo(render(read_metrics(summary.metrics_path), "rich"), nl=False)
    typer.echo(f"wrote {summary.results_path} and {summary.metrics_path}", err=True)
