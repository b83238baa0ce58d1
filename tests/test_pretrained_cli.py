"""`--pretrained` and `--weights` through the CLI: a real HTTP server on 127.0.0.1 serves a
generated torchvision-format ResNet-50; the run records what it started from."""
from __future__ import annotations

import csv
import hashlib
import json

import h5py
import pytest
import torch
import yaml

from tests._train_world import write_world
from tests.test_pretrained import homes, server, write_catalog  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def street_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("street")
    return write_world(root, n_train=4, n_test=2, query_view="street", reference_view="street",
                       aerial_size=32)


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    """torchvision's ResNet-50 names and shapes (geobench's are equal, see the golden test),
    random values in half precision to halve the bytes; named as torch.hub names files."""
    from geobench.models.backbones import ResNet

    torch.manual_seed(5)
    state = {k: v.half() if v.is_floating_point() else v
             for k, v in ResNet((3, 4, 6, 3), num_classes=1000).state_dict().items()}
    tmp = tmp_path_factory.mktemp("r50") / "r50.pth"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    final = tmp.with_name(f"resnet50-{digest[:8]}.pth")
    tmp.rename(final)
    return final, digest, state


def small_config(path, **model_args):
    """The paper recipe of mixvpr at 64x64 inputs, so one CPU step takes a second."""
    # One image per place: the synthetic world has one pair per location.
    path.write_text(yaml.safe_dump({"model_args": {"input_size": {"street": [64, 64]}, **model_args},
                                    "images_per_place": 1}))
    return path


def train_args(world, out, cfg, *extra):
    return ("train", "mixvpr", "--data", world, "--out", out, "--config", cfg, "--batch-size", "2",
            "--max-steps", "1", "--eval-every", "0", "--workers", "0", "--quiet", *extra)


@pytest.mark.slow
def test_train_downloads_verifies_caches_records_and_reuses(
        invoke, server, homes, monkeypatch, street_world, resnet50_file):  # noqa: F811
    root, base, requests = server
    path, digest, state = resnet50_file
    (root / path.name).write_bytes(path.read_bytes())
    catalog = write_catalog(homes / "cat.yaml", [{"name": "resnet50.test", "url": f"{base}/{path.name}",
                                                  "sha256": digest[:8], "tags": ["imagenet"]}])
    monkeypatch.setenv("GEOBENCH_WEIGHTS_CATALOG", str(catalog))
    cfg = small_config(homes / "cfg.yaml")
    res = invoke(*train_args(street_world, homes / "run", cfg, "--pretrained", "imagenet"))
    assert res.exit_code == 0, res.output
    assert requests == [f"/{path.name}"] and "warning" not in res.stderr
    cached = homes / "gbhome" / "weights" / path.name
    assert cached.read_bytes() == path.read_bytes()
    config = json.loads((homes / "run" / "config.json").read_text())
    init = config["init_weights"]
    assert (init["name"], init["url"], init["sha256"]) == ("resnet50.test", f"{base}/{path.name}", digest)
    assert init["missing"] == 0 and init["unexpected"] == 0 and init["loaded"] == 258
    assert init["skipped"] == 62  # layer4 and fc of the published file: mixvpr cuts after layer3
    assert config["pretrained"] == "imagenet"
    start = torch.load(homes / "run" / "checkpoint.pt", weights_only=True)["model_state"]
    frozen = "towers.shared.backbone.conv1.weight"  # stage 0 is frozen: still the file's values
    assert torch.equal(start[frozen], state["conv1.weight"].float())

    res = invoke("eval", homes / "run", "--data", street_world, "--quiet")
    assert res.exit_code == 0, res.output
    out = homes / "run" / "eval" / "tinyworld-test"
    row = next(csv.DictReader((out / "metrics.csv").open()))
    assert (row["weights"], row["weights_sha256"]) == (f"resnet50.test@{digest[:12]}", digest)
    with h5py.File(out / "results.h5") as h5:
        assert json.loads(h5.attrs["weights"]) == init

    res = invoke(*train_args(street_world, homes / "run2", cfg))  # default: imagenet
    assert res.exit_code == 0, res.output
    assert len(requests) == 1  # the cache answered
    assert json.loads((homes / "run2" / "config.json").read_text())["init_weights"]["sha256"] == digest


