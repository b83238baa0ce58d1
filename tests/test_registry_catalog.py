"""Registries (close-match errors) and the datasets.yaml catalog (validation at load)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from geobench.catalog import load_catalog
from geobench.errors import SchemaError, UnknownNameError
from geobench.registry import Registry

FIELD = ("cvusa", "cvact", "vigor", "university1652", "pitts30k", "pitts250k", "sf_xl", "msls",
         "tokyo247", "synthetic")


def test_registry_register_get_and_close_matches():
    reg = Registry("widget", "geobench widgets")

    @reg.register(card={"size": 3})
    def resnet_tiny():
        return "built"

    assert reg.get("resnet_tiny")() == "built"
    assert reg.card("resnet_tiny") == {"size": 3}
    assert reg.names() == ["resnet_tiny"] and "resnet_tiny" in reg and len(reg) == 1
    with pytest.raises(UnknownNameError, match=r"unknown widget 'resnet_tiy'\. Did you mean "
                                               r"resnet_tiny\? Run `geobench widgets`"):
        reg.get("resnet_tiy")
    with pytest.raises(UnknownNameError) as info:
        reg.get("zzz")
    assert "Did you mean" not in str(info.value)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register()(resnet_tiny)


def test_catalog_lists_every_dataset_of_the_field():
    catalog = load_catalog()
    assert set(FIELD) <= set(catalog)
    for spec in catalog.values():
        assert spec.description and spec.citation and spec.homepage.startswith("http")
        assert spec.access_how and spec.layout and spec.image_sizes
        assert spec.default_protocol in {"cvusa", "cvact_val", "cvact_test", "vigor_same",
                                         "vigor_cross", "u1652_d2s", "u1652_s2d", "vg25", "msls_val_740", "pairs"}
    assert catalog["cvusa"].image_sizes == {"aerial": (750, 750), "ground": (224, 1232)}
    assert catalog["cvusa"].counts["test_pairs"] == 8884
    assert catalog["vigor"].gated and not catalog["synthetic"].gated


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _valid() -> dict:
    return yaml.safe_load((Path(__file__).parents[1] / "datasets.yaml").read_text())


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["datasets"]["cvusa"].pop("homepage"), r"datasets.cvusa: missing field\(s\) homepage"),
    (lambda d: d["datasets"]["vigor"].update(task="segmentation"), r"datasets.vigor.task: 'segmentation'"),
    (lambda d: d["datasets"]["cvact"]["access"].update(kind="ask"), r"datasets.cvact.access: needs kind"),
    (lambda d: d["datasets"]["cvusa"]["image_sizes"].update(aerial=[750]), r"datasets.cvusa.image_sizes.aerial: expected \[height, width\]"),
    (lambda d: d["datasets"]["msls"].update(files=[{"name": "a.zip", "url": "http://x/a.zip", "size": 3, "sha256": "abc"}]),
     r"datasets.msls.files\[0\]: sha256 'abc' is not 64 hex digits"),
    (lambda d: d.update(schema="other/2"), r"schema 'other/2', expected 'geobench.datasets/1'"),
])
def test_catalog_validation_errors_name_the_entry(tmp_path, mutate, message):
    data = _valid()
    mutate(data)
    with pytest.raises(SchemaError, match=message):
        load_catalog(_write(tmp_path, data))


def test_catalog_yaml_syntax_error_names_line(tmp_path):
    with pytest.raises(SchemaError, match=r"datasets.yaml:2: not valid YAML"):
        load_catalog(_write(tmp_path, "schema: x\ndatasets: {a: [1, 2}\nother: 1\n"))


def test_cli_import_stays_light():
    """`geobench --help` must stay instant: the CLI module imports no heavy library."""
    code = ("import sys, geobench.cli; heavy = [m for m in ('torch', 'cv2', 'faiss', 'h5py', "
            "'matplotlib', 'pandas', 'scipy', 'numba') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
