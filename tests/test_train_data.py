"""Data pipeline: consistent augmentations, pairs from the index, batch sampling."""
from __future__ import annotations

import numpy as np
import pytest

from geobench.errors import DataError, UsageError
from geobench.geometry.polar import polar_transform
from geobench.train.augment import PairAugment, apply_pair, mirror, rotate
from geobench.train.sampling import PairBatchSampler, gps_neighbours


def _aerial(s: int = 128) -> np.ndarray:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (4, 4, 3)).astype(np.uint8)
    import cv2

    return cv2.resize(small, (s, s), interpolation=cv2.INTER_CUBIC)


def _close(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference over the rows away from the (aliased) centre of the polar image."""
    return float(np.abs(a[:-4].astype(float) - b[:-4].astype(float)).mean())


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotation_matches_polar_roll(k):
    aerial = _aerial()
    polar = polar_transform(aerial, (16, 64))
    turned = polar_transform(np.ascontiguousarray(np.rot90(aerial, k)), (16, 64))
    assert _close(turned, rotate(polar, "polar", k)) < 6.0
    # ...and the wrong direction is far off (the test can fail).
    assert _close(turned, rotate(polar, "polar", -k)) > 40 or k == 2


def test_mirror_matches_polar_mirror():
    aerial = _aerial()
    polar = polar_transform(aerial, (16, 64))
    flipped = polar_transform(mirror(aerial, "aerial"), (16, 64))
    right = _close(flipped, mirror(polar, "polar"))
    assert right < 6.0 and _close(flipped, polar) > 40
    # The one-column roll matters: a plain flip puts north one column off.
    assert right < 0.5 * _close(flipped, np.ascontiguousarray(polar[:, ::-1]))


def test_apply_pair_moves_panorama_with_aerial():
    pano = np.arange(64, dtype=np.uint8)[None, :, None].repeat(4, 0).repeat(3, 2)
    aerial = _aerial()[:16, :16]
    q, r = apply_pair(pano, aerial, "ground", "aerial", PairAugment(flip=False, k=1))
    assert np.array_equal(r, np.rot90(aerial, 1))
    assert q[0, 32, 0] == 48  # east (3W/4) is now at the centre column (north)
    q, r = apply_pair(pano, aerial, "ground", "aerial", PairAugment(flip=True, k=0))
    assert q[0, 32, 0] == 32 and q[0, 16, 0] == 48  # north fixed, west <-> east
    # Perspective queries cannot follow a rotation: nothing turns.
    q, r = apply_pair(aerial, aerial, "perspective", "aerial", PairAugment(flip=False, k=2))
    assert np.array_equal(r, aerial)
    # A drone view has no heading: the satellite turns alone.
    q, r = apply_pair(aerial, aerial, "drone", "aerial", PairAugment(flip=False, k=1))
    assert np.array_equal(q, aerial) and np.array_equal(r, np.rot90(aerial, 1))


def test_augment_draw_is_seeded():
    draws = [PairAugment.draw(s, 0.5, 0.75) for s in range(200)]
    assert draws == [PairAugment.draw(s, 0.5, 0.75) for s in range(200)]
    assert 0.35 < np.mean([d.flip for d in draws]) < 0.65
    assert 0.6 < np.mean([d.k > 0 for d in draws]) < 0.9


def test_unique_locations_per_batch_and_rank_slices():
    loc = np.repeat(np.arange(40), 3)  # three pairs per location
    s = PairBatchSampler(loc, 8, seed=1)
    batches = s.batches(0)
    assert len(batches) == 15  # all 120 pairs, 8 distinct locations per batch
    for b in batches:
        assert len(set(loc[b])) == 8
    assert sorted(np.concatenate(batches)) == list(range(120))
    assert [b.tolist() for b in s.batches(0)] == [b.tolist() for b in PairBatchSampler(loc, 8, 1).batches(0)]
    assert s.batches(0)[0].tolist() != PairBatchSampler(loc, 8, 1).batches(1)[0].tolist()
    halves = [list(PairBatchSampler(loc, 8, 1, rank=r, world_size=2)) for r in (0, 1)]
    first = [p for p, _ in halves[0][0]] + [p for p, _ in halves[1][0]]
    assert first == batches[0].tolist()
    s.set_epoch(0, start=5)
    assert len(s) == 10 and [p for p, _ in next(iter(s))] == batches[5].tolist()
    with pytest.raises(UsageError, match="divisible"):
        PairBatchSampler(loc, 8, 1, world_size=3)
    with pytest.raises(UsageError, match="at most 40"):
        PairBatchSampler(loc, 64, 1)


def test_gps_batches_are_local():
    rng = np.random.default_rng(3)
    xy = rng.random((400, 2)) * 10_000
    nb = gps_neighbours(xy, 16)
    assert (nb != np.arange(400)[:, None]).all()
    brute = np.argsort(((xy[:, None] - xy[None]) ** 2).sum(-1), axis=1)[:, 1:17]
    assert np.array_equal(nb, brute)
    loc = np.arange(400)
    def spread(batches):
        out = []
        for b in batches:
            d = np.linalg.norm(xy[b][:, None] - xy[b][None], axis=2) + np.diag(np.full(len(b), np.inf))
            out.append(d.min(axis=1).mean())
        return np.mean(out)

    gps = PairBatchSampler(loc, 16, 1, nb, per_anchor=7).batches(0)
    plain = PairBatchSampler(loc, 16, 1).batches(0)
    assert len(gps) == len(plain) == 25
    assert spread(gps) < 0.5 * spread(plain)  # nearest in-batch neighbour much closer
    for b in gps:
        assert len(set(b.tolist())) == 16


def test_pairs_and_dataset(tmp_path):
    import torch

    from geobench.prepared import read_prepared
    from geobench.train.cards import resolve_card
    from geobench.train.data import PairDataset, build_pairs
    from tests._train_world import register_test_model, write_world

    name = register_test_model()
    ds = read_prepared(write_world(tmp_path, n_train=5, n_test=2))
    pairs = build_pairs(ds, "train", "ground", "polar")  # polar computed from aerial rows
    assert len(pairs) == 5 and pairs.reference.on_the_fly_polar and pairs.n_locations == 5
    card = resolve_card(name)
    data = PairDataset(pairs, card, hflip_p=1.0, rotate_p=1.0)
    q, r = data[(0, 123)]
    assert q.shape == (3, 16, 64) and r.shape == (3, 16, 64) and q.dtype == torch.float32
    assert torch.equal(q, data[(0, 123)][0])  # same seed, same augmentation
    with pytest.raises(DataError, match="no train query rows of view 'drone'"):
        build_pairs(ds, "train", "drone", "aerial")
    (ds.raw_root / "ground" / "train0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="train0.png: damaged image"):
        PairDataset(build_pairs(ds, "train", "ground", "aerial"), card)[(0, 1)]
