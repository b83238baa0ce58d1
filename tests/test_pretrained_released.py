"""Released whole models from the catalog (`loads: model`), unpinned files (`sha256: null`):
`geobench eval --model megaloc --pretrained ENTRY` against a real HTTP server on 127.0.0.1
serving a small MegaLoc in the released safetensors layout."""
from __future__ import annotations

import csv
import hashlib
import json
import struct

import h5py
import pytest
import torch

from geobench.errors import SchemaError, UsageError
from geobench.models.pretrained import choose, load_weights_catalog
from tests._train_world import write_world
from tests.test_pretrained import homes, server, write_catalog  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def save_safetensors(state: dict[str, torch.Tensor], path) -> None:
    """The safetensors layout (8-byte header length, JSON header, raw little-endian data),
    written here so the test does not need the safetensors package."""
    header, blobs, offset = {}, [], 0
    for name, tensor in state.items():
        data = tensor.contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


@pytest.fixture
def megaloc_file(tmp_path):
    """A tiny MegaLoc (the tiny preset's geometry) with random values, in the released
    layout (`backbone.*` DINOv2 names, `aggregator.*`), named as on HuggingFace."""
    from geobench.models import build_model

    torch.manual_seed(3)
    state = {k: torch.randn_like(v) for k, v in build_model("megaloc", preset="tiny")
             .state_dict().items() if v.is_floating_point()}
    path = tmp_path / "model.safetensors"
    save_safetensors(state, path)
    return path, state


def megaloc_entry(url: str, sha256=None) -> dict:
    return {"name": "megaloc.test", "backbone": "dinov2_vitb14", "loads": "model",
            "models": ["megaloc"], "url": url, "sha256": sha256, "format": "official",
            "license": "MIT"}


def test_shipped_released_entries_are_unpinned_model_files_with_their_architecture():
    catalog = load_weights_catalog()
    released = {n: e for n, e in catalog.items() if e.loads == "model"}
    assert {"megaloc.gsv_sf_xl", "dino_salad.gsv_cities", "boq_resnet50.gsv_cities",
            "boq_dinov2.gsv_cities", "cosplace.resnet101_512",
            "eigenplaces.resnet50_2048"} <= set(released)
    # CosPlace: 3 ResNets x 7 sizes; EigenPlaces: 2 ResNets x 5 sizes (the hubconf grids
    # that geobench builds; ResNet-18 and VGG-16 files are not listed).
    assert sum(n.startswith("cosplace.") for n in released) == 21
    assert sum(n.startswith("eigenplaces.") for n in released) == 10
    cos = catalog["cosplace.resnet101_512"]
    assert dict(cos.model_args) == {"backbone": "resnet101", "dim": 512}
    assert cos.url.endswith("/CosPlace/releases/download/v1.0/ResNet101_512_cosplace.pth")
    assert not any(e.pinned for e in released.values())
    assert not catalog["dinov2_vitb14.lvd142m"].pinned
    # A model's file is chosen by name only, and only for its model.
    assert choose("megaloc.gsv_sf_xl", "", "megaloc", catalog).name == "megaloc.gsv_sf_xl"
    with pytest.raises(UsageError, match="released cosplace model, not eigenplaces"):
        choose("cosplace.resnet50_2048", "resnet50", "eigenplaces", catalog)
    assert choose("imagenet", "resnet50", "cosplace", catalog).name == "resnet50.tv_in1k"
    # Unpinned cache names never collide between entries.
    assert catalog["megaloc.gsv_sf_xl"].cache_name == "megaloc.gsv_sf_xl--model.safetensors"


