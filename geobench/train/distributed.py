"""torchrun / DistributedDataParallel support.

`torchrun --nproc-per-node N -m geobench train ...` sets RANK, WORLD_SIZE and
LOCAL_RANK; `setup` then joins the process group (NCCL on CUDA, gloo on CPU). The
in-batch losses need every pair of the *global* batch, so descriptors are gathered
from all ranks with a gather whose backward hands each rank the gradient of its own
rows; with DDP's gradient averaging this reproduces a single-process run on the same
global batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from geobench.errors import UsageError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    initialised_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not an integer; launch "
                         f"with torchrun or unset it") from None


def setup(device: str) -> DistContext:
    """Join the torchrun process group if the environment describes one."""
    import torch
    import torch.distributed as dist

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda but no CUDA device is available; use --device cpu")
        if world > 1:
            device = f"cuda:{local}"
            torch.cuda.set_device(local)
    if world <= 1:
        return DistContext(device=device)
    here = False
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        here = True
    return DistContext(rank, world, local, device, here)


def teardown(ctx: DistContext) -> None:
    import torch.distributed as dist

    if ctx.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def _gather_cls():
    import torch
    import torch.distributed as dist

    class _GatherWithGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):  # type: ignore[override]
            ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
            parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, x.contiguous())
            return torch.cat(parts, dim=0)

        @staticmethod
        def backward(ctx, grad):  # type: ignore[override]
            # Every rank computed the same loss on the gathered batch: summing their
            # gradients and keeping our rows gives world_size x dL/dx, which DDP's
            # averaging of parameter gradients divides back out.
            grad = grad.contiguous()
            dist.all_reduce(grad)
            return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]

    return _GatherWithGrad


_GATHER: Any = None


def gather_with_grad(x):
    """Concatenate `x` from all ranks in rank order, differentiably."""
    global _GATHER
    if _GATHER is None:
        _GATHER = _gather_cls()
    return _GATHER.apply(x)


def gather_rows(x, ctx: DistContext):
    """Concatenate variable-length row blocks from all ranks (no gradient)."""
    import torch
    import torch.distributed as dist

    if not ctx.enabled:
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, n)
    most = int(max(int(s) for s in sizes))
    pad = torch.zeros((most - x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device)
    parts = [torch.empty((most, *x.shape[1:]), dtype=x.dtype, device=x.device)
             for _ in range(ctx.world_size)]
    dist.all_gather(parts, torch.cat([x, pad]).contiguous())
    return torch.cat([p[:int(s)] for p, s in zip(parts, sizes)])


def shard(n: int, ctx: DistContext) -> range:
    """This rank's contiguous share of n items (for embedding a split)."""
    per = -(-n // ctx.world_size)
    return range(min(n, ctx.rank * per), min(n, (ctx.rank + 1) * per))


def broadcast(value: Any, ctx: DistContext) -> Any:
    import torch.distributed as dist

    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    import torch.distributed as dist

    if ctx.enabled:
        dist.barrier()
