"""Safe, atomic, idempotent extraction of zip and tar archives.

1. Every member is checked before anything is written: absolute names, `..` components,
   device files, a member that lies under a link (the symlink-chain trick: `s1 -> .`,
   `s1/s2 -> ..`, ...), hard links to anything but a file of the archive, and symlinks
   whose text leaves the folder make the whole archive refused.
2. The declared sizes must fit in the free space (a much larger expansion than the
   archive itself is reported).
3. geobench writes the members itself, into a private staging folder inside the target:
   folders and files first, links last, so no write ever goes through a link; then every
   link is resolved on disk and must stay inside the staging folder, and every link (new,
   or already in the target) must stay inside the target once the staged tree is moved
   there: archives extracted one after another into one folder cannot chain out
   (`p -> .` from one, `q -> p/..` from the next).
4. Only then is the tree moved into the target (a rename per entry), never through a link
   already there. A kill leaves only the staging folder, which the next run removes, so
   no partial member ever sits under its final name.
A completed extraction is recorded in a marker file beside the extracted files, so
running it again does nothing.
"""
from __future__ import annotations

import json
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geobench.errors import DataError
from geobench.fileio import (
    disk_full,
    is_disk_full,
    remove_stale_temps,
    require_space,
    sha256_file,
    write_json,
)

MARKER_PREFIX = ".geobench-extracted-"
CHUNK = 1 << 20
WARN_RATIO = 100  # an expansion beyond 100x the archive's size is worth a word


@dataclass(frozen=True)
class Member:
    name: str        # normalised relative posix path
    kind: str        # file | dir | symlink | hardlink
    size: int
    link: str        # symlink text or hard-link target ("" otherwise)
    mode: int
    mtime: float
    source: Any      # the ZipInfo / TarInfo to read the data from


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
                     f"extracted. Do not use this archive; download it again from the "
                     f"official source")


def _norm(name: str) -> str:
    return posixpath.normpath(name.replace("\\", "/"))


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[Member]:
    import time

    members = []
    for info in zf.infolist():
        if not _inside(info.filename):
            raise _refuse(archive, info.filename, "would land outside the target folder")
        mode = info.external_attr >> 16
        mtime = time.mktime(info.date_time + (0, 0, -1))
        if stat.S_ISLNK(mode):
            text = zf.read(info).decode("utf-8", "replace")
            members.append(Member(_norm(info.filename), "symlink", 0, text, 0o777, mtime, info))
        elif info.is_dir():
            members.append(Member(_norm(info.filename), "dir", 0, "", mode, mtime, info))
        else:
            members.append(Member(_norm(info.filename), "file", info.file_size, "", mode, mtime,
                                  info))
    return members


def _tar_members(archive: Path, tf: tarfile.TarFile) -> list[Member]:
    members = []
    for m in tf.getmembers():
        if not _inside(m.name):
            raise _refuse(archive, m.name, "would land outside the target folder")
        kind = ("file" if m.isfile() else "dir" if m.isdir() else "symlink" if m.issym()
                else "hardlink" if m.islnk() else None)
        if kind is None:
            raise _refuse(archive, m.name, "is a device or special file")
        members.append(Member(_norm(m.name), kind, m.size if kind == "file" else 0,
                              m.linkname if kind in ("symlink", "hardlink") else "", m.mode,
                              float(m.mtime), m))
    return members


