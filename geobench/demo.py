"""`geobench demo`: the whole pipeline on the synthetic world, in a few minutes on a CPU.

Synthetic CVUSA-layout world → prepared index → the tiny preset of a registered model,
evaluated untrained, trained, evaluated again → recall table against chance and a
recall@K curve PNG. Every stage is the library's ordinary code path; the demo only
chooses small sizes.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from geobench.errors import UsageError

METRICS = ("r@1", "r@5", "r@10", "r@1%")


@dataclass(frozen=True)
class DemoOptions:
    out: Path
    model: str = "safa"
    preset: str = "easy"       # synthetic difficulty preset
    pairs: int = 600           # training pairs
    test_pairs: int = 200      # test pairs (the gallery size)
    cities: int = 2
    epochs: int = 10           # measured: safa tiny on easy ~50 % R@1 here (benchmarks/CALIBRATION.md)
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    workers: int = 2


@dataclass
class DemoSummary:
    data: Path
    run: Path
    rows: list[dict[str, Any]]
    curve_png: Path
    metrics_csv: Path
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    examples_png: Path | None = None
    report_html: Path | None = None


def _world(options: DemoOptions) -> dict[str, Any]:
    return {"pairs": options.pairs, "test_pairs": options.test_pairs, "seed": options.seed,
            "preset": options.preset, "cities": options.cities, "layout": "cvusa"}


def _synthetic(options: DemoOptions, data: Path):
    from geobench.datasets.synthetic import SyntheticOptions, difficulty_of

    world = _world(options)
    synth = SyntheticOptions(out=data / "raw", pairs=world["pairs"],
                             test_pairs=world["test_pairs"], seed=world["seed"],
                             layout="cvusa", preset=world["preset"], cities=world["cities"])
    difficulty_of(synth)  # an unknown difficulty fails here, with the list
    return synth


def _train_config(options: DemoOptions, data: Path, run: Path):
    from geobench.train import resolve_config

    return resolve_config(options.model, data, run, preset="tiny", cli={
        "epochs": options.epochs, "batch_size": options.batch_size, "lr": options.lr,
        "seed": options.seed, "workers": options.workers, "eval_every": options.epochs})


def validate(options: DemoOptions) -> None:
    """Every option checked before the world is built (minutes of work otherwise lost)."""
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder for the demo's outputs")
    if options.pairs < options.batch_size:
        raise UsageError(f"--pairs {options.pairs} is fewer than one training batch "
                         f"({options.batch_size} pairs); use at least {options.batch_size}")
    _synthetic(options, out / "data")
    _train_config(options, out / "data", out / "run")


def prepare_world(options: DemoOptions, data: Path):
    """Generate and index the synthetic world, reusing an earlier demo's identical one."""
    from geobench.datasets.synthetic import prepare_synthetic
    from geobench.prepared import read_prepared

    stamp = data / "demo.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == _world(options):
        return read_prepared(data)
    if data.exists():
        shutil.rmtree(data)
    world = _world(options)
    prepared = prepare_synthetic(_synthetic(options, data), data)
    from geobench.fileio import write_json

    write_json(stamp, world)
    return prepared


def _keep_untrained(out: Path, prepared: Any, model: str, result: Any, sets: Any) -> Path:
    """OUT/untrained: the untrained model's evaluation as a run of its own (results.h5 +
    metrics.csv, with the image ids and the dataset, so the HTML report draws its examples
    too), so reports compare it with the trained run instead of forgetting it."""
    from geobench.eval.records import Provenance
    from geobench.eval.results import write_results

    folder = out / "untrained"
    name = prepared.name
    write_results(folder / "eval" / f"{name}-test", result, Provenance(
        run="untrained", dataset=name, split="test", model=model,
        dataset_sha256=prepared.dataset_hash(), preset="tiny", variant=f"{model} untrained",
        extra={"data": str(Path(prepared.root).resolve())}),
        query_uids=[str(u) for u in sets.queries["uid"]],
        reference_uids=[str(u) for u in sets.references["uid"]])
    return folder


MARKER = ".geobench-demo"


def _own_folder(out: Path) -> None:
    """The demo replaces OUT/data and OUT/run: only in a folder it made itself."""
    from geobench.guard import LOCK_NAME

    if (out / MARKER).is_file() or (out / "data" / "demo.json").is_file():
        return
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()):
        raise UsageError(f"--out {out}: already holds files that geobench demo did not write; "
                         f"the demo replaces its data/ and run/ folders, so choose a new or "
                         f"empty folder")


def run_demo(options: DemoOptions) -> DemoSummary:
    _own_folder(Path(options.out))  # before anything else: the demo replaces data/ and run/
    import torch

    import geobench.models.zoo  # noqa: F401  (registers the models)
    from geobench.fileio import write_text
    from geobench.models import MODELS, build_model
    from geobench.report.table import collect, plot_curves
    from geobench.train import train
    from geobench.train.runeval import evaluate_model, evaluate_run

    card = MODELS.card(options.model)  # an unknown name fails with the close matches
    if "tiny" not in card.presets:
        raise UsageError(f"model {options.model!r} has no tiny preset; choose one that has "
                         f"(see `geobench models`)")
    validate(options)
    out = Path(options.out)
    data, run = out / "data", out / "run"
    write_text(out / MARKER, "a geobench demo folder: data/ and run/ are replaced on re-run\n")
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    prepared = prepare_world(options, data)
    times["prepare"] = time.perf_counter() - t0

    t = time.perf_counter()
    torch.manual_seed(options.seed)
    untrained = build_model(options.model, preset="tiny").eval()
    details: dict[str, Any] = {}
    before = evaluate_model(untrained, prepared, "test", details=details)
    baseline_dir = _keep_untrained(out, prepared, options.model, details["result"],
                                   details["sets"])
    times["evaluate untrained"] = time.perf_counter() - t

    t = time.perf_counter()
    if run.exists():
        shutil.rmtree(run)  # the demo's own run folder: always a fresh training
    config = _train_config(options, data, run)
    trained = train(config)
    times["train"] = time.perf_counter() - t

    t = time.perf_counter()
    after = evaluate_run(run, data, "test")
    table = collect([baseline_dir, run])  # the untrained run is a row and a curve too
    curve = plot_curves(table, out / "recall_curve.png", chance=True)
    times["evaluate trained"] = time.perf_counter() - t

    t = time.perf_counter()
    from geobench.report.html import write_html
    from geobench.viz.examples import load_examples, render_examples

    examples, _ = render_examples(load_examples(after.results_path, queries=6, k=5),
                                  out / "examples.png")
    report = write_html(table, out / "report.html", title="geobench demo")
    times["figures"] = time.perf_counter() - t

    n_ref = after.result.n_reference
    chance = {"r@1": 100 / n_ref, "r@5": 500 / n_ref, "r@10": 1000 / n_ref,
              "r@1%": 100 * after.result.k_one_percent / n_ref}
    rows = [
        {"model": "chance (random ranking)", **chance},
        {"model": f"{options.model} tiny, untrained", **{k: before[k] for k in METRICS}},
        {"model": f"{options.model} tiny, {trained.steps} steps", **{k: after.result.metrics[k]
                                                                     for k in METRICS}},
    ]
    summary = DemoSummary(data, run, rows, curve, after.metrics_path,
                          time.perf_counter() - t0, times, examples, report)
    from geobench.fileio import write_json

    write_json(out / "demo_summary.json", {**asdict(summary), "options": asdict(options),
                                            "k_1pct": after.result.k_one_percent,
                                            "n_query": after.result.n_query,
                                            "n_reference": n_ref})
    return summary
