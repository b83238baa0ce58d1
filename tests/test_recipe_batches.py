"""`--set`, recipe keys that are used or refused (never silently dropped), places x images
batches with the multi-similarity miner (MixVPR) and similarity hard sampling (Sample4Geo)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from geobench.errors import DataError, UsageError
from geobench.losses import MultiSimilarity
from geobench.progress import set_quiet
from geobench.train.batching import PlaceBatchSampler, similarity_table
from geobench.train.checkpoint import load_checkpoint
from geobench.train.cli_glue import ignored_warnings
from geobench.train.config import parse_sets, resolve_config
from geobench.train.engine import train
from tests._train_world import _aerial, _colour, _pano, register_test_model, write_world

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = {"workers": 0, "eval_every": 0}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    set_quiet(True)
    register_test_model()
    return write_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def places_world(tmp_path_factory):
    """6 places, each one aerial reference seen by 3 ground queries (3 pairs per place)."""
    import cv2

    from geobench.prepared import write_prepared

    set_quiet(True)
    register_test_model()
    root = tmp_path_factory.mktemp("places")
    rng, index, positives = np.random.default_rng(0), [], []
    for split, n in (("train", 6), ("test", 2)):
        for p in range(n):
            loc = f"{split}{p}"
            c = _colour(len(index))
            images = [(f"r{loc}", "reference", "aerial", _aerial(c, rng, 32))]
            images += [(f"q{loc}_{k}", "query", "ground", _pano(c, rng, 24, 96)) for k in range(3)]
            for uid, role, view, img in images:
                rel = f"{view}/{uid}.png"
                (root / "raw" / view).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / "raw" / rel), img[:, :, ::-1])
                index.append(dict(uid=uid, split=split, role=role, view=view, path=rel, item=loc,
                                  lat=40.0, lon=-75.0, utm_e=5e5 + 40 * p, utm_n=4.4e6, heading=0.0,
                                  city="t"))
                if role == "query":
                    positives.append(dict(split=split, query=uid, reference=f"r{loc}", distance_m=0.0,
                                          kind="train_positive" if split == "train" else "positive"))
    return write_prepared(root / "ds", index, positives, dataset="places", raw_root=root / "raw").root


# --- --set ----------------------------------------------------------------------------------
def test_parse_sets_builds_nested_yaml_values():
    got = parse_sets(["model_args.attention=cbam", "lr=1e-4", "model_args.attention_args.reduction=4",
                      "amp=false", "model_args.input_size.ground=[32, 128]", "lr=2e-4"])
    assert got == {"model_args": {"attention": "cbam", "attention_args": {"reduction": 4},
                                  "input_size": {"ground": [32, 128]}}, "lr": 2e-4, "amp": False}
    for bad in ("lr", "=1", "a..b=1", "lr=[1,"):
        with pytest.raises(UsageError, match="--set"):
            parse_sets([bad])


def test_set_on_the_command_line_layers_over_card_and_yaml(world, tmp_path, invoke):
    name = register_test_model()
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("lr: 0.001\nmodel_args: {width: 8, dropout: 0.2}\n")
    out = tmp_path / "run"
    res = invoke("train", name, "--data", world, "--out", out, "--config", yaml_file, "--preset", "tiny",
                 "--max-steps", "1", "--workers", "0", "--eval-every", "0", "--quiet",
                 "--set", "model_args.width=6", "--set", "lr=0.002", "--set", "loss_args.gamma=5")
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["lr"] == 0.002 and cfg["sources"]["lr"] == "cli"
    assert cfg["model_args"] == {"width": 6, "dropout": 0.2} and cfg["loss_args"]["gamma"] == 5
    assert cfg["variant"] == f"{name} width=6 dropout=0.2" and cfg["preset"] == "tiny"
    assert cfg["model_args_full"]["dim"] == 16 and cfg["model_args_full"]["width"] == 6
    # The evaluation's files name the same row.
    res = invoke("eval", out, "--data", world, "--split", "test", "--protocol", "pairs", "--quiet")
    assert res.exit_code == 0, res.output
    from geobench.eval.results import read_metrics

    row = read_metrics(next(out.glob("eval/*/metrics.csv"))).iloc[0]
    assert (row["variant"], row["preset"]) == (f"{name} width=6 dropout=0.2", "tiny")
    assert json.loads(row["model_args"]) == cfg["model_args_full"]


@pytest.mark.parametrize("sets,message", [
    (["lr=fast"], "command line: lr = 'fast' is not a valid float"),
    (["bogus=1"], "unknown training option 'bogus'"),
    (["model_args=3"], "model_args = 3 is not a valid dict"),
    (["lrr"], "expected KEY=VALUE"),
])
def test_set_errors_are_one_line(world, tmp_path, invoke, sets, message):
    args = [a for s in sets for a in ("--set", s)]
    res = invoke("train", register_test_model(), "--data", world, "--out", tmp_path / "r", *args)
    assert res.exit_code != 0 and message in res.output
    assert "Traceback" not in res.output and res.output.strip().count("\n") == 0


def test_set_and_option_for_one_key_is_refused(world, tmp_path, invoke):
    res = invoke("train", register_test_model(), "--data", world, "--out", tmp_path / "r",
                 "--lr", "0.1", "--set", "lr=0.2")
    assert res.exit_code != 0 and "lr given both as an option and with --set" in res.output


# --- recipe keys are used, refused or warned about -------------------------------------------
def test_paper_recipes_leave_nothing_ignored():
    for name in ("mcgra", "lrfr", "safa", "convnext_gap", "mixvpr"):
        cfg = resolve_config(name, "ds", "run")
        assert "ignored" not in cfg.sources, (name, cfg.sources)
    mix = resolve_config("mixvpr", "ds", "run")
    assert (mix.miner, mix.miner_args, mix.images_per_place) == ("multi_similarity", {"epsilon": 0.1}, 4)
    assert resolve_config("convnext_gap", "ds", "run").sampling == "gps_similarity"


def test_unknown_card_keys_are_warned_on_the_console(world, tmp_path, invoke):
    from geobench.models.registry import MODELS, ModelCard, register_model

    if "_oddrecipe_test" not in MODELS:
        base = MODELS.entry(register_test_model())
        card = ModelCard(**{**base.card.__dict__, "recipe": {**base.card.recipe, "dream_mode": True}})
        register_model(card=card, name="_oddrecipe_test")(base.factory)
    cfg = resolve_config("_oddrecipe_test", world, tmp_path / "x")
    assert ignored_warnings(cfg) == ["'dream_mode' from the card is not a geobench training option and "
                                     "is not used (recorded under sources.ignored in config.json)"]
    res = invoke("train", "_oddrecipe_test", "--data", world, "--out", tmp_path / "r", "--max-steps", "1",
                 "--workers", "0", "--eval-every", "0", "--quiet")
    assert res.exit_code == 0 and "warning: 'dream_mode' from the card" in res.output


@pytest.mark.parametrize("cli,message", [
    ({"miner": "multi_similarity"}, "mines pairs for loss multi_similarity, not soft_margin_triplet"),
    ({"images_per_place": 2}, "needs a loss that takes place labels"),
    ({"loss": "multi_similarity", "images_per_place": 2, "sampling": "gps"}, "builds its own places"),
    ({"loss": "multi_similarity", "images_per_place": 4, "batch_size": 7}, "multiple of images_per_place / 2"),
    ({"loss": "multi_similarity", "images_per_place": 3}, "must be even"),
    ({"places": "components"}, "places = 'components'"),
    ({"place_cell_m": 0}, "place_cell_m"),
    ({"loss": "multi_similarity", "miner": "hardest"}, "miner = 'hardest'"),
])
def test_batch_and_miner_options_are_checked(cli, message):
    with pytest.raises(UsageError, match=message):
        resolve_config(register_test_model(), "ds", "run", cli=cli)


# --- places x images and the multi-similarity miner ------------------------------------------
def _pairset(locations, city=None, query_ids=None, reference_ids=None, xy=None):
    """Pairs of the given places; with `xy`, places closer than 25 m conflict."""
    from types import SimpleNamespace

    from geobench.train.places import Places

    locations = np.asarray(locations)
    n = int(locations.max()) + 1
    places = Places(place=locations, xy=np.zeros((n, 2)) if xy is None else xy, definition="test",
                    each_pair=False, city=np.asarray(city if city is not None else [""] * n),
                    separation_m=None if xy is None else 25.0,
                    reach=None if xy is None else np.zeros(n))
    return SimpleNamespace(places=places, query_ids=query_ids, reference_ids=reference_ids)


def test_place_batches_are_places_times_images():
    locations = np.repeat(np.arange(7), [3, 3, 2, 5, 1, 3, 4])
    # images_per_place 6: three pairs of each place.
    sampler = PlaceBatchSampler(_pairset(locations), batch_size=6, images_per_place=6, seed=0)
    seen = []
    for batch in sampler.batches(0):
        places = locations[batch].reshape(2, 3)
        assert (places == places[:, :1]).all() and places[0, 0] != places[1, 0]
        assert len(set(batch.tolist())) == 6
        seen += places[:, 0].tolist()
    assert sorted(seen) == sorted(set(seen)) and set(seen) <= {0, 1, 3, 5, 6}  # >= 3 pairs each
    assert len(seen) == 4 and sampler.steps_per_epoch() == 2
    with pytest.raises(DataError, match="images_per_place 8 needs at least"):
        PlaceBatchSampler(_pairset(locations), batch_size=12, images_per_place=8, seed=0)


def test_place_batches_over_many_epochs_keep_mixvpr_properties():
    """GSV-Cities: each eligible place once per epoch, K images of different files, the
    places of one city together, and no two conflicting places in one batch."""
    rng = np.random.default_rng(3)
    n_places = 60
    counts = rng.integers(1, 6, n_places)
    locations = np.repeat(np.arange(n_places), counts)
    n = len(locations)
    # Pairs of one place: queries q0.. and references r0.., some sharing the query.
    query_ids = np.array([10 * loc + (i // 2) for loc, c in zip(range(n_places), counts) for i in range(c)])
    reference_ids = np.arange(n) + 1000
    city = np.where(np.arange(n_places) < 30, "a", "b")
    p = np.arange(n_places)
    xy = np.stack([100.0 * (p // 2) + 5.0 * (p % 2), np.zeros(n_places)], axis=1)  # 0-1, 2-3, .. 5 m apart
    pairs = _pairset(locations, city, query_ids, reference_ids, xy)
    assert [c.tolist() for c in pairs.places.conflicts()] == [[q ^ 1] for q in range(n_places)]
    sampler = PlaceBatchSampler(pairs, batch_size=8, images_per_place=4, seed=1)
    eligible = set(np.flatnonzero(counts >= 2).tolist())
    for epoch in range(20):
        batches = sampler.batches(epoch)
        used = []
        for batch in batches:
            places = locations[batch].reshape(4, 2)
            assert (places == places[:, :1]).all()
            ids = places[:, 0].tolist()
            used += ids
            assert not any(p ^ 1 in ids for p in ids)  # no conflicting places together
            for a, b in batch.reshape(4, 2).tolist():
                # four different images whenever the place has two disjoint pairs
                disjoint = query_ids[a] != query_ids[b] or counts[locations[a]] < 3
                assert disjoint and reference_ids[a] != reference_ids[b]
            assert len(set(city[ids])) <= 2
        assert len(used) == len(set(used)) and set(used) <= eligible
        assert len(used) >= len(eligible) - 8  # at most a batch's worth left over
        # city by city: once the second city starts, only places that waited for a batch
        # without their conflicting neighbour come back from the first
        seq = "".join(city[used])
        assert seq.count("a", seq.index("b")) <= 2


def test_multi_similarity_with_place_labels_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1)
    r = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1)
    labels = torch.tensor([0, 0, 0, 5, 5, 5])
    loss = MultiSimilarity(alpha=2.0, beta=10.0, base=0.5, epsilon=0.1)
    x, lab = torch.cat([q, r]), labels.repeat(2)
    total = 0.0
    for a in range(12):
        s = x @ x[a]
        pos = [j for j in range(12) if j != a and lab[j] == lab[a]]
        neg = [j for j in range(12) if lab[j] != lab[a]]
        keep_neg = [j for j in neg if s[j] + 0.1 > min(s[p] for p in pos)]
        keep_pos = [j for j in pos if s[j] - 0.1 < max(s[n] for n in neg)]
        total += (torch.log1p(sum(torch.exp(-2.0 * (s[j] - 0.5)) for j in keep_pos) if keep_pos else torch.tensor(0.0)) / 2.0
                  + torch.log1p(sum(torch.exp(10.0 * (s[j] - 0.5)) for j in keep_neg) if keep_neg else torch.tensor(0.0)) / 10.0)
    torch.testing.assert_close(loss(q, r, labels=labels), total / 12)
    # Without labels every pair is its own place.
    torch.testing.assert_close(loss(q, r), loss(q, r, labels=torch.arange(6)))


def test_places_training_feeds_place_labels_to_the_loss(places_world, tmp_path, monkeypatch):
    seen = []
    original = MultiSimilarity.forward

    def spy(self, q, r, labels=None):
        seen.append(labels.clone())
        return original(self, q, r, labels)

    monkeypatch.setattr(MultiSimilarity, "forward", spy)
    cfg = resolve_config(register_test_model(), places_world, tmp_path / "run", cli={
        **FAST, "loss": "multi_similarity", "loss_args": {}, "miner": "multi_similarity",
        "images_per_place": 6, "batch_size": 6, "epochs": 1})
    summary = train(cfg)
    assert summary.steps == 3 and len(seen) == 3  # 6 places / 2 per batch
    for labels in seen:
        assert labels.shape == (6,) and len(set(labels.tolist())) == 2
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (written["images_per_place"], written["miner"]) == (6, "multi_similarity")
    assert written["training_places"]["definition"] == "item" and written["training_places"]["n_places"] == 6


# --- Sample4Geo similarity sampling -----------------------------------------------------------
def test_similarity_table_matches_brute_force():
    rng = np.random.default_rng(0)
    q, r = rng.normal(size=(9, 4)), rng.normal(size=(9, 4))
    table = similarity_table(q, r, 3, block=4)
    for i in range(9):
        sim = q[i] @ r.T
        sim[i] = -np.inf
        assert table[i].tolist() == np.argsort(-sim, kind="stable")[:3].tolist()


def test_similarity_sampling_rebuilds_the_table_and_resumes(world, tmp_path):
    name = register_test_model()
    cli = {**FAST, "sampling": "gps+similarity", "gps_neighbours": 1, "similarity_range": 3,
           "batch_size": 4, "epochs": 3}
    straight = train(resolve_config(name, world, tmp_path / "a", cli=cli))
    state = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    table = state["neighbours"]
    assert table.shape == (12, 3) and (table != torch.arange(12)[:, None]).all()
    assert json.loads((tmp_path / "a" / "config.json").read_text())["sampling"] == "gps_similarity"

    class Stop(Exception):
        pass

    def stop_after_epoch_two(info):
        if info.step == 6:
            raise Stop

    with pytest.raises(Stop):
        train(resolve_config(name, world, tmp_path / "b", cli=cli), on_step=stop_after_epoch_two)
    # Step 6 ended epoch 2 before its checkpoint: resume from epoch 1's, with its table.
    resumed = train(resolve_config(name, world, tmp_path / "b", cli={**cli, "resume": True}))
    assert resumed.steps == straight.steps == 9
    a, b = load_checkpoint(tmp_path / "a" / "checkpoint.pt"), load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for k, v in a["model_state"].items():
        torch.testing.assert_close(b["model_state"][k], v, rtol=0, atol=0)


@pytest.fixture(scope="module")
def vg_world(tmp_path_factory):
    """A VG-style train split: 130 queries 60 m apart along streets of two cities, each with
    two database images within 10 m (train_positive) and one 20 m away (positive only)."""
    import cv2

    from geobench.prepared import write_prepared

    root = tmp_path_factory.mktemp("vg")
    rng, index, links = np.random.default_rng(0), [], []
    for split, n in (("train", 130), ("test", 4)):
        for i in range(n):
            city = "a" if i % 2 else "b"
            e, north = 500_000.0 + 60.0 * (i // 2), 4e6 + (0 if city == "a" else 5_000)
            shots = [(f"{split}q{i}", "query", 0.0), (f"{split}d{i}a", "reference", 3.0),
                     (f"{split}d{i}b", "reference", 7.0), (f"{split}d{i}c", "reference", 20.0)]
            for uid, role, d in shots:
                rel = f"img/{uid}.png"
                (root / "raw" / "img").mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / "raw" / rel), rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))
                index.append(dict(uid=uid, split=split, role=role, view="street", path=rel, item="",
                                  lat=40.0, lon=-75.0, utm_e=e + d, utm_n=north, heading="", city=city))
                if role == "reference":
                    links.append(dict(split=split, query=f"{split}q{i}", reference=uid, distance_m=d,
                                      kind="positive"))
                    if split == "train" and d <= 10:
                        links.append(dict(split=split, query=f"{split}q{i}", reference=uid,
                                          distance_m=d, kind="train_positive"))
    return write_prepared(root / "ds", index, links, dataset="vgmini", raw_root=root / "raw").root


def test_mixvpr_trains_with_its_paper_batch_on_a_vg_world(vg_world, tmp_path, invoke):
    """120 places x 4 images (240 pairs) per step, as MixVPR; the 25 m links chained every
    place of a street into one location before, which made any batch above 2 impossible."""
    out = tmp_path / "run"
    res = invoke("train", "mixvpr", "--data", vg_world, "--out", out, "--max-steps", "1",
                 "--workers", "0", "--eval-every", "0", "--pretrained", "none", "--quiet",
                 "--set", "model_args.backbone=resnet_micro", "--set", "model_args.mixvpr_dim=16",
                 "--set", "model_args.mix_depth=1", "--set", "model_args.out_rows=1",
                 "--set", "model_args.input_size={street: [32, 32]}")
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["batch_size"], cfg["images_per_place"], cfg["places"]) == (240, 4, "utm_cell")
    assert cfg["training_places"]["definition"] == "utm_cell" and cfg["training_places"]["n_places"] == 130
    assert cfg["n_pairs"] == 260 and cfg["steps_per_epoch"] == 1  # 130 places: one batch of 120
