"""Model selection never sees test: the validation split carved from train, by place."""
from __future__ import annotations

import csv
import json

import pandas as pd
import pytest

from geobench.errors import UsageError
from geobench.prepared import read_prepared
from geobench.train.holdout import carve, places, selection
from tests._train_world import register_test_model, write_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    register_test_model()
    return write_world(tmp_path_factory.mktemp("world"), n_train=30, n_test=6)


def test_carve_is_by_place_and_seeded(world):
    ds = read_prepared(world)
    # join places: q0 also sees r1, and q2's place shares r3's item id
    extra = pd.DataFrame([dict(split="train", query="q0", reference="r1", kind="train_positive",
                               distance_m=0.0)])
    index = ds.index.copy()
    index.loc[index["uid"] == "r3", "item"] = "2"
    from dataclasses import replace

    ds = replace(ds, index=index, positives=pd.concat([ds.positives, extra], ignore_index=True))
    before = places(ds.select(split="train"), ds.positives[ds.positives["split"] == "train"])
    assert len(set(before)) == 28  # 30 pairs, 2 joins
    for seed in range(6):
        carved, info = carve(ds, "train", 0.2, seed)
        val = set(carved.select(split="val")["uid"])
        train = set(carved.select(split="train")["uid"])
        assert val and train and not val & train
        assert info.source == "carved from train" and info.n_queries >= 6
        links = carved.positives
        for _, link in links.iterrows():  # no link crosses the cut
            assert (link["query"] in val) == (link["reference"] in val)
        assert ({"q0", "r0", "r1", "q1"} <= val) or not ({"q0", "r0", "r1", "q1"} & val)
        assert ({"q2", "r2", "q3", "r3"} <= val) or not ({"q2", "r2", "q3", "r3"} & val)
        assert set(links[links["split"] == "val"]["kind"]) == {"positive"}
        assert set(carved.select(split="test")["uid"]) == set(ds.select(split="test")["uid"])
    again, _ = carve(ds, "train", 0.2, 3)
    assert set(again.select(split="val")["uid"]) == set(carve(ds, "train", 0.2, 3)[0].select(
        split="val")["uid"])
    assert ds.select(split="val").empty  # the dataset itself is untouched


def test_selection_rules(world, tmp_path):
    ds = read_prepared(world)
    with pytest.raises(UsageError, match="never selected on the test split"):
        selection(ds, "train", "test", 0.1, 0)
    assert selection(ds, "train", None, 0.0, 0)[1].source == "none"
    own = read_prepared(write_world(tmp_path / "v", n_train=8, n_test=3, with_val=True))
    same, info = selection(own, "train", None, 0.1, 0)
    assert same is own and info.source == "dataset" and info.n_queries == 3
    tiny = read_prepared(write_world(tmp_path / "t", n_train=2, n_test=2))
    with pytest.raises(UsageError, match="too few to carve"):
        selection(tiny, "train", None, 0.1, 0)


def test_training_selects_on_carved_val_and_labels_test(invoke, world, tmp_path):
    name = register_test_model()
    run = tmp_path / "run"
    res = invoke("train", name, "--data", world, "--out", run, "--epochs", "2", "--workers", "0",
                 "--eval-every", "1", "--eval-test", "--val-fraction", "0.2", "--val-seed", "4",
                 "--quiet")
    assert res.exit_code == 0, res.output
    assert "on val carved from train" in res.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["validation"]["source"] == "carved from train"
    assert config["validation"]["fraction"] == 0.2 and config["validation"]["seed"] == 4
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert rows[0]["eval_split"] == "val" and rows[0]["test_r@1"] != "" and rows[0]["r@1"] != ""
    import torch

    best = torch.load(run / "best.pt", weights_only=True)["best"]
    assert best["split"] == "val" and best["split_source"] == "carved from train"
    # the carve's size and how sure the choice is, in config.json, log.csv and the warning
    n = config["validation"]["n_queries"]
    assert best["n_queries"] == n and best["selection_reliable"] is False
    assert config["validation"]["eval_default"] == "last"
    assert f"has {n} queries, fewer than 200" in res.stderr
    if len(rows) > 1:
        lo, hi = float(rows[1]["r@1_vs_best_lo"]), float(rows[1]["r@1_vs_best_hi"])
        assert lo <= float(rows[1]["r@1_vs_best"]) <= hi
    # asking to select on test is refused in one line before anything runs
    res = invoke("train", name, "--data", world, "--out", tmp_path / "r2", "--set",
                 "eval_split=test", "--quiet")
    assert res.exit_code != 0 and "never selected on the test split" in res.stderr
    assert not (tmp_path / "r2" / "checkpoint.pt").exists()


def test_paired_interval_and_top1_hits_by_hand():
    import numpy as np

    from geobench.train.holdout import paired_interval, top1_hits

    same = np.array([1.0, 0.0, 1.0, 0.0])
    assert paired_interval(same, same) == (0.0, 0.0, 0.0)
    assert paired_interval(np.ones(5), np.zeros(5)) == (100.0, 100.0, 100.0)
    # 60 queries, 3 more hits: +5 points, and an interval that includes 0 (a coin toss)
    a = np.zeros(60)
    a[:10] = 1
    b = np.zeros(60)
    b[:7] = 1
    delta, lo, hi = paired_interval(a, b, seed=0)
    assert delta == pytest.approx(5.0) and lo == 0.0 and hi > delta
    # 600 queries, 30 more hits and none lost: the interval excludes 0
    a, b = np.zeros(600), np.zeros(600)
    a[:130], b[:100] = 1, 1
    delta, lo, hi = paired_interval(a, b, seed=0)
    assert delta == pytest.approx(5.0) and 0 < lo < delta < hi
    with pytest.raises(ValueError):
        paired_interval(np.ones(3), np.ones(4))

    class R:  # rank 0 with ties: t tied non-positives, p tied positives -> p / (p + t)
        ranks = np.array([0, 0, 1, 0])
        tied_nonpositives = np.array([0, 1, 0, 3])
        tied_positives = np.array([1, 1, 1, 1])

    assert top1_hits(R).tolist() == [1.0, 0.5, 0.0, 0.25]
    R.tied_nonpositives = None
    assert top1_hits(R).tolist() == [1.0, 1.0, 0.0, 1.0]


def test_small_validation_defaults_eval_to_last():
    from geobench.train.holdout import MIN_SELECTION_QUERIES, Validation

    small = Validation("val", "carved from train", 0.1, 0, 60, 60).to_json()
    assert small["selection_reliable"] is False and small["eval_default"] == "last"
    big = Validation("val", "dataset", n_queries=MIN_SELECTION_QUERIES).to_json()
    assert big["selection_reliable"] is True and big["eval_default"] == "best"
    assert Validation("", "none").to_json()["eval_default"] == "last"
