"""features.h5 / results.h5 / metrics.csv: round trips and validation errors."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from geobench.errors import DataError, SchemaError
from geobench.eval.csr import CSR
from geobench.eval.evaluate import EvalOptions, Provenance, evaluate, evaluate_features
from geobench.eval.features import read_features, write_features
from geobench.eval.results import (
    METRICS_COLUMNS,
    SCHEMA,
    read_metrics,
    read_results,
    write_metrics,
    write_results,
)


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    r = unit(rng.standard_normal((60, 8)))
    q = unit(r[:20] + 0.3 * rng.standard_normal((20, 8)))
    return q, r, CSR.from_lists([[i] for i in range(20)])


def test_features_round_trip(tmp_path, arrays):
    q, r, pos = arrays
    semi = CSR.from_lists([[i + 20, i + 40] for i in range(20)])
    ll = np.c_[np.linspace(40, 41, 60), np.full(60, -75.0)]
    path = write_features(tmp_path / "f.h5", q.astype(np.float16), r, pos, semi_positives=semi,
                          query_latlon=ll[:20], reference_latlon=ll,
                          query_uids=[f"q{i}" for i in range(20)],
                          attrs={"model": "toy", "protocol": "vigor_same"})
    f = read_features(path)
    assert f.query.dtype == np.float16 and f.reference.shape == (60, 8)
    np.testing.assert_array_equal(f.positives.indices, pos.indices)
    np.testing.assert_array_equal(f.semi_positives.indptr, semi.indptr)
    np.testing.assert_allclose(f.reference_latlon, ll)
    assert f.query_uids[3] == "q3" and f.reference_uids is None
    assert f.attrs["model"] == "toy" and not f.normalised
    assert not list(tmp_path.glob(".*tmp*"))


def _write_raw(path, **datasets):
    with h5py.File(path, "w") as h5:
        for name, data in datasets.items():
            h5.create_dataset(name.replace("__", "/"), data=data)
    return path


def _valid(q, r, pos):
    return {"query__descriptors": q, "reference__descriptors": r,
            "query__positives_indptr": pos.indptr, "query__positives_indices": pos.indices}


@pytest.mark.parametrize("change, cls, needle", [
    (dict(reference__descriptors=np.ones((60, 9), np.float32) / 3.0), SchemaError,
     "/reference/descriptors: dimension D=9"),
    (dict(query__positives_indices=np.arange(20) + 50), DataError,
     "/query/positives_indices: reference number 60 is out of range"),
    (dict(query__positives_indptr=np.arange(20)), SchemaError, "/query/positives_indptr: length 20"),
    (dict(query__descriptors=np.zeros((0, 8), np.float32), query__positives_indptr=np.zeros(1, int),
          query__positives_indices=np.zeros(0, int)), DataError, "/query/descriptors: the query set is empty"),
    (dict(query__descriptors=np.ones((20, 8), np.int32)), SchemaError, "/query/descriptors: dtype int32"),
])
def test_features_errors_name_the_dataset(tmp_path, arrays, change, cls, needle):
    q, r, pos = arrays
    data = {**_valid(q, r, pos), **change}
    path = _write_raw(tmp_path / "bad.h5", **data)
    with pytest.raises(cls) as info:
        read_features(path)
    message = str(info.value)
    assert needle in message and str(path) in message and "\n" not in message


def test_nan_and_unnormalised_descriptors(tmp_path, arrays):
    q, r, pos = arrays
    bad = q.copy()
    bad[7, 2] = np.nan
    with pytest.raises(DataError, match=r"/query/descriptors: row 7 contains NaN or Inf"):
        read_features(_write_raw(tmp_path / "nan.h5", **{**_valid(bad, r, pos)}))
    big = r * 3.0
    path = _write_raw(tmp_path / "norm.h5", **_valid(q, big, pos))
    with pytest.raises(DataError, match=r"/reference/descriptors: descriptors are not "
                                        r"L2-normalised.*--normalise"):
        read_features(path)
    f = read_features(path, normalise=True)
    assert f.normalised
    np.testing.assert_allclose(np.linalg.norm(f.reference, axis=1), 1.0, atol=1e-6)
    zero = r.copy()
    zero[4] = 0
    with pytest.raises(DataError, match="row 4 is all zeros"):
        read_features(_write_raw(tmp_path / "zero.h5", **_valid(q, zero, pos)), normalise=True)
    with pytest.raises(DataError, match="/query/positives_indptr: missing dataset"):
        read_features(_write_raw(tmp_path / "nopos.h5", query__descriptors=q,
                                 reference__descriptors=r))
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="not a readable HDF5"):
        read_features(tmp_path / "text.h5")


def test_results_round_trip(tmp_path, arrays):
    q, r, pos = arrays
    res = evaluate(q, r, pos, "u1652_d2s", EvalOptions(ks=(1, 5, 10, 20), save_topk=7))
    prov = Provenance(run="r1", dataset="toy", split="test", model="m", checkpoint_sha256="c" * 64)
    results_path, metrics_path = write_results(tmp_path / "out", res, prov, descriptors=(q, r))
    stored = read_results(results_path)
    np.testing.assert_array_equal(stored.ranks, res.ranks)
    np.testing.assert_array_equal(stored.topk_indices, res.topk_indices)
    assert stored.topk_indices.shape == (20, 7)
    np.testing.assert_allclose(stored.curve_recall, res.curve_recall)
    assert stored.curve_k[-1] >= min(60, 100)
    assert stored.attrs["schema"] == SCHEMA and stored.attrs["protocol"] == "u1652_d2s"
    assert stored.attrs["k_1pct"] == 2 and stored.attrs["checkpoint_sha256"] == "c" * 64
    assert "created_at" in stored.attrs and "numpy" in stored.attrs["versions"]
    np.testing.assert_allclose(stored.per_query["ap"], res.per_query["ap"])
    frame = read_metrics(metrics_path)
    assert list(frame.columns[:len(METRICS_COLUMNS)]) == list(METRICS_COLUMNS)
    assert "r@20" in frame.columns and "ap" in frame.columns
    row = frame.iloc[0]
    assert row["run"] == "r1" and row["r@1"] == pytest.approx(res.metrics["r@1"])
    assert row["k_1pct"] == 2 and row["n_reference"] == 60
    assert stored.metrics["r@1"] == pytest.approx(res.metrics["r@1"])
    with h5py.File(results_path) as h5:
        assert h5["descriptors/query"].shape == (20, 8)


def test_readers_reject_foreign_files(tmp_path, arrays):
    q, r, pos = arrays
    results_path, metrics_path = write_results(tmp_path / "o", evaluate(q, r, pos), Provenance())
    with h5py.File(results_path, "a") as h5:
        h5.attrs["schema"] = "geobench.results/0"
    with pytest.raises(SchemaError, match=r"schema 'geobench.results/0', expected"):
        read_results(results_path)
    (tmp_path / "m.csv").write_text("run,dataset\nx,y\n")
    with pytest.raises(SchemaError, match="missing column"):
        read_metrics(tmp_path / "m.csv")
    write_metrics(tmp_path / "n.csv", [{"run": "a", "r@1": "lots"}])
    with pytest.raises(SchemaError, match=r"n.csv:2: r@1 'lots' is not a number"):
        read_metrics(tmp_path / "n.csv")


def test_failed_write_leaves_nothing(tmp_path, arrays, monkeypatch):
    q, r, pos = arrays
    res = evaluate(q, r, pos)
    with pytest.raises((TypeError, AttributeError)):  # fails half-way through results.h5
        write_results(tmp_path / "o", res, Provenance(), descriptors=(q, object()))
    assert list((tmp_path / "o").iterdir()) == []
    import geobench.eval.results as results

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(results, "write_metrics", boom)
    with pytest.raises(OSError):
        write_results(tmp_path / "o", res, Provenance())
    # results.h5 may be complete, but metrics.csv (the marker of a finished run) is absent
    assert not (tmp_path / "o" / "metrics.csv").exists()
    assert not [p for p in (tmp_path / "o").iterdir() if "tmp" in p.name]


def test_evaluate_features_uses_file_attributes(tmp_path, arrays):
    q, r, pos = arrays
    write_features(tmp_path / "f.h5", q, r, pos, attrs={"protocol": "cvusa", "model": "toy",
                                                         "dataset": "cvusa", "split": "test"})
    summary = evaluate_features(tmp_path / "f.h5", tmp_path / "out", EvalOptions(save_topk=3))
    row = read_metrics(summary.metrics_path).iloc[0]
    assert (row["protocol"], row["model"], row["dataset"], row["run"]) == ("cvusa", "toy", "cvusa", "out")
    assert len(read_results(summary.results_path).attrs["features_sha256"]) == 64
