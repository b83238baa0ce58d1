"""Training engine: `train(config) -> TrainSummary` and `evaluate_run(run, data, split)`.

Modules: config (resolved options), data (pairs, decoding, consistent augmentation),
sampling (unique-location and GPS-aware batches), engine (the loop), checkpoint,
distributed (torchrun / DDP), embed (descriptors of a split for the evaluation engine),
evalplan (what a split's evaluation embeds), runeval (evaluating a run or a model),
embedfile (a split embedded straight into a features file).
Torch is imported lazily so `import geobench.train` stays cheap for the CLI.
"""
from __future__ import annotations

from typing import Any

__all__ = ["TrainConfig", "TrainSummary", "resolve_config", "train", "evaluate_run"]


def __getattr__(name: str) -> Any:
    if name in ("TrainConfig", "resolve_config"):
        from geobench.train import config

        return getattr(config, name)
    if name in ("train", "TrainSummary"):
        from geobench.train import engine

        return getattr(engine, name)
    if name in ("evaluate_run", "RunEvaluation", "evaluate_model"):
        from geobench.train import runeval

        return getattr(runeval, name)
    raise AttributeError(name)
