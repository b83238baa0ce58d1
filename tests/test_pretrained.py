"""The weights catalog, choosing an entry, and fetching it from a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import http.server
import threading
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from geobench.errors import DataError, SchemaError, UsageError
from geobench.models.pretrained import (
    backbone_family,
    cache_dir,
    choose,
    fetch_weights,
    load_weights_catalog,
    torch_hub_dir,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- a real server ------------------------------------------------------------------------
class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **kw: _Handler(*a, directory=str(root), **kw))
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", httpd.requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def homes(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOBENCH_HOME", str(tmp_path / "gbhome"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torchhome"))
    return tmp_path


def write_catalog(path: Path, entries: list[dict]) -> Path:
    base = {"backbone": "resnet50", "format": "torchvision", "license": "BSD-3-Clause",
            "source": "test"}
    path.write_text(yaml.safe_dump({"schema": "geobench.weights/1",
                                    "weights": [{**base, **e} for e in entries]}))
    return path


def hashed_file(root: Path, stem: str, payload: bytes, prefix: bool = True) -> tuple[str, str]:
    """Write `stem-<sha256[:8]>.pth` (torch.hub naming); returns (file name, full sha256)."""
    digest = hashlib.sha256(payload).hexdigest()
    name = f"{stem}-{digest[:8]}.pth" if prefix else f"{stem}.pth"
    (root / name).write_bytes(payload)
    return name, digest


# --- the shipped catalog ----------------------------------------------------------------------
def test_shipped_catalog_is_valid_and_serves_every_paper_backbone():
    from geobench.models import list_models
    from geobench.models.initial import recipe_weights

    catalog = load_weights_catalog()
    assert {"resnet50.tv_in1k", "resnet50.tv2_in1k", "vgg16.tv_in1k", "convnext_tiny.tv_in1k",
            "convnext_base.tv_in1k", "lsknet_t.in1k", "lsknet_s.in1k"} <= set(catalog)
    for entry in catalog.values():
        assert entry.source and entry.license and entry.url.startswith("https://")
        if not entry.pinned:  # the publisher prints no hash: the entry must say so
            assert "no published hash" in entry.source or "unpinned" in entry.source, entry.name
        elif not entry.full_hash:  # the prefix must be the one torch.hub reads from the name
            assert entry.file_name.split(".")[0].endswith("-" + entry.sha256)
    chosen = {name: recipe_weights(name)[1] for name in list_models() if not name.startswith("_")}
    assert {k: (v.name if v else None) for k, v in chosen.items()} == {
        "asavg": "lsknet_s.in1k", "convnext_gap": "convnext_base.tv_in1k",
        "lrfr": "convnext_tiny.tv_in1k", "mcgra": "resnet50.tv_in1k",
        "mixvpr": "resnet50.tv_in1k", "safa": "vgg16.tv_in1k",
        # Released models: the ResNet ones start from ImageNet; DINOv2 has no catalog file yet.
        "boq_resnet50": "resnet50.tv_in1k", "cosplace": "resnet50.tv_in1k",
        "eigenplaces": "resnet50.tv_in1k", "boq_dinov2": None, "dino_salad": None,
        "megaloc": None}
    assert recipe_weights("mcgra", preset="tiny")[1] is None  # resnet_micro: nothing to fetch


def test_readme_lists_every_catalog_entry():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in load_weights_catalog():
        assert f"`{name}`" in readme, name


def test_choose_rules():
    catalog = load_weights_catalog()
    assert backbone_family("resnet50_layer3") == "resnet50"
    assert backbone_family("convnext_t") == "convnext_tiny"
    assert choose("imagenet", "convnext_t", "lrfr", catalog).name == "convnext_tiny.tv_in1k"
    assert choose("imagenet", "resnet50", "mcgra", catalog).name == "resnet50.tv_in1k"
    assert choose("resnet50.tv2_in1k", "resnet50", "mcgra", catalog).name == "resnet50.tv2_in1k"
    assert choose("none", "resnet50", "mcgra", catalog) is None
    assert choose("imagenet", "resnet_micro", "mcgra", catalog) is None
    with pytest.raises(UsageError, match=r"did you mean resnet50\.tv_in1k"):
        choose("resnet50.tv_in1", "resnet50", None, catalog)
    with pytest.raises(UsageError, match="for backbone vgg16, but this model uses resnet50"):
        choose("vgg16.tv_in1k", "resnet50", None, catalog)


@pytest.mark.parametrize("change, message", [
    ({"sha256": "xyz"}, "is not 8 to 64 hex digits"),
    ({"sha256": "deadbeef"}, "must be the one the file name carries"),
    ({"format": "keras"}, "format 'keras' is not one of"),
    ({"url": "ftp://x/y-deadbeef.pth"}, "is not an http"),
    ({"license": None}, "missing license"),
])
def test_bad_catalog_entries_name_file_and_entry(tmp_path, monkeypatch, change, message):
    entry = {"name": "a", "url": "https://example.org/a-0123abcd.pth", "sha256": "0123abcd", **change}
    path = write_catalog(tmp_path / "w.yaml", [entry])
    monkeypatch.setenv("GEOBENCH_WEIGHTS_CATALOG", str(path))
    with pytest.raises(SchemaError, match=message) as exc:
        load_weights_catalog()
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)
    dup = write_catalog(tmp_path / "d.yaml", [
        {"name": "a", "url": "https://e.org/a-0123abcd.pth", "sha256": "0123abcd"}] * 2)
    with pytest.raises(SchemaError, match="used twice"):
        load_weights_catalog(dup)


# --- fetching -------------------------------------------------------------------------------
def _entry(tmp_path, monkeypatch, url, sha256):
    path = write_catalog(tmp_path / "cat.yaml", [{"name": "r50.test", "url": url, "sha256": sha256,
                                                  "tags": ["imagenet"]}])
    monkeypatch.setenv("GEOBENCH_WEIGHTS_CATALOG", str(path))
    return load_weights_catalog()["r50.test"]


def test_fetch_verifies_caches_and_reuses_without_a_request(server, homes, monkeypatch):
    root, base, requests = server
    name, digest = hashed_file(root, "resnet50", b"weights" * 1000)
    entry = _entry(homes, monkeypatch, f"{base}/{name}", digest[:8])
    got = fetch_weights(entry)
    assert got.action == "downloaded" and got.sha256 == digest
    assert got.path == cache_dir() / name and got.path.read_bytes() == b"weights" * 1000
    assert requests == [f"/{name}"]
    again = fetch_weights(entry)
    assert again.action == "cached" and again.sha256 == digest and len(requests) == 1


def test_full_hash_entries_and_wrong_hash_leave_nothing(server, homes, monkeypatch):
    root, base, _ = server
    name, digest = hashed_file(root, "plain", b"abc" * 100, prefix=False)
    entry = _entry(homes, monkeypatch, f"{base}/{name}", "0" * 64)
    with pytest.raises(DataError, match=f"has sha256 {digest}, expected 0000") as exc:
        fetch_weights(entry)
    assert "\n" not in str(exc.value) and "deleted" in str(exc.value)
    assert not (cache_dir() / name).exists()
    assert [p.name for p in cache_dir().iterdir()] == []
    ok = _entry(homes, monkeypatch, f"{base}/{name}", digest)
    assert fetch_weights(ok).sha256 == digest


def test_torch_hub_copy_is_used_in_place(server, homes, monkeypatch):
    root, base, requests = server
    payload = b"hub" * 500
    name, digest = hashed_file(root, "resnet50", payload)
    hub = torch_hub_dir()
    hub.mkdir(parents=True)
    (hub / name).write_bytes(payload)
    entry = _entry(homes, monkeypatch, f"{base}/{name}", digest[:8])
    got = fetch_weights(entry)
    assert got.action == "torch-cache" and got.path == hub / name and requests == []
    (hub / name).write_bytes(b"corrupt")  # a wrong copy there is ignored, never deleted
    assert fetch_weights(entry).action == "downloaded" and (hub / name).read_bytes() == b"corrupt"


def test_offline_error_names_url_cache_path_and_weights_option(server, homes, monkeypatch):
    _, base, _ = server
    dead = "http://127.0.0.1:9/resnet50-0123abcd.pth"  # discard port: nothing listens
    entry = _entry(homes, monkeypatch, dead, "0123abcd")
    with pytest.raises(DataError) as exc:
        fetch_weights(entry, timeout=5)
    text = str(exc.value)
    assert dead in text and str(cache_dir() / "resnet50-0123abcd.pth") in text
    assert "--weights FILE" in text and "\n" not in text and "--mirror" not in text


# --- loading into a model, with provenance ---------------------------------------------------
def test_initial_weights_loads_every_backbone_and_warns_for_random_paper_recipes(
        server, homes, monkeypatch):
    from geobench.models import build_model
    from geobench.models.backbones import ResNet
    from geobench.models.initial import RandomInitWarning, initial_weights

    root, base, _ = server
    torch.manual_seed(3)
    source = ResNet((1, 1, 1, 1), num_stages=4, num_classes=10)  # resnet_micro, torchvision names
    buf = root / "micro.pth"
    torch.save(source.state_dict(), buf)
    name, digest = hashed_file(root, "micro", buf.read_bytes())
    path = write_catalog(homes / "cat.yaml", [{"name": "micro.test", "backbone": "resnet_micro",
                                               "url": f"{base}/{name}", "sha256": digest[:8],
                                               "tags": ["imagenet"]}])
    monkeypatch.setenv("GEOBENCH_WEIGHTS_CATALOG", str(path))
    model = build_model("mcgra", preset="tiny")
    record = initial_weights(model, pretrained="imagenet", preset="tiny")
    assert record["name"] == "micro.test" and record["sha256"] == digest
    assert record["missing"] == 0 and record["unexpected"] == 0
    assert record["loaded"] == sum(len(b.state_dict()) for b in model.backbones())
    for bb in model.backbones():  # both towers got the file
        assert torch.equal(bb.conv1.weight, source.conv1.weight)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        none = initial_weights(build_model("mcgra", preset="tiny"), pretrained="none", preset=None)
        initial_weights(build_model("mcgra", preset="tiny"), pretrained="none", preset="tiny")
    assert none["name"] == "none"
    assert [str(w.message) for w in caught if w.category is RandomInitWarning] == [
        "mcgra: the paper recipe starts from random weights (--pretrained none); the published "
        "numbers assume pretrained weights"]
    monkeypatch.setenv("GEOBENCH_WEIGHTS_CATALOG", str(write_catalog(homes / "e.yaml", [])))
    with pytest.raises(UsageError, match="no entry for backbone resnet_micro"):
        initial_weights(build_model("mcgra", preset="tiny"), pretrained="imagenet", preset="tiny")


def test_unhashed_names_are_cached_per_entry_and_unwritable_cache_is_one_line(
        server, homes, monkeypatch):
    root, base, _ = server
    (root / "model.safetensors").write_bytes(b"one")
    digest = hashlib.sha256(b"one").hexdigest()
    path = write_catalog(homes / "c.yaml", [
        {"name": "a.test", "url": f"{base}/model.safetensors", "sha256": digest},
        {"name": "b.test", "url": f"{base}/model.safetensors", "sha256": digest}])
    catalog = load_weights_catalog(path)
    paths = {fetch_weights(catalog[n]).path.name for n in ("a.test", "b.test")}
    assert paths == {"a.test--model.safetensors", "b.test--model.safetensors"}
    blocker = homes / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("GEOBENCH_HOME", str(blocker))
    with pytest.raises(DataError, match="cannot create the weights cache") as exc:
        fetch_weights(catalog["a.test"])
    assert "GEOBENCH_HOME" in str(exc.value) and "\n" not in str(exc.value)


def test_unpinned_entries_need_the_option_and_skip_torchs_cache(server, homes, monkeypatch):
    root, base, requests = server
    payload = b"timm weights" * 500
    (root / "model.safetensors").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    path = write_catalog(homes / "cat.yaml", [
        {"name": "r50.pinned", "url": f"{base}/r50-0123abcd.pth", "sha256": "0123abcd",
         "tags": ["imagenet"]},
        {"name": "r50.paper", "url": f"{base}/model.safetensors", "sha256": None,
         "models": ["mixvpr"], "format": "timm"}])
    monkeypatch.setenv("GEOBENCH_WEIGHTS_CATALOG", str(path))
    catalog = load_weights_catalog()
    entry = catalog["r50.paper"]
    assert not entry.pinned and entry.cache_name == "r50.paper--model.safetensors"
    # `imagenet` never picks it, even though it names the model; by name it is chosen.
    assert choose("imagenet", "resnet50", "mixvpr", catalog).name == "r50.pinned"
    assert choose("r50.paper", "resnet50", "mixvpr", catalog) is entry
    with pytest.raises(UsageError, match="no sha256.*--allow-unpinned.*GEOBENCH_WEIGHTS_CATALOG") as exc:
        fetch_weights(entry)
    assert "\n" not in str(exc.value) and requests == []  # refused before any request
    # A same-named file in torch's cache proves nothing without a hash: never used.
    torch_hub_dir().mkdir(parents=True)
    (torch_hub_dir() / "model.safetensors").write_bytes(b"someone else's")
    got = fetch_weights(entry, allow_unpinned=True)
    assert got.action == "downloaded" and got.sha256 == digest and got.path.read_bytes() == payload
    assert not got.pinned
    again = fetch_weights(entry, allow_unpinned=True)
    assert again.action == "cached" and again.sha256 == digest and len(requests) == 1
    # Pinned with the printed hash in a user's catalog, the same file verifies as usual.
    pinned = write_catalog(homes / "mine.yaml", [
        {"name": "r50.paper", "url": f"{base}/model.safetensors", "sha256": digest, "format": "timm"}])
    mine = load_weights_catalog(pinned)["r50.paper"]
    assert mine.pinned and fetch_weights(mine).sha256 == digest


def test_a_pinned_hash_is_compared_on_every_digit_it_gives():
    from geobench.models.pretrained import WeightsEntry, _matches

    digest = hashlib.sha256(b"weights").hexdigest()
    other = digest[:8] + ("0" if digest[8] != "0" else "1") + digest[9:]  # same first 8 digits

    def entry(sha: str) -> WeightsEntry:
        return WeightsEntry(name="x", backbone="resnet50", url=f"https://e.org/x-{sha[:8]}.pth",
                            sha256=sha, format="torchvision", license="mit", source="test")

    assert _matches(entry(digest), digest)
    assert not _matches(entry(digest), other)         # a full hash: all 64 digits count
    assert _matches(entry(digest[:12]), digest)       # a prefix: each of its digits counts
    assert not _matches(entry(digest[:12]), other)
    assert not _matches(entry(digest[:8]), "f" * 64 if digest[0] != "f" else "0" * 64)
