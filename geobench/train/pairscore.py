"""Pair scores of shortlisted (query, reference) images with a pair-dependent model.

`ImagePairScorer(model, queries, references)(shortlist)` returns the model's exact score
of every (query i, reference shortlist[i, j]) pair, for `geobench.eval.rerank`. The model
provides `features(images, view)` (maps) and `score_pairs(q_maps, r_maps)` (ASA-VG).

Memory stays bounded whatever the gallery: feature maps of one block of queries are held
at a time (half of `memory_bytes`), the references that block's shortlists name are
streamed through in chunks (the other half), and pairs are scored `pair_batch` at a time.
With the default 2 GiB a block holds thousands of queries, so each shortlisted reference
is usually embedded once.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geobench.errors import UsageError
from geobench.train.data import ImageDataset, ViewSource, fork_safe_opencv, worker_init


@dataclass(frozen=True)
class ImageSet:
    paths: Sequence[str]
    src: ViewSource


def supports_pairs(model: Any) -> bool:
    return bool(getattr(model, "pairwise", False)) and callable(getattr(model, "score_pairs", None))


class ImagePairScorer:
    def __init__(self, model: Any, queries: ImageSet, references: ImageSet, *,
                 batch_size: int = 32, device: Any = "cpu", workers: int = 0, amp: bool = False,
                 memory_bytes: int = 2 << 30, pair_batch: int = 256) -> None:
        if not supports_pairs(model):
            name = getattr(model, "model_name", type(model).__name__)
            raise UsageError(f"model {name!r} scores images by their descriptors only, so there is "
                             f"nothing to re-rank with; pass --rerank 0")
        import torch

        self.model, self.queries, self.references = model, queries, references
        self.batch_size, self.workers, self.amp = batch_size, workers, amp
        self.device = torch.device(device)
        self.memory_bytes, self.pair_batch = memory_bytes, pair_batch
        self.n_pairs = 0  # scored so far (for throughput reports)
        self._bytes: dict[int, int] = {}

    def _maps(self, images: ImageSet, rows: np.ndarray):
        """Feature maps (len(rows), C, H, W) of images.paths[rows], on the device."""
        import torch

        fork_safe_opencv(self.workers)
        data = ImageDataset([images.paths[i] for i in rows], images.src, self.model.card)
        loader = torch.utils.data.DataLoader(data, batch_size=self.batch_size,
                                             num_workers=self.workers, worker_init_fn=worker_init,
                                             pin_memory=self.device.type == "cuda")
        with self._mode():
            return torch.cat([self.model.features(x.to(self.device, non_blocking=True),
                                                  images.src.model_view) for x in loader])

    def _mode(self):
        import contextlib

        import torch

        stack = contextlib.ExitStack()
        stack.enter_context(torch.no_grad())
        stack.enter_context(torch.autocast(self.device.type, dtype=torch.float16,
                                           enabled=self.amp and self.device.type == "cuda"))
        return stack

    def _per_image_bytes(self, images: ImageSet) -> int:
        if id(images) not in self._bytes:  # one image through the model, once per set
            one = self._maps(images, np.zeros(1, np.int64))
            self._bytes[id(images)] = int(one.element_size() * one.numel())
        return self._bytes[id(images)]

    def __call__(self, shortlist: np.ndarray) -> np.ndarray:
        from geobench.progress import bar

        shortlist = np.asarray(shortlist, dtype=np.int64)
        nq, k = shortlist.shape
        out = np.full((nq, k), -np.inf, dtype=np.float32)
        if shortlist.size == 0:
            return out
        was_training = self.model.training
        self.model.eval()
        q_bytes = self._per_image_bytes(self.queries)
        r_bytes = self._per_image_bytes(self.references)
        block_q = max(1, self.memory_bytes // 2 // q_bytes)
        chunk_r = max(1, self.memory_bytes // 2 // r_bytes)
        with bar(f"re-rank top {k}", total=nq * k) as progress:
            for q0 in range(0, nq, block_q):
                q1 = min(nq, q0 + block_q)
                self._score_block(shortlist[q0:q1], q0, chunk_r, out[q0:q1], progress)
        self.model.train(was_training)
        return out

    def _score_block(self, short: np.ndarray, q0: int, chunk_r: int, out: np.ndarray,
                     progress: Any) -> None:
        fq = self._maps(self.queries, np.arange(q0, q0 + short.shape[0]))
        describe = getattr(self.model, "describe_maps", None)
        with self._mode():
            dq = describe(fq) if describe is not None else None
        needed = np.unique(short)
        for r0 in range(0, len(needed), chunk_r):
            chunk = needed[r0:r0 + chunk_r]
            fr = self._maps(self.references, chunk)
            qi, slot = np.nonzero(np.isin(short, chunk))
            local = np.searchsorted(chunk, short[qi, slot])
            for s in range(0, len(qi), self.pair_batch):
                self._score(fq, fr, dq, qi[s:s + self.pair_batch], local[s:s + self.pair_batch],
                            slot[s:s + self.pair_batch], out)
                progress.advance(min(self.pair_batch, len(qi) - s))

    def _score(self, fq: Any, fr: Any, dq: Any, qi: np.ndarray, local: np.ndarray,
               slot: np.ndarray, out: np.ndarray) -> None:
        import torch

        q_idx = torch.as_tensor(qi, device=fq.device)
        r_idx = torch.as_tensor(local, device=fr.device)
        with self._mode():
            scores = self.model.score_pairs(fq[q_idx], fr[r_idx],
                                            None if dq is None else dq[q_idx])
        out[qi, slot] = scores.float().cpu().numpy()
        self.n_pairs += len(qi)
