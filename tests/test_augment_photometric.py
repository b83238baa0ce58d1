"""Photometric augmentations (Sample4Geo / LRFR / MixVPR pipelines): they keep a pair's
geometry, draw from each image's own seeded stream, and are card keys `--set` switches."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from geobench.errors import UsageError
from geobench.train import photometric as P
from geobench.train.augment_options import AUGMENT, resolve_augment
from geobench.train.randaugment import rand_augment

ALL_ON = {"jpeg_p": 1.0, "color_jitter_p": 1.0, "blur_sharpen_p": 1.0, "dropout_p": 1.0}


def _square(h=48, w=64):
    """A bright square on a dark background: its outline is the geometry to keep."""
    img = np.full((h, w, 3), 40, np.uint8)
    img[12:30, 20:44] = [220, 180, 120]
    return img


def _outline(img):
    bright = img.astype(int).sum(axis=2) > 3 * 110
    rows, cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
    return rows.min(), rows.max(), cols.min(), cols.max()


@pytest.mark.parametrize("seed", range(8))
def test_colour_and_jpeg_keep_the_geometry(seed):
    img = _square()
    rng = np.random.default_rng(seed)
    spec = resolve_augment({"jpeg_p": 1.0, "color_jitter_p": 1.0})
    out = P.photometric(P.before_resize(img, spec, rng), spec, "query", rng)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert _outline(out) == _outline(img) == (12, 29, 20, 43)
    assert not np.array_equal(out, img)


def test_blur_and_sharpen_kernels_are_centred():
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(50):
        k = P.draw_blur_or_sharpen(rng)
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
        if (k < 0).any():  # Sharpen: (1 - a) I + a [-1 .. 8 + l ..]: sum 1 - a (1 - l)
            kinds.add("sharpen")
            assert k.shape == (3, 3) and 0.75 <= k.sum() <= 1.0
        else:  # AdvancedBlur: normalised, a flat image stays flat
            kinds.add("blur")
            assert k.sum() == pytest.approx(1.0, abs=1e-5) and k.shape[0] in (3, 5, 7)
        # symmetric about the centre (up to the kernel noise): an edge does not move
        np.testing.assert_allclose(k, k[::-1, ::-1], rtol=0, atol=0.12 * k.max())
    assert kinds == {"blur", "sharpen"}


def test_dropout_only_blackens_holes():
    rng = np.random.default_rng(1)
    img = np.random.default_rng(2).integers(1, 255, (40, 80, 3), dtype=np.uint8)
    for _ in range(20):
        holes = P.draw_holes(rng, 40, 80, 0.4)
        out = P.cut_holes(img, holes)
        mask = np.zeros((40, 80), bool)
        for x1, y1, x2, y2 in holes:
            assert 0 <= x1 <= x2 <= 80 and 0 <= y1 <= y2 <= 40
            mask[y1:y2, x1:x2] = True
        assert (out[mask] == 0).all() and np.array_equal(out[~mask], img[~mask])
        if len(holes) <= 25 and not np.array_equal(np.array(holes), np.array(P.grid_holes(40, 80, 0.4))):
            assert 10 <= len(holes) and all(4 <= y2 - y1 <= 8 and 4 <= x2 - x1 <= 8
                                            for x1, y1, x2, y2 in holes)  # 0.1-0.2 x height


def test_probabilities_are_respected():
    img = _square()
    spec = resolve_augment({"color_jitter_p": 0.5})
    changed = [not np.array_equal(P.photometric(img, spec, "query", np.random.default_rng(s)), img)
               for s in range(400)]
    assert 0.42 < np.mean(changed) < 0.58
    off = resolve_augment({})
    assert all(np.array_equal(P.photometric(img, off, "query", np.random.default_rng(s)), img)
               for s in range(20))


def test_randaugment_is_seeded_and_varies():
    img = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    a = [rand_augment(img, np.random.default_rng(s)) for s in range(30)]
    b = [rand_augment(img, np.random.default_rng(s)) for s in range(30)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len({x.tobytes() for x in a}) > 20


def test_augment_options_are_checked():
    assert resolve_augment(None) == {k: v for k, (v, _) in AUGMENT.items()}
    for bad, message in (({"dropout": 0.3}, "did you mean dropout_p"), ({"jpeg_p": 2}, "probability"),
                         ({"jpeg_quality": [100, 90]}, "low <= high"), ({"color_jitter_p": "x"}, "numbers"),
                         ({"randaugment_ops": 1.5}, "numbers")):
        with pytest.raises(UsageError, match=message):
            resolve_augment(bad)


def test_cards_carry_the_official_pipelines_and_set_switches_one_off():
    from geobench.train.config import resolve_config

    s4g = resolve_config("convnext_gap", "ds", "run")
    assert (s4g.hflip_p, s4g.rotate_p, s4g.gps_neighbours, s4g.similarity_range) == (0.5, 0.75, 64, 128)
    assert resolve_augment(s4g.augment) == {**resolve_augment({}), **ALL_ON, "jpeg_p": 0.5,
                                            "color_jitter_p": 0.5, "blur_sharpen_p": 0.3,
                                            "dropout_p": 0.3, "grid_ratio_query": 0.5,
                                            "grid_ratio_reference": 0.4}
    lrfr = resolve_config("lrfr", "ds", "run")
    assert lrfr.rotate_p == 0.75 and lrfr.augment["grid_ratio_query"] == 0.4
    mix = resolve_config("mixvpr", "ds", "run")
    assert mix.hflip_p == 0.0 and mix.augment["randaugment_ops"] == 3 and mix.places == "utm_cell"
    off = resolve_config("convnext_gap", "ds", "run", cli={"augment": {"dropout_p": 0}})
    assert off.augment["dropout_p"] == 0 and off.augment["jpeg_p"] == 0.5  # merged, one key off
    none = resolve_config("convnext_gap", "ds", "run", cli={"augment": "none"})
    assert resolve_augment(none.augment) == resolve_augment({}) and none.rotate_p == 0.75
    with pytest.raises(UsageError, match="unknown augmentation 'blur'"):
        resolve_config("convnext_gap", "ds", "run", cli={"augment": {"blur": 0}})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from geobench.progress import set_quiet
    from tests._train_world import register_test_model, write_world

    set_quiet(True)
    register_test_model()
    return write_world(tmp_path_factory.mktemp("w"), n_train=8, n_test=2)


def _dataset(world, **augment):
    from geobench.prepared import read_prepared
    from geobench.train.cards import resolve_card
    from geobench.train.data import PairDataset, build_pairs
    from tests._train_world import register_test_model

    pairs = build_pairs(read_prepared(world), "train", "ground", "aerial")
    return PairDataset(pairs, resolve_card(register_test_model()), 0.5, 0.75, augment={**ALL_ON, **augment})


def test_pair_items_depend_on_their_seed_only(world):
    data = _dataset(world)
    a = data[(3, 77)]
    data[(1, 5)]  # other items in between do not change it
    b = data[(3, 77)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = data[(3, 78)]
    assert not torch.equal(a[0], c[0])
    # the query and reference streams are not the same stream
    assert not torch.equal(_dataset(world)[(3, 77)][0], _dataset(world, jpeg_p=0.0)[(3, 77)][0])


def test_workers_give_the_same_batches_as_the_main_process(world):
    """Each item's randomness is its (pair, seed) key's: two worker processes give exactly
    what one process gives, whatever worker loads which item."""
    from geobench.train.data import worker_init

    data = _dataset(world)
    batches = [[(i, 1000 + i) for i in range(4)], [(i, 2000 + i) for i in range(4, 8)]]

    def run(workers):
        loader = torch.utils.data.DataLoader(data, batch_sampler=batches, num_workers=workers,
                                             worker_init_fn=worker_init)
        return [torch.cat([q.flatten(1), r.flatten(1)], 1) for q, r in loader]

    for x, y in zip(run(0), run(2)):
        assert torch.equal(x, y)


def test_training_records_the_augmentation(world, tmp_path, invoke):
    from tests._train_world import register_test_model

    out = tmp_path / "run"
    res = invoke("train", register_test_model(), "--data", world, "--out", out, "--max-steps", "1",
                 "--workers", "0", "--eval-every", "0", "--quiet", "--batch-size", "4",
                 "--set", "augment.dropout_p=0.3", "--set", "augment.randaugment_ops=2")
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["augment"] == {"dropout_p": 0.3, "randaugment_ops": 2} and cfg["sources"]["augment"] == "cli"
    bad = invoke("train", register_test_model(), "--data", world, "--out", tmp_path / "r2",
                 "--set", "augment.dropout_p=3")
    assert bad.exit_code != 0 and "augment.dropout_p = 3.0 must be a probability" in bad.output
    assert not (tmp_path / "r2" / "config.json").exists()


def test_flip_turn_and_photometric_keep_a_pair_aligned(tmp_path):
    """A panorama made as the polar view of its aerial (a red mark to the east): after the
    pair's random flip, quarter turn (panorama rolled with it) and each image's own colour,
    blur and JPEG, the mark is at the same azimuth in the panorama and in the aerial."""
    from types import SimpleNamespace

    import cv2

    from geobench.geometry.polar import polar_transform
    from geobench.prepared import read_prepared, write_prepared
    from geobench.train.data import PairDataset, build_pairs

    index, links = [], []
    for i, (dx, dy) in enumerate(((20, 0), (0, -20))):  # marks east and north of the centre
        aerial = np.full((64, 64, 3), 60, np.uint8)
        cv2.circle(aerial, (32 + dx, 32 + dy), 6, (230, 20, 20), -1)
        pano = polar_transform(aerial, (16, 64))
        for uid, role, view, img in ((f"g{i}", "query", "ground", pano), (f"a{i}", "reference", "aerial", aerial)):
            cv2.imwrite(str(tmp_path / f"{uid}.png"), img[:, :, ::-1])
            index.append(dict(uid=uid, split="train", role=role, view=view, path=f"{uid}.png", item=str(i),
                              lat=0, lon=0, utm_e=5e5 + 100 * i, utm_n=4e6, heading=0.0, city="c"))
        links.append(dict(split="train", query=f"g{i}", reference=f"a{i}", kind="positive", distance_m=0.0))
    ds = read_prepared(write_prepared(tmp_path / "ds", index, links, dataset="t", raw_root=tmp_path).root)
    card = SimpleNamespace(input_size={"ground": (16, 64), "aerial": (64, 64)}, mean=(0, 0, 0), std=(1, 1, 1))
    data = PairDataset(build_pairs(ds, "train", "ground", "aerial"), card, 0.5, 1.0,
                       augment={"jpeg_p": 1.0, "color_jitter_p": 1.0, "blur_sharpen_p": 1.0})

    def mark_column(img):
        red = img[..., 0].astype(float) - img[..., 1]
        return int(np.argmax(red.sum(axis=0)))

    moved = set()
    for seed in range(24):
        for i in (0, 1):
            q, r = (np.clip(t.numpy().transpose(1, 2, 0) * 255 + 0.5, 0, 255).astype(np.uint8)
                    for t in data[(i, seed)])
            want, got = mark_column(polar_transform(r, (16, 64))), mark_column(q)
            assert min((want - got) % 64, (got - want) % 64) <= 2, (seed, i, want, got)
            moved.add(got)
    assert len(moved) >= 4  # the marks did travel round the panorama
