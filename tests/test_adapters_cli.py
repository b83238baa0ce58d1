"""`geobench prepare` (real datasets) and `geobench download` through the CLI."""
from __future__ import annotations

import hashlib

from geobench.prepared import read_prepared
from tests import adapter_layouts as layouts


def test_prepare_cli_success_and_table(invoke, tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA")
    res = invoke("prepare", "cvusa", "--root", raw, "--out", tmp_path / "ds", "--quiet")
    assert res.exit_code == 0, res.output
    assert "train" in res.stdout and "positive" in res.stdout
    assert len(read_prepared(tmp_path / "ds").index) == 10


def test_prepare_cli_options_reach_the_adapters(invoke, tmp_path):
    raw = layouts.vigor(tmp_path / "VIGOR", corrected=True)
    res = invoke("prepare", "vigor", "--root", raw, "--out", tmp_path / "ds", "--corrected",
                 "--quiet")
    assert res.exit_code == 0, res.output
    assert read_prepared(tmp_path / "ds").manifest["parameters"]["labels"] == "splits__corrected"
    raw = layouts.vg(tmp_path / "sf", queries_folder="queries_v2")
    res = invoke("prepare", "sf_xl", "--root", raw, "--out", tmp_path / "ds2",
                 "--queries-folder", "queries_v2")
    assert res.exit_code == 0, res.output
    raw = layouts.cvusa(tmp_path / "C2", n_train=1, n_test=1)
    res = invoke("prepare", "cvusa", "--root", raw, "--out", tmp_path / "ds3", "--polar",
                 "--polar-size", "8x24", "--quiet")
    assert res.exit_code == 0, res.output
    assert len(read_prepared(tmp_path / "ds3").select(view="polar")) == 2


def test_prepare_cli_error_paths(invoke, tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA")
    csv = raw / "splits/val-19zl.csv"
    csv.write_text("bingmap/19/0000004.jpg\n")
    res = invoke("prepare", "cvusa", "--root", raw, "--out", tmp_path / "ds")
    assert res.exit_code != 0
    assert "val-19zl.csv:1: malformed line" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "ds").exists()
    res = invoke("prepare", "cvusa", "--out", tmp_path / "ds")
    assert res.exit_code != 0 and "--root is required" in res.output
    res = invoke("prepare", "vigor", "--root", raw, "--out", tmp_path / "ds", "--polar")
    assert res.exit_code != 0 and "unknown option(s) polar" in res.output
    res = invoke("prepare", "cvusa", "--root", raw, "--out", tmp_path / "ds", "--polar",
                 "--polar-size", "big")
    assert res.exit_code != 0 and "HEIGHTxWIDTH" in res.output
    res = invoke("prepare", "cvsua", "--root", raw, "--out", tmp_path / "ds")
    assert res.exit_code != 0 and "Did you mean cvusa" in res.output


def test_download_cli(invoke, tmp_path, monkeypatch):
    import threading
    from http.server import ThreadingHTTPServer

    from tests.test_download import Handler

    Handler.files, Handler.behaviour, Handler.requests = {"/f.txt": b"data"}, {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/f.txt"
        res = invoke("download", url, "--sha256", hashlib.sha256(b"data").hexdigest(),
                     "--root", tmp_path, "--quiet")
        assert res.exit_code == 0, res.output
        assert (tmp_path / "f.txt").read_bytes() == b"data"
        res = invoke("download", url, "--sha256", "0" * 64, "--root", tmp_path / "x", "--quiet")
        assert res.exit_code != 0 and "fails verification" in res.output
        assert not (tmp_path / "x" / "f.txt").exists()
        res = invoke("download", url, "--root", tmp_path)
        assert res.exit_code != 0 and "--sha256" in res.output
    finally:
        httpd.shutdown()
        httpd.server_close()
    res = invoke("download", "vigor", "--root", tmp_path)
    assert res.exit_code != 0 and "needs access approval (form)" in res.output
    raw = layouts.vigor(tmp_path / "mine" / "VIGOR")
    res = invoke("download", "vigor", "--root", tmp_path / "data", "--from", raw)
    assert res.exit_code == 0, res.output
    assert "geobench prepare vigor --root" in res.stdout
    res = invoke("prepare", "vigor", "--root", tmp_path / "data" / "vigor", "--out",
                 tmp_path / "ds", "--quiet")
    assert res.exit_code == 0, res.output