def test_wrong_hash_offline_and_bad_names_fail_on_one_line(
        invoke, server, homes, monkeypatch, street_world):  # noqa: F811
    root, base, _ = server
    (root / "resnet50-0123abcd.pth").write_bytes(b"not these bytes")
    micro = {"backbone": "resnet_micro"}  # the failures come before any weight is loaded
    catalog = write_catalog(homes / "cat.yaml", [
        {"name": "bad", "url": f"{base}/resnet50-0123abcd.pth", "sha256": "0123abcd", **micro},
        {"name": "gone", "url": "http://127.0.0.1:9/resnet50-89abcdef.pth", "sha256": "89abcdef",
         **micro}])
    monkeypatch.setenv("GEOBENCH_WEIGHTS_CATALOG", str(catalog))
    cfg = small_config(homes / "cfg.yaml", backbone="resnet_micro", mixvpr_dim=16, mix_depth=1)
    cache = homes / "gbhome" / "weights"
    for choice, fragment in (("bad", "expected 0123abcd..."), ("gone", "cannot connect"),
                             ("resnet50.tv", "no such entry")):
        res = invoke(*train_args(street_world, homes / f"run-{choice}", cfg, "--pretrained", choice))
        assert res.exit_code != 0 and fragment in res.stderr, res.output
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert not (cache / "resnet50-0123abcd.pth").exists()
    assert not (cache / "resnet50-89abcdef.pth").exists()
    res = invoke(*train_args(street_world, homes / "run-file", cfg, "--weights", homes / "no.pth"))
    assert res.exit_code != 0 and "no.pth: weights file not found" in res.stderr
    res = invoke(*train_args(street_world, homes / "run-gone2", cfg, "--pretrained", "gone"))
    assert str(cache / "resnet50-89abcdef.pth") in res.stderr and "--weights FILE" in res.stderr


def test_paper_recipe_from_random_weights_warns(invoke, homes, street_world):  # noqa: F811
    # The paper recipe (no preset) on a backbone the catalog has no file for.
    cfg = small_config(homes / "cfg.yaml", backbone="resnet_micro", mixvpr_dim=16, mix_depth=1)
    res = invoke(*train_args(street_world, homes / "run", cfg))
    assert res.exit_code == 0, res.output
    warns = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert warns == ["warning: mixvpr: the paper recipe starts from random weights (the weights "
                     "catalog has no ImageNet entry for backbone resnet_micro); the published "
                     "numbers assume pretrained weights"]
    first = json.loads((homes / "run" / "config.json").read_text())["init_weights"]
    assert first["name"] == "none" and first["backbone"] == "resnet_micro"
    res = invoke("train", "mixvpr", "--data", street_world, "--out", homes / "run", "--resume",
                 "--max-steps", "2", "--workers", "0", "--quiet")
    assert res.exit_code == 0 and "warning" not in res.stderr, res.output  # nothing re-initialised
    assert json.loads((homes / "run" / "config.json").read_text())["init_weights"] == first
    res = invoke(*train_args(street_world, homes / "run2", cfg, "--pretrained", "imagenet"))
    assert res.exit_code != 0 and "no entry for backbone resnet_micro" in res.stderr


def test_unpinned_paper_start_warns_refuses_and_records(
        invoke, server, homes, monkeypatch, street_world, resnet50_file):  # noqa: F811
    root, base, requests = server
    path, digest, _ = resnet50_file
    (root / path.name).write_bytes(path.read_bytes())
    (root / "paper.pth").write_bytes(path.read_bytes())
    catalog = write_catalog(homes / "cat.yaml", [
        {"name": "resnet50.test", "url": f"{base}/{path.name}", "sha256": digest[:8], "tags": ["imagenet"]},
        {"name": "resnet50.paper", "url": f"{base}/paper.pth", "sha256": None, "models": ["mixvpr"]}])
    monkeypatch.setenv("GEOBENCH_WEIGHTS_CATALOG", str(catalog))
    res = invoke("models", "mixvpr")
    assert res.exit_code == 0
    flat = " ".join(res.output.replace("│", " ").split())  # the table wraps long cells
    assert "weights (paper's start) resnet50.paper" in flat and "--allow-unpinned" in flat
    assert "weights (default) resnet50.test" in flat and "NOT the paper's start" in flat
    cfg = small_config(homes / "cfg.yaml")
    res = invoke(*train_args(street_world, homes / "run0", cfg, "--pretrained", "resnet50.paper"))
    assert res.exit_code == 2 and "--allow-unpinned" in res.stderr
    assert not (homes / "run0" / "checkpoint.pt").exists() and requests == []
    res = invoke(*train_args(street_world, homes / "run", cfg, "--pretrained", "resnet50.paper",
                             "--allow-unpinned"))
    assert res.exit_code == 0, res.output
    assert f"sha256 {digest}" in res.stderr
    config = json.loads((homes / "run" / "config.json").read_text())
    init = config["init_weights"]
    assert (init["name"], init["sha256"], init["pinned"]) == ("resnet50.paper", digest, False)
    assert config["allow_unpinned"] is True and config["sources"]["allow_unpinned"] == "cli"
    # The default start is the pinned file, and the run says it is not the paper's.
    res = invoke(*train_args(street_world, homes / "run2", cfg))
    assert res.exit_code == 0, res.output
    assert "starts from resnet50.paper" in res.stderr and "instead" in res.stderr