def test_catalog_rules_for_model_entries(tmp_path):
    base = megaloc_entry("https://example.org/model.safetensors")
    with pytest.raises(SchemaError, match="loads: model needs models"):
        load_weights_catalog(write_catalog(tmp_path / "a.yaml", [{**base, "models": []}]))
    with pytest.raises(SchemaError, match="loads 'tower' is not one of backbone, model"):
        load_weights_catalog(write_catalog(tmp_path / "b.yaml", [{**base, "loads": "tower"}]))
    no_hash = {k: v for k, v in base.items() if k != "sha256"}
    with pytest.raises(SchemaError, match=r"missing sha256 \(or sha256: null"):
        load_weights_catalog(write_catalog(tmp_path / "c.yaml", [no_hash]))


def test_eval_megaloc_from_the_catalog_unpinned_then_pinned(
        invoke, server, homes, monkeypatch, tmp_path, megaloc_file):  # noqa: F811
    root, base, requests = server
    path, state = megaloc_file
    (root / "model.safetensors").write_bytes(path.read_bytes())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    catalog = write_catalog(tmp_path / "cat.yaml", [megaloc_entry(f"{base}/model.safetensors")])
    monkeypatch.setenv("GEOBENCH_WEIGHTS_CATALOG", str(catalog))
    world = write_world(tmp_path / "world", n_train=2, n_test=3, query_view="street",
                        reference_view="street", aerial_size=32)
    args = ("eval", "--model", "megaloc", "--preset", "tiny", "--pretrained", "megaloc.test",
            "--data", world, "--quiet", "--workers", "0", "--device", "cpu")

    res = invoke(*args, "--out", tmp_path / "refused")
    assert res.exit_code == 2 and "publisher prints no sha256" in res.stderr
    assert "--allow-unpinned" in res.stderr and requests == []  # refused before any download
    assert not (tmp_path / "refused" / "metrics.csv").exists()

    out = tmp_path / "eval"
    res = invoke(*args, "--out", out, "--allow-unpinned")
    assert res.exit_code == 0, res.output
    assert f"sha256 {digest} computed here" in res.stderr
    assert requests == ["/model.safetensors"]
    row = next(csv.DictReader((out / "metrics.csv").open()))
    assert row["model"] == "megaloc" and row["weights_sha256"] == digest
    with h5py.File(out / "results.h5") as h5:
        init = json.loads(h5.attrs["weights"])
    assert (init["name"], init["pinned"], init["format"], init["sha256"]) == (
        "megaloc.test", False, "official", digest)
    assert init["loaded"] == len(state) and init["missing"] == init["unexpected"] == 0

    # Pinned with the printed hash: the cached file verifies, nothing is downloaded again.
    write_catalog(catalog, [megaloc_entry(f"{base}/model.safetensors", digest)])
    res = invoke(*args, "--out", tmp_path / "pinned")
    assert res.exit_code == 0, res.output
    assert "unpinned" not in res.stderr and requests == ["/model.safetensors"]
    # A released file for another model is refused before anything is built.
    res = invoke("eval", "--model", "dino_salad", "--preset", "tiny", "--pretrained",
                 "megaloc.test", "--data", world, "--out", tmp_path / "other", "--quiet")
    assert res.exit_code == 2 and "released megaloc model, not dino_salad" in res.stderr


def test_a_dinov2_hub_file_loads_into_megalocs_backbone_without_its_mask_token(tmp_path):
    """The `dinov2_vitb14.lvd142m` entry loads into every backbone of megaloc, dino_salad and
    boq_dinov2; MegaLoc's DINOv2 has no mask_token, which a hub file carries."""
    from geobench.models import build_model
    from geobench.models.backbones.dinov2 import DinoV2

    torch.manual_seed(4)
    hub = {k: torch.randn_like(v) for k, v in DinoV2((32, 2, 2), grid=4).state_dict().items()}
    torch.save(hub, tmp_path / "dinov2_vitb14_pretrain.pth")
    model = build_model("megaloc", preset="tiny")
    (report,) = [bb.load_weights(str(tmp_path / "dinov2_vitb14_pretrain.pth"))
                 for bb in model.backbones()]
    assert report.skipped == ("mask_token",) and report.loaded == len(hub) - 1
    assert torch.equal(model.backbones()[0].cls_token, hub["cls_token"])
