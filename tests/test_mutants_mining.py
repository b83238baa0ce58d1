"""geobench.mining where the mutation run found gaps (issue 18).

Each test pins one behaviour a surviving mutant changed: the exact error messages (they
name the file line, the uid and the way out), the Norway UTM zone exception in the
mixed-zone check, coordinates given as None, `mine_links`'s default metric, what
`mine_dataset` keeps in the manifest and reports, and great-circle distances between
antipodal points, whose chord can round to just above the sphere's diameter.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geobench.errors import DataError, UsageError
from geobench.geometry.gps import EARTH_RADIUS_M
from geobench.mining import (
    MineOptions,
    mine_dataset,
    mine_links,
    nearest_neighbours,
    resolve_metric,
)
from geobench.prepared import Prepared, read_prepared, write_prepared
from tests.test_mining import make_ds

INDEX = Path("DS/index.csv")


def rows(lat, lon, utm=(500000.0, 4400000.0)):
    """One index-like frame: uids a, b, c, ... at these coordinates."""
    n = len(lat)
    return pd.DataFrame({"uid": [chr(ord("a") + i) for i in range(n)], "lat": lat, "lon": lon,
                         "utm_e": [utm[0]] * n, "utm_n": [utm[1]] * n})


def message(excinfo) -> str:
    return str(excinfo.value)


# --------------------------------------------------------------------------- resolve_metric


def test_resolve_metric_unknown_metric_message():
    with pytest.raises(UsageError) as exc:
        resolve_metric(rows([1.0], [2.0]), "UTM", INDEX)
    assert message(exc) == "metric 'UTM' is not one of auto | utm | latlon"
    with pytest.raises(UsageError) as exc:
        MineOptions(metric="euclid")
    assert message(exc) == "--metric 'euclid' is not one of auto | utm | latlon"


def test_resolve_metric_missing_coordinate_messages():
    frame = rows([1.0, np.nan, 3.0], [2.0, 2.0, 2.0])
    frame.loc[1, "utm_e"] = np.nan
    frame.index = [10, 11, 12]                # the line number comes from the frame's index
    with pytest.raises(DataError) as exc:
        resolve_metric(frame, "latlon", INDEX)
    assert message(exc) == (f"{INDEX}:13: 'b' has no lat/lon; GPS mining needs coordinates "
                            f"on every query and reference")
    with pytest.raises(DataError) as exc:
        resolve_metric(frame, "auto", INDEX)
    assert message(exc) == (f"{INDEX}:13: 'b' has no utm_e/utm_n or lat/lon; GPS mining "
                            f"needs coordinates on every query and reference")
    frame.loc[11, "lat"] = 1.5                # lat/lon complete, utm still missing
    with pytest.raises(DataError) as exc:
        resolve_metric(frame, "utm", INDEX)
    assert message(exc) == (f"{INDEX}:13: 'b' has no utm_e/utm_n; fill them or mine with "
                            f"--metric latlon")
    assert resolve_metric(frame, "auto", INDEX) == "latlon"


def test_resolve_metric_with_coordinates_given_as_none():
    # rows built from records with None for the missing UTM columns: an object column
    frame = pd.DataFrame([{"uid": "a", "lat": 1.0, "lon": 2.0, "utm_e": None, "utm_n": None},
                          {"uid": "b", "lat": 1.5, "lon": 2.0, "utm_e": None, "utm_n": None}])
    assert frame["utm_e"].dtype == object
    assert resolve_metric(frame, "auto", INDEX) == "latlon"
    with pytest.raises(DataError, match=r"index.csv:2: 'a' has no utm_e/utm_n;"):
        resolve_metric(frame, "utm", INDEX)


def test_mixed_zone_check_applies_the_norway_exception():
    # At 60 N, longitude 3 to 12 is zone 32 (Norway), not 31: these rows span two zones
    # although plain 6-degree zones would put both in 31.
    with pytest.raises(DataError) as exc:
        resolve_metric(rows([60.0, 60.0], [2.9, 3.1]), "auto", INDEX)
    assert message(exc).startswith(f"{INDEX}: the rows span UTM zones 31, 32, ")
    assert resolve_metric(rows([50.0, 50.0], [2.9, 3.1]), "auto", INDEX) == "utm"
    assert resolve_metric(rows([60.0, 60.0], [2.9, 3.1]), "latlon", INDEX) == "latlon"


# --------------------------------------------------------------------------- datasets


def test_split_without_references_is_named(tmp_path):
    ds = make_ds(tmp_path, n_q=3, n_r=3)
    extra = {"uid": "lonely", "split": "train", "role": "query", "view": "street",
             "path": "query/lonely.jpg", "lat": 37.77, "lon": -122.42}
    prepared = write_prepared(tmp_path / "two", [*ds.index.to_dict("records"), extra], [],
                              dataset="toy", raw_root=tmp_path)
    with pytest.raises(DataError) as exc:
        mine_links(prepared, "train", 25.0)
    assert message(exc) == (f"{prepared.root / 'index.csv'}: split 'train' has no references; "
                            f"pick another --split (the index has test, train)")
    with pytest.raises(DataError) as exc:
        mine_links(prepared, "val", 25.0)
    assert message(exc) == (f"{prepared.root / 'index.csv'}: split 'val' has no queries; "
                            f"pick another --split (the index has test, train)")


def test_mine_links_defaults_to_the_auto_metric(tmp_path):
    ds = make_ds(tmp_path, n_q=5, n_r=8)
    links, queries, refs, used = mine_links(ds, "test", 1e5)
    assert used == "utm" and links.indptr[-1] == 5 * 8
    assert len(queries) == 5 and len(refs) == 8
    no_utm = make_ds(tmp_path / "ll", n_q=5, n_r=8, utm=False)
    assert mine_links(no_utm, "test", 1e5)[3] == "latlon"


def test_mine_dataset_report_and_kept_manifest(tmp_path):
    base = make_ds(tmp_path, n_q=6, n_r=9)
    ds = write_prepared(tmp_path / "ds2", base.index, base.positives, dataset="toy",
                        raw_root=tmp_path, derived_dirs=["polar"],
                        extra={"source_commit": "abc123"})
    options = MineOptions(split="test", radius=60.0)
    before = time.perf_counter()
    report = mine_dataset(str(ds.root), options)
    elapsed = time.perf_counter() - before
    assert report.ds == ds.root and isinstance(report.ds, Path)
    assert report.options is options
    assert (report.n_queries, report.n_references) == (6, 9)
    # seconds is the call's own duration: within what the caller measured around it
    assert isinstance(report.seconds, float) and 0.0 <= report.seconds <= elapsed
    back = read_prepared(ds.root)
    assert isinstance(report.prepared, Prepared) and report.prepared.manifest == back.manifest
    pd.testing.assert_frame_equal(report.prepared.positives, back.positives)
    # what mining does not own survives the rewrite
    assert back.name == "toy"
    assert back.derived_dirs == ("polar",)
    assert back.manifest["source_commit"] == "abc123"
    assert back.raw_root.resolve() == tmp_path.resolve()


def test_mine_dataset_without_a_parameters_entry_in_the_manifest(tmp_path):
    # readers accept a manifest without "parameters" (only the schema is required)
    ds = make_ds(tmp_path, n_q=4, n_r=6)
    path = ds.root / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["parameters"]
    path.write_text(json.dumps(manifest))
    assert "parameters" not in read_prepared(ds.root).manifest
    mine_dataset(ds.root, MineOptions(split="test", radius=25.0))
    assert set(read_prepared(ds.root).manifest["parameters"]) == {"mining"}


# --------------------------------------------------------------------------- neighbours


def test_great_circle_distance_between_antipodal_points():
    # The chord between these unit vectors rounds to 2.0000000000000004, just above the
    # diameter: half the circumference must come out, not arcsin(> 1) = NaN.
    pts = np.array([[12.905, -24.445], [-12.905, 155.555]])
    idx, dist = nearest_neighbours(pts, 1, metric="latlon")
    assert idx[:, 0].tolist() == [1, 0]
    assert dist[:, 0] == pytest.approx([math.pi * EARTH_RADIUS_M] * 2, rel=1e-12)
