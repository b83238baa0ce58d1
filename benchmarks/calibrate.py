"""Measure the synthetic difficulty presets and the tiny model zoo; write Markdown tables.

    .venv/bin/python benchmarks/calibrate.py [--quick] [--out DIR] [--md FILE]
        [--pairs N] [--test-pairs M] [--epochs E] [--model-epochs E2] [--seed S]
        [--presets easy,standard,hard] [--model-presets easy,standard]
        [--models mcgra,asavg,safa,convnext_gap,lrfr,mixvpr]

Table 1 trains the demo's model and recipe (geobench.demo.DemoOptions) on a world of each
preset; table 2 trains the tiny preset of each model (its own card recipe, the demo's number
of epochs) on a world of each of --model-presets, with R@1 as a multiple of chance, the
load average around the run and the loss of every epoch. Every world, run and evaluation is
the library's ordinary code path; worlds are reused between invocations when their
parameters are unchanged. Figures are what this machine measured: the command line, date
and load go into the file. R@K does not depend on the load; seconds do.
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

# Street -> street models (one shared network over one view kind) train on a synthetic
# world of the `vg` layout (the same preset, test queries = --test-pairs) instead.
STREET = ("mixvpr", "megaloc", "dino_salad")
# Models whose query is a limited-FOV perspective image of the panorama they match: they
# train on perspective crops of the standard world's panoramas (geobench crop), and say so.
PERSPECTIVE = {"asavg": {"fov": 60.0, "size": (32, 32)}}  # the tiny card's query size
# Cross-view settings for models whose card defaults to another pairing.
CROSS_VIEW_ARGS: dict[str, dict[str, Any]] = {
    "lrfr": {"query_view": "ground", "share_weights": False,  # Sample4Geo's CVUSA geometry
             "input_size": {"ground": [56, 308], "aerial": [154, 154]}},
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
    p.add_argument("--model-presets", default="easy,standard", help="worlds of table 2")
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


def vg_world(out: Path, preset: str, args: argparse.Namespace) -> Path:
    """A street -> street world (`vg` layout) of the preset, prepared once and reused."""
    import json

    from geobench.datasets.synthetic import SyntheticOptions, prepare_synthetic
    from geobench.fileio import write_json

    dest = out / f"world-{preset}-vg"
    stamp = {"pairs": args.pairs, "test_pairs": args.test_pairs, "seed": args.seed,
             "preset": preset, "layout": "vg"}
    if (dest / "calibrate.json").is_file() and json.loads((dest / "calibrate.json").read_text()) == stamp:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    prepare_synthetic(SyntheticOptions(out=dest / "raw", pairs=args.pairs,
                                       test_pairs=args.test_pairs, seed=args.seed, layout="vg",
                                       preset=preset), dest)
    write_json(dest / "calibrate.json", stamp)
    return dest


def perspective_world(out: Path, data: Path, spec: dict[str, Any], preset: str) -> Path:
    """Perspective crops (one per panorama, seeded random yaw) as a prepared dataset."""
    from geobench.geometry.crops import CropParams
    from geobench.geometry.cropset import crop_dataset

    dest = out / f"world-{preset}-perspective{int(spec['fov'])}"
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
    load = os.getloadavg()[0]
    t = time.perf_counter()
    summary = train(cfg)
    seconds = time.perf_counter() - t
    ev = evaluate_run(run, data, "test", checkpoint="last")
    m, n_ref = ev.result.metrics, ev.result.n_reference
    n_pos = ev.result.n_positives
    # chance R@1: a random ranking puts one of a query's positives first with n_pos / n_ref
    chance = 100.0 * (float((n_pos / n_ref).mean()) if n_pos is not None else 1.0 / n_ref)
    return {"r@1": m["r@1"], "r@5": m["r@5"], "r@10": m["r@10"], "r@1%": m["r@1%"],
            "k": ev.result.k_one_percent, "n_query": ev.result.n_query, "n_ref": n_ref,
            "chance": chance, "steps": summary.steps, "seconds": seconds,
            "batch": cfg.batch_size, "lr": cfg.lr, "epochs": cfg.epochs,
            "optimizer": cfg.optimizer, "loss": cfg.loss,
            "losses": [float(r["loss"]) for r in summary.log],
            "load": (load, os.getloadavg()[0])}


def main(argv: list[str]) -> int:
    import torch

    from geobench.demo import DemoOptions
    from geobench.errors import GeobenchError
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
    model_presets = [p for p in args.model_presets.split(",") if p]
    emit(f"### Tiny models: each model's tiny recipe, {model_epochs} epochs, on "
         f"{', '.join(f'`{p}`' for p in model_presets)}")
    emit("")
    emit("| model | world | R@1 | × chance | R@5 | R@1% (K) | chance R@1 | recipe | steps | "
         "loss by epoch | load 1-min (start–end) | train s |")
    emit("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for preset in model_presets:
        if preset not in worlds:
            worlds[preset] = world(args.out, preset, args)[1]
        for model in [m for m in args.models.split(",") if m]:
            data, label = worlds[preset], model
            if model in STREET:
                data, label = vg_world(args.out, preset, args), f"{model} (street, `vg` layout)"
            elif model in PERSPECTIVE:
                spec = PERSPECTIVE[model]
                data = perspective_world(args.out, data, spec, preset)
                label = f"{model} (perspective {spec['fov']:g}° crops vs panoramas)"
            try:
                r = train_eval(model, data, args.out / f"run-{preset}-{model}",
                               {"epochs": model_epochs, "seed": args.seed, "workers": demo.workers,
                                "eval_every": 0}, CROSS_VIEW_ARGS.get(model))
            except GeobenchError as exc:  # one model's failure is a row, not the end of the table
                emit(f"| {label} | {preset} | failed: {exc} |")
                continue
            curve = " ".join(f"{v:.3f}" for v in r["losses"])
            emit(f"| {label} | {preset} | {r['r@1']:.1f} | {r['r@1'] / r['chance']:.0f}× | "
                 f"{r['r@5']:.1f} | {r['r@1%']:.1f} (K={r['k']}) | {r['chance']:.2f} | "
                 f"{r['optimizer']} {r['lr']:g}, batch {r['batch']}, {r['loss']} | {r['steps']} | "
                 f"{curve} | {r['load'][0]:.1f}–{r['load'][1]:.1f} | {r['seconds']:.0f} |")
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
