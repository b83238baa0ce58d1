"""What one evaluation produced and where its numbers come from (shared by the
evaluator and the results files, so neither imports the other)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geobench.eval.plan import BlockPlan
from geobench.eval.protocols import Protocol


@dataclass(frozen=True)
class Provenance:
    """Where an evaluation's numbers come from; stored with every result."""

    run: str = ""
    dataset: str = ""
    split: str = ""
    model: str = ""
    checkpoint_sha256: str = ""
    dataset_sha256: str = ""
    features_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # Which ablation row (geobench.models.variant); empty for features of external models.
    preset: str = ""
    variant: str = ""
    model_args: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)  # the run's starting weights record
    checkpoint: str = ""  # which checkpoint of a run was scored: best | last | a file's stem


@dataclass
class EvalResult:
    protocol: Protocol
    n_query: int
    n_reference: int
    ranks: np.ndarray
    k_one_percent: int
    curve_k: np.ndarray
    curve_recall: np.ndarray
    metrics: dict[str, float]
    per_query: dict[str, np.ndarray]
    topk_indices: np.ndarray
    topk_scores: np.ndarray
    plan: BlockPlan
    seconds: float
    notes: list[str] = field(default_factory=list)
    ties: str = "expected"  # the tie policy of `metrics` and the curve
    tied_nonpositives: np.ndarray | None = None  # t per query (None: not counted)
    tied_positives: np.ndarray | None = None  # p per query
    n_positives: np.ndarray | None = None  # positives per query (chance level of a curve)
    phases: dict[str, float] = field(default_factory=dict)  # search seconds per phase
