"""Recipe-driven batches: places x images (MixVPR) and similarity-based hard sampling (Sample4Geo).

* `PlaceBatchSampler`: every batch holds P = batch_size / K places with K pairs each, and
  the loss gets each pair's place id (multi-similarity treats images of one place as
  positives). Each place with at least K training pairs appears once per epoch with K of
  its pairs drawn at random, as MixVPR's GSV-Cities loader does.
* `similarity_table`: Sample4Geo's hard sampling. After an epoch, every training location's
  query is compared with every other location's reference; its `range` most similar ones
  become the candidates its batch is filled from in the next epochs (`PairBatchSampler`
  draws up to `gps_neighbours` of them at random among the `range`, as Sample4Geo's
  neighbour_select / neighbour_range). Before the first table, GPS neighbours are used.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from geobench.errors import DataError, UsageError
from geobench.train.sampling import PairBatchSampler


class PlaceBatchSampler(PairBatchSampler):
    """Yields this rank's share of each places x images batch as [(pair, aug_seed), ...]."""

    def __init__(self, locations: np.ndarray, batch_size: int, images_per_place: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise UsageError(f"batch_size {batch_size} is not divisible by the {world_size} "
                             f"processes; pick a multiple of {world_size}")
        self.locations = np.asarray(locations, dtype=np.int64)
        self.batch_size, self.seed, self.k = batch_size, seed, images_per_place
        self.places = batch_size // images_per_place
        counts = np.bincount(self.locations) if len(self.locations) else np.zeros(0, np.int64)
        self.eligible = np.flatnonzero(counts >= images_per_place)
        if len(self.eligible) < max(self.places, 2):
            most = int(counts.max()) if len(counts) else 0
            raise DataError(
                f"images_per_place {images_per_place} needs at least {max(self.places, 2)} places with "
                f">= {images_per_place} training pairs each; this dataset has {len(self.eligible)} "
                f"(at most {most} pairs per place): lower images_per_place or batch_size")
        self.neighbours, self.per_anchor, self.shuffle_neighbours = None, 0, False
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0
        self._cache = None
        order = np.argsort(self.locations, kind="stable")
        bounds = np.searchsorted(self.locations[order], np.arange(len(counts) + 1))
        self._pairs_of = {int(loc): order[bounds[loc]:bounds[loc + 1]] for loc in self.eligible}

    def _batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        batches = []
        places = rng.permutation(self.eligible)
        for b in range(len(places) // self.places):
            group = places[b * self.places:(b + 1) * self.places]
            batch = [rng.choice(self._pairs_of[int(p)], self.k, replace=False) for p in group]
            batches.append(np.concatenate(batch).astype(np.int64))
        return batches


class LabelledPairs:
    """Wraps a PairDataset so each item also carries its pair's place (location) id."""

    def __init__(self, dataset: Any, locations: np.ndarray) -> None:
        self.dataset, self.locations = dataset, np.asarray(locations, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        import torch

        q, r = self.dataset[key]
        return q, r, torch.tensor(int(self.locations[key[0]]))


def location_representatives(locations: np.ndarray) -> np.ndarray:
    """One pair per location (its first), to embed each location once."""
    _, first = np.unique(np.asarray(locations), return_index=True)
    return first


def similarity_table(query: np.ndarray, reference: np.ndarray, k: int,
                     block: int = 1024) -> np.ndarray:
    """(L, k) most similar other locations per location by query . reference, best first.

    Blocked over queries so memory stays O(block x L), not O(L^2).
    """
    n = len(query)
    k = min(k, n - 1)
    out = np.full((n, max(k, 0)), -1, dtype=np.int64)
    if k <= 0:
        return out
    for s in range(0, n, block):
        sim = query[s:s + block] @ reference.T
        rows = np.arange(sim.shape[0])
        sim[rows, s + rows] = -np.inf  # a location is not its own hard negative
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable")
        out[s:s + block] = np.take_along_axis(top, order, axis=1)
    return out


def loss_options(cfg: Any) -> dict[str, Any]:
    """loss_args with the recipe's miner applied (the multi-similarity loss carries its miner)."""
    args = dict(cfg.loss_args)
    if cfg.loss == "multi_similarity" and "epsilon" not in args:
        args["epsilon"] = cfg.miner_args.get("epsilon", 0.1) if cfg.miner else None
    return args
