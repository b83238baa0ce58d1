"""What the `train` command does between parsing and printing (kept out of cli.py)."""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from geobench.train.config import read_config, resolve_config


def run_train(model: str, data: Path, out: Path, *, config: Path | None, resume: bool,
              preset: str | None, cli: Mapping[str, Any], sets: list[str] | None = None,
              warn: Callable[[str], None] | None = None) -> Any:
    """Resolve the config (a resumed run starts from its own config.json) and train.

    `sets` are `--set KEY=VALUE` options (same layer as the other command-line options);
    `warn` receives one line per recipe key the run does not use. Returns the TrainSummary
    on rank 0 and None on the other ranks of a torchrun job.
    """
    from geobench.train.engine import train

    given = {k: v for k, v in cli.items() if v is not None}
    given = _with_sets(given, sets, resume)
    if resume and (Path(out) / "config.json").is_file():
        base = read_config(out)
        if base.get("model") != model:
            from geobench.errors import UsageError

            raise UsageError(f"{Path(out) / 'config.json'}: run of model {base.get('model')!r}, "
                             f"not {model!r}; resume with the same model or choose a new --out")
        cfg = resolve_config(model, data, out, preset=preset or base.get("preset"), base=base,
                             cli={**given, "resume": True})
    else:
        cfg = resolve_config(model, data, out, preset=preset, config_file=config,
                             cli={**given, "resume": resume})
    if warn is not None and int(os.environ.get("RANK", "0")) == 0:
        for line in ignored_warnings(cfg):
            warn(line)
    summary = train(cfg)
    return summary if int(os.environ.get("RANK", "0")) == 0 else None


def _with_sets(given: dict[str, Any], sets: list[str] | None, resume: bool) -> dict[str, Any]:
    """Merge `--set` options into the command-line layer; an option given both ways is refused."""
    from geobench.errors import UsageError
    from geobench.train.config import deep_merge, parse_sets

    extra = parse_sets(sets)
    both = sorted(set(extra) & set(given))
    if both:
        raise UsageError(f"{', '.join(both)} given both as an option and with --set; keep one")
    if resume and "model_args" in extra:
        raise UsageError("--resume continues the run's own model: drop --set model_args... or train "
                         "the variant into a new --out")
    return deep_merge(given, extra)


def ignored_warnings(cfg: Any) -> list[str]:
    """One console line per recipe / config key that this run does not use."""
    # A resumed run's config.json also holds run facts (dataset hash, init_weights, ...):
    # they are not options the user set, so they are not warned about.
    ignored = [k for k in str(cfg.sources.get("ignored", "")).split(",")
               if k and not k.startswith("resume:")]
    return [f"{key.split(':', 1)[-1]!r} from the {key.split(':', 1)[0]} is not a geobench training "
            f"option and is not used (recorded under sources.ignored in config.json)" for key in ignored]


def summary_rows(summary: Any) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [
        ("steps", summary.steps), ("epochs", f"{summary.epochs:.2f}"),
        ("final loss", f"{summary.final_loss:.4f}"),
        ("images/s", f"{summary.images_per_s:.1f}"),
        ("data wait", f"{100 * summary.data_wait_fraction:.1f}% of step time"),
        ("seconds", f"{summary.seconds:.1f}"), ("checkpoint", summary.checkpoint)]
    if summary.resumed_from_step:
        rows.insert(0, ("resumed from step", summary.resumed_from_step))
    if summary.best:
        on = summary.best.get("split", "")
        source = summary.best.get("split_source", "")
        where = f", on {on}" + (f" {source}" if source.startswith("carved") else "") if on else ""
        rows.append((f"best {summary.best['metric']}",
                     f"{summary.best['value']:.2f} (epoch {summary.best['epoch']}{where})"))
        rows.append(("best checkpoint", summary.best_checkpoint))
    for key in ("r@1", "r@5", "r@10", "r@1%"):
        if key in summary.last_metrics:
            rows.append((f"last {key}", f"{summary.last_metrics[key]:.2f}"))
    return rows
