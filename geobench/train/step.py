"""One optimisation step: `train_step(parts, batch) -> StepOutput`.

The training loop (`geobench.train.engine`) and the golden tests against the official
training code call this same function, so what the tests check is what `geobench train`
runs. A non-finite loss is returned without touching the weights, the optimiser or the
schedule; the loop decides what to do about it.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# (q, r, labels) -> the same three over all ranks (DDP); None on a single process.
Gather = Callable[[Any, Any, Any], tuple[Any, Any, Any]]


@dataclass(frozen=True)
class StepParts:
    """Everything one step touches. `net` is what is called (a DDP wrapper under torchrun),
    `named` the trainable (name, parameter) pairs of the model and of the loss ("loss."
    prefix) in optimiser order; clipping and recorded gradient norms use them."""

    net: Any
    loss_fn: Any
    optimizer: Any
    scheduler: Any
    named: tuple[tuple[str, Any], ...]
    device: Any = "cpu"
    scaler: Any = None
    amp: bool = False
    grad_clip: float | None = None
    grad_clip_mode: str = "value"
    pairwise: bool = False
    gather: Gather | None = None


@dataclass(frozen=True)
class StepOutput:
    loss: float
    lr: float  # the learning rate this step used (first parameter group)
    grad_norms: dict[str, float] | None = None  # per parameter, before clipping
    applied: bool = True  # False: the loss was not finite and nothing was updated


def trainable(model: Any, loss_fn: Any) -> tuple[tuple[str, Any], ...]:
    """The parameters a step trains, named as `named_parameters` names them."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    named += [(f"loss.{n}", p) for n, p in loss_fn.named_parameters() if p.requires_grad]
    return tuple(named)


def step_parts(model: Any, loss_fn: Any, optimizer: Any, scheduler: Any, **options: Any) -> StepParts:
    """StepParts for an unwrapped model (tests, single process): net is the model itself."""
    options.setdefault("net", model)
    return StepParts(loss_fn=loss_fn, optimizer=optimizer, scheduler=scheduler,
                     named=trainable(model, loss_fn), **options)


def clip(params: Sequence[Any], limit: float | None, mode: str) -> None:
    import torch

    if limit is None:
        return
    if mode == "value":
        torch.nn.utils.clip_grad_value_(params, limit)
    else:
        torch.nn.utils.clip_grad_norm_(params, limit)


def _loss(parts: StepParts, q_img: Any, r_img: Any, labels: Any) -> Any:
    import torch

    from geobench.models.base import full_precision

    dev = parts.device.type if isinstance(parts.device, torch.device) else str(parts.device).split(":")[0]
    if parts.pairwise:
        # Pair scores need both images of a pair on one rank, so under DDP each rank's
        # negatives are its own batch (the descriptor path gathers all ranks instead).
        with torch.autocast(dev, dtype=torch.float16, enabled=parts.amp):
            sim = parts.net(q_img, r_img, matrix=True)
        return parts.loss_fn.from_similarity(full_precision(sim))
    with torch.autocast(dev, dtype=torch.float16, enabled=parts.amp):
        q, r = parts.net(q_img, r_img)
    if parts.gather is not None:
        q, r, labels = parts.gather(q, r, labels)
    extra = {} if labels is None else {"labels": labels.to(parts.device)}
    return parts.loss_fn(full_precision(q), full_precision(r), **extra)


def train_step(parts: StepParts, batch: Sequence[Any], *, record_grads: bool = False) -> StepOutput:
    """Forward, loss, backward, (clip), optimiser and scheduler step on one batch.

    `batch` is (query images, reference images[, place labels]) as the loader yields it.
    """
    q_img = batch[0].to(parts.device, non_blocking=True)
    r_img = batch[1].to(parts.device, non_blocking=True)
    labels = batch[2] if len(batch) > 2 else None
    loss = _loss(parts, q_img, r_img, labels)
    value = float(loss.item())
    lr = float(parts.optimizer.param_groups[0]["lr"])
    if not math.isfinite(value):
        return StepOutput(value, lr, None, applied=False)
    scaler = parts.scaler
    scaled = scaler is not None and scaler.is_enabled()
    parts.optimizer.zero_grad(set_to_none=True)
    (scaler.scale(loss) if scaled else loss).backward()
    params = [p for _, p in parts.named]
    if scaled and (record_grads or parts.grad_clip is not None):
        scaler.unscale_(parts.optimizer)
    norms = _grad_norms(parts.named) if record_grads else None
    clip(params, parts.grad_clip, parts.grad_clip_mode)
    if scaled:
        scaler.step(parts.optimizer)
        scaler.update()
    else:
        parts.optimizer.step()
    parts.scheduler.step()
    return StepOutput(value, lr, norms)


def _grad_norms(named: Sequence[tuple[str, Any]]) -> dict[str, float]:
    from geobench.models.base import full_precision

    return {n: (float(full_precision(p.grad.detach()).norm()) if p.grad is not None else 0.0)
            for n, p in named}
