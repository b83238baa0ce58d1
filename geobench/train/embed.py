"""Batched, gradient-free embedding of image files with a GeoModel (sharded under DDP)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from geobench.train.data import (
    BadImages,
    FlaggedImages,
    ImageDataset,
    ViewSource,
    fork_safe_opencv,
    worker_init,
)


def embed_paths(model: Any, paths: Sequence[str], src: ViewSource, *, batch_size: int = 32,
                device: Any = "cpu", workers: int = 0, ctx: Any = None, amp: bool = False,
                description: str = "embed", sink: Callable[[int, np.ndarray], None] | None = None,
                shard: bool = True, bad: BadImages | None = None) -> np.ndarray | None:
    """(N, D) float32 descriptors of `paths` in `src.model_view`, sharded across ranks and
    gathered; or, with `sink`, each batch handed to sink(row offset, block) as it is made
    (nothing gathered, None returned). shard=False embeds all of `paths` on this rank.

    Images that cannot be read raise, or under `bad.skip` get a row of NaN (the caller
    drops those rows).
    """
    import torch

    from geobench.progress import track
    from geobench.train import distributed as dist

    ctx = ctx or dist.DistContext()
    device = torch.device(device)
    mine = dist.shard(len(paths), ctx) if shard else range(len(paths))
    dataset = FlaggedImages(ImageDataset([paths[i] for i in mine], src, model.card, bad))
    fork_safe_opencv(workers)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                         pin_memory=device.type == "cuda",
                                         worker_init_fn=worker_init)
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16,
                                         enabled=amp and device.type == "cuda"):
        offset = 0
        for images, readable in track(loader, description):
            block = model.embed(images.to(device, non_blocking=True), src.model_view).float()
            if not bool(readable.all()):
                block[~readable.to(block.device)] = float("nan")
            if sink is None:
                out.append(block)
            else:
                sink(offset, block.cpu().numpy().astype(np.float32))
                offset += block.shape[0]
    model.train(was_training)
    if sink is not None:
        return None
    dim = int(getattr(model.card, "descriptor_dim", 0) or 0)
    local = torch.cat(out) if out else torch.zeros((0, dim), device=device)
    return dist.gather_rows(local, ctx).cpu().numpy().astype(np.float32)


