"""Archives and downloads: nothing outside the target, nothing deleted before a verified
replacement, nothing partial under a final name. Downloads use a real HTTP server."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from geobench.archive import extract
from geobench.download import download_url, fetch
from geobench.errors import DataError, DiskFullError, SchemaError, UsageError
from tests.test_download import Handler, server, sha  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[1]


def zip_with_links(path: Path, members: list[tuple[str, str | None, str]]) -> Path:
    """members: (name, link text or None for a file, file content)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, link, content in members:
            if link is None:
                zf.writestr(name, content)
                continue
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, link)
    return path


def tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")} if folder.exists() else set()


def test_zip_symlink_chain_cannot_escape(tmp_path):
    """s1 -> ., s1/s2 -> .., s1/s2/s3 -> .., ... then a file under the chain: it used to be
    written four levels above the target with exit 0."""
    base = tmp_path / "a" / "b" / "c" / "d"
    target = base / "root"
    members = [("s1", ".", ""), ("s1/s2", "..", ""), ("s1/s2/s3", "..", ""),
               ("s1/s2/s3/s4", "..", ""), ("s1/s2/s3/s4/s5", "..", ""),
               ("s1/s2/s3/s4/s5/pwned.txt", None, "x")]
    archive = zip_with_links(tmp_path / "chain.zip", members)
    before = tree(tmp_path)
    with pytest.raises(DataError, match="lies under the link 's1'"):
        extract(archive, target)
    assert tree(tmp_path) == before and not list(tmp_path.rglob("pwned.txt"))


def test_links_that_resolve_outside_only_on_disk_are_refused(tmp_path):
    """Each link's text stays inside; together they leave it (x -> a/l/../.., a/l -> ../b)."""
    archive = zip_with_links(tmp_path / "combo.zip", [
        ("b/keep.txt", None, "k"), ("a/l", "../b", ""), ("x", "a/l/../..", "")])
    target = tmp_path / "out"
    with pytest.raises(DataError, match="resolves outside the target folder"):
        extract(archive, target)
    assert not target.exists()
    # Links that stay inside work, in zips as in tars.
    ok = zip_with_links(tmp_path / "ok.zip", [("d/a.txt", None, "hi"), ("d/l", "a.txt", "")])
    assert extract(ok, tmp_path / "ok") is True
    assert (tmp_path / "ok/d/l").read_text() == "hi" and (tmp_path / "ok/d/l").is_symlink()


def test_extraction_never_writes_through_a_link_already_on_disk(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "t"
    target.mkdir()
    (target / "images").symlink_to(outside)
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("images/x.png", "x")
    with pytest.raises(DataError, match="is a link already on disk"):
        extract(archive, target)
    assert not list(outside.iterdir())
    assert [p.name for p in target.iterdir()] == ["images"]  # staging removed


def test_size_guard_refuses_what_does_not_fit_and_warns_about_bombs(tmp_path, monkeypatch,
                                                                    capsys):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * (12 << 20))
    assert archive.stat().st_size < 100_000
    import geobench.fileio

    monkeypatch.setattr(geobench.fileio, "free_bytes", lambda folder: 5 << 20)
    with pytest.raises(DiskFullError, match=r"needs 12,582,912 bytes but only 5,242,880"):
        extract(archive, tmp_path / "out")
    assert tree(tmp_path / "out") == set()
    monkeypatch.undo()
    assert extract(archive, tmp_path / "out") is True
    assert "expands to 12,582,912 bytes" in capsys.readouterr().err
    assert (tmp_path / "out/zeros.bin").stat().st_size == 12 << 20


