"""download + extraction against a real HTTP server on 127.0.0.1 (no network)."""
from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from geobench.archive import extract
from geobench.download import download_dataset, download_url, fetch, mirrored
from geobench.errors import DataError, UsageError
from tests import adapter_layouts as layouts


class Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    behaviour: dict[str, str] = {}   # path -> "error" | "cut" | "norange"
    requests: list[tuple[str, str | None]] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        path = self.path.split("?")[0]
        self.requests.append((path, self.headers.get("Range")))
        mode = self.behaviour.get(path, "")
        if mode == "error":
            self.send_error(500, "boom")
            return
        data = self.files.get(path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and mode != "norange":
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "cut":
            self.behaviour[path] = ""  # only the first transfer breaks
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    Handler.files, Handler.behaviour, Handler.requests = {}, {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_of(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent).as_posix())
    return buf.getvalue()


def test_fetch_verifies_and_skips_when_present(server, tmp_path):
    data = b"x" * 200_000
    Handler.files["/a.bin"] = data
    got = fetch(f"{server}/a.bin", tmp_path / "a.bin", sha(data), len(data))
    assert got.action == "downloaded" and (tmp_path / "a.bin").read_bytes() == data
    assert fetch(f"{server}/a.bin", tmp_path / "a.bin", sha(data)).action == "present"
    assert not (tmp_path / "a.bin.part").exists()


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    data = bytes(range(256)) * 1000
    Handler.files["/big.bin"] = data
    Handler.behaviour["/big.bin"] = "cut"
    with pytest.raises(DataError, match=r"transfer interrupted after \d+ bytes.*re-run to resume"):
        fetch(f"{server}/big.bin", tmp_path / "big.bin", sha(data), len(data))
    part = tmp_path / "big.bin.part"
    assert not (tmp_path / "big.bin").exists() and 0 < part.stat().st_size < len(data)
    kept = part.stat().st_size
    got = fetch(f"{server}/big.bin", tmp_path / "big.bin", sha(data), len(data))
    assert got.action == "resumed" and (tmp_path / "big.bin").read_bytes() == data
    assert Handler.requests[-1] == ("/big.bin", f"bytes={kept}-")


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    data = b"abcdef" * 1000
    Handler.files["/c.bin"] = data
    Handler.behaviour["/c.bin"] = "norange"
    (tmp_path / "c.bin.part").write_bytes(data[:100])
    got = fetch(f"{server}/c.bin", tmp_path / "c.bin", sha(data), len(data))
    assert got.action == "downloaded" and (tmp_path / "c.bin").read_bytes() == data


def test_wrong_checksum_leaves_nothing_under_the_final_name(server, tmp_path):
    Handler.files["/d.bin"] = b"tampered"
    with pytest.raises(DataError, match=r"fails verification \(sha256 .* expected"):
        fetch(f"{server}/d.bin", tmp_path / "d.bin", "0" * 64)
    assert not (tmp_path / "d.bin").exists() and not (tmp_path / "d.bin.part").exists()
    with pytest.raises(DataError, match=r"size 8 bytes, expected 9"):
        fetch(f"{server}/d.bin", tmp_path / "d.bin", None, 9)


def test_corrupt_partial_file_is_retried_from_scratch(server, tmp_path):
    data = b"0123456789" * 100
    Handler.files["/e.bin"] = data
    (tmp_path / "e.bin.part").write_bytes(b"garbage!!")
    got = fetch(f"{server}/e.bin", tmp_path / "e.bin", sha(data), len(data))
    assert (tmp_path / "e.bin").read_bytes() == data and got.action == "downloaded"


def test_server_error_and_404(server, tmp_path):
    Handler.behaviour["/f.bin"] = "error"
    with pytest.raises(DataError, match=r"server answered HTTP 500.*--mirror"):
        fetch(f"{server}/f.bin", tmp_path / "f.bin", "0" * 64)
    with pytest.raises(DataError, match="HTTP 404"):
        fetch(f"{server}/nope.bin", tmp_path / "n.bin", "0" * 64)
    with pytest.raises(DataError, match="cannot connect"):
        fetch("http://127.0.0.1:9/x.bin", tmp_path / "x.bin", "0" * 64, timeout=2)
    assert not list(tmp_path.iterdir())


def test_download_url_needs_a_checksum(server, tmp_path):
    Handler.files["/g.bin"] = b"hello"
    with pytest.raises(UsageError, match="--sha256"):
        download_url(f"{server}/g.bin", tmp_path, None)
    with pytest.raises(UsageError, match="not 64 hex digits"):
        download_url(f"{server}/g.bin", tmp_path, "abc")
    res = download_url(f"{server}/g.bin", tmp_path, sha(b"hello").upper())
    assert res.files[0].path.read_bytes() == b"hello"


def _catalog(tmp_path: Path, files: list[dict], kind: str = "open") -> Path:
    entry = {"task": "cvgl", "description": "d", "citation": "c", "homepage": "https://h",
             "access": {"kind": kind, "how": "Ask the authors nicely."}, "layout": "l",
             "default_protocol": "cvusa", "image_sizes": {"aerial": [16, 16]}, "files": files}
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"schema": "geobench.datasets/1",
                                    "datasets": {"cvusa": entry}}))
    return path


