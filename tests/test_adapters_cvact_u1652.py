"""CVACT (ACT_data.mat v5 and v7.3) and University-1652 adapters on tiny real layouts."""
from __future__ import annotations

import numpy as np
import pytest

from geobench.datasets import prepare_dataset
from geobench.datasets.cvact import load_act_data
from geobench.errors import DataError, UsageError
from geobench.prepared import read_prepared
from tests import adapter_layouts as layouts

IDS = layouts.CVACT_IDS


@pytest.mark.parametrize("version,cell", [("v5", True), ("v5", False), ("v7.3", True),
                                          ("v7.3", False)])
def test_act_data_mat_both_versions(tmp_path, version, cell):
    raw = layouts.cvact(tmp_path / "CVACT", version=version, cell=cell)
    if version == "v7.3":
        from scipy.io import loadmat

        with pytest.raises(NotImplementedError):  # a real v7.3 header: scipy refuses it
            loadmat(str(raw / "ACT_data.mat"))
    act = load_act_data(raw / "ACT_data.mat")
    assert act.pano_ids == IDS
    assert act.utm.shape == (8, 2) and act.utm[1, 0] == 690100.0
    assert act.sets["train"].tolist() == [0, 1, 2, 3]  # 1-based in the file
    assert act.sets["test"].tolist() == [4, 5, 6, 7]


def test_cvact_splits_and_5m_test_positives(tmp_path):
    raw = layouts.cvact(tmp_path / "CVACT", mat_in="OriNet_CVACT/CVACT_orientations")
    ds = prepare_dataset("cvact", raw, tmp_path / "ds", {})
    back = read_prepared(tmp_path / "ds", check_files=True)
    assert len(back.select("train", "query", "ground")) == 4
    assert len(back.select("val", "reference", "aerial")) == 2
    assert len(back.select("test", "query", "ground")) == 4
    assert back.select("test")["path"].str.startswith("ANU_data_test/").all()
    test = back.positives[back.positives["split"] == "test"]
    links = set(zip(test["query"].str[-22:], test["reference"].str[-22:], strict=True))
    expected = {(IDS[k], IDS[k]) for k in range(4, 8)} | {(IDS[6], IDS[7]), (IDS[7], IDS[6])}
    assert links == expected
    assert np.isclose(test[test["query"].str.endswith(IDS[6]) &
                           test["reference"].str.endswith(IDS[7])]["distance_m"].iloc[0], 3.0)
    val = back.positives[back.positives["split"] == "val"]
    assert (val["query"].str[-22:] == val["reference"].str[-22:]).all() and len(val) == 2
    row = back.index.set_index("uid").loc[f"train/ground/{IDS[1]}"]
    assert (row["utm_e"], row["utm_n"]) == (690100.0, 6090050.0)
    assert -36.0 < row["lat"] < -35.0 and 148.0 < row["lon"] < 150.0  # Canberra
    assert ds.manifest["parameters"]["utm_columns"] == "east,north"


def test_cvact_root_is_anu_data_small_and_missing_images(tmp_path):
    raw = layouts.cvact(tmp_path / "CVACT", mat_in="ANU_data_small")
    (raw / "ANU_data_small/streetview" / f"{IDS[0]}_grdView.jpg").unlink()
    ds = prepare_dataset("cvact", raw / "ANU_data_small", tmp_path / "ds", {})
    assert ds.manifest["missing_images"] == {"ground": 1}
    assert len(ds.select("train", "query")) == 3
    with pytest.raises(DataError, match=f"{IDS[0]}_grdView.jpg: missing image"):
        prepare_dataset("cvact", raw, tmp_path / "ds2", {"strict": True})


def test_cvact_polar(tmp_path):
    import cv2

    raw = layouts.cvact(tmp_path / "CVACT")
    ds = prepare_dataset("cvact", raw, tmp_path / "ds", {"polar": True, "polar_size": (4, 16),
                                                         "splits": ("val",)})
    polar = ds.select("val", "reference", "polar")
    assert len(polar) == 2
    assert cv2.imread(str(ds.resolve(polar["path"].iloc[0]))).shape == (4, 16, 3)


def test_cvact_error_paths(tmp_path):
    raw = layouts.cvact(tmp_path / "CVACT")
    (raw / "ACT_data.mat").unlink()
    with pytest.raises(DataError, match="ACT_data.mat not found"):
        prepare_dataset("cvact", raw, tmp_path / "ds", {})
    utm = np.zeros((8, 2)) + [690000.0, 6090000.0]
    layouts.act_mat(raw / "ACT_data.mat", IDS, utm, {"trainSet": [0, 1], "valSet": [2]})
    with pytest.raises(DataError, match=r"trainSet\.trainInd holds indices outside 1\.\.8 "
                                        r"\(MATLAB indices are 1-based\)"):
        prepare_dataset("cvact", raw, tmp_path / "ds", {})
    layouts.act_mat(raw / "ACT_data.mat", IDS, utm, {"trainSet": [1, 2]})
    with pytest.raises(DataError, match=r"no valSet\.valInd"):
        prepare_dataset("cvact", raw, tmp_path / "ds", {"splits": ("val",)})
    layouts.act_mat(raw / "ACT_data.mat", IDS, utm[:5], {"trainSet": [1, 2]})
    with pytest.raises(DataError, match=r"utm has shape \(5, 2\), expected \(8, 2\)"):
        prepare_dataset("cvact", raw, tmp_path / "ds", {})
    (raw / "ACT_data.mat").write_bytes(b"not a mat file at all" * 20)
    with pytest.raises(DataError, match="not a readable MATLAB file"):
        prepare_dataset("cvact", raw, tmp_path / "ds", {})
    with pytest.raises(DataError, match="no ANU_data_small/ or ANU_data_test/"):
        prepare_dataset("cvact", tmp_path / "CVACT/ANU_data_small/streetview", tmp_path / "ds", {})
    assert not (tmp_path / "ds").exists()


