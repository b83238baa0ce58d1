"""Released checkpoints (LRFR, Sample4Geo, MixVPR) and geobench's own files load as whole models.

The full-size official key layouts are checked against the official code in
test_pretrained_golden.py (meta tensors); here small models get files written in the same
layouts with random values, through torch.save and `--weights FILE`.
"""
from __future__ import annotations

import csv
import json

import h5py
import pytest
import torch

from geobench.errors import DataError
from geobench.models import build_model
from geobench.models.backbones import timm_to_torchvision
from tests._train_world import write_world

pytestmark = pytest.mark.usefixtures("one_torch_thread")
_GSRA_OFFICIAL = {"coord": "conv1x1", "theta": "theta_spatial", "phi": "phi_spatial",
                  "relation": "gg_spatial", "norm": "gn"}


def randomised(model) -> dict[str, torch.Tensor]:
    torch.manual_seed(11)
    return {k: torch.randn_like(v) if v.is_floating_point() else v
            for k, v in model.state_dict().items()}


def lrfr_layout(tower: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A tower's state in WenjianGan/LRFR GeoModel names (see models/released.py)."""
    out = {}
    backbone = {k[len("backbone."):]: v for k, v in tower.items() if k.startswith("backbone.")}
    for k, v in timm_to_torchvision(backbone).items():
        out["model.backbone.backbone." + k[len("features."):]] = v
    for k, v in tower.items():
        if k.startswith("attention."):
            head, _, rest = k[len("attention."):].partition(".")
            out[f"model.attention.{_GSRA_OFFICIAL[head]}.{rest}"] = v
        elif k.startswith("aggregator."):
            out["model.aggregation." + k[len("aggregator."):]] = v
    return out


def tower_state(model, tower="shared"):
    prefix = f"towers.{tower}."
    return {k[len(prefix):]: v for k, v in randomised(model).items() if k.startswith(prefix)}


def test_lrfr_checkpoint_from_dataparallel_loads_into_one_and_two_towers(tmp_path):
    ref = build_model("lrfr", preset="tiny")
    tower = tower_state(ref)
    path = tmp_path / "best_score.pth"
    torch.save({f"module.{k}": v for k, v in lrfr_layout(tower).items()}, path)
    for share in (True, False):
        model = build_model("lrfr", preset="tiny", share_weights=share, weights=path)
        report = model.weights_reports[0]
        assert report.naming == "lrfr" and not report.missing and not report.unexpected
        for name in model.towers:
            own = {k[len(f"towers.{name}."):]: v for k, v in model.state_dict().items()
                   if k.startswith(f"towers.{name}.")}
            assert all(torch.equal(own[k], v) for k, v in tower.items()), name


def test_unmatched_keys_are_named_and_wrong_models_refused(tmp_path):
    tower = tower_state(build_model("lrfr", preset="tiny"))
    state = lrfr_layout(tower)
    state["model.attention.extra.weight"] = torch.zeros(3)
    del state["model.aggregation.dust_bin"]
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(DataError) as exc:
        build_model("lrfr", preset="tiny", weights=path)
    text = str(exc.value)
    assert "towers.shared.aggregator.dust_bin" in text and "attention.extra.weight" in text
    with pytest.raises(DataError, match="released lrfr checkpoint, which loads into lrfr, not mixvpr"):
        build_model("mixvpr", preset="tiny", weights=path)


def test_mixvpr_checkpoint_loads_backbone_and_aggregator(tmp_path):
    ref = build_model("mixvpr", preset="tiny")
    tower = tower_state(ref)
    official = {("backbone.model." + k[len("backbone."):] if k.startswith("backbone.") else k): v
                for k, v in tower.items()}
    path = tmp_path / "resnet50_MixVPR_4096_channels(1024)_rows(4).ckpt"
    torch.save({"state_dict": official, "epoch": 3}, path)  # as Lightning saves it
    model = build_model("mixvpr", preset="tiny", weights=path)
    assert model.weights_reports[0].naming == "mixvpr"
    assert torch.equal(model.state_dict()["towers.shared.aggregator.row_proj.weight"],
                       tower["aggregator.row_proj.weight"])


def test_geobench_checkpoint_loads_as_a_whole_model(tmp_path):
    ref = build_model("safa", preset="tiny")
    state = randomised(ref)
    torch.save({"model": "safa", "model_state": state, "step": 3}, tmp_path / "checkpoint.pt")
    model = build_model("safa", preset="tiny", weights=tmp_path / "checkpoint.pt")
    assert model.weights_reports[0].naming == "geobench"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_eval_a_sample4geo_checkpoint_records_its_provenance(invoke, tmp_path):
    world = write_world(tmp_path / "world", n_train=2, n_test=3)
    ref = build_model("convnext_gap", preset="tiny")
    tower = tower_state(ref)
    official = {"model." + k[len("backbone."):]: v for k, v in tower.items()}
    official["logit_scale"] = torch.tensor(2.6593)  # Sample4Geo's InfoNCE temperature
    path = tmp_path / "weights_e40_98.6830.pth"
    torch.save(official, path)
    out = tmp_path / "eval"
    res = invoke("eval", "--model", "convnext_gap", "--preset", "tiny", "--weights", path,
                 "--data", world, "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    row = next(csv.DictReader((out / "metrics.csv").open()))
    assert (row["model"], row["weights"], row["weights_sha256"]) == (
        "convnext_gap", f"{path.name}@{digest[:12]}", digest)
    with h5py.File(out / "results.h5") as h5:
        init = json.loads(h5.attrs["weights"])
    assert init["format"] == "sample4geo" and init["skipped"] == 1 and init["missing"] == 0
    assert init["loaded"] == len(ref.state_dict())
    res = invoke("eval", "--model", "convnext_gap", "--data", world, "--out", out)
    assert res.exit_code == 2 and "pass --weights FILE or --pretrained" in res.stderr
    res = invoke("eval", "--weights", path, "--data", world, "--out", out)
    assert res.exit_code == 2 and "--model NAME --data DS --out DIR" in res.stderr


def test_training_from_a_sample4geo_checkpoint_keeps_its_learned_temperature(invoke, tmp_path):
    world = write_world(tmp_path / "world", n_train=8, n_test=2)
    official = {"model." + k[len("backbone."):]: v
                for k, v in tower_state(build_model("convnext_gap", preset="tiny")).items()}
    official["logit_scale"] = torch.tensor(4.5)  # learned: the card's start is log(1/0.07) = 2.659
    path = tmp_path / "weights_e40.pth"
    torch.save(official, path)
    args = ("train", "convnext_gap", "--preset", "tiny", "--weights", path, "--data", world,
            "--max-steps", "1", "--batch-size", "4", "--workers", "0", "--eval-every", "0", "--quiet")
    res = invoke(*args, "--out", tmp_path / "run")
    assert res.exit_code == 0, res.output
    init = json.loads((tmp_path / "run" / "config.json").read_text())["init_weights"]
    assert init["format"] == "sample4geo" and init["loss"] == {"logit_scale": 4.5}
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    # One AdamW step at lr 1e-3 moves it by about 1e-3, from 4.5.
    assert abs(float(ckpt["loss_state"]["logit_scale"]) - 4.5) < 0.01
    # A loss without a temperature says so instead of dropping it silently.
    from geobench.losses import build_loss
    from geobench.models.initial import apply_start, plan_start

    start = plan_start("convnext_gap", "tiny", {}, str(path), None)
    record = apply_start(build_model("convnext_gap", preset="tiny"), start,
                         build_loss("soft_margin_triplet"))
    assert "loss" not in record and record["not_loaded"].startswith("logit_scale: the loss has no")