def _check(archive: Path, members: list[Member], target: Path) -> None:
    links = {m.name for m in members if m.kind == "symlink"}
    # geobench's own files in the target: a member there would replace them (a member named
    # like the copied archive replaced the copy, and the next run lost the member)
    ours = {os.path.abspath(archive): "the archive itself",
            os.path.abspath(_marker(archive, target)): "geobench's record of this extraction"}
    files = {m.name for m in members if m.kind == "file"}

    def under_link(name: str) -> str | None:
        parts = name.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in links:
                return prefix
        return None

    for m in members:
        what = ours.get(os.path.abspath(target / m.name))
        if what is not None:
            raise _refuse(archive, m.name, f"would replace {what} in {target}; rename the "
                                           f"archive (or extract it into another folder)")
        if "\0" in m.link:
            raise _refuse(archive, m.name, "has a NUL byte in its link target")
        link = under_link(m.name)
        if link is not None:
            raise _refuse(archive, m.name, f"lies under the link {link!r}, so it could be "
                                           f"written outside the target folder")
        if m.kind == "symlink":
            joined = posixpath.join(posixpath.dirname(m.name), m.link)
            if m.link.startswith("/") or not _inside(joined):
                word = "symlink" if isinstance(m.source, tarfile.TarInfo) else "link"
                raise _refuse(archive, m.name, f"is a {word} to {m.link!r} outside the target "
                                               f"folder")
        elif m.kind == "hardlink":
            if not _inside(m.link):
                raise _refuse(archive, m.name, f"is a hard link to {m.link!r} outside the "
                                               f"target folder")
            if _norm(m.link) not in files or under_link(_norm(m.link)):
                raise _refuse(archive, m.name, f"is a hard link to {m.link!r}, which is not a "
                                               f"file of the archive")


def _check_space(archive: Path, target: Path, members: list[Member]) -> None:
    from geobench.guard import warn

    total = sum(m.size for m in members)
    require_space(target, total, f"extracting {archive.name} ({len(members):,} members)")
    size = archive.stat().st_size
    if total > WARN_RATIO * max(size, 1) and total > (10 << 20):
        warn(f"{archive}: expands to {total:,} bytes, {total / max(size, 1):.0f} times its own "
             f"size; an archive of images rarely compresses that much, check its source")


def _open_data(opener: Any, m: Member):
    return opener(m.source)


def _write_file(path: Path, m: Member, opener: Any, archive: Path) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o755 if m.mode & 0o100 else 0o644)
    except FileExistsError:
        raise _refuse(archive, m.name, "appears twice in the archive") from None
    written = 0
    try:
        with os.fdopen(fd, "wb") as out, _open_data(opener, m) as src:
            while block := src.read(CHUNK):
                written += len(block)
                if written > m.size:
                    raise _refuse(archive, m.name, "holds more data than its declared size")
                out.write(block)
    except OSError as exc:
        if is_disk_full(exc, path.parent):
            raise disk_full(path, m.size - written) from None
        raise


def _extract_into(archive: Path, members: list[Member], opener: Any, staging: Path) -> None:
    for m in members:  # folders and files first: no write can go through a link
        if m.name == ".":
            continue
        dest = staging / m.name
        if m.kind == "dir":
            dest.mkdir(parents=True, exist_ok=True)
        elif m.kind == "file":
            dest.parent.mkdir(parents=True, exist_ok=True)
            _write_file(dest, m, opener, archive)
    for m in members:
        dest = staging / m.name
        if m.kind not in ("symlink", "hardlink"):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            raise _refuse(archive, m.name, "appears twice in the archive")
        if m.kind == "hardlink":
            os.link(staging / _norm(m.link), dest, follow_symlinks=False)
        else:
            os.symlink(m.link, dest)
    for m in members:
        if m.kind == "file":
            os.utime(staging / m.name, (m.mtime, m.mtime))
    root = os.path.realpath(staging)
    for m in members:  # links can chain through each other: resolve them on disk
        if m.kind == "symlink":
            real = os.path.realpath(staging / m.name)
            if real != root and not real.startswith(root + os.sep):
                raise _refuse(archive, m.name, f"is a link to {m.link!r} that resolves outside "
                                               f"the target folder")