def test_cvact_v73_missing_struct_field_names_hdf5_path(tmp_path):
    import h5py

    raw = layouts.cvact(tmp_path / "CVACT", version="v7.3")
    with h5py.File(raw / "ACT_data.mat", "a") as f:
        del f["valSet/valInd"]
    with pytest.raises(DataError, match=r"HDF5 dataset /valSet/valInd not found"):
        prepare_dataset("cvact", raw, tmp_path / "ds", {})


# --------------------------------------------------------------------------- University-1652


def test_university1652_official_protocol(tmp_path):
    layouts.university1652(tmp_path / "University-Release")
    ds = prepare_dataset("university1652", tmp_path, tmp_path / "ds", {})
    back = read_prepared(tmp_path / "ds", check_files=True)
    idx = back.index.set_index("uid")
    assert set(idx["item"]) >= {"0000", "0001", "0002", "0003", "0099"}  # 0000 kept as a string
    assert len(back.select("test", "reference", "aerial")) == 3         # distractor kept
    assert len(back.select("test", "query", "drone")) == 6
    assert len(back.select("train", "query", "street")) == 2            # google excluded
    pos = back.positives
    assert (idx.loc[pos["query"], "item"].to_numpy() == idx.loc[pos["reference"], "item"]
            .to_numpy()).all()
    d2s = pos[pos["query"].str.startswith("test/query_drone/")]
    assert len(d2s) == 6 and d2s["reference"].str.startswith("test/gallery_satellite/").all()
    s2d = pos[pos["query"].str.startswith("test/query_satellite/")]
    assert len(s2d) == 6 and s2d["reference"].str.startswith("test/gallery_drone/").all()
    # the same satellite picture is a query (S2D) and a reference (D2S) under distinct uids
    assert {"test/query_satellite/0002/0002.jpg", "test/gallery_satellite/0002/0002.jpg"} \
        <= set(idx.index)
    assert ds.manifest["parameters"]["empty_folders_skipped"] == {"test/query_street": 1}


def test_university1652_drop_distractors_and_google(tmp_path):
    raw = layouts.university1652(tmp_path / "U")
    ds = prepare_dataset("university1652", raw, tmp_path / "ds",
                         {"drop_distractors": True, "include_google": True})
    assert "0099" not in set(ds.select("test")["item"])
    assert ds.manifest["parameters"]["distractors_dropped"] == {
        "test/gallery_drone": 1, "test/gallery_satellite": 1}
    assert len(ds.select("train", "query", "street")) == 3
    assert ds.manifest["parameters"]["empty_folders_skipped"]["train/google"] == 1


def test_university1652_error_paths(tmp_path):
    raw = layouts.university1652(tmp_path / "U")
    with pytest.raises(DataError, match="no train/ or test/ folder"):
        prepare_dataset("university1652", raw / "train/drone", tmp_path / "ds", {})
    (raw / "test/query_drone/misc").mkdir()
    with pytest.raises(DataError, match=r"misc: building folders must be named"):
        prepare_dataset("university1652", raw, tmp_path / "ds", {})
    (raw / "test/query_drone/misc").rmdir()
    import shutil

    shutil.rmtree(raw / "test/gallery_drone")
    with pytest.raises(DataError, match=r"gallery_drone: folder not found but test/query_satellite"):
        prepare_dataset("university1652", raw, tmp_path / "ds", {})
    with pytest.raises(UsageError, match="unknown split"):
        prepare_dataset("university1652", raw, tmp_path / "ds", {"splits": ("val",)})
    assert not (tmp_path / "ds").exists()


def test_cvact_truncated_mat_is_a_one_line_error(tmp_path):
    raw = layouts.cvact(tmp_path / "CVACT")
    mat = raw / "ACT_data.mat"
    mat.write_bytes(mat.read_bytes()[:100])  # a download cut inside the 128-byte header
    with pytest.raises(DataError, match=r"ACT_data\.mat: not a readable MATLAB file") as info:
        prepare_dataset("cvact", raw, tmp_path / "ds", {})
    assert "\n" not in str(info.value)


def test_university1652_test_building_0000(tmp_path):
    """Test ids start at 0000 (the baseline's gallery_name.txt); it is a class like any other."""
    raw = layouts.university1652(tmp_path / "U")
    for k in (1, 2):
        layouts.image(raw / "test/query_drone/0000" / f"image-{k:02d}.jpeg")
    layouts.image(raw / "test/gallery_satellite/0000/0000.jpg")
    ds = prepare_dataset("university1652", raw, tmp_path / "ds", {"splits": ("test",),
                                                                  "drop_distractors": True})
    back = read_prepared(tmp_path / "ds")
    ref = back.index.set_index("uid").loc["test/gallery_satellite/0000/0000.jpg"]
    assert ref["item"] == "0000"  # not the integer 0
    pos = back.positives[back.positives["query"].str.startswith("test/query_drone/0000/")]
    assert set(pos["reference"]) == {"test/gallery_satellite/0000/0000.jpg"} and len(pos) == 2
    assert ds.manifest["parameters"]["distractors_dropped"]["test/gallery_satellite"] == 1
