"""Atomic file writes and hashing.

Every file geobench writes goes through `atomic_path`: the content is written to a
temporary file in the destination folder and renamed over the final name only once it
is complete, so an interrupted run never leaves a half-written index, checkpoint or
result behind.

Temporary names carry the writer's pid (`.NAME.p<pid>.XXXXXXXX.tmp.EXT`) so the next run in
a folder can delete the ones a killed process left (`remove_stale_temps`) without touching
those of a run still going. A full disk becomes one DiskFullError naming the file and the
space it needs; the temporary file is removed and every completed file is kept.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from geobench.errors import DiskFullError

_FULL = (errno.ENOSPC, errno.EDQUOT)
# .NAME.p<pid>.<8 random chars>.tmp[.EXT] from atomic_path; .geobench-staging-p<pid>-<random>
# folders from archive extraction.
_TEMP = re.compile(r"^\..*\.p(\d+)\.[A-Za-z0-9_]{8}\.tmp(\.[^.]*)?$")
_STAGING = re.compile(r"^\.geobench-staging-p(\d+)-")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; finished files get the permissions a plain open() would give.
_FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` if the block succeeds.

    The temporary file keeps `path`'s suffix (or `suffix`) so libraries that pick a
    format from the extension (OpenCV, h5py, matplotlib) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.p{os.getpid()}.", suffix=f".tmp{suffix}",
                                   dir=path.parent)
    except OSError as exc:
        raise disk_full_or(exc, path, 0) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    except BaseException as exc:
        written = tmp_path.stat().st_size if tmp_path.exists() else 0
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(exc, Exception) and not isinstance(exc, DiskFullError) \
                and is_disk_full(exc, path.parent):
            raise disk_full(path, written) from None
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Open a file for writing that appears under its final name only when closed cleanly."""
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
        kwargs.setdefault("newline", "")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


# libhdf5's own bookkeeping (object headers, heaps, attributes): 12-16 KiB for our small
# files, measured; a margin on top.
H5_SLACK = 64 << 10


def h5_bytes(*parts: Any) -> int:
    """Bytes of data an HDF5 file will hold: arrays (or sources with .shape and .dtype),
    sequences of strings, None (nothing)."""
    import numpy as np

    total = 0
    for part in parts:
        if part is None:
            continue
        if not (hasattr(part, "shape") and hasattr(part, "dtype")):
            part = list(part)
            if any(isinstance(s, str) for s in part):
                total += sum(len(str(s).encode()) + 16 for s in part)  # + a vlen heap record
                continue
            part = np.asarray(part)
        total += int(np.prod(part.shape)) * np.dtype(part.dtype).itemsize
    return total


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike, data_bytes: int) -> Iterator[Any]:
    """An open HDF5 file written atomically (see atomic_path), refused before it starts
    when `data_bytes` plus HDF5's bookkeeping do not fit.

    libhdf5 does not survive a full disk: after ENOSPC its clean-up raises from object
    destructors (tracebacks nobody can catch) and can crash the interpreter, leaving
    temporaries and locks behind. So it never starts a file that cannot fit.
    """
    import h5py

    path = Path(path)
    require_space(path.parent, data_bytes + data_bytes // 100 + H5_SLACK,
                  f"writing {path.name} ({data_bytes:,} bytes of data plus HDF5's own "
                  f"bookkeeping)")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        yield h5


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- disk full


def is_disk_full(exc: BaseException, folder: str | os.PathLike) -> bool:
    """ENOSPC/EDQUOT anywhere in the exception chain, or a library's own wrapping of it.

    torch.save and h5py report a full disk as RuntimeError/OSError without an errno, so
    a failed write in a folder with (almost) no space left counts as a full disk too.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _FULL:
            return True
        if "No space left" in str(seen) or "Disk quota exceeded" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, (OSError, RuntimeError)):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(folder).free < (1 << 20)
    return False


def free_bytes(folder: str | os.PathLike) -> int:
    """Free bytes on the file system that holds `folder` (or its nearest existing parent)."""
    here = Path(folder).absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    return shutil.disk_usage(here).free


def disk_full(path: str | os.PathLike, needed: int, *, at_least: bool = True) -> DiskFullError:
    try:
        have = f"{free_bytes(Path(path).parent):,} bytes free"
    except OSError:
        have = "free space unknown"
    need = (f"{'more than ' if at_least else ''}{needed:,} bytes" if needed > 0
            else "more bytes than are free")
    return DiskFullError(f"{path}: disk full, it needs {need} ({have}); nothing incomplete was "
                         f"kept, completed files were. Free some space (or choose another "
                         f"output folder) and re-run the same command")


def disk_full_or(exc: OSError, path: str | os.PathLike, needed: int) -> OSError | DiskFullError:
    return disk_full(path, needed) if exc.errno in _FULL else exc


def require_space(folder: str | os.PathLike, needed: int, what: str) -> None:
    """Refuse before writing when `needed` bytes will not fit in `folder`'s file system."""
    try:
        free = free_bytes(folder)
    except OSError:
        return  # cannot tell: the write itself reports a full disk
    if needed > free:
        raise DiskFullError(f"{folder}: {what} needs {needed:,} bytes but only {free:,} are free "
                            f"there; free some space or choose another output folder")


# --------------------------------------------------------------------------- stale temporaries


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete temporary files and staging folders under `folder` whose writer is dead.

    Only names written by atomic_path / archive extraction with a pid in them are touched,
    and only when that process no longer exists. Returns how many were removed.
    """
    removed = 0
    for here, dirs, files in os.walk(folder):
        for name in files:
            match = _TEMP.match(name)
            if match and not _alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(here, name))
                    removed += 1
        for name in list(dirs):
            match = _STAGING.match(name)
            if match and not _alive(int(match.group(1))):
                shutil.rmtree(os.path.join(here, name), ignore_errors=True)
                dirs.remove(name)
                removed += 1
    return removed
