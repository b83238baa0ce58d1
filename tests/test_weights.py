"""Loading local torchvision/timm/official weight files into backbones, and every error path."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

from geobench.errors import DataError
from geobench.models.backbones import ConvNeXt, build_backbone, timm_to_torchvision
from geobench.models.weights import WeightsWarning, load_weights, read_state_dict


def _small_convnext(**kwargs):
    # The naming logic does not depend on width; a narrow net keeps files and time small.
    return ConvNeXt(depths=(1, 1, 3, 2), dims=(8, 16, 24, 32), **kwargs)


def _state(name, seed, **kwargs):
    torch.manual_seed(seed)
    model = _small_convnext(**kwargs) if name == "convnext" else build_backbone(name, **kwargs)
    for buf in model.buffers():  # make BN statistics distinguishable too
        if buf.is_floating_point():
            buf.uniform_(0.5, 1.5)
    return model.state_dict()


def _same(model, state, keys=None):
    own = model.state_dict()
    return all(torch.equal(own[k], state[k]) for k in (keys or own))


def write_safetensors(path, state):
    """Minimal writer for the test (the format: u64 header size, JSON header, raw bytes)."""
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}
    header, blobs, pos = {"__metadata__": {"format": "pt"}}, [], 0
    for key, t in state.items():
        raw = t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[key] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [pos, pos + len(raw)]}
        blobs.append(raw)
        pos += len(raw)
    head = json.dumps(header).encode()
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))


def test_torchvision_resnet_file_loads_into_truncated_model(tmp_path):
    full = _state("resnet50", 1, num_classes=1000)
    # A DataParallel checkpoint inside a training-state dict, as people save them.
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in full.items()}}
    torch.save(wrapped, tmp_path / "r50.pth")
    model = build_backbone("resnet50_layer3", pretrained_path=str(tmp_path / "r50.pth"))
    assert _same(model, full)
    report = load_weights(model, tmp_path / "r50.pth")
    assert report.loaded == len(model.state_dict())
    assert report.missing == () and report.unexpected == ()
    assert {k.split(".")[0] for k in report.skipped} == {"layer4", "fc"}


def test_safetensors_roundtrip_with_half_precision(tmp_path):
    state = _state("lsknet_t", 2)
    file_state = {k: (v.to(torch.bfloat16) if k.endswith("proj.weight") else v) for k, v in state.items()}
    file_state = {f"backbone.{k}": v for k, v in file_state.items()}  # mmrotate-style prefix
    write_safetensors(tmp_path / "lsk.safetensors", file_state)
    read = read_state_dict(tmp_path / "lsk.safetensors")
    assert read["backbone.block1.0.layer_scale_1"].dtype == torch.float32
    model = build_backbone("lsknet_t", pretrained_path=str(tmp_path / "lsk.safetensors"))
    exact = [k for k in state if not k.endswith("proj.weight")]
    assert _same(model, state, exact)
    k = "patch_embed1.proj.weight"
    assert torch.equal(model.state_dict()[k], state[k].to(torch.bfloat16).float())


def test_torchvision_convnext_names_are_converted(tmp_path):
    state = _state("convnext", 3, num_classes=10)
    torch.save(timm_to_torchvision(state), tmp_path / "cnx.pth")
    model = _small_convnext(num_stages=3)
    report = model.load_weights(str(tmp_path / "cnx.pth"))
    assert report.naming == "torchvision"
    assert _same(model, state)
    assert any(k.startswith("stages.3.") for k in report.skipped) and "head.fc.weight" in report.skipped


def test_sample4geo_style_checkpoint_with_prefix(tmp_path):
    state = _state("convnext", 4, head_norm=True)
    ckpt = {f"model.{k}": v for k, v in state.items()}
    ckpt["logit_scale"] = torch.tensor(2.659)
    torch.save(ckpt, tmp_path / "s4g.pth")
    model = _small_convnext(head_norm=True)
    with pytest.raises(DataError, match="keys in the file not used by ConvNeXt: logit_scale"):
        load_weights(model, tmp_path / "s4g.pth")
    load_weights(model, tmp_path / "s4g.pth", prefix="model.")
    assert _same(model, state)


def test_shape_mismatch_names_key_and_both_shapes(tmp_path):
    state = _state("resnet50_layer3", 5)
    state["layer2.0.conv2.weight"] = torch.zeros(128, 128, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    model = build_backbone("resnet50_layer3")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(DataError) as err:
        load_weights(model, tmp_path / "bad.pth", strict=False)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "bad.pth") in msg
    assert "'layer2.0.conv2.weight' has shape (128, 128, 1, 1) in the file but (128, 128, 3, 3)" in msg
    assert _same(model, before)  # nothing half-loaded


def test_missing_and_unexpected_keys(tmp_path):
    state = _state("vgg16", 6)
    del state["features.28.bias"]
    state["features.99.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "vgg.pth")
    model = build_backbone("vgg16")
    with pytest.raises(DataError) as err:
        load_weights(model, tmp_path / "vgg.pth")
    msg = str(err.value)
    assert "1 VGGFeatures parameters missing from the file: features.28.bias" in msg
    assert "not used by VGGFeatures: features.99.weight" in msg and "\n" not in msg
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = load_weights(model, tmp_path / "vgg.pth", strict=False)
    assert sorted(str(w.message).split(":")[1].strip() for w in caught if w.category is WeightsWarning) == [
        "1 VGGFeatures parameters missing from the file", "1 keys in the file not used by VGGFeatures",
    ]
    assert report.missing == ("features.28.bias",) and report.unexpected == ("features.99.weight",)
    assert _same(model, state, ["features.0.weight", "features.28.weight"])


def test_old_checkpoints_without_num_batches_tracked_load(tmp_path):
    state = {k: v for k, v in _state("resnet50_layer3", 7).items() if "num_batches_tracked" not in k}
    torch.save(state, tmp_path / "old.pth")
    report = load_weights(build_backbone("resnet50_layer3"), tmp_path / "old.pth")
    assert report.missing == ()


def test_wrong_architecture_and_unreadable_files(tmp_path):
    model = build_backbone("lsknet_t")
    with pytest.raises(DataError, match="weights file not found"):
        load_weights(model, tmp_path / "nope.pth")
    torch.save(_state("vgg16", 8), tmp_path / "vgg.pth")
    with pytest.raises(DataError, match=r"no key matches LSKNet \(file keys look like features\.0\.weight"):
        load_weights(model, tmp_path / "vgg.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(DataError, match="cannot read weights"):
        load_weights(model, tmp_path / "junk.pth")
    torch.save({"epoch": 3, "note": "no tensors"}, tmp_path / "empty.pth")
    with pytest.raises(DataError, match="no state dict of tensors found"):
        load_weights(model, tmp_path / "empty.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(DataError, match="not a safetensors file"):
        load_weights(model, tmp_path / "bad.safetensors")
    head = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    (tmp_path / "short.safetensors").write_bytes(len(head).to_bytes(8, "little") + head + bytes(8))
    with pytest.raises(DataError, match="inconsistent offsets/shape"):
        read_state_dict(tmp_path / "short.safetensors")


def test_ambiguous_prefix_stripping_is_refused(tmp_path):
    state = _state("vgg16", 9)
    both = {**state, **{f"module.{k}": v for k, v in state.items()}}
    torch.save(both, tmp_path / "dup.pth")
    with pytest.raises(DataError, match="both map to"):
        load_weights(build_backbone("vgg16", num_stages=2), tmp_path / "dup.pth")
    with pytest.raises(DataError, match="no key starts with prefix 'query.'"):
        load_weights(build_backbone("vgg16"), tmp_path / "dup.pth", prefix="query.")
