"""Recipe-driven batches: places x images (MixVPR) and similarity-based hard sampling (Sample4Geo).

* `PlaceBatchSampler`: every batch holds batch_size / (images_per_place / 2) places with
  images_per_place images (half as many pairs) each, and the loss gets each pair's place
  id (multi-similarity treats images of one place as positives), as MixVPR's GSV-Cities
  loader does.
* `similarity_table`: Sample4Geo's hard sampling. After an epoch, every training place's
  query is compared with every other place's reference; its `range` most similar ones
  become the candidates its batch is filled from in the next epochs (`PairBatchSampler`
  takes the first gps_neighbours / 2 and gps_neighbours / 2 at random from the rest of
  the `range`, as Sample4Geo's neighbour_select / neighbour_range). Before the first
  table, the GPS table (the `range` nearest places) is used the same way.
"""
from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from geobench.errors import DataError, UsageError
from geobench.train.sampling import PairBatchSampler


class PlaceBatchSampler(PairBatchSampler):
    """Yields this rank's share of each places x images batch as [(pair, aug_seed), ...].

    As MixVPR's GSV-Cities loader: a place is one class of the loss; every place with at
    least `images_per_place` images (images_per_place / 2 pairs, all of different images
    where the place has them) is used once per epoch, K images drawn at random; places
    are shuffled within their city and the cities follow each other, so a batch holds
    places of one city (GSV-Cities' shuffle_all=False). Places that conflict (places.py:
    closer than the negative radius) never share a batch: a conflicting place waits for
    the next one, which it opens. The last incomplete batch is dropped (every rank needs a full share).
    """

    def __init__(self, pairs: Any, batch_size: int, images_per_place: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise UsageError(f"batch_size {batch_size} is not divisible by the {world_size} "
                             f"processes; pick a multiple of {world_size}")
        places = pairs.places
        self.locations = np.asarray(places.place, dtype=np.int64)
        self.batch_size, self.seed = batch_size, seed
        self.k = max(1, images_per_place // 2)  # pairs per place: each pair is two images
        self.places = batch_size // self.k
        counts = np.bincount(self.locations) if len(self.locations) else np.zeros(0, np.int64)
        self.eligible = np.flatnonzero(counts >= self.k)
        if len(self.eligible) < max(self.places, 2):
            most = int(counts.max()) if len(counts) else 0
            raise DataError(
                f"images_per_place {images_per_place} needs at least {max(self.places, 2)} places "
                f"({places.definition}) with >= {self.k} training pairs each; this dataset has "
                f"{len(self.eligible)} (at most {most} pairs per place): lower images_per_place or "
                f"batch_size, or choose another places definition")
        self.city = np.asarray(places.city)
        self.conflicts = places.conflicts()
        self.neighbours, self.per_anchor, self.shuffle_neighbours = None, 0, False
        self.each_pair = False
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0
        self._cache = None
        order = np.argsort(self.locations, kind="stable")
        bounds = np.searchsorted(self.locations[order], np.arange(len(counts) + 1))
        self._pairs_of = {int(loc): order[bounds[loc]:bounds[loc + 1]] for loc in self.eligible}
        n = len(self.locations)
        self._images = (np.asarray(pairs.query_ids if pairs.query_ids is not None else np.arange(n)),
                        np.asarray(pairs.reference_ids if pairs.reference_ids is not None else np.arange(n)))

    def _pick(self, place: int, rng: np.random.Generator) -> list[int]:
        """K pairs of a place at random, preferring pairs that share no image with those
        already taken (four different images for MixVPR's K = 4), then any."""
        q, r = self._images
        cand = self._pairs_of[place][rng.permutation(len(self._pairs_of[place]))]
        taken: list[int] = []
        for strict in (2, 1, 0):  # new query and reference, then either, then any
            for pair in cand:
                if len(taken) == self.k:
                    return taken
                if pair in taken:
                    continue
                fresh = (q[pair] not in q[taken]) + (r[pair] not in r[taken])
                if fresh >= strict:
                    taken.append(int(pair))
        return taken

    def _batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        order = [rng.permutation(self.eligible[self.city[self.eligible] == c])
                 for c in sorted(set(self.city[self.eligible].tolist()))]
        queue = deque(int(p) for block in order for p in block)
        blocked = np.zeros(len(self.city), dtype=bool)
        batches, current, waiting = [], [], []
        while queue:
            place = queue.popleft()
            if blocked[place]:  # conflicts with this batch: first in line for the next one
                waiting.append(place)
                continue
            current.append(place)
            blocked[place] = True
            if self.conflicts is not None:
                blocked[self.conflicts[place]] = True
            if len(current) == self.places:
                batches.append(np.concatenate([self._pick(p, rng) for p in current]).astype(np.int64))
                current = []
                blocked[:] = False
                queue.extendleft(reversed(waiting))
                waiting = []
        return batches


def make_sampler(pairs: Any, cfg: Any, rank: int = 0, world_size: int = 1) -> tuple[PairBatchSampler, int]:
    """The recipe's batch sampler for `pairs` and its GPS per-anchor count (0: none)."""
    from geobench.train.sampling import gps_neighbours

    if cfg.images_per_place > 1:
        return PlaceBatchSampler(pairs, cfg.batch_size, cfg.images_per_place, cfg.seed,
                                 rank, world_size), 0
    neighbours, per_anchor = None, 0
    if cfg.sampling in ("gps", "gps_similarity"):
        per_anchor = cfg.gps_neighbours or max(1, cfg.batch_size // 4)
        neighbours = gps_neighbours(pairs.xy, neighbour_range(cfg, per_anchor))
    places = pairs.places
    sampler = PairBatchSampler(places.place, cfg.batch_size, cfg.seed, neighbours, per_anchor,
                               rank, world_size, conflicts=places.conflicts(),
                               each_pair=places.each_pair)
    if sampler.steps_per_epoch() == 0:  # every large enough set of places is too close together
        raise UsageError(f"batch_size {cfg.batch_size}: the {len(places)} training places "
                         f"({places.definition}) give no batch of {cfg.batch_size} places more than "
                         f"{places.separation_m} m apart; lower --batch-size or choose another "
                         f"places definition (--set places=...)")
    return sampler, per_anchor


def neighbour_range(cfg: Any, per_anchor: int) -> int:
    """Candidates per anchor (Sample4Geo's neighbour_range; its GPS table, TOP_K, too)."""
    return cfg.similarity_range or 2 * per_anchor


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
