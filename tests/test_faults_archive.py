"""Archives in sequence and archives naming geobench's own files (issue 25).

Before: `two_a.zip` = {p -> .} then `two_b.zip` = {q -> p/..} into one root each passed
alone and together led one level above the target; a member named like the archive
replaced the copied archive (the next run lost the member); a NUL byte in a zip link
target was a ValueError traceback; a refused archive said "nothing was written" and left
its copy behind.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from geobench.archive import extract
from geobench.errors import DataError
from tests.test_safety_archive import tree, zip_with_links


@pytest.mark.parametrize("order", ["a-then-b", "b-then-a"])
def test_links_from_two_archives_cannot_chain_out(tmp_path, order):
    two_a = zip_with_links(tmp_path / "two_a.zip", [("p", ".", "")])
    two_b = zip_with_links(tmp_path / "two_b.zip", [("q", "p/..", "")])
    first, second = (two_a, two_b) if order == "a-then-b" else (two_b, two_a)
    target = tmp_path / "root" / "cvusa"
    assert extract(first, target) is True  # alone, each stays inside
    before = tree(tmp_path)
    with pytest.raises(DataError, match="outside") as info:
        extract(second, target)
    assert "nothing was extracted" in str(info.value)
    assert tree(tmp_path) == before  # the second archive left nothing
    for link in (target / "p", target / "q"):
        if link.is_symlink():
            real = os.path.realpath(link)
            assert real == os.path.realpath(target) or real.startswith(
                os.path.realpath(target) + os.sep)


def test_links_that_stay_inside_with_what_is_on_disk_still_extract(tmp_path):
    target = tmp_path / "t"
    assert extract(zip_with_links(tmp_path / "a.zip", [("d/x.txt", None, "x")]), target)
    assert extract(zip_with_links(tmp_path / "b.zip", [("l", "d/x.txt", ""),
                                                       ("m", "d/../d", "")]), target)
    assert (target / "l").read_text() == "x" and (target / "m" / "x.txt").is_file()


def _cli_download(invoke, archive: Path, root: Path):
    return invoke("download", "cvusa", "--from", archive, "--root", root, "--quiet")


def test_member_named_like_the_archive_is_refused_and_nothing_is_kept(invoke, tmp_path):
    archive = zip_with_links(tmp_path / "cvusa.zip", [("cvusa.zip", None, "a member"),
                                                      ("CVUSA/x.txt", None, "x")])
    root = tmp_path / "data"
    res = _cli_download(invoke, archive, root)
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1
    assert "would replace the archive itself" in res.stderr
    assert "nothing was extracted" in res.stderr
    assert not root.exists()  # neither the copy nor the folders made for it are left


def test_nul_byte_in_a_link_target_is_one_line(invoke, tmp_path):
    archive = zip_with_links(tmp_path / "cvusa.zip", [("a", "x\0y", ""), ("b.txt", None, "b")])
    root = tmp_path / "data"
    res = _cli_download(invoke, archive, root)
    assert res.exit_code == 2, res.output
    assert res.stderr.strip() == (f"error: {root / 'cvusa' / 'cvusa.zip'}: refused to extract, "
                                  f"member 'a' has a NUL byte in its link target; nothing was "
                                  f"extracted. Do not use this archive; download it again from "
                                  f"the official source")
    assert not root.exists()


def test_a_refused_archive_leaves_no_copy_and_says_so(invoke, tmp_path):
    archive = zip_with_links(tmp_path / "cvusa.zip", [("s1", ".", ""), ("s1/x.txt", None, "x")])
    root = tmp_path / "data"
    (root / "cvusa").mkdir(parents=True)
    (root / "cvusa" / "mine.txt").write_text("the user's")
    res = _cli_download(invoke, archive, root)
    assert res.exit_code == 2 and "nothing was extracted" in res.stderr, res.output
    assert tree(root) == {"cvusa", "cvusa/mine.txt"}  # the copy is gone, the user's file kept
