"""Batch sampling: unique locations per batch, optionally GPS-aware (Sample4Geo).

The sampler builds the *global* batches of an epoch from (seed, epoch) alone, so every
process of a distributed run builds the same list and takes its own contiguous slice,
and a resumed run can skip exactly the batches it already trained on. Every pair also
gets an augmentation seed derived from (seed, epoch, pair).
"""
from __future__ import annotations

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

    locations: (P,) location id per pair; batch_size: the global batch; neighbours:
    optional (L, K) nearest-location table for GPS-aware batches, in which each drawn
    anchor brings up to `per_anchor` of its unused nearest neighbours into its batch.
    """

    def __init__(self, locations: np.ndarray, batch_size: int, seed: int,
                 neighbours: np.ndarray | None = None, per_anchor: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise UsageError(f"batch_size {batch_size} is not divisible by the {world_size} "
                             f"processes; pick a multiple of {world_size}")
        n_loc = int(locations.max()) + 1 if len(locations) else 0
        if n_loc < batch_size:
            raise UsageError(f"batch_size {batch_size} is larger than the {n_loc} distinct "
                             f"training locations; lower --batch-size to at most {n_loc}")
        self.locations = np.asarray(locations, dtype=np.int64)
        self.batch_size, self.seed = batch_size, seed
        self.neighbours, self.per_anchor = neighbours, per_anchor
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0
        self.shuffle_neighbours = False
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def set_neighbours(self, neighbours: np.ndarray | None, shuffle: bool = False) -> None:
        """Replace the candidate table (e.g. by a similarity table, batching.py); shuffle=True
        draws each anchor's neighbours at random from its row instead of nearest first."""
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

    def _batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        n_loc = int(self.locations.max()) + 1
        by_loc: list[list[int]] = [[] for _ in range(n_loc)]
        for pair in rng.permutation(len(self.locations)).tolist():
            by_loc[int(self.locations[pair])].append(pair)
        # One pair per location per pass; a location with several pairs is revisited in
        # later passes so every pair is used once per epoch where possible.
        gps = self.neighbours is not None and self.per_anchor > 0
        batches: list[np.ndarray] = []
        while True:
            free = np.array([bool(v) for v in by_loc])
            if free.sum() < self.batch_size:
                break  # the rest cannot fill a batch of distinct locations
            current: list[int] = []
            for anchor in rng.permutation(np.flatnonzero(free)).tolist():
                if not free[anchor]:
                    continue
                group = [anchor]
                free[anchor] = False
                row = self.neighbours[anchor] if gps else ()
                if gps and self.shuffle_neighbours:
                    row = row[rng.permutation(len(row))]
                for near in row:
                    if len(group) > self.per_anchor or len(current) + len(group) >= self.batch_size:
                        break
                    if near >= 0 and free[near]:
                        group.append(int(near))
                        free[near] = False
                current.extend(by_loc[loc].pop() for loc in group)
                if len(current) == self.batch_size:
                    batches.append(np.asarray(current, dtype=np.int64))
                    current = []
            for pair in current:  # unused this pass: back to their locations
                by_loc[int(self.locations[pair])].append(pair)
        return batches

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
