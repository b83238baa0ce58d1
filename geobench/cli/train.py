"""`geobench models | train`: the model registry's cards and training a registered model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from geobench.cli.common import WEIGHTS_HELP, WORKERS_HELP, Quiet, command, print_table, warn
from geobench.errors import one_line
from geobench.guard import claim_output


def _millions(value: float | None, digits: int) -> str:
    # A card registered outside the zoo (a plugin, a test) may not have counted them.
    return "?" if value is None else f"{value:.{digits}f}"


@command("models", examples=[
    "geobench models",
    "geobench models safa",
])
def models_cmd(
    name: Annotated[Optional[str], typer.Argument(help="Show one model's card.")] = None,
    quiet: Quiet = False,
) -> None:
    """List the registered models with their cards."""
    from geobench.models import describe, list_models

    def sizes(info: dict) -> str:
        return ", ".join(f"{v} {h}x{w}" for v, (h, w) in info["input_size"].items())

    if name is None:
        rows = []
        for key in list_models():
            info = describe(key)
            rows.append([key, f"{info['query_view']} -> {info['reference_view']}", sizes(info),
                         "yes" if info["polar"] else "no", info["descriptor_dim"],
                         _millions(info["params_m"], 2), info["recipe"].get("loss")])
        print_table("models (`geobench models NAME` shows a card)",
                    ["name", "query -> reference", "input size", "polar", "dim", "params (M)", "loss"],
                    rows)
        return
    info = describe(name)
    rows = [["paper", info["paper"]], ["description", info["description"]],
            ["query -> reference", f"{info['query_view']} -> {info['reference_view']}"],
            ["input size", sizes(info)], ["polar aerial", "yes" if info["polar"] else "no"],
            ["mean / std", f"{info['mean']} / {info['std']}"],
            ["descriptor size", info["descriptor_dim"]], ["parameters (M)", _millions(info["params_m"], 3)]]
    rows += [[f"recipe.{k}", v] for k, v in info["recipe"].items()]
    rows += _weights_rows(name)
    for preset, spec in info["presets"].items():
        rows.append([f"preset {preset}", ", ".join(f"{k}={v}" for k, v in spec.items() if k != "recipe")])
    rows += [[f"argument {k}", repr(v)] for k, v in info["arguments"].items()]
    rows.append(["notes", info["notes"]])
    print_table(f"model {name}", ["field", "value"], rows)


PRETRAINED_HELP = ("Starting weights from the catalog: imagenet, none or an entry name "
                   "(`geobench models NAME` lists them) [paper recipe: imagenet; presets: none].")


def _weights_rows(name: str) -> list[list[Any]]:
    """Which catalog file the paper recipe starts from, and the others that fit the backbone."""
    from geobench.models.initial import recipe_weights
    from geobench.models.pretrained import backbone_family, load_weights_catalog, paper_entry

    backbone, entry = recipe_weights(name)
    catalog = load_weights_catalog()
    released = [e.name for e in catalog.values() if e.loads == "model" and name in e.models]
    tail = ([["weights (released)", ", ".join(released) + " (--pretrained NAME; unpinned: "
              "--allow-unpinned)"]] if released else [])
    if not backbone:
        return [["weights (paper recipe)", "no backbone argument: see the model's notes"], *tail]
    paper = paper_entry(name, backbone, catalog)
    rows = []
    if paper is not None and not paper.pinned:  # the paper's file cannot be verified
        rows.append(["weights (paper's start)",
                     f"{paper.name}: {paper.url} ({paper.license}); its publisher gives no sha256, "
                     f"so it is not the default: --pretrained {paper.name} --allow-unpinned"])
        label, default_note = "weights (default)", "; NOT the paper's start, see above"
    else:
        label, default_note = "weights (paper recipe)", ""
    start = (f"{entry.name}: {entry.url} ({entry.license}; --pretrained imagenet, the default"
             f"{default_note})"
             if entry else f"none: no catalog entry for backbone {backbone}, so the paper recipe "
                           f"starts from random weights (pass --weights FILE)")
    shown = {e.name for e in (entry, paper) if e is not None}
    others = [e.name for e in catalog.values()
              if e.loads == "backbone" and e.backbone == backbone_family(backbone)
              and e.name not in shown]
    rows.append([label, start])
    if others:
        rows.append(["weights (also fit)", ", ".join(others) + " (--pretrained NAME)"])
    return rows + tail


@command("train", examples=[
    "geobench train safa --preset tiny --data ds/synth --out runs/safa-tiny",
    "geobench train safa --data ds/synth --out runs/safa-tiny --resume",
])
def train_cmd(
    model: Annotated[str, typer.Argument(help="Registered model name (see `geobench models`).")],
    data: Annotated[Path, typer.Option(help="Prepared dataset directory.")],
    out: Annotated[Path, typer.Option(help="Run directory.")],
    config: Annotated[Optional[Path], typer.Option(help="YAML config overriding the card.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs [card recipe].")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Pairs per batch [card recipe].")
                          ] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate [card recipe].")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many steps.")
                         ] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu | cuda.")] = None,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="Mixed precision "
                                                "(CUDA only).")] = None,
    workers: Annotated[Optional[int], typer.Option(help=f"Data-loading {WORKERS_HELP}) "
                                                   "[card recipe, else 2].")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of weights, sampling and "
                                                "augmentation.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from RUN/checkpoint.pt.")] = False,
    weights: Annotated[Optional[Path], typer.Option(help=WEIGHTS_HELP)] = None,
    pretrained: Annotated[Optional[str], typer.Option(help=PRETRAINED_HELP)] = None,
    allow_unpinned: Annotated[bool, typer.Option(
        help="Let --pretrained fetch a catalog entry whose publisher gives no sha256; the hash "
             "computed is printed and recorded in RUN/config.json.")] = False,
    preset: Annotated[Optional[str], typer.Option(help="Model preset, e.g. tiny.")] = None,
    eval_every: Annotated[Optional[int], typer.Option(help="Evaluate every N epochs.")] = None,
    eval_test: Annotated[Optional[bool], typer.Option(
        "--eval-test/--no-eval-test", help="Also report test metrics at each evaluation "
        "(logged as test_*; they never select best.pt).")] = None,
    val_fraction: Annotated[Optional[float], typer.Option(
        help="Share of the train places carved as the validation split that selects best.pt "
             "when the dataset has no val split [default 0.1; 0: none].")] = None,
    val_seed: Annotated[Optional[int], typer.Option(help="Seed of that carve [default 0].")
                        ] = None,
    tensorboard: Annotated[bool, typer.Option(
        help="Also log to RUN/tensorboard/ (needs pip install 'geobench-cvgl[tb]').")] = False,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="KEY=VALUE", help="KEY=VALUE config override, repeatable; KEY is a dotted path, VALUE YAML, "
        "e.g. --set model_args.attention=cbam --set loss_args.gamma=5.")] = None,
    on_bad_image: Annotated[Optional[str], typer.Option(
        help="An unreadable (missing, truncated, corrupt) image: fail (one error naming the "
             "file) | skip (replace its pair; the count is printed, the list written to "
             "RUN/bad_images.txt) [fail].")] = None,
    quiet: Quiet = False,
) -> None:
    """Train a registered model on a prepared dataset."""
    from geobench.train.cli_glue import run_train, summary_rows

    with claim_output(out, "train", inputs={"--data": data}):
        summary = run_train(
            model, data, out, config=config, resume=resume, preset=preset, cli=dict(
                epochs=epochs, batch_size=batch_size, lr=lr, max_steps=max_steps, device=device,
                amp=amp, workers=workers, seed=seed, weights=str(weights) if weights else None,
                pretrained=pretrained, allow_unpinned=allow_unpinned or None,
                eval_every=eval_every, tensorboard=tensorboard or None,
                eval_test=eval_test, val_fraction=val_fraction, val_seed=val_seed,
                on_bad_image=on_bad_image),
            sets=set_, warn=lambda line: typer.echo(f"warning: {one_line(line)}", err=True))
    if summary is None:  # a non-zero rank of a torchrun job: rank 0 reports
        return
    rows = [[k, v] for k, v in summary_rows(summary)]
    print_table(f"trained {model} -> {out}", ["", "value"], rows)
    if summary.skipped_images:
        warn(f"skipped {len(summary.skipped_images)} unreadable image(s) (--on-bad-image "
             f"skip); they are listed in {Path(out) / 'bad_images.txt'}")
