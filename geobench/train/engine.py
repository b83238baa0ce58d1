"""The training loop: `train(config) -> TrainSummary`.

One loop serves a single process and every rank of a torchrun job. The run directory
gets config.json (resolved options), log.csv (one row per epoch) and the last and best
checkpoints; all are written atomically by rank 0, so a killed run leaves only complete
files and `resume=True` continues bit-for-bit from RUN/checkpoint.pt.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geobench.errors import TrainingError, UsageError
from geobench.train import checkpoint as ckpt
from geobench.train import distributed as dist
from geobench.train.config import TrainConfig, write_config
from geobench.train.runlog import epoch_line, write_log
from geobench.train.step import StepParts, train_step, trainable

PRIMARY = "r@1"


@dataclass(frozen=True)
class StepInfo:
    step: int
    epoch: int
    loss: float
    lr: float
    total: int = 0  # steps the run will take in all


@dataclass(frozen=True)
class TrainSummary:
    run_dir: Path
    model: str
    steps: int
    epochs: float
    final_loss: float
    checkpoint: Path
    best_checkpoint: Path | None
    best: dict[str, Any] | None
    last_metrics: dict[str, Any]
    seconds: float
    images_per_s: float
    data_wait_fraction: float
    resumed_from_step: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    skipped_images: dict[str, str] = field(default_factory=dict)  # --on-bad-image skip


def train(config: TrainConfig, *, on_step: Callable[[StepInfo], None] | None = None) -> TrainSummary:
    """Train `config.model` on `config.data` into `config.out` (see TrainConfig)."""
    from geobench.progress import is_quiet, set_quiet

    ctx = dist.setup(config.device)
    quiet = is_quiet()
    if not ctx.is_main:
        set_quiet(True)  # one progress bar per job, from rank 0
    try:
        return _Run(config, ctx).loop(on_step)
    finally:
        set_quiet(quiet)
        dist.teardown(ctx)


def _seed_everything(seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class _Run:
    """The state of one run; split into methods to keep the loop readable."""

    def __init__(self, cfg: TrainConfig, ctx: dist.DistContext) -> None:
        import torch

        from geobench.losses import build_loss, takes_similarity
        from geobench.prepared import check_prepared_dir, read_prepared
        from geobench.train import cards
        from geobench.train.batching import LabelledPairs, loss_options, make_sampler
        from geobench.train.data import (
            BAD_IMAGES_FILE,
            BadImages,
            PairDataset,
            build_pairs,
            fork_safe_opencv,
            worker_init,
        )
        from geobench.train.holdout import Validation, selection
        from geobench.train.optim import build_optimizer, build_scheduler

        self.cfg, self.ctx, self.run = cfg, ctx, cfg.run_dir
        self.last_path, self.best_path = self.run / ckpt.LAST, self.run / ckpt.BEST
        if cfg.resume and not self.last_path.is_file():
            raise UsageError(f"{self.last_path}: not found, nothing to resume; drop --resume to "
                             f"start a new run in {self.run}")
        if not cfg.resume and self.last_path.is_file():
            raise UsageError(f"{self.run} already holds a training run ({ckpt.LAST}); pass "
                             f"--resume to continue it or choose a new --out")
        check_prepared_dir(cfg.data)  # a missing dataset is named before any download starts
        start = self._plan_start()  # before anything heavy: a bad name or no network fails fast
        self.prepared = read_prepared(cfg.data)
        self.validation = Validation("", "none")
        if cfg.eval_every > 0:  # never selected on test; a carved val leaves the training set
            self.prepared, self.validation = selection(self.prepared, cfg.train_split,
                                                       cfg.eval_split, cfg.val_fraction,
                                                       cfg.val_seed)
            if self.validation.split and not self.validation.to_json()["selection_reliable"] \
                    and ctx.is_main:
                from geobench.guard import warn
                from geobench.train.holdout import MIN_SELECTION_QUERIES

                warn(f"validation split {self.validation.split!r} ({self.validation.source}) has "
                     f"{self.validation.n_queries} queries, fewer than {MIN_SELECTION_QUERIES}: "
                     f"best.pt is picked on noise-level differences (see r@1_vs_best_lo/hi in "
                     f"log.csv), so `geobench eval` uses the last checkpoint unless given "
                     f"--checkpoint best; raise --val-fraction for a reliable choice")
        self.bad = BadImages(cfg.on_bad_image, self.run / BAD_IMAGES_FILE)
        if not cfg.resume and ctx.is_main:
            self.bad.reset()  # a new run starts its own list
        _seed_everything(cfg.seed)
        self.model = cards.build(cfg.model, cfg.preset, cfg.model_args)
        # Built before the weights load: a released checkpoint's learned temperature goes in it.
        self.loss_fn = build_loss(cfg.loss, **loss_options(cfg)).to(torch.device(ctx.device))
        self.init_weights = self._initial_weights(start)
        if ctx.enabled and not cfg.resume:  # DDP broadcasts the model's state, not the loss's
            self.loss_fn.load_state_dict(dist.broadcast(
                {k: v.cpu() for k, v in self.loss_fn.state_dict().items()}, ctx))
        card = self.card = self.model.card
        pairs = build_pairs(self.prepared, cfg.train_split, card.query_view, card.reference_view,
                            cfg.places, cfg.place_cell_m)
        self.pairs = pairs
        self.sampler, self.per_anchor = make_sampler(pairs, cfg, ctx.rank, ctx.world_size)
        self.spe = self.sampler.steps_per_epoch()
        self.total = cfg.epochs * self.spe
        if cfg.max_steps is not None:
            self.total = min(self.total, cfg.max_steps)
        self.device = torch.device(ctx.device)
        fork_safe_opencv(cfg.workers)
        dataset = PairDataset(pairs, card, cfg.hflip_p, cfg.rotate_p, self.bad, cfg.augment)
        if getattr(self.loss_fn, "takes_labels", False):  # place ids reach the loss
            dataset = LabelledPairs(dataset, pairs.location)
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self.sampler,
            num_workers=cfg.workers, pin_memory=self.device.type == "cuda",
            worker_init_fn=worker_init, prefetch_factor=4 if cfg.workers else None,
            persistent_workers=cfg.workers > 0,  # no worker start-up (imports, maps) per epoch
            # Its own generator: creating an iterator must not consume the global RNG,
            # or a resumed run would diverge from an uninterrupted one.
            generator=torch.Generator())
        self.model.to(self.device)
        if cfg.pairwise_training and not takes_similarity(self.loss_fn):
            raise UsageError(f"loss {cfg.loss!r} compares images of one view with each other, so it "
                             f"cannot train on the pair scores pairwise_training uses; choose "
                             f"soft_margin_triplet, semi_soft_tri_hard or infonce, or set "
                             f"pairwise_training: false in --config")
        named = trainable(self.model, self.loss_fn)
        self.optimizer = build_optimizer(cfg, [p for _, p in named])
        self.scheduler = build_scheduler(cfg, self.optimizer, self.total, self.spe)
        self.amp = bool(cfg.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.net = self.model
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.net = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                           find_unused_parameters=bool(getattr(self.model, "pairwise", False)))
        self.parts = StepParts(self.net, self.loss_fn, self.optimizer, self.scheduler, named,
                               device=self.device, scaler=self.scaler, amp=self.amp,
                               grad_clip=cfg.grad_clip, grad_clip_mode=cfg.grad_clip_mode,
                               pairwise=cfg.pairwise_training,
                               gather=self._gather if ctx.enabled else None)
        self.step, self.log, self.best, self.resumed_from = 0, [], None, 0
        self.hits: Any = None        # the last validation's per-query top-1 hits (rank 0)
        self.best_hits: Any = None   # those of best.pt's evaluation
        self.epoch_losses: list[float] = []  # this epoch's step losses (kept across a resume)
        self.good_checkpoint: Path | None = None
        self.saved_step = 0
        if cfg.resume:
            self._restore()
        if ctx.is_main:
            from geobench.models.variant import model_record

            write_config(cfg, {**model_record(cfg.model, cfg.preset, cfg.model_args),
                               "init_weights": self.init_weights,
                               "dataset_hash": self.prepared.dataset_hash(),
                               "validation": self.validation.to_json(),
                               "dataset": self.prepared.name, "steps_per_epoch": self.spe,
                               "total_steps": self.total, "world_size": ctx.world_size,
                               "n_pairs": len(pairs), "n_locations": pairs.n_locations,
                               "training_places": pairs.places.to_json(),
                               "views": [pairs.query.model_view, pairs.reference.model_view]})
        self.tb = None
        if cfg.tensorboard and ctx.is_main:
            from geobench.train.tensorboard import TensorBoardLog

            self.tb = TensorBoardLog(self.run)

    def _plan_start(self) -> Any:
        """Resolve and fetch --weights / --pretrained (rank 0 only: DDP broadcasts its state)."""
        from geobench.models.initial import plan_start

        cfg = self.cfg
        if cfg.resume or not self.ctx.is_main:  # a resumed run's checkpoint holds the weights
            return None
        explicit = not cfg.sources.get("pretrained", "default").startswith("default")
        return plan_start(cfg.model, cfg.preset, cfg.model_args, cfg.weights, cfg.pretrained, explicit,
                          allow_unpinned=cfg.allow_unpinned)

    def _initial_weights(self, start: Any) -> dict[str, Any] | None:
        from geobench.models.initial import apply_start
        from geobench.train.config import read_config

        if self.cfg.resume:  # keep the run's own record
            return read_config(self.run).get("init_weights") if self.ctx.is_main else None
        return apply_start(self.model, start, self.loss_fn) if start is not None else None

    # --- checkpoints -----------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        import torch

        cfg = self.cfg
        return {"model": cfg.model, "model_args": {"preset": cfg.preset, **cfg.model_args},
                "model_state": self.model.state_dict(), "loss": cfg.loss,
                "loss_state": self.loss_fn.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "epoch": self.step // self.spe, "step": self.step, "rng": ckpt.rng_state(),
                "dataset_hash": self.prepared.dataset_hash(), "config": cfg.to_json(),
                "log": list(self.log), "epoch_losses": list(self.epoch_losses),
                "best": dict(self.best) if self.best else None,
                "best_hits": None if self.best_hits is None else torch.as_tensor(self.best_hits),
                "neighbours": (torch.as_tensor(self.sampler.neighbours)
                               if self.sampler.shuffle_neighbours else None),
                "card": {"query_view": self.card.query_view, "reference_view": self.card.reference_view}}

    def _save(self, best: bool = False) -> None:
        if not self.ctx.is_main:
            return
        payload = self._payload()
        ckpt.save_checkpoint(self.last_path, payload)
        self.good_checkpoint, self.saved_step = self.last_path, self.step
        if best:
            ckpt.save_checkpoint(self.best_path, payload)

    def _restore(self) -> None:
        from geobench.errors import DataError

        state = ckpt.load_checkpoint(self.last_path, map_location=str(self.device))
        if state["model"] != self.cfg.model:
            raise UsageError(f"{self.last_path}: holds model {state['model']!r}, not "
                             f"{self.cfg.model!r}; resume with the same model or a new --out")
        if state["dataset_hash"] != self.prepared.dataset_hash():
            raise DataError(f"{self.last_path}: was trained on a different dataset (index sha256 "
                            f"{state['dataset_hash'][:12]} vs {self.prepared.dataset_hash()[:12]} in "
                            f"{self.cfg.data}); resume with the same --data or start a new --out")
        self.model.load_state_dict(state["model_state"])
        self.loss_fn.load_state_dict(state["loss_state"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        self.step = self.resumed_from = self.saved_step = int(state["step"])
        self.log, self.best = list(state["log"]), state["best"]
        if state.get("best_hits") is not None:
            self.best_hits = state["best_hits"].cpu().numpy()
        self.epoch_losses = [float(v) for v in state.get("epoch_losses", [])]
        if state.get("neighbours") is not None:  # the similarity table the next batches use
            self.sampler.set_neighbours(state["neighbours"].cpu().numpy(), shuffle=True)
        self.good_checkpoint = self.last_path
        if self.best is not None and self.ctx.is_main:
            self._check_best()

    def _check_best(self) -> None:
        """The checkpoint names a best epoch: its best.pt must be there and verify."""
        from geobench.errors import DataError
        from geobench.guard import warn

        why = "" if self.best_path.is_file() else "is missing"
        if not why:
            try:
                ckpt.verify_checkpoint(self.best_path)
            except DataError:
                why = "fails its checksum"
        if why:
            warn(f"{self.best_path} {why}: the best checkpoint (epoch {self.best['epoch']}, "
                 f"{self.best['metric']} {self.best['value']:.2f}) is lost; the next evaluation "
                 f"(--eval-every) writes a new {ckpt.BEST}")
            self.best = None  # so that the next evaluation re-establishes it

    # --- one step ----------------------------------------------------------------------
    def _step(self, *batch) -> float:
        out = train_step(self.parts, batch)
        if not math.isfinite(out.loss):
            self._nan(out.loss)
        return out.loss

    def _gather(self, q, r, labels):
        q, r = dist.gather_with_grad(q), dist.gather_with_grad(r)
        if labels is not None:
            labels = dist.gather_rows(labels.to(self.device), self.ctx)
        return q, r, labels

    def _nan(self, value: float) -> None:
        kept = (f"the last good checkpoint {self.good_checkpoint} (step "
                f"{self.saved_step}) is kept" if self.good_checkpoint else
                "no checkpoint had been written yet")
        lr = self.optimizer.param_groups[0]["lr"]
        raise TrainingError(f"{self.run}: the loss became {value} at step {self.step + 1} (epoch "
                            f"{self.step // self.spe + 1}, lr {lr:.3g}); training stopped and "
                            f"{kept}; lower the learning rate (--lr), set grad_clip in --config "
                            f"or check the data, then --resume or start a new --out")

    def _refresh_similarity(self, epochs_done: int) -> None:
        """Sample4Geo hard sampling: rebuild the similarity table every similarity_every epochs."""
        cfg = self.cfg
        every = cfg.similarity_every
        if cfg.sampling != "gps_similarity" or not every or epochs_done % every or self.step >= self.total:
            return
        from geobench.train.batching import (
            location_representatives,
            neighbour_range,
            similarity_table,
        )
        from geobench.train.embed import embed_paths

        p = self.pairs
        first = location_representatives(p.location)
        kw = dict(batch_size=cfg.eval_batch_size, device=self.device, workers=cfg.workers,
                  ctx=self.ctx, amp=self.amp)
        q = embed_paths(self.model, [p.query_paths[i] for i in first], p.query,
                        description="similarity: queries", **kw)
        r = embed_paths(self.model, [p.reference_paths[i] for i in first], p.reference,
                        description="similarity: references", **kw)
        table = similarity_table(q, r, neighbour_range(cfg, self.per_anchor))
        # Every rank must build the same batches: rank 0's table is the one used.
        self.sampler.set_neighbours(dist.broadcast(table, self.ctx), shuffle=True)

    # --- evaluation ----------------------------------------------------------------------
    def _eval_due(self, epoch: int) -> bool:
        every = self.cfg.eval_every
        return every > 0 and (epoch % every == 0 or self.step >= self.total)

    def _evaluate(self) -> dict[str, Any]:
        """Metrics of the validation split (they select best.pt), plus the test split's,
        prefixed test_, only when eval_test asks for them."""
        from geobench.train.holdout import usable
        from geobench.train.runeval import evaluate_model

        kw = dict(batch_size=self.cfg.eval_batch_size, device=self.device,
                  workers=self.cfg.workers, ctx=self.ctx, amp=self.amp, bad=self.bad)
        out: dict[str, Any] = {}
        split = self.validation.split
        self.hits = None
        if split:
            details: dict[str, Any] = {}
            out = {"eval_split": split, **evaluate_model(
                self.model, self.prepared, split, self.cfg.eval_protocol, details=details, **kw)}
            if details:  # rank 0: per-query top-1 hits, to say how sure the choice of best.pt is
                from geobench.train.holdout import top1_hits

                self.hits = top1_hits(details["result"])
            if self.tb and details:
                self.tb.examples(self.step, details, self.prepared, split)
        if self.cfg.eval_test and usable(self.prepared, "test"):
            test = evaluate_model(self.model, self.prepared, "test", self.cfg.eval_protocol, **kw)
            out.update({f"test_{k}": v for k, v in test.items()})
        return out

    # --- the loop -------------------------------------------------------------------------
    def loop(self, on_step: Callable[[StepInfo], None] | None) -> TrainSummary:
        from geobench.progress import bar

        started = time.perf_counter()
        total_wait = total_time = 0.0
        images = 0
        last_loss = float("nan")
        metrics: dict[str, Any] = {}
        with bar(f"train {self.cfg.model}", total=self.total) as progress:
            progress.advance(self.step)
            while self.step < self.total:
                epoch = self.step // self.spe
                self.sampler.set_epoch(epoch, start=self.step - epoch * self.spe)
                self.model.train()
                t_epoch, wait = time.perf_counter(), 0.0
                losses = self.epoch_losses = self.epoch_losses if self.step % self.spe else []
                carried = len(losses)
                batches = iter(self.loader)
                while self.step < self.total:
                    t0 = time.perf_counter()
                    batch = next(batches, None)
                    if batch is None:
                        break
                    wait += time.perf_counter() - t0
                    losses.append(self._step(*batch))
                    self.step += 1
                    images += 2 * self.cfg.batch_size
                    progress.advance(1)
                    lr = self.optimizer.param_groups[0]["lr"]
                    every = self.cfg.checkpoint_every
                    if every and self.step % every == 0 and self.step % self.spe and self.step < self.total:
                        self._save()
                    if on_step is not None:
                        on_step(StepInfo(self.step, epoch, losses[-1], lr, self.total))
                    if self.tb:
                        self.tb.step(self.step, losses[-1], lr)
                del batches
                seconds = time.perf_counter() - t_epoch
                total_wait, total_time = total_wait + wait, total_time + seconds
                last_loss = float(np.mean(losses)) if losses else last_loss
                metrics = self._evaluate() if self._eval_due(epoch + 1) else {}
                improved = self._record(epoch, last_loss, seconds, wait, len(losses) - carried, metrics)
                self._refresh_similarity(epoch + 1)
                self._save(best=improved)
                if self.ctx.is_main:
                    write_log(self.run, self.log)
                    epoch_line(self.cfg.model, self.log[-1], self.total)
                if self.tb:
                    self.tb.epoch(self.log[-1])
        if self.tb:
            self.tb.close()
        from geobench.train.data import read_bad_images

        return TrainSummary(
            run_dir=self.run, model=self.cfg.model, steps=self.step, epochs=self.step / self.spe,
            final_loss=last_loss, checkpoint=self.last_path,
            best_checkpoint=self.best_path if self.best_path.is_file() else None, best=self.best,
            last_metrics=metrics, seconds=time.perf_counter() - started,
            images_per_s=images / total_time if total_time else 0.0,
            data_wait_fraction=total_wait / total_time if total_time else 0.0,
            resumed_from_step=self.resumed_from, log=list(self.log),
            skipped_images=read_bad_images(self.bad.log) if self.bad.skip else {})

    def _record(self, epoch: int, loss: float, seconds: float, wait: float, steps: int,
                metrics: dict[str, Any]) -> bool:
        row: dict[str, Any] = {
            "epoch": epoch + 1, "step": self.step, "loss": loss,
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": 2 * self.cfg.batch_size * steps / seconds if seconds else 0.0,
            "data_wait_frac": wait / seconds if seconds else 0.0, "seconds": seconds}
        row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))})
        versus = self._versus_best(metrics)
        row.update(versus)
        self.log.append(row)
        value = metrics.get(PRIMARY)
        if value is None or (self.best is not None and value <= self.best["value"]):
            return False
        self.best = {"metric": PRIMARY, "value": float(value), "step": self.step, "epoch": epoch + 1,
                     "split": self.validation.split, "split_source": self.validation.source,
                     "n_queries": self.validation.n_queries,
                     "selection_reliable": self.validation.to_json()["selection_reliable"], **versus}
        self.best_hits = self.hits
        return True

    def _versus_best(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """This evaluation's R@1 minus the best so far on the same validation queries, with
        its 95 % paired-bootstrap interval (points): an interval around 0 is a coin toss."""
        from geobench.train.holdout import paired_interval

        hits, best = getattr(self, "hits", None), self.best_hits
        if PRIMARY not in metrics or hits is None or best is None or len(hits) != len(best):
            return {}
        delta, lo, hi = paired_interval(hits, best, seed=self.step)
        return {"r@1_vs_best": delta, "r@1_vs_best_lo": lo, "r@1_vs_best_hi": hi}
