"""Training engine: bit-for-bit resume, NaN handling, config precedence, checkpoints."""
from __future__ import annotations

import json

import pytest
import torch

from geobench.errors import TrainingError, UsageError
from geobench.progress import set_quiet
from geobench.train.checkpoint import load_checkpoint
from geobench.train.config import read_config, resolve_config
from geobench.train.engine import train
from tests._train_world import register_test_model, write_world

FAST = {"workers": 0, "eval_every": 0}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    set_quiet(True)
    register_test_model()
    return write_world(tmp_path_factory.mktemp("world"))


class Kill(Exception):
    """Stands in for the process dying right after a checkpoint was written."""


def _weights(run) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoint.pt")["model_state"]


def test_resume_is_bit_for_bit(world, tmp_path):
    name = register_test_model()
    opts = {**FAST, "epochs": 2, "checkpoint_every": 2, "seed": 3, "rotate_p": 0.5}
    straight = train(resolve_config(name, world, tmp_path / "a", cli=opts))
    assert straight.steps == 6

    def die(info):
        if info.step == 4:
            raise Kill

    with pytest.raises(Kill):
        train(resolve_config(name, world, tmp_path / "b", cli=opts), on_step=die)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 4
    base = read_config(tmp_path / "b")
    resumed = train(resolve_config(name, world, tmp_path / "b", base=base, cli={"resume": True}))
    assert resumed.resumed_from_step == 4 and resumed.steps == 6
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ca, cb = (load_checkpoint(tmp_path / r / "checkpoint.pt") for r in ("a", "b"))
    assert torch.equal(ca["rng"]["torch"], cb["rng"]["torch"])
    # The log is identical apart from timings.
    strip = lambda rows: [(r["epoch"], r["step"], r["loss"], r["lr"]) for r in rows]  # noqa: E731
    assert strip(ca["log"]) == strip(cb["log"])
    log = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,step,loss,lr,images_per_s,data_wait_frac") and len(log) == 3


def test_checkpoint_loads_weights_only_and_describes_itself(world, tmp_path):
    name = register_test_model()
    train(resolve_config(name, world, tmp_path / "run", cli={**FAST, "max_steps": 2}))
    raw = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert raw["format"] == "geobench.checkpoint/1" and raw["model"] == name
    assert raw["step"] == 2 and raw["epoch"] == 0
    assert set(raw["rng"]) >= {"torch", "numpy", "python"}
    assert raw["dataset_hash"] and len(raw["dataset_hash"]) == 64
    for key in ("optimizer", "scheduler", "scaler", "loss_state", "model_args", "config"):
        assert key in raw
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model"] == name and cfg["total_steps"] == 2 and cfg["steps_per_epoch"] == 3
    # A second run into the same folder is refused; resume of an empty folder too.
    with pytest.raises(UsageError, match="--resume"):
        train(resolve_config(name, world, tmp_path / "run", cli=FAST))
    with pytest.raises(UsageError, match="nothing to resume"):
        train(resolve_config(name, world, tmp_path / "new", cli={**FAST, "resume": True}))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(world, tmp_path):
    name = register_test_model()
    run = tmp_path / "run"
    cfg = resolve_config(name, world, run, cli={**FAST, "epochs": 3, "checkpoint_every": 2,
                                                 "model_args": {"nan_at": 5}})
    with pytest.raises(TrainingError) as err:
        train(cfg)
    message = str(err.value)
    assert "\n" not in message and "step 5" in message and "step 4" in message
    assert str(run / "checkpoint.pt") in message and "--lr" in message
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model_state"].values() if v.is_floating_point())
    assert not [p for p in run.iterdir() if ".tmp" in p.name]


