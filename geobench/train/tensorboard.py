"""Optional TensorBoard logging of a training run (`train --tensorboard`).

log.csv stays the source of truth; this mirrors it for people who watch runs live:
per-step loss and learning rate, per-epoch loss, throughput, data wait and every recall
of the periodic evaluation, plus a retrieval-examples figure per evaluation.
Events go to RUN/tensorboard/ (`tensorboard --logdir RUN/tensorboard`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from geobench.errors import UsageError

DIR = "tensorboard"
_EPOCH_KEYS = ("loss", "lr", "images_per_s", "data_wait_frac", "seconds")


class TensorBoardLog:
    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError("--tensorboard needs the tensorboard package: pip install "
                             "'geobench-cvgl[tb]' (or tensorboard), or drop --tensorboard") from None
        self.dir = Path(run_dir) / DIR
        self.writer = SummaryWriter(str(self.dir))

    def step(self, step: int, loss: float, lr: float) -> None:
        self.writer.add_scalar("train/loss_step", loss, step)
        self.writer.add_scalar("train/lr", lr, step)

    def epoch(self, row: dict[str, Any]) -> None:
        step = int(row["step"])
        for key in _EPOCH_KEYS:
            if isinstance(row.get(key), (int, float)):
                self.writer.add_scalar(f"epoch/{key}", row[key], step)
        for key, value in row.items():
            if key.startswith(("r@", "hit_rate", "ap", "error_")) and isinstance(value, (int, float)):
                self.writer.add_scalar(f"eval/{key}", value, step)
        self.writer.flush()

    def examples(self, step: int, details: dict[str, Any], prepared: Any, split: str) -> None:
        """A retrieval-examples figure of the evaluation just run (worst queries first)."""
        from geobench.viz.examples import examples_figure, examples_from

        result, sets = details["result"], details["sets"]
        ex = examples_from(result.ranks, result.topk_indices, result.topk_scores,
                           list(sets.queries["uid"]), list(sets.references["uid"]), prepared,
                           split, queries=4, k=min(5, result.topk_indices.shape[1]),
                           title=f"step {step}")
        if ex.rows:
            fig, _ = examples_figure(ex, tile_px=96)
            self.writer.add_figure("eval/retrieval_examples", fig, step, close=False)

    def close(self) -> None:
        self.writer.close()