def test_dataset_download_extracts_once_then_prepares(server, tmp_path):
    from geobench.datasets import prepare_dataset

    raw = layouts.cvusa(tmp_path / "src" / "CVUSA")
    data = zip_of(raw)
    Handler.files["/mirror/cvusa.zip"] = data
    files = [{"name": "cvusa.zip", "url": "https://origin.invalid/x/cvusa.zip",
              "size": len(data), "sha256": sha(data)}]
    cat = _catalog(tmp_path, files)
    res = download_dataset("cvusa", tmp_path / "data", mirror=f"{server}/mirror/",
                           catalog_path=cat)
    assert res.files[0].extracted == "extracted"
    again = download_dataset("cvusa", tmp_path / "data", mirror=f"{server}/mirror",
                             catalog_path=cat)
    assert again.files[0].action == "present" and again.files[0].extracted == "already extracted"
    ds = prepare_dataset("cvusa", res.root, tmp_path / "ds", {})
    ds.check_files()
    assert mirrored("https://a/b/c.zip", None) == "https://a/b/c.zip"


def test_gated_dataset_explains_access_and_accepts_from(tmp_path):
    cat = _catalog(tmp_path, [], kind="form")
    with pytest.raises(DataError, match=r"needs access approval \(form\): Ask the authors "
                                        r"nicely\. Homepage: https://h"):
        download_dataset("cvusa", tmp_path / "data", catalog_path=cat)
    raw = layouts.cvusa(tmp_path / "mine" / "CVUSA")
    res = download_dataset("cvusa", tmp_path / "data", from_path=raw, catalog_path=cat)
    assert (res.root / "splits" / "train-19zl.csv").is_file()
    archive = tmp_path / "cvusa.zip"
    archive.write_bytes(zip_of(raw))
    res = download_dataset("cvusa", tmp_path / "data2", from_path=archive, catalog_path=cat)
    assert (res.root / "CVUSA" / "splits" / "train-19zl.csv").is_file()
    with pytest.raises(DataError, match="--from path not found"):
        download_dataset("cvusa", tmp_path / "d3", from_path=tmp_path / "nope", catalog_path=cat)


# --------------------------------------------------------------------------- malicious archives


def _tar(path: Path, members: list[tuple[str, str, str]]) -> Path:
    """members: (name, type 'file'|'sym'|'hard'|'fifo', content-or-linkname)."""
    with tarfile.open(path, "w") as tf:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = value.encode()
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                continue
            info.type = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                         "fifo": tarfile.FIFOTYPE}[kind]
            info.linkname = value
            tf.addfile(info)
    return path