def test_config_precedence_card_yaml_cli(world, tmp_path):
    name = register_test_model()
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("lr: 0.001\nepochs: 5\nschedule: {name: multistep, milestones: [1], gamma: 0.5}\n"
                         "loss: {name: infonce, label_smoothing: 0.2}\n")
    cfg = resolve_config(name, world, tmp_path / "run", preset="tiny", config_file=yaml_file,
                         cli={"epochs": 1, "lr": None, **FAST})
    assert cfg.optimizer == "adam" and cfg.sources["optimizer"] == "card"       # card
    assert cfg.batch_size == 6 and cfg.sources["batch_size"] == "card"          # card preset
    assert cfg.lr == 0.001 and cfg.sources["lr"].startswith("yaml:")            # yaml over card
    assert cfg.epochs == 1 and cfg.sources["epochs"] == "cli"                   # cli over yaml
    assert (cfg.schedule, cfg.milestones, cfg.lr_gamma) == ("staged", (1.0,), 0.5)
    assert cfg.loss == "infonce" and cfg.loss_args == {"label_smoothing": 0.2}
    summary = train(cfg)
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["lr"] == 0.001 and written["epochs"] == 1 and written["batch_size"] == 6
    assert written["sources"]["epochs"] == "cli" and written["preset"] == "tiny"
    assert summary.steps == 2  # 12 pairs // 6


def test_config_errors_name_the_file_and_option(world, tmp_path):
    name = register_test_model()
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.1\n")
    with pytest.raises(UsageError, match=r"bad\.yaml: unknown training option 'learning_rate'"):
        resolve_config(name, world, tmp_path / "r", config_file=bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("lr: [1,\nepochs: 2\n")
    with pytest.raises(UsageError, match=r"broken\.yaml:\d+: not valid YAML"):
        resolve_config(name, world, tmp_path / "r", config_file=broken)
    with pytest.raises(UsageError, match="batch_size = 1 .*from cli"):
        resolve_config(name, world, tmp_path / "r", cli={"batch_size": 1})
    with pytest.raises(UsageError, match="optimizer = 'rmsprop'"):
        resolve_config(name, world, tmp_path / "r", cli={"optimizer": "rmsprop"})
    with pytest.raises(UsageError, match="larger than the 12 distinct"):
        train(resolve_config(name, world, tmp_path / "r", cli={**FAST, "batch_size": 16}))


def test_schedules():
    from geobench.train.optim import LrFactor

    cos = LrFactor("cosine", 10, warmup_steps=2)
    # transformers' warm-up (Sample4Geo): the first step runs at lr 0
    assert [round(cos(s), 3) for s in (0, 1, 2, 7, 10)] == [0.0, 0.5, 1.0, 0.309, 0.0]
    mixvpr = LrFactor("staged", 100, warmup_steps=4, milestones=[2, 6], gamma=0.5, warmup_from="step")
    # (step + 1) / warmup, and the milestone at step 2 falls inside the warm-up and is lost
    assert [mixvpr(s) for s in (0, 1, 2, 3, 4, 5, 6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.5]
    lin = LrFactor("linear", 100, stretch=1.05)
    assert lin(0) == 1.0 and lin(100) == pytest.approx(1 - 1 / 1.05)
    staged = LrFactor("staged", 100, milestones=[30, 50], gamma=0.1)
    assert (staged(29), staged(30), staged(50)) == (1.0, pytest.approx(0.1), pytest.approx(0.01))


def test_best_pt_keeps_the_first_epoch_of_the_highest_r1():
    # The selection rule alone (a run object without a model): a later tie is not better.
    from types import SimpleNamespace

    from geobench.train.engine import _Run

    run = object.__new__(_Run)
    run.step, run.log, run.best, run.best_hits, run.hits = 0, [], None, None, None
    run.cfg = SimpleNamespace(batch_size=2)
    run.optimizer = SimpleNamespace(param_groups=[{"lr": 0.1}])
    run.validation = SimpleNamespace(split="val", source="dataset", n_queries=10,
                                     to_json=lambda: {"selection_reliable": False})
    picks = [run._record(epoch, 1.0, 1.0, 0.0, 1, {"r@1": r1})
             for epoch, r1 in enumerate([50.0, 50.0, 49.0, 60.0, 60.0])]
    assert picks == [True, False, False, True, False]
    assert (run.best["epoch"], run.best["value"]) == (4, 60.0)
    assert run._record(5, 1.0, 1.0, 0.0, 1, {}) is False  # no R@1: never selected
