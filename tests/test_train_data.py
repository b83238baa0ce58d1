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


def _first_batch_groups(batch, table, select):
    """Split a batch into Sample4Geo groups: an anchor followed by its selected neighbours."""
    groups, i = [], 0
    batch = batch.tolist()
    while i < len(batch):
        row = set(table[batch[i]].tolist())
        j = i + 1
        while j < len(batch) and batch[j] in row and j - i <= select:
            j += 1
        groups.append(batch[i:j])
        i = j
    return groups


def test_gps_batches_take_sample4geo_share_of_near_and_far_neighbours():
    """Sample4Geo's shuffle: each anchor brings its select/2 nearest candidates and select/2
    drawn from the rest of its range, those unused this epoch, so that early in an epoch a
    batch of B holds ceil(B / (1 + select)) anchors; over many epochs every far candidate
    is drawn about equally often."""
    n, batch, select, rng_ = 600, 10, 4, 8
    xy = np.stack([np.arange(n) * 100.0, np.zeros(n)], axis=1)
    table = gps_neighbours(xy, rng_)
    s = PairBatchSampler(np.arange(n), batch, 1, table, per_anchor=select)
    far_hits = np.zeros(rng_ - select // 2)
    for epoch in range(30):
        first = s.batches(epoch)[0]
        assert len(set(first.tolist())) == batch
        groups = _first_batch_groups(first, table, select)
        assert [len(g) for g in groups] == [5, 5]  # anchor + select, twice
        for g in groups:
            row = table[g[0]].tolist()
            assert g[1:3] == row[:2]                 # the near half, in order
            assert set(g[3:]) <= set(row[2:])        # the far half from the rest of the range
            for v in g[3:]:
                far_hits[row.index(v) - 2] += 1
    assert far_hits.min() > 0 and far_hits.max() < 3 * far_hits.mean()


def test_netvlad_places_never_share_a_batch_within_the_negative_radius():
    """Places 12 m apart on a line (reach 0): each conflicts with its two neighbours on
    each side (24 m), and no batch of any epoch holds two places closer than 25 m."""
    from geobench.train.places import Places

    n = 300
    xy = np.stack([np.arange(n) * 12.0, np.zeros(n)], axis=1)
    place = np.repeat(np.arange(n), 4)  # four positives per query
    places = Places(place=place, xy=xy, city=np.full(n, ""), definition="netvlad", each_pair=False,
                    separation_m=25.0, reach=np.zeros(n))
    conflicts = places.conflicts()
    assert conflicts[10].tolist() == [8, 9, 11, 12] and conflicts[0].tolist() == [1, 2]
    s = PairBatchSampler(place, 32, 0, conflicts=conflicts, each_pair=False)
    for epoch in range(10):
        batches = s.batches(epoch)
        used = np.concatenate(batches)
        assert len(set(place[used])) == len(used)  # one pair per place per epoch
        assert len(batches) >= 6  # 300 places at most 3 apart in id: at least 2/3 usable
        for b in batches:
            x = np.sort(xy[place[b], 0])
            assert np.diff(x).min() > 25.0


def test_build_pairs_places(tmp_path):
    """VG: train_positive links (10 m) are the pairs, each query a place (netvlad), or UTM
    cells; items give item places; the choice is recorded."""
    from geobench.prepared import read_prepared, write_prepared
    from geobench.train.pairs import build_pairs

    index, links = [], []
    for i in range(6):  # queries every 40 m, each with two database images 3 and 8 m away
        e = 500_000.0 + 40 * i
        index.append(dict(uid=f"q{i}", split="train", role="query", view="street", path=f"q{i}.jpg",
                          item="", lat=0, lon=0, utm_e=e, utm_n=4e6, heading="", city="c"))
        for k, d in enumerate((3.0, 8.0)):
            index.append(dict(uid=f"d{i}{k}", split="train", role="reference", view="street",
                              path=f"d{i}{k}.jpg", item="", lat=0, lon=0, utm_e=e + d, utm_n=4e6,
                              heading="", city="c"))
            links.append(dict(split="train", query=f"q{i}", reference=f"d{i}{k}", kind="train_positive",
                              distance_m=d))
        links.append(dict(split="train", query=f"q{i}", reference=f"d{(i + 1) % 6}0", kind="positive",
                          distance_m=20.0))
    ds = read_prepared(write_prepared(tmp_path / "ds", index, links, dataset="t", raw_root=tmp_path).root)
    pairs = build_pairs(ds, "train", "street", "street")
    assert len(pairs) == 12 and pairs.places.definition == "netvlad"  # the 25 m links are not pairs
    assert pairs.location.tolist() == np.repeat(np.arange(6), 2).tolist()
    # centre: mean of 0, 3, 8 m; reach: the image 8 m away
    assert not pairs.places.each_pair and pairs.places.reach == pytest.approx(np.full(6, 8 - 11 / 3))
    conflicts = pairs.places.conflicts()  # 40 m apart, reach ~4.3 m: 40 > 25 + 8.7, no conflict
    assert all(len(c) == 0 for c in conflicts)
    cells = build_pairs(ds, "train", "street", "street", "utm_cell", cell_m=80.0)
    assert cells.places.definition == "utm_cell" and cells.n_locations == 3
    assert cells.places.to_json()["cell_m"] == 80.0
    # cells' images at 0..48, 80..128, 160..208 m: the closest of two cells 32 m apart
    assert [len(c) for c in cells.places.conflicts()] == [0, 0, 0]
    single = build_pairs(ds, "train", "street", "street", "pair")
    assert single.n_locations == 12 and single.places.each_pair
    with pytest.raises(DataError, match="no item id"):
        build_pairs(ds, "train", "street", "street", "item")


def test_every_catalog_dataset_says_what_a_training_place_is():
    from geobench.catalog import load_catalog
    from geobench.train.places import DEFINITIONS

    for spec in load_catalog().values():
        first = spec.training_places.split(":")[0].split(" ")[0]
        assert first in DEFINITIONS or first == "by", (spec.name, spec.training_places)
        assert ("training places", spec.training_places) in spec.card_rows()


def test_too_close_places_for_a_batch_is_a_usage_error():
    from types import SimpleNamespace

    from geobench.train.batching import make_sampler
    from geobench.train.places import Places

    n = 10  # ten places 5 m apart: every two conflict, no batch of 4 exists
    places = Places(place=np.arange(n), xy=np.stack([np.arange(n) * 5.0, np.zeros(n)], 1),
                    city=np.full(n, ""), definition="netvlad", each_pair=False, separation_m=25.0,
                    reach=np.zeros(n))
    cfg = SimpleNamespace(images_per_place=1, sampling="unique", batch_size=4, seed=0)
    with pytest.raises(UsageError, match="no batch of 4 places more than 25.0 m apart"):
        make_sampler(SimpleNamespace(places=places, xy=places.xy), cfg)
    spread = Places(place=np.arange(n), xy=np.stack([np.arange(n) * 50.0, np.zeros(n)], 1),
                    city=np.full(n, ""), definition="netvlad", each_pair=False, separation_m=25.0,
                    reach=np.zeros(n))
    sampler, _ = make_sampler(SimpleNamespace(places=spread, xy=spread.xy), cfg)
    assert sampler.steps_per_epoch() == 2