@pytest.mark.parametrize("members,why", [
    ([("ok.txt", "file", "x"), ("../evil.txt", "file", "x")], "outside the target"),
    ([("ok.txt", "file", "x"), ("/tmp/evil.txt", "file", "x")], "outside the target"),
    ([("a/link", "sym", "../../etc"), ("ok.txt", "file", "x")], "symlink to '../../etc'"),
    ([("link", "sym", "/etc/passwd")], "symlink to '/etc/passwd'"),
    ([("ok.txt", "file", "x"), ("hard", "hard", "../outside")], "hard link"),
    ([("pipe", "fifo", "")], "special file"),
])
def test_malicious_tar_writes_nothing(tmp_path, members, why):
    archive = _tar(tmp_path / "bad.tar", members)
    with pytest.raises(DataError, match=f"refused to extract.*{why}"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


def test_malicious_zip_writes_nothing(tmp_path):
    for name in ("../evil.txt", "/abs.txt", "a/../../evil.txt", "C:\\evil.txt"):
        archive = tmp_path / "bad.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("fine.txt", "x")
            zf.writestr(name, "x")
        with pytest.raises(DataError, match="refused to extract"):
            extract(archive, tmp_path / "out")
        assert not (tmp_path / "out").exists()
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "../../etc/passwd")
    with pytest.raises(DataError, match="is a link to"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_safe_tar_with_inside_links_extracts_idempotently(tmp_path):
    archive = _tar(tmp_path / "ok.tar", [("d/a.txt", "file", "hello"), ("d/l", "sym", "a.txt"),
                                         ("d/h", "hard", "d/a.txt")])
    assert extract(archive, tmp_path / "out") is True
    assert (tmp_path / "out/d/l").read_text() == "hello"
    (tmp_path / "out/d/a.txt").write_text("edited")
    assert extract(archive, tmp_path / "out") is False  # recorded, not repeated
    assert (tmp_path / "out/d/a.txt").read_text() == "edited"
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError, match="damaged archive"):
        extract(broken, tmp_path / "o2")


# --------------------------------------------------------------------------- end to end


def test_cli_downloads_a_synthetic_cvusa_archive_then_prepares(invoke, server, tmp_path,
                                                                monkeypatch):
    """A real archive of the synthetic world's CVUSA layout, served on 127.0.0.1 through a
    test catalog: the first transfer breaks, the re-run resumes, verifies and extracts, and
    `geobench prepare cvusa` indexes the result."""
    from geobench.datasets.synthetic import SyntheticOptions, generate
    from geobench.prepared import read_prepared

    src = generate(SyntheticOptions(out=tmp_path / "src" / "CVUSA", pairs=3, test_pairs=2,
                                    cities=1, aerial_size=32, ground_size=(16, 64)))
    archive = tmp_path / "cvusa.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname="CVUSA")
    data = archive.read_bytes()
    Handler.files["/data/cvusa.tar.gz"] = data
    Handler.behaviour["/data/cvusa.tar.gz"] = "cut"
    files = [{"name": "cvusa.tar.gz", "url": f"{server}/data/cvusa.tar.gz", "size": len(data),
              "sha256": sha(data)}]
    monkeypatch.setenv("GEOBENCH_CATALOG", str(_catalog(tmp_path, files)))

    res = invoke("download", "cvusa", "--root", tmp_path / "data", "--quiet")
    assert res.exit_code != 0 and "transfer interrupted" in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert not (tmp_path / "data/cvusa/cvusa.tar.gz").exists()
    res = invoke("download", "cvusa", "--root", tmp_path / "data", "--quiet")
    assert res.exit_code == 0, res.output
    assert "resumed" in res.stdout and "extracted" in res.stdout
    assert Handler.requests[-1][1] is not None  # the second request asked for a Range
    got = tmp_path / "data/cvusa/CVUSA"
    assert (got / "splits/train-19zl.csv").read_bytes() == (src / "splits/train-19zl.csv").read_bytes()

    res = invoke("prepare", "cvusa", "--root", tmp_path / "data/cvusa", "--out", tmp_path / "ds",
                 "--quiet")
    assert res.exit_code == 0, res.output
    ds = read_prepared(tmp_path / "ds", check_files=True)
    assert ds.raw_root == got.resolve()
    assert len(ds.select("train", "query", "ground")) == 3
    assert len(ds.select("test", "reference", "aerial")) == 2
    assert ds.manifest["missing_images"] == {}
