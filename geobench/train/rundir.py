"""Run folders: which folder is a run, which checkpoint an evaluation scores, and where
its results go (RUN/eval/<dataset>-<split>[-<checkpoint>]), all checked before any work."""
from __future__ import annotations

import os
from pathlib import Path

from geobench.errors import DataError, UsageError


def checkpoint_label(run: str | Path, checkpoint: str | None) -> str:
    """best | last | the file's stem: which checkpoint an evaluation scores (no file I/O
    beyond seeing whether RUN/best.pt exists)."""
    from geobench.train.checkpoint import BEST, LAST

    run = Path(run)
    if checkpoint is None:
        return "best" if (run / BEST).is_file() and _selection_default(run) == "best" else "last"
    if checkpoint in ("best", "last"):
        return checkpoint
    path = Path(os.path.realpath(checkpoint))
    for label, name in (("best", BEST), ("last", LAST)):
        if path == Path(os.path.realpath(run / name)):
            return label
    return Path(checkpoint).stem


def resolve_checkpoint(run: Path, checkpoint: str | None) -> Path:
    """best (RUN/best.pt), last (RUN/checkpoint.pt) or a path; None: best when it exists and
    its validation split was large enough to choose on (config.json validation.eval_default)."""
    from geobench.train.checkpoint import BEST, LAST

    if checkpoint is None:
        checkpoint = checkpoint_label(run, None)
    path = {"last": run / LAST, "best": run / BEST}.get(checkpoint, Path(checkpoint))
    if not path.is_file():
        hint = ("the run has no best.pt (it never evaluated a validation split); use "
                "--checkpoint last" if checkpoint == "best" else
                f"pass --checkpoint best|last or a checkpoint file of {run}")
        raise DataError(f"{path}: checkpoint not found; {hint}")
    return path


def _selection_default(run: Path) -> str:
    """config.json's eval_default; runs written before it was recorded keep best."""
    import json

    from geobench.train.config import CONFIG_FILE

    try:
        saved = json.loads((run / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "best"
    validation = saved.get("validation") if isinstance(saved, dict) else None
    return str((validation or {}).get("eval_default", "best"))


def check_run_dir(run: str | Path, checkpoint: str | None = None) -> Path:
    """A folder `geobench train` wrote (or any folder, when --checkpoint names a file)."""
    from geobench.prepared import MANIFEST_FILE
    from geobench.train.checkpoint import BEST, LAST
    from geobench.train.config import CONFIG_FILE

    run = Path(run)
    if not run.is_dir():
        raise DataError(f"{run}: not a run directory; train one with `geobench train MODEL "
                        f"--data DS --out {run}`")
    if (run / MANIFEST_FILE).is_file():
        raise DataError(f"{run}: is a prepared dataset, not a run directory; evaluate a trained "
                        f"run on it with `geobench eval RUN --data {run}`")
    if checkpoint in (None, "best", "last") and not any(
            (run / name).is_file() for name in (LAST, BEST, CONFIG_FILE)):
        raise DataError(f"{run}: not a run directory (no {LAST}, {BEST} or {CONFIG_FILE}); "
                        f"pass the folder `geobench train MODEL --data DS --out RUN` wrote")
    return run


def check_eval_out(run: str | Path, out: str | Path) -> None:
    """--out may lie inside RUN (RUN/eval/... is the default) but may not be RUN itself or a
    folder holding it: results there mix with the run's own files and reports list them
    twice."""
    real_run, real_out = Path(os.path.realpath(run)), Path(os.path.realpath(out))
    if real_out == real_run or real_out in real_run.parents:
        how = "is the run folder" if real_out == real_run else "contains the run folder"
        raise UsageError(f"--out {out} {how} {run}; evaluations go into their own folder: "
                         f"leave --out out (default {Path(run) / 'eval'}/<dataset>-<split>) or "
                         f"choose a folder outside {run}")


def default_eval_dir(run: str | Path, data: str | Path, split: str,
                     checkpoint: str | None = None) -> Path:
    """RUN/eval/<dataset>-<split>, the dataset's name taken from DS/manifest.json; for a
    checkpoint other than the run's default (best.pt when it has one), a `-<label>` suffix
    (e.g. -last), so scoring another checkpoint never overwrites the default evaluation."""
    import json

    from geobench.prepared import MANIFEST_FILE

    name = ""
    try:
        name = str(json.loads((Path(data) / MANIFEST_FILE).read_text()).get("dataset", ""))
    except (OSError, ValueError, AttributeError):
        pass  # evaluate_run reports a bad dataset with its own message
    label = checkpoint_label(run, checkpoint)
    suffix = "" if label == checkpoint_label(run, None) else f"-{label}"
    return Path(run) / "eval" / f"{name or Path(data).resolve().name}-{split}{suffix}"
