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


def test_eval_matrix_models_by_datasets_resumes_and_reports(
        invoke, server, homes, monkeypatch, tmp_path):  # noqa: F811
    """Two MegaLoc files x two synthetic worlds: four folders, each equal to the single-pair
    eval; a rerun skips all four; `report` tables them."""
    from geobench.models import build_model

    root, base, requests = server
    for seed, name in ((3, "a"), (4, "b")):
        torch.manual_seed(seed)
        state = {k: torch.randn_like(v) for k, v in build_model("megaloc", preset="tiny")
                 .state_dict().items() if v.is_floating_point()}
        save_safetensors(state, root / f"{name}.safetensors")
    entries = [{**megaloc_entry(f"{base}/{n}.safetensors"), "name": f"megaloc.{n}"} for n in "ab"]
    monkeypatch.setenv("GEOBENCH_WEIGHTS_CATALOG",
                       str(write_catalog(tmp_path / "cat.yaml", entries)))
    worlds = []
    for w in ("w1", "w2"):  # both prepared into a folder named ds: linked under own names
        ds = write_world(tmp_path / w, n_train=2, n_test=3, query_view="street",
                         reference_view="street", aerial_size=32)
        (tmp_path / f"ds-{w}").symlink_to(ds)
        worlds.append(tmp_path / f"ds-{w}")
    common = ("--preset", "tiny", "--quiet", "--workers", "0", "--device", "cpu",
              "--allow-unpinned")
    out = tmp_path / "matrix"
    args = ("eval", "--model", "megaloc,megaloc", "--pretrained", "megaloc.a,megaloc.b",
            "--data", f"{worlds[0]},{worlds[1]}", "--out", out, *common)
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    names = {p.parent.relative_to(out).as_posix() for p in out.rglob("metrics.csv")}
    w1, w2 = (w.name for w in worlds)
    assert names == {f"megaloc+megaloc.{e}/{w}" for e in "ab" for w in (w1, w2)}
    assert res.stderr.count("done: ") == 4 and sorted(requests) == ["/a.safetensors",
                                                                     "/b.safetensors"]
    # One pair evaluated alone gives the same metrics row.
    single = tmp_path / "single"
    res = invoke("eval", "--model", "megaloc", "--pretrained", "megaloc.b", "--data", worlds[1],
                 "--out", single, *common)
    assert res.exit_code == 0, res.output
    pick = ("r@1", "r@5", "r@10", "weights_sha256", "protocol")
    mine = next(csv.DictReader((out / f"megaloc+megaloc.b/{w2}/metrics.csv").open()))
    alone = next(csv.DictReader((single / "metrics.csv").open()))
    assert [mine[c] for c in pick] == [alone[c] for c in pick]
    # Resumable: finished pairs are skipped (their files untouched).
    stamp = (out / f"megaloc+megaloc.a/{w1}/results.h5").stat().st_mtime_ns
    (out / f"megaloc+megaloc.b/{w2}/metrics.csv").unlink()  # as if interrupted there
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert res.stderr.count("skipped: ") == 3 and res.stderr.count("done: ") == 1
    assert (out / f"megaloc+megaloc.a/{w1}/results.h5").stat().st_mtime_ns == stamp
    res = invoke("report", out, "--table", "--format", "csv")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(res.stdout.splitlines()))
    assert len(rows) == 4 and {r["run"] for r in rows} == {
        f"megaloc+megaloc.{e}/{w}" for e in "ab" for w in (w1, w2)}
    res = invoke("report", out, "--table", "--paper", "msls", "--format", "csv")
    assert res.exit_code == 0, res.output
    published = {r["run"] for r in csv.DictReader(res.stdout.splitlines())} - {r["run"] for r in rows}
    assert {f"[paper] {m}" for m in ("BoQ (DINOv2)", "BoQ (ResNet-50)", "DINOv2 SALAD")} <= published
    # Validated before any work.
    for bad, message in (
            (("--pretrained", "megaloc.a,megaloc.b,megaloc.a"), "lists 3 names for 2 models"),
            (("--pretrained", "megaloc.zz"), "no such entry"),
            (("--pretrained", "megaloc.a", "--all-released"), "--all-released picks every")):
        res = invoke("eval", "--model", "megaloc,megaloc", *bad, "--data", worlds[0],
                     "--out", tmp_path / "bad", *common)
        assert res.exit_code == 2 and message in res.stderr, res.output
        assert not (tmp_path / "bad").exists()


def test_all_released_picks_each_models_default_file():
    from geobench.eval.matrix import released_defaults

    assert released_defaults() == [
        ("megaloc", "megaloc.gsv_sf_xl"), ("dino_salad", "dino_salad.gsv_cities"),
        ("boq_resnet50", "boq_resnet50.gsv_cities"), ("boq_dinov2", "boq_dinov2.gsv_cities"),
        ("cosplace", "cosplace.resnet50_2048"), ("eigenplaces", "eigenplaces.resnet50_2048")]
