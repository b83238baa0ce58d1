"""Safe, idempotent extraction of zip and tar archives.

Every member is checked before anything is written: absolute names, `..` components,
links whose target leaves the destination, and device files make the whole archive
refused. A completed extraction is recorded in a marker file beside the extracted
files, so running it again does nothing.
"""
from __future__ import annotations

import json
import os
import posixpath
import stat
import tarfile
import zipfile
from pathlib import Path

from geobench.errors import DataError
from geobench.fileio import sha256_file, write_json

MARKER_PREFIX = ".geobench-extracted-"


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"))


def _inside(name: str) -> bool:
    """A member name that stays inside the destination (posix or Windows-style)."""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return False
    norm = posixpath.normpath(name.replace("\\", "/"))
    return norm != ".." and not norm.startswith("../")


def _refuse(archive: Path, member: str, why: str) -> DataError:
    return DataError(f"{archive}: refused to extract, member {member!r} {why}; nothing was "
                     f"written. Do not use this archive; download it again from the "
                     f"official source")


def _check_zip(archive: Path, zf: zipfile.ZipFile) -> None:
    for info in zf.infolist():
        if not _inside(info.filename):
            raise _refuse(archive, info.filename, "would land outside the target folder")
        if stat.S_ISLNK(info.external_attr >> 16):
            target = zf.read(info).decode("utf-8", "replace")
            joined = posixpath.join(posixpath.dirname(info.filename), target)
            if target.startswith("/") or not _inside(joined):
                raise _refuse(archive, info.filename, f"is a link to {target!r} outside the "
                                                      f"target folder")


def _check_tar(archive: Path, tf: tarfile.TarFile) -> None:
    for m in tf.getmembers():
        if not _inside(m.name):
            raise _refuse(archive, m.name, "would land outside the target folder")
        if m.issym():
            joined = posixpath.join(posixpath.dirname(m.name), m.linkname)
            if m.linkname.startswith("/") or not _inside(joined):
                raise _refuse(archive, m.name, f"is a symlink to {m.linkname!r} outside the "
                                               f"target folder")
        elif m.islnk():
            if not _inside(m.linkname):
                raise _refuse(archive, m.name, f"is a hard link to {m.linkname!r} outside the "
                                               f"target folder")
        elif not (m.isfile() or m.isdir()):
            raise _refuse(archive, m.name, "is a device or special file")


def _marker(archive: Path, target: Path) -> Path:
    return target / f"{MARKER_PREFIX}{archive.name}.json"


def extract(archive: Path, target: Path) -> bool:
    """Extract `archive` into `target`; False when a matching extraction is already done."""
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise DataError(f"{archive}: archive not found")
    digest = sha256_file(archive)
    marker = _marker(archive, target)
    if marker.is_file():
        try:
            if json.loads(marker.read_text()).get("sha256") == digest:
                return False
        except (json.JSONDecodeError, OSError):
            pass  # an unreadable marker means: extract again
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                _check_zip(archive, zf)
                target.mkdir(parents=True, exist_ok=True)
                for info in zf.infolist():
                    if stat.S_ISLNK(info.external_attr >> 16):
                        link = target / info.filename
                        link.parent.mkdir(parents=True, exist_ok=True)
                        if link.is_symlink() or link.exists():
                            link.unlink()
                        os.symlink(zf.read(info).decode("utf-8"), link)
                    else:
                        zf.extract(info, target)
        elif is_archive(archive):
            with tarfile.open(archive) as tf:
                _check_tar(archive, tf)
                target.mkdir(parents=True, exist_ok=True)
                tf.extractall(target, filter="data")  # second line of defence
        else:
            raise DataError(f"{archive}: not a zip or tar archive; extract it yourself and pass "
                            f"the folder with --from")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise DataError(f"{archive}: damaged archive ({exc}); delete it and download it "
                        f"again") from None
    write_json(marker, {"archive": archive.name, "sha256": digest,
                        "size": archive.stat().st_size})
    return True
