"""Batch sampling: distinct, separated places per batch, optionally GPS-aware (Sample4Geo).

The sampler builds the *global* batches of an epoch from (seed, epoch) alone, so every
process of a distributed run builds the same list and takes its own contiguous slice,
and a resumed run can skip exactly the batches it already trained on. Every pair also
gets an augmentation seed derived from (seed, epoch, pair).
"""
from __future__ import annotations

from collections import deque

import numpy as np

from geobench.errors import UsageError


def gps_neighbours(xy: np.ndarray, k: int) -> np.ndarray:
    """(L, k) indices of each location's k nearest other locations (UTM metres), -1 padded.

    Locations without coordinates get no neighbours.
    """
    from scipy.spatial import cKDTree

    n = len(xy)
    out = np.full((n, k), -1, dtype=np.int64)
    ok = np.flatnonzero(np.isfinite(xy).all(axis=1))
    if k == 0 or len(ok) < 2:
        return out
    kk = min(k + 1, len(ok))
    _, idx = cKDTree(xy[ok]).query(xy[ok], k=kk)
    idx = ok[np.asarray(idx).reshape(len(ok), kk)]
    for row, loc in enumerate(ok):
        near = [j for j in idx[row] if j != loc][:k]
        out[loc, :len(near)] = near
    return out


class PairBatchSampler:
    """Yields this rank's share of each global batch as [(pair, aug_seed), ...].

    locations: (P,) place id per pair; batch_size: the global batch. A batch never holds
    two pairs of one place, nor two places listed in each other's `conflicts` (places.py:
    images closer than the negative radius). each_pair: every pair is used once per epoch
    (item places: Sample4Geo, LRFR); otherwise one random pair per place (NetVLAD visits
    each query once). neighbours: optional (L, R) candidate table, nearest or most similar
    first, for Sample4Geo's GPS / similarity batches: each anchor brings the first
    per_anchor / 2 of its row and per_anchor / 2 drawn at random from the rest, those still
    unused this epoch, into its batch (Sample4Geo's shuffle, neighbour_select = per_anchor,
    neighbour_range = R).
    """

    def __init__(self, locations: np.ndarray, batch_size: int, seed: int,
                 neighbours: np.ndarray | None = None, per_anchor: int = 0,
                 rank: int = 0, world_size: int = 1, *, conflicts: list[np.ndarray] | None = None,
                 each_pair: bool = True) -> None:
        if batch_size % world_size:
            raise UsageError(f"batch_size {batch_size} is not divisible by the {world_size} "
                             f"processes; pick a multiple of {world_size}")
        n_loc = int(locations.max()) + 1 if len(locations) else 0
        if n_loc < batch_size:
            raise UsageError(f"batch_size {batch_size} is larger than the {n_loc} distinct "
                             f"training places; lower --batch-size to at most {n_loc}")
        self.locations = np.asarray(locations, dtype=np.int64)
        self.batch_size, self.seed = batch_size, seed
        self.neighbours, self.per_anchor = neighbours, per_anchor
        self.conflicts, self.each_pair = conflicts, each_pair
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0
        self.shuffle_neighbours = False
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def set_neighbours(self, neighbours: np.ndarray | None, shuffle: bool = False) -> None:
        """Replace the candidate table (e.g. by a similarity table, batching.py); shuffle=True
        marks it as learned (it is saved in checkpoints: the next batches depend on it)."""
        self.neighbours, self.shuffle_neighbours = neighbours, shuffle
        self._cache = None

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and the first batch to yield (to resume mid-epoch)."""
        self.epoch, self.start = epoch, start

    def batches(self, epoch: int) -> list[np.ndarray]:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        out = self._batches(rng)
        self._cache = (epoch, out)
        return out

    def _candidates(self, anchor: int, rng: np.random.Generator) -> list[int]:
        if self.neighbours is None or self.per_anchor <= 0:
            return []
        row = [int(v) for v in self.neighbours[anchor] if v >= 0]
        half = self.per_anchor // 2
        near, far = row[:half], row[half:]
        return near + [far[i] for i in rng.permutation(len(far))[:half]]

    def _batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        n_loc = int(self.locations.max()) + 1
        by_loc: list[list[int]] = [[] for _ in range(n_loc)]
        for pair in rng.permutation(len(self.locations)).tolist():
            by_loc[int(self.locations[pair])].append(pair)
        if not self.each_pair:
            by_loc = [v[:1] for v in by_loc]
        # One pair per place per pass; a place with several pairs is revisited in later
        # passes so that every pair is used once per epoch where possible.
        batches: list[np.ndarray] = []
        while self._pass(rng, by_loc, batches):
            pass
        return batches

    def _pass(self, rng: np.random.Generator, by_loc: list[list[int]], batches: list[np.ndarray]) -> int:
        """Fill batches from the places that still have pairs; the number of batches made."""
        free = np.array([bool(v) for v in by_loc])
        if free.sum() < self.batch_size:
            return 0  # the rest cannot fill a batch of distinct places
        blocked = np.zeros(len(by_loc), dtype=bool)  # the current batch's places and conflicts
        queue = deque(rng.permutation(np.flatnonzero(free)).tolist())
        current: list[int] = []
        made = waits = 0

        def take(loc: int) -> None:
            free[loc], blocked[loc] = False, True
            if self.conflicts is not None:
                blocked[self.conflicts[loc]] = True

        while queue:
            anchor = queue.popleft()
            if not free[anchor]:
                continue
            if blocked[anchor]:  # conflicts with this batch: wait for the next one
                queue.append(anchor)
                waits += 1
                if waits > len(queue):
                    break  # every waiting place conflicts with the current batch
                continue
            waits = 0
            group = [anchor]
            take(anchor)
            for near in self._candidates(anchor, rng):
                if len(current) + len(group) >= self.batch_size:
                    break
                if free[near] and not blocked[near]:
                    group.append(near)
                    take(near)
            current.extend(by_loc[loc].pop() for loc in group)
            if len(current) == self.batch_size:
                batches.append(np.asarray(current, dtype=np.int64))
                current, made = [], made + 1
                blocked[:] = False
        for pair in current:  # unused this pass: back to their places
            by_loc[int(self.locations[pair])].append(pair)
        return made

    def steps_per_epoch(self) -> int:
        return len(self.batches(0))

    def _seeds(self, epoch: int, pairs: np.ndarray) -> list[int]:
        base = np.random.SeedSequence([self.seed, epoch, 7]).generate_state(1, dtype=np.uint64)[0]
        # A cheap, well-mixed per-pair seed (splitmix64 of base + pair).
        z = (np.uint64(base) + pairs.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        with np.errstate(over="ignore"):
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
        return [int(v) for v in z]

    def __iter__(self):
        share = self.batch_size // self.world_size
        lo = self.rank * share
        for batch in self.batches(self.epoch)[self.start:]:
            mine = batch[lo:lo + share]
            yield list(zip(mine.tolist(), self._seeds(self.epoch, mine)))

    def __len__(self) -> int:
        return max(0, len(self.batches(self.epoch)) - self.start)