def test_interrupted_extraction_leaves_no_partial_member(tmp_path, monkeypatch):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tf:
        for i in range(3):
            data = f"file {i}".encode() * 1000
            info = tarfile.TarInfo(f"d/f{i}.txt")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    import geobench.archive as arc

    real, calls = arc._write_file, []

    def dying(path, m, opener, archive):
        calls.append(m.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(path, m, opener, archive)

    monkeypatch.setattr(arc, "_write_file", dying)
    with pytest.raises(KeyboardInterrupt):
        extract(archive, tmp_path / "out")
    assert tree(tmp_path / "out") == set()  # two complete members were staged, none moved
    monkeypatch.undo()
    assert extract(archive, tmp_path / "out") is True
    assert tree(tmp_path / "out") >= {"d/f0.txt", "d/f1.txt", "d/f2.txt"}


def test_sigkilled_extraction_leaves_only_staging_which_the_next_run_removes(tmp_path):
    archive = tmp_path / "big.tar"
    with tarfile.open(archive, "w") as tf:
        for i in range(400):
            info = tarfile.TarInfo(f"small/{i:04d}.txt")
            info.size = 4096
            tf.addfile(info, io.BytesIO(b"s" * 4096))
        info = tarfile.TarInfo("huge.bin")
        info.size = 40 << 20
        tf.addfile(info, io.BytesIO(b"h" * info.size))
    target = tmp_path / "out"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from geobench.archive import extract; "
            "extract(__import__('pathlib').Path(sys.argv[2]), __import__('pathlib').Path(sys.argv[3]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(ROOT), str(archive), str(target)])
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        staged = list(target.glob(".geobench-staging-*/huge.bin")) if target.exists() else []
        if staged and staged[0].stat().st_size > 0:
            break
        time.sleep(0.002)
    if proc.poll() is not None:
        pytest.skip("extraction finished before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    names = {p.name for p in target.iterdir()}
    assert len(names) == 1 and names.pop().startswith(f".geobench-staging-p{proc.pid}-")
    assert extract(archive, target) is True
    assert (target / "huge.bin").stat().st_size == 40 << 20
    assert not list(target.glob(".geobench-staging-*"))


# --------------------------------------------------------------------------- catalog names


def test_catalog_file_names_cannot_leave_the_target(tmp_path, invoke, monkeypatch):
    cat = tmp_path / "cat.yaml"
    entry = {"task": "cvgl", "description": "d", "citation": "c", "homepage": "h",
             "access": {"kind": "open", "how": "download"}, "layout": "l",
             "default_protocol": "cvusa", "image_sizes": {"ground": [1, 2]},
             "files": [{"name": "../../x.bin", "url": "http://127.0.0.1:9/x.bin", "size": 1,
                        "sha256": "0" * 64}]}
    cat.write_text(yaml.safe_dump({"schema": "geobench.datasets/1", "datasets": {"evil": entry}}))
    monkeypatch.setenv("GEOBENCH_CATALOG", str(cat))
    res = invoke("download", "evil", "--root", tmp_path / "data", "--quiet")
    assert res.exit_code != 0 and "must be a plain file name" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert not (tmp_path / "x.bin").exists() and not (tmp_path / "data").exists()
    from geobench.catalog import load_catalog

    with pytest.raises(SchemaError, match="plain file name"):
        load_catalog(cat)


# --------------------------------------------------------------------------- downloads


def test_redownload_never_deletes_before_the_replacement_verifies(server, tmp_path):  # noqa: F811
    good = b"the good file" * 100
    dest = tmp_path / "data.bin"
    dest.write_bytes(good)
    Handler.files["/data.bin"] = b"something else" * 50
    with pytest.raises(DataError, match="fails verification.*left as it was"):
        fetch(f"{server}/data.bin", dest, sha256="1" * 64)  # a wrong --sha256
    assert dest.read_bytes() == good
    unrelated = tmp_path / "gone.bin"
    unrelated.write_bytes(b"mine, not the server's")
    with pytest.raises(DataError, match="HTTP 404"):
        fetch(f"{server}/gone.bin", unrelated, sha256=sha(b"x"))
    assert unrelated.read_bytes() == b"mine, not the server's"
    # A verified download does replace a stale copy.
    Handler.files["/data.bin"] = b"new" * 10
    assert fetch(f"{server}/data.bin", dest, sha256=sha(b"new" * 10)).action == "downloaded"
    assert dest.read_bytes() == b"new" * 10


def test_url_mode_extracts_with_the_same_checks(server, tmp_path, invoke):  # noqa: F811
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pack/a.txt", "hello")
    Handler.files["/files/pack.zip"] = data = buf.getvalue()
    res = invoke("download", f"{server}/files/pack.zip", "--sha256", sha(data), "--root",
                 tmp_path / "r", "--quiet")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r/pack/a.txt").read_text() == "hello" and "extracted" in res.stdout
    chain = zip_with_links(tmp_path / "chain.zip", [("s1", ".", ""), ("s1/s2", "..", ""),
                                                    ("s1/s2/evil.txt", None, "x")])
    Handler.files["/files/chain.zip"] = data = chain.read_bytes()
    res = invoke("download", f"{server}/files/chain.zip", "--sha256", sha(data), "--root",
                 tmp_path / "r2", "--quiet")
    assert res.exit_code != 0 and "refused to extract" in res.stderr
    assert not list(tmp_path.rglob("evil.txt"))


@pytest.mark.parametrize("tail", ["/..", "/", "/."])
def test_url_naming_no_file_is_one_line(server, tmp_path, invoke, tail):  # noqa: F811
    res = invoke("download", f"{server}/files{tail}", "--sha256", "0" * 64, "--root",
                 tmp_path / "r", "--quiet")
    assert res.exit_code == 2 and "the URL names no file" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert set(os.listdir(tmp_path)) == set()
    with pytest.raises(UsageError):
        download_url(f"{server}/a/..", tmp_path, "0" * 64)


def test_member_names_that_climb_out_are_refused_however_they_are_spelled():
    from geobench.archive import _inside

    for bad in ("..", "../x", "a/../../x", "a/b/../../../x", "./../x", "/x", "\\x", "C:x", ""):
        assert not _inside(bad), bad
    for good in ("x", "a/../b", "a/./b", "a/b/../c", "..x", "x.."):
        assert _inside(good), good


def test_a_link_into_a_sibling_whose_name_extends_the_staging_folder_is_refused(tmp_path):
    # Containment is by path components, not by string prefix: stage-evil is not in stage.
    from geobench.archive import Member, _extract_into

    staging, sibling = tmp_path / "stage", tmp_path / "stage-evil"
    staging.mkdir()
    sibling.mkdir()
    link = Member(name="l", kind="symlink", size=0, link="../stage-evil", mode=0o777,
                  mtime=0.0, source=None)
    with pytest.raises(DataError, match="resolves outside"):
        _extract_into(tmp_path / "a.tar", [link], None, staging)
    inner = Member(name="m", kind="symlink", size=0, link="../stage/sub", mode=0o777,
                   mtime=0.0, source=None)
    (staging / "sub").mkdir()
    _extract_into(tmp_path / "b.tar", [inner], None, staging)  # back into itself: allowed