def _links(root: Path, skip: Path) -> list[str]:
    """Relative paths of the symlinks under `root` (not followed; `skip` left out)."""
    found, stack = [], [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.path == str(skip):
                    continue
                if entry.is_symlink():
                    found.append(os.path.relpath(entry.path, root))
                elif entry.is_dir():
                    stack.append(entry.path)
    return found


def _resolve(rel: str, target: str, staging: str | None) -> str:
    """Where TARGET/rel leads, link by link, seeing the target as it will be once the
    staged entries are moved in (a staged entry wins over what is on disk); None for
    `staging` sees the target as it is now."""

    def link_text(path: str) -> str | None:
        candidates = [path]
        if staging is not None and (path + "/").startswith(target + "/"):
            candidates.insert(0, staging + path[len(target):])
        for candidate in candidates:
            if os.path.lexists(candidate):
                return os.readlink(candidate) if os.path.islink(candidate) else None
        return None

    path, pending, hops = target, rel.split("/"), 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            path = os.path.dirname(path)
            continue
        step = os.path.join(path, part)
        text = link_text(step)
        if text is None:
            path = step
            continue
        hops += 1
        if hops > 40:  # a loop: it leads nowhere, so not outside either
            return target
        path = "/" if text.startswith("/") else path
        pending = text.split("/") + pending
    return path


def _check_links_with_target(archive: Path, staging: Path, target: Path) -> None:
    """Links must stay inside `target` as it will be: new links resolved against what is
    already there, and links already there must not be turned outwards by new entries."""
    root, stage = os.path.realpath(target), os.path.realpath(staging)

    def inside(path: str) -> bool:
        return path == root or path.startswith(root + os.sep)

    for rel in _links(staging, staging):
        if not inside(_resolve(rel, root, stage)):
            raise _refuse(archive, rel, f"is a link to {os.readlink(staging / rel)!r} that, "
                                        f"with what is already in {target}, resolves outside "
                                        f"the target folder")
    for rel in _links(target, staging):
        if inside(_resolve(rel, root, None)) and not inside(_resolve(rel, root, stage)):
            raise DataError(f"{archive}: refused to extract, its entries would turn the link "
                            f"{rel!r} already in {target} to a place outside that folder; "
                            f"nothing was extracted. Extract it into another folder")


def _plan(archive: Path, staging: Path, target: Path, moves: list[tuple[Path, Path]]) -> None:
    """Pair staged entries with their destinations without writing through any link."""
    for entry in sorted(os.scandir(staging), key=lambda e: e.name):
        dest = target / entry.name
        src = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            if dest.is_symlink():
                raise DataError(f"{dest}: is a link already on disk and {archive.name} has a "
                                f"folder there; extraction never writes through a link. Remove "
                                f"the link or extract into another folder")
            if dest.is_dir():
                _plan(archive, src, dest, moves)
                continue
            if dest.exists():
                raise DataError(f"{dest}: is a file and {archive.name} has a folder there; "
                                f"move the file away or extract into another folder")
        elif dest.is_dir() and not dest.is_symlink():
            raise DataError(f"{dest}: is a folder and {archive.name} has a file there; move the "
                            f"folder away or extract into another folder")
        moves.append((src, dest))


def _marker(archive: Path, target: Path) -> Path:
    return target / f"{MARKER_PREFIX}{archive.name}.json"


def _read_members(archive: Path):
    name = archive.name.lower()
    if name.endswith(".zip"):
        zf = zipfile.ZipFile(archive)
        return zf, _zip_members(archive, zf), zf.open
    if is_archive(archive):
        tf = tarfile.open(archive)
        return tf, _tar_members(archive, tf), tf.extractfile
    raise DataError(f"{archive}: not a zip or tar archive; extract it yourself and pass "
                    f"the folder with --from")


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
    created = not target.exists()
    staging: Path | None = None
    try:
        handle, members, opener = _read_members(archive)
        with handle:
            _check(archive, members, target)
            target.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(target)  # staging folders of killed extractions
            _check_space(archive, target, members)
            staging = Path(tempfile.mkdtemp(prefix=f".geobench-staging-p{os.getpid()}-",
                                            dir=target))
            _extract_into(archive, members, opener, staging)
            _check_links_with_target(archive, staging, target)
        moves: list[tuple[Path, Path]] = []
        _plan(archive, staging, target, moves)
        for src, dest in moves:
            os.replace(src, dest)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise DataError(f"{archive}: damaged archive ({exc}); delete it and download it "
                        f"again") from None
    except OSError as exc:
        if is_disk_full(exc, target):
            total = sum(m.size for m in members) if "members" in locals() else 0
            raise disk_full(target / archive.name, total) from None
        raise DataError(f"{archive}: cannot extract into {target} ({exc}); check the folder's "
                        f"permissions and contents") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if created and target.is_dir() and not any(target.iterdir()):
            target.rmdir()
    write_json(marker, {"archive": archive.name, "sha256": digest,
                        "size": archive.stat().st_size})
    return True
