"""`geobench doctor` finds planted faults in tiny real layouts."""
from __future__ import annotations

import numpy as np
import pytest

from geobench.doctor import doctor, image_header
from tests import adapter_layouts as layouts


def by_name(report):
    return {c.name: c for c in report.checks}


def test_header_check_reads_sizes_and_spots_truncation(tmp_path):
    jpg = layouts.image(tmp_path / "a.jpg", 12, 20)
    png = layouts.image(tmp_path / "a.png", 7, 9)
    assert image_header(jpg) == (12, 20) and image_header(png) == (7, 9)
    for path in (jpg, png):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match="truncated"):
            image_header(path)
    (tmp_path / "b.jpg").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a JPEG or PNG"):
        image_header(tmp_path / "b.jpg")


def test_clean_copy_is_usable_with_count_and_size_warnings(tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA")
    report = doctor("cvusa", raw)
    checks = by_name(report)
    assert report.usable
    assert checks["layout"].status == "ok" and checks["damaged images"].status == "ok"
    assert checks["counts"].status == "warn" and "release: 35532" in checks["counts"].detail
    assert checks["image sizes"].status == "warn" and "expected 750x750" in checks["image sizes"].detail
    assert "files in no split" not in checks


def test_planted_faults_are_found(tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA")
    (raw / "bingmap/19/0000001.jpg").unlink()                          # missing
    pano = raw / "streetview/panos/0000002.jpg"
    pano.write_bytes(pano.read_bytes()[:-40])                            # truncated
    layouts.image(raw / "streetview/panos/0000077.jpg")                 # in no split
    report = doctor("cvusa", raw)
    checks = by_name(report)
    assert not report.usable
    assert checks["missing images"].status == "warn"
    assert "bingmap/19/0000001.jpg" in checks["missing images"].detail
    assert checks["damaged images"].status == "fail" and "0000002.jpg" in checks["damaged images"].detail
    assert "0000077.jpg" in checks["files in no split"].detail


def test_deep_decode_catches_what_the_header_check_cannot(tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA", n_train=1, n_test=1)
    pano = raw / "streetview/panos/0000001.jpg"
    data = bytearray(pano.read_bytes())
    sos = data.index(b"\xff\xda")
    data[sos:-2] = b"\x00" * (len(data) - 2 - sos)   # scan data destroyed, markers intact
    data[2:4] = b"\xff\xd9"  # an early EOI confuses decoders
    pano.write_bytes(bytes(data))
    deep = doctor("cvusa", raw, deep=True)
    assert not deep.usable and "0000001.jpg" in by_name(deep)["damaged images"].detail


def test_wrong_root_and_vigor_layout_error(tmp_path):
    report = doctor("cvusa", tmp_path / "nothing")
    assert not report.usable and "dataset root not found" in by_name(report)["layout"].detail
    raw = layouts.vigor(tmp_path / "VIGOR")
    (raw / "splits/Chicago/same_area_balanced_train.txt").write_text("garbage line\n")
    report = doctor("vigor", raw)
    assert not report.usable
    assert "same_area_balanced_train.txt:1: malformed label line" in by_name(report)["layout"].detail


def test_doctor_cli_exit_codes(invoke, tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA")
    ok = invoke("doctor", "cvusa", "--root", raw, "--quiet")
    assert ok.exit_code == 0, ok.output
    assert "usable" in ok.stdout and "NOT" not in ok.stdout
    pano = raw / "streetview/panos/0000003.jpg"
    pano.write_bytes(pano.read_bytes()[:20])
    bad = invoke("doctor", "cvusa", "--root", raw, "--quiet")
    # Like every command: the error on stderr (one line naming the file), exit code 2.
    assert bad.exit_code == 2 and "NOT usable" not in bad.stdout
    err = bad.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cvusa at ") and "NOT usable" in err[0]
    assert "0000003.jpg" in err[0]
    unknown = invoke("doctor", "cvusaa", "--root", raw)
    assert unknown.exit_code != 0 and "Did you mean cvusa" in unknown.output
    assert np.all([line.strip() != "Traceback" for line in unknown.output.splitlines()])


def test_doctor_shards_then_merge_report_what_one_run_reports(invoke, tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA")
    for name in ("streetview/panos/0000002.jpg", "bingmap/19/0000004.jpg"):
        path = raw / name
        path.write_bytes(path.read_bytes()[:-40])  # truncated: one in each half
    whole = doctor("cvusa", raw, deep=True)
    out = tmp_path / "chk"
    for i in (1, 2, 3):
        res = invoke("doctor", "cvusa", "--root", raw, "--deep", "--shard", f"{i}/3", "--out", out,
                     "--quiet")
        assert "shard" in res.stdout  # a share reports only its images
    res = invoke("doctor", "cvusa", "--root", raw, "--deep", "--shard", "merge", "--out", out,
                 "--quiet")
    assert res.exit_code == 2 and "0000002.jpg" in res.stderr and "0000004.jpg" in res.stderr
    from geobench.shard import MERGE

    merged = doctor("cvusa", raw, deep=True, shard=MERGE, out=out)
    assert merged.checks == whole.checks  # row for row, the same report
    res = invoke("doctor", "cvusa", "--root", raw, "--shard", "merge", "--out", out, "--quiet")
    assert res.exit_code != 0 and "other parameters" in res.stderr  # the shards ran --deep
    res = invoke("doctor", "cvusa", "--root", raw, "--shard", "1/2")
    assert res.exit_code != 0 and "--shard and --out go together" in res.stderr
