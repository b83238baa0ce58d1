"""Embed a split straight into a features file, on one process or sharded over ranks.

Descriptors go to HDF5 batch by batch as the model produces them, so a 2.8 M-image
database never exists as an (N, D) array in memory. Under torchrun each rank embeds its
contiguous share of queries and references into its own shard file; once every rank is
done, rank 0 merges the shards block by block into the features file (with the links,
positions and uids) and removes them. The result is the same file one process writes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from geobench.eval.features import QUERY, REFERENCE, write_features
from geobench.fileio import H5_SLACK, atomic_h5, require_space
from geobench.train import distributed as dist
from geobench.train.evalplan import eval_plan, without_images


class ConcatRows:
    """Row-sliceable view of several (n_i, D) datasets stacked in order."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts
        self.starts = np.cumsum([0] + [p.shape[0] for p in parts])
        self.shape = (int(self.starts[-1]), parts[0].shape[1])
        self.dtype = parts[0].dtype

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        out = []
        for part, lo, hi in zip(self.parts, self.starts[:-1], self.starts[1:], strict=True):
            a, b = max(start, lo), min(stop, hi)
            if a < b:
                out.append(np.asarray(part[a - lo:b - lo]))
        return np.concatenate(out) if out else np.empty((0, self.shape[1]), self.dtype)


def _embed_shard(model: Any, paths: list[str], src: Any, h5: Any, name: str, dim: int,
                 dtype: Any, **kw: Any) -> None:
    """Embed this rank's share of `paths` into dataset `name` of an open HDF5 file."""
    from geobench.train.embed import embed_paths

    mine = dist.shard(len(paths), kw["ctx"])
    out = h5.create_dataset(name, shape=(len(mine), dim), dtype=dtype)

    def sink(offset: int, block: np.ndarray) -> None:
        out[offset:offset + len(block)] = block

    embed_paths(model, [paths[i] for i in mine], src, sink=sink, shard=False, **kw)


class KeepRows:
    """Row-sliceable view of the rows of `view` where `keep` is True (skipped images out)."""

    def __init__(self, view: Any, keep: np.ndarray) -> None:
        self.view, self.rows = view, np.flatnonzero(keep)
        self.shape, self.dtype = (len(self.rows), view.shape[1]), view.dtype

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        wanted = self.rows[start:stop]
        if not len(wanted):
            return np.empty((0, self.shape[1]), self.dtype)
        block = np.asarray(self.view[int(wanted[0]):int(wanted[-1]) + 1])
        return block[wanted - wanted[0]]


def embed_to_features(model: Any, prepared: Any, split: str, protocol: str, path: str | Path,
                      attrs: dict[str, Any], *, batch_size: int = 32, device: Any = "cpu",
                      workers: int = 0, amp: bool = False, ctx: Any = None,
                      dtype: Any = np.float32, bad: Any = None) -> Path | None:
    """Write `path` (the features-file contract) for a split; None on ranks other than 0.

    With `bad` set to skip, images that cannot be read are left out of the file (their
    rows and links), as if they were not in the split.
    """
    import h5py

    from geobench.train.data import read_bad_images

    ctx = ctx or dist.DistContext()
    path = Path(path)
    sets, q_src, r_src, q_paths, r_paths = eval_plan(model, prepared, split, protocol)
    dim = int(model.card.descriptor_dim)
    kw = dict(batch_size=batch_size, device=device, workers=workers, ctx=ctx, amp=amp, bad=bad)
    shard = path.with_name(f"{path.name}.rank{ctx.rank}-of-{ctx.world_size}")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (len(q_paths) + len(r_paths)) * dim * np.dtype(dtype).itemsize
    # the shards and the merged file are on disk together: refuse before embedding
    require_space(path.parent, 2 * data + (ctx.world_size + 1) * H5_SLACK,
                  f"embedding {len(q_paths) + len(r_paths):,} images into {path.name}")
    with atomic_h5(shard, data // ctx.world_size + dim * 4) as h5:
        _embed_shard(model, q_paths, q_src, h5, QUERY, dim, dtype, **kw)
        _embed_shard(model, r_paths, r_src, h5, REFERENCE, dim, dtype, **kw)
    dist.barrier(ctx)
    if not ctx.is_main:
        dist.barrier(ctx)
        return None
    shards = [path.with_name(f"{path.name}.rank{r}-of-{ctx.world_size}")
              for r in range(ctx.world_size)]
    files = [h5py.File(s, "r") for s in shards]
    try:
        query, reference = ConcatRows([f[QUERY] for f in files]), ConcatRows([f[REFERENCE] for f in files])
        skip = bad is not None and bad.skip and bad.log is not None
        unreadable = set(read_bad_images(bad.log)) if skip else set()
        if unreadable & (set(q_paths) | set(r_paths)):
            sets, q_keep, r_keep = without_images(model, prepared, split, protocol, unreadable)
            query, reference = KeepRows(query, q_keep), KeepRows(reference, r_keep)
        write_features(path, query, reference, sets.positives,
                       semi_positives=sets.semi_positives, query_latlon=sets.query_latlon,
                       reference_latlon=sets.reference_latlon,
                       query_uids=list(sets.queries["uid"]),
                       reference_uids=list(sets.references["uid"]), attrs=attrs, dtype=dtype)
    finally:
        for f in files:
            f.close()
        for s in shards:
            s.unlink(missing_ok=True)
        dist.barrier(ctx)
    return path
