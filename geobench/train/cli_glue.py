"""What the `train` command does between parsing and printing (kept out of cli.py)."""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from geobench.errors import Interrupted
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
    main = int(os.environ.get("RANK", "0")) == 0
    if warn is not None and main:
        for line in ignored_warnings(cfg):
            warn(line)
    watch = _PaperSizeOnCpu(cfg) if main and paper_size_on_cpu(cfg) else None
    try:
        summary = train(cfg, on_step=watch)
    except KeyboardInterrupt:
        raise Interrupted(interrupt_story(cfg)) from None
    return summary if main else None


def _command(cfg: Any, resume: bool) -> str:
    return (f"geobench train {cfg.model} --data {cfg.data} --out {cfg.out}"
            + (" --resume" if resume else ""))


def interrupt_story(cfg: Any) -> str:
    """What Ctrl-C in `train` kept, and the exact command that continues."""
    from geobench.train.checkpoint import LAST

    last = Path(cfg.out) / LAST
    if last.is_file():
        return (f"interrupted; the last saved checkpoint {last} is kept (saved at the end of "
                f"each epoch); continue from it with: {_command(cfg, True)}")
    return (f"interrupted before the first checkpoint was saved, so there is nothing to "
            f"resume; start again with: {_command(cfg, False)}")


def paper_size_on_cpu(cfg: Any) -> bool:
    """No --preset (the paper-sized model and recipe) and training will run on the CPU."""
    if cfg.preset is not None or cfg.resume:
        return False
    if cfg.device == "cpu":
        return True
    import torch

    return cfg.device == "auto" and not torch.cuda.is_available()


class _PaperSizeOnCpu:
    """Say what a paper-sized CPU run means: what will run now, an ETA after a few steps."""

    ETA_AFTER_STEPS = 3

    def __init__(self, cfg: Any) -> None:
        self.cfg, self.t0, self.told = cfg, None, False

    def _announce(self) -> None:
        # At the first step, not before: a run that fails on its data prints only the error.
        cfg = self.cfg
        _stderr(f"note: training {cfg.model} at paper size (no --preset) on the CPU: "
                f"{cfg.epochs} epochs of batch {cfg.batch_size}"
                + (f", at most {cfg.max_steps} steps" if cfg.max_steps else "")
                + "; this can take hours. For a quick run use the small model: "
                f"geobench train {cfg.model} --preset tiny --data {cfg.data} --out NEW_RUN "
                f"(presets: `geobench models {cfg.model}`)")

    def __call__(self, info: Any) -> None:
        import time

        if self.t0 is None:  # the first step includes start-up costs: time from its end
            self._announce()
            self.t0 = (time.perf_counter(), info.step)
            return
        from geobench.progress import is_quiet

        done = info.step - self.t0[1]
        if self.told or done < self.ETA_AFTER_STEPS or is_quiet():  # the ETA is progress
            return
        self.told = True
        per_step = (time.perf_counter() - self.t0[0]) / done
        left = max(0, info.total - info.step) * per_step
        _stderr(f"note: {per_step:.1f} s per step; about {_duration(left)} left for the "
                f"remaining {max(0, info.total - info.step):,} of {info.total:,} steps "
                f"(Ctrl-C stops; --preset tiny is far faster)")


def _duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    if minutes < 1:
        return f"{seconds:.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _stderr(text: str) -> None:
    import sys

    print(text, file=sys.stderr, flush=True)


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
