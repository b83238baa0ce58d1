"""The prepared-dataset contract: round trip, and precise errors for broken input."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from geobench.errors import DataError, SchemaError
from geobench.prepared import INDEX_COLUMNS, POSITIVE_COLUMNS, read_prepared, write_prepared
from tests.conftest import make_rows


def test_round_trip_preserves_rows_and_manifest(tiny_prepared):
    loaded = read_prepared(tiny_prepared.root, check_files=True)
    assert list(loaded.index.columns) == list(INDEX_COLUMNS)
    assert list(loaded.positives.columns) == list(POSITIVE_COLUMNS)
    pd.testing.assert_frame_equal(loaded.index, tiny_prepared.index, check_dtype=False)
    pd.testing.assert_frame_equal(loaded.positives, tiny_prepared.positives, check_dtype=False)
    m = loaded.manifest
    assert m["schema"] == "geobench.prepared/1" and m["dataset"] == "fixture"
    assert m["counts"] == {"test/query/ground": 4, "test/reference/aerial": 4}
    assert m["parameters"] == {"note": "test fixture"}
    assert set(m["sha256"]) == {"index.csv", "positives.csv"}
    assert np.isnan(loaded.index.loc[loaded.index.view == "aerial", "heading"]).all()
    assert loaded.resolve("bingmap/19/0000000.jpg").is_file()


def test_selection_and_derived_paths(tmp_path):
    index, positives = make_rows(2)
    index.append(dict(uid="p0", split="test", role="reference", view="polar",
                      path="polarmap/19/0000000.png", item="0"))
    ds = write_prepared(tmp_path / "ds", index, positives, dataset="x",
                        raw_root=tmp_path / "raw", derived_dirs=["polarmap"])
    assert ds.resolve("polarmap/19/0000000.png") == tmp_path / "ds" / "polarmap/19/0000000.png"
    assert ds.resolve("bingmap/19/0000000.jpg") == (tmp_path / "raw").resolve() / "bingmap/19/0000000.jpg"
    assert list(ds.select(split="test", role="reference", view="polar")["uid"]) == ["p0"]


def test_raw_root_inside_ds_is_stored_relative(tmp_path):
    index, positives = make_rows(1)
    ds = write_prepared(tmp_path / "ds", index, positives, dataset="x", raw_root=tmp_path / "ds" / "raw")
    assert ds.manifest["raw_root"] == "raw"
    moved = tmp_path / "moved"
    (tmp_path / "ds").rename(moved)
    assert read_prepared(moved).raw_root == moved / "raw"


def test_duplicate_uid_names_line(tmp_path):
    index, positives = make_rows(2)
    index[3]["uid"] = index[0]["uid"]
    with pytest.raises(SchemaError, match=r"index.csv:5: duplicate uid 'test-g0' \(first on line 2\)"):
        write_prepared(tmp_path / "ds", index, positives, dataset="x", raw_root=tmp_path)
    assert not (tmp_path / "ds" / "index.csv").exists()


def test_dangling_positive_names_line(tmp_path):
    index, positives = make_rows(2)
    positives[1]["reference"] = "nope"
    with pytest.raises(SchemaError, match=r"positives.csv:3: reference 'nope' is not a uid"):
        write_prepared(tmp_path / "ds", index, positives, dataset="x", raw_root=tmp_path)


@pytest.mark.parametrize("col,value,msg", [("split", "training", "split 'training' is not one of"),
                                           ("view", "sky", "view 'sky' is not one of"),
                                           ("role", "gallery", "role 'gallery' is not one of")])
def test_bad_values_name_line(tmp_path, col, value, msg):
    index, positives = make_rows(2)
    index[2][col] = value
    with pytest.raises(SchemaError, match=rf"index.csv:4: {msg}"):
        write_prepared(tmp_path / "ds", index, positives, dataset="x", raw_root=tmp_path)


def test_positive_split_must_match_query(tmp_path):
    index, positives = make_rows(2)
    positives[0]["split"] = "train"
    with pytest.raises(SchemaError, match=r"positives.csv:2: split 'train' but query 'test-g0' is in split 'test'"):
        write_prepared(tmp_path / "ds", index, positives, dataset="x", raw_root=tmp_path)


def test_wrong_columns_on_read(tiny_prepared):
    path = tiny_prepared.root / "index.csv"
    frame = pd.read_csv(path).drop(columns=["city"]).rename(columns={"lat": "latitude"})
    frame.to_csv(path, index=False)
    with pytest.raises(SchemaError, match=r"index.csv: wrong header \(missing lat, city; unexpected latitude\)"):
        read_prepared(tiny_prepared.root)


def test_edited_csv_is_detected(tiny_prepared):
    path = tiny_prepared.root / "positives.csv"
    path.write_text(path.read_text() + "test,test-g0,test-a1,positive,0,,\n")
    with pytest.raises(SchemaError, match="positives.csv: changed after it was prepared"):
        read_prepared(tiny_prepared.root)


def test_bad_number_names_line(tiny_prepared):
    path = tiny_prepared.root / "index.csv"
    lines = path.read_text().splitlines()
    cells = lines[3].split(",")
    cells[6] = "north"
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    manifest = json.loads((tiny_prepared.root / "manifest.json").read_text())
    manifest["sha256"].pop("index.csv")
    (tiny_prepared.root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SchemaError, match=r"index.csv:4: lat 'north' is not a number"):
        read_prepared(tiny_prepared.root)


def test_missing_files_are_counted_and_named(tiny_prepared):
    victim = tiny_prepared.raw_root / "bingmap/19/0000002.jpg"
    victim.unlink()
    with pytest.raises(DataError, match=r"1 of 8 images are missing, e.g. .*0000002.jpg \(index.csv:7\)"):
        read_prepared(tiny_prepared.root, check_files=True)


def test_not_a_prepared_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="manifest.json: file not found"):
        read_prepared(tmp_path / "empty")
    with pytest.raises(DataError, match="not a directory"):
        read_prepared(tmp_path / "missing")


def test_wrong_schema_version(tiny_prepared):
    path = tiny_prepared.root / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["schema"] = "geobench.prepared/99"
    path.write_text(json.dumps(manifest))
    with pytest.raises(SchemaError, match="expected 'geobench.prepared/1'"):
        read_prepared(tiny_prepared.root)


def test_interrupted_write_leaves_previous_files(tiny_prepared, monkeypatch):
    import geobench.prepared as prepared

    before = (tiny_prepared.root / "index.csv").read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    index, positives = make_rows(3)
    with pytest.raises(KeyboardInterrupt):
        prepared.write_prepared(tiny_prepared.root, index, positives, dataset="x",
                                raw_root=tiny_prepared.raw_root)
    assert (tiny_prepared.root / "index.csv").read_bytes() == before
    assert not [p for p in tiny_prepared.root.iterdir() if ".tmp" in p.name]
