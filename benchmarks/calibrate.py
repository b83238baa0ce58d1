"""Measure the synthetic difficulty presets and the tiny model zoo; write Markdown tables.

    .venv/bin/python benchmarks/calibrate.py [--quick] [--out DIR] [--md FILE]
        [--pairs N] [--test-pairs M] [--epochs E] [--model-epochs E2] [--seed S]
        [--presets easy,standard,hard] [--models mcgra,asavg,safa,convnext_gap,lrfr,mixvpr]

Table 1 trains the demo's model and recipe (geobench.demo.DemoOptions) on a world of each
preset; table 2 trains the tiny preset of each model (its own card recipe, the same number
of epochs) on the `standard` world. Every world, run and evaluation is the library's ordinary
code path; worlds are reused between invocations when their parameters are unchanged.
Figures are what this machine measured: the command line, date and load go into the file.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

# Models that need a different view pairing than the ground -> aerial CVUSA layout, and why.
NOT_CROSS_VIEW = {
    "mixvpr": "one shared network over one view kind (street -> street, equal sizes); the CVUSA "
              "layout pairs a ground panorama with an aerial image, which its card does not embed "
              "(use the synthetic `--layout vg` world)",
}
# Models whose query is a limited-FOV perspective image of the panorama they match: they
# train on perspective crops of the standard world's panoramas (geobench crop), and say so.
PERSPECTIVE = {"asavg": {"fov": 60.0, "size": (64, 64)}}
# Cross-view settings for models whose card defaults to another pairing.
CROSS_VIEW_ARGS: dict[str, dict[str, Any]] = {
    "lrfr": {"query_view": "ground", "share_weights": False,
             "input_size": {"ground": [64, 256], "aerial": [128, 128]}},
}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of the whole script")
    p.add_argument("--out", type=Path, default=Path("calibration-runs"), help="worlds and runs")
    p.add_argument("--md", type=Path, default=None, help="Markdown output [OUT/calibration.md]")
    p.add_argument("--pairs", type=int, default=600, help="training pairs per world")
    p.add_argument("--test-pairs", type=int, default=200, help="test pairs (gallery size)")
    p.add_argument("--epochs", type=int, default=16, help="epochs of every preset run")
    p.add_argument("--model-epochs", type=int, default=None, help="epochs of table 2 [the demo's]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--presets", default="easy,standard,hard")
    p.add_argument("--models", default="mcgra,asavg,safa,convnext_gap,lrfr,mixvpr")
    args = p.parse_args(argv)
    if args.quick:
        args.pairs, args.test_pairs, args.epochs, args.model_epochs = 64, 32, 1, 1
    return args


def world(out: Path, preset: str, args: argparse.Namespace):
    from geobench.demo import DemoOptions, prepare_world

    opts = DemoOptions(out=out, preset=preset, pairs=args.pairs, test_pairs=args.test_pairs,
                       seed=args.seed)
    t = time.perf_counter()
    prepared = prepare_world(opts, out / f"world-{preset}")
    return prepared, out / f"world-{preset}", time.perf_counter() - t


def perspective_world(out: Path, data: Path, spec: dict[str, Any]) -> Path:
    """Perspective crops (one per panorama, seeded random yaw) as a prepared dataset."""
    from geobench.geometry.crops import CropParams
    from geobench.geometry.cropset import crop_dataset

    dest = out / f"world-standard-perspective{int(spec['fov'])}"
    if not (dest / "manifest.json").is_file():
        crop_dataset(data, dest, CropParams(fov=spec["fov"], mode="perspective", size=spec["size"]))
    return dest


def train_eval(model: str, data: Path, run: Path, cli: dict[str, Any],
               model_args: dict[str, Any] | None = None) -> dict[str, Any]:
    from geobench.train import resolve_config, train
    from geobench.train.runeval import evaluate_run

    if run.exists():
        shutil.rmtree(run)   # this script's own run folder: always a fresh training
    cfg = resolve_config(model, data, run, preset="tiny",
                         cli={**cli, **({"model_args": model_args} if model_args else {})})
    t = time.perf_counter()
    summary = train(cfg)
    seconds = time.perf_counter() - t
    ev = evaluate_run(run, data, "test")
    m, n_ref = ev.result.metrics, ev.result.n_reference
    return {"r@1": m["r@1"], "r@5": m["r@5"], "r@10": m["r@10"], "r@1%": m["r@1%"],
            "k": ev.result.k_one_percent, "n_query": ev.result.n_query, "n_ref": n_ref,
            "chance": 100.0 / n_ref, "steps": summary.steps, "seconds": seconds,
            "batch": cfg.batch_size, "lr": cfg.lr, "epochs": cfg.epochs}


def main(argv: list[str]) -> int:
    import torch

    from geobench.demo import DemoOptions
    from geobench.fileio import write_text
    from geobench.progress import set_quiet

    args = parse(argv)
    set_quiet(True)
    demo = DemoOptions(out=args.out)
    epochs, model_epochs = args.epochs, args.model_epochs or demo.epochs
    args.out.mkdir(parents=True, exist_ok=True)
    md_path = args.md or args.out / "calibration.md"
    load0 = os.getloadavg()
    started = dt.datetime.now(dt.timezone.utc)
    lines = [f"Measured {started:%Y-%m-%d %H:%M} UTC with `python benchmarks/calibrate.py "
             f"{' '.join(argv)}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
             f"({torch.get_num_threads()} threads), load average at start "
             f"{load0[0]:.1f} (1 min) / {load0[1]:.1f} (5 min); seconds are wall time on it.",
             f"Worlds: CVUSA layout, {args.pairs} train / {args.test_pairs} test pairs, "
             f"{demo.cities} cities, seed {args.seed}.", ""]

    def emit(text: str) -> None:
        lines.append(text)
        print(text, flush=True)
        write_text(md_path, "\n".join(lines) + "\n")   # a cut-short run keeps its rows

    cli = {"epochs": epochs, "batch_size": demo.batch_size, "lr": demo.lr, "seed": args.seed,
           "workers": demo.workers, "eval_every": 0}
    emit(f"### Presets: `{demo.model}` tiny (the demo's model), batch {demo.batch_size}, "
         f"lr {demo.lr:g}, {epochs} epochs")
    emit("")
    emit("| preset | R@1 | R@5 | R@10 | R@1% (K) | chance R@1 | steps | train s | world s |")
    emit("|---|---|---|---|---|---|---|---|---|")
    worlds: dict[str, Path] = {}
    for preset in [p for p in args.presets.split(",") if p]:
        _, data, wsec = world(args.out, preset, args)
        worlds[preset] = data
        r = train_eval(demo.model, data, args.out / f"run-{preset}-{demo.model}", cli)
        emit(f"| {preset} | {r['r@1']:.1f} | {r['r@5']:.1f} | {r['r@10']:.1f} | "
             f"{r['r@1%']:.1f} (K={r['k']}) | {r['chance']:.2f} | {r['steps']} | "
             f"{r['seconds']:.0f} | {wsec:.0f} |")
    emit("")
    emit(f"### Tiny models on `standard`: each model's tiny recipe, {model_epochs} epochs")
    emit("")
    emit("| model | R@1 | R@5 | R@1% (K) | chance R@1 | batch / lr | steps | train s |")
    emit("|---|---|---|---|---|---|---|---|")
    if "standard" not in worlds:
        worlds["standard"] = world(args.out, "standard", args)[1]
    for model in [m for m in args.models.split(",") if m]:
        if model in NOT_CROSS_VIEW:
            emit(f"| {model} | n/a | n/a | n/a | | | | {NOT_CROSS_VIEW[model]} |")
            continue
        data, label = worlds["standard"], model
        if model in PERSPECTIVE:
            spec = PERSPECTIVE[model]
            data = perspective_world(args.out, data, spec)
            label = f"{model} (perspective {spec['fov']:g}° crops vs panoramas)"
        r = train_eval(model, data, args.out / f"run-standard-{model}",
                       {"epochs": model_epochs, "seed": args.seed, "workers": demo.workers,
                        "eval_every": 0}, CROSS_VIEW_ARGS.get(model))
        emit(f"| {label} | {r['r@1']:.1f} | {r['r@5']:.1f} | {r['r@1%']:.1f} (K={r['k']}) | "
             f"{r['chance']:.2f} | {r['batch']} / {r['lr']:g} | {r['steps']} | "
             f"{r['seconds']:.0f} |")
    load1 = os.getloadavg()
    minutes = (dt.datetime.now(dt.timezone.utc) - started).total_seconds() / 60
    emit("")
    emit(f"Total {minutes:.0f} min; load average at end {load1[0]:.1f} (1 min) / "
         f"{load1[1]:.1f} (5 min).")
    write_text(md_path, "\n".join(lines) + "\n")
    print(f"written: {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
