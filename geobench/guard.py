"""Output folders: checked before any work, locked while written, cleaned after a kill.

Every command that writes a folder claims it with `claim_output` before it starts:

- the path must not be a file, must be writable, and must not be equal to, inside, or
  contain any input folder (so `crop SRC SRC` or `train --out DS` cannot overwrite or mix
  into what the user has);
- an exclusive lock (`OUT/.geobench.lock`, holding pid and command) keeps a second run out:
  it fails at once naming the holder. The lock is a kernel `flock`, released when the
  holder dies, so a lock file left by a killed run is taken over with a notice;
- temporary files that killed runs left in the folder are removed (fileio.remove_stale_temps).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from geobench.errors import UsageError
from geobench.fileio import _alive, remove_stale_temps

LOCK_NAME = ".geobench.lock"


def warn(message: str) -> None:
    """A one-line warning on stderr (shown even with --quiet: it is not progress)."""
    print(f"warning: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _nearest_existing(path: Path) -> Path:
    here = path.absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    return here


def _relation(out: Path, other: Path) -> str | None:
    if out == other:
        return "is the same folder as"
    if other in out.parents:
        return "lies inside"
    if out in other.parents:
        return "contains"
    return None


def check_output(out: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None] = {},
                 option: str = "--out") -> Path:
    """Refuse an output folder that is a file, unwritable, or overlaps an input folder.

    `inputs` maps the option a folder came from (e.g. "--data") to the folder.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{option} {out}: is a file, not a folder; pass a folder path (it is "
                         f"created if missing)")
    real = Path(os.path.realpath(out))
    for name, folder in inputs.items():
        if folder is None:
            continue
        src = Path(os.path.realpath(folder))
        how = _relation(real, src)
        if how is not None:
            raise UsageError(f"{option} {out} {how} the input {name} {folder}; writing there "
                             f"would overwrite or mix into your input. Choose an output folder "
                             f"outside {folder}")
    base = _nearest_existing(out)
    if not base.is_dir():
        raise UsageError(f"{option} {out}: {base} is a file, so the folder cannot be created; "
                         f"choose another path")
    if not os.access(base, os.W_OK | os.X_OK):
        what = "is not writable" if base == out.absolute() else f"cannot be created ({base} is " \
                                                                "not writable)"
        raise UsageError(f"{option} {out}: {what}; fix its permissions or choose another folder")
    return out


def _holder(text: str) -> dict:
    with contextlib.suppress(ValueError, TypeError):
        data = json.loads(text)
        if isinstance(data, dict):
            return data
    return {}


def _describe(holder: dict) -> str:
    started = holder.get("started")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(
        started, (int, float)) else ""
    return f"{holder.get('command', 'an unknown command')} (pid {holder.get('pid', '?')}{when})"


_HOST = socket.gethostname()


def _take_over(previous: dict, folder: Path, path: Path, option: str) -> None:
    """Say truthfully why the lock file a run left behind is taken over, or refuse.

    The kernel lock is free, so no process on this machine holds the folder. Its pid alone
    proves little: on this host a live pid is a reused one; from another host (or a lock
    that does not say) a pid alive here may still be that other machine's writer.
    """
    pid = previous.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid == os.getpid():
        return
    here = previous.get("host") == _HOST
    alive = pid > 0 and _alive(pid)
    if alive and not here:
        where = f" on {previous['host']}" if previous.get("host") else ""
        raise UsageError(f"{option} {folder}: {path.name} names {_describe(previous)}{where}, "
                         f"and pid {pid} is running on this machine, so it may still be "
                         f"writing; if no geobench run is using this folder, delete {path} "
                         f"and re-run")
    why = ("which no longer holds it (pid {pid} is now another program)" if alive
           else "which is no longer running" if here or not previous.get("host")
           else "whose lock was released")
    warn(f"{folder}: took over the lock left by {_describe(previous)}, {why.format(pid=pid)}")


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, command: str, option: str = "--out",
                lock_name: str = LOCK_NAME) -> Iterator[None]:
    """Hold an exclusive lock on the existing `folder` for the block."""
    folder = Path(folder)
    path = folder / lock_name
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
            os.close(fd)
            raise UsageError(f"{option} {folder}: in use by {_describe(holder)}; wait for it to "
                             f"finish or choose another output folder") from None
        # The holder before us may have unlinked the file after we opened it: then our lock
        # is on a dead inode and another process can lock a new file; start again.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        _take_over(_holder(os.pread(fd, 4096, 0).decode("utf-8", "replace")), folder, path,
                   option)
    except UsageError:
        os.close(fd)  # their lock file stays as it is
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command, "host": _HOST,
                                  "started": time.time()}).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # unlink before unlocking: see the samestat check above
        os.close(fd)


def _is_secondary_rank() -> bool:
    """A torchrun rank other than 0: rank 0 holds the lock for the whole job."""
    return int(os.environ.get("RANK", "0") or 0) != 0


@contextlib.contextmanager
def claim_output(out: str | os.PathLike, command: str, *,
                 inputs: Mapping[str, str | os.PathLike | None] = {},
                 option: str = "--out", lock_name: str = LOCK_NAME,
                 clean: bool = True) -> Iterator[Path]:
    """check_output, then create, lock and clean `out` for the block.

    `clean=False` leaves dead writers' temporaries alone: a shard of a job spread over
    machines cannot tell another machine's live process from a dead one by its pid.

    Folders this call created that are still empty afterwards (the command failed before
    writing anything) are removed again, and so are empty folders left inside them.
    """
    out = check_output(out, inputs, option)
    base = _nearest_existing(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {out}: cannot be created ({exc.strerror}); choose another "
                         f"folder") from None
    failed = True
    try:
        if _is_secondary_rank():
            yield out
        else:
            with folder_lock(out, f"geobench {command}", option, lock_name):
                if clean:
                    remove_stale_temps(out)
                yield out
        failed = False
    finally:
        if failed and base != out.absolute():  # made by this call: drop empty folders in it
            for folder, _, _ in sorted(os.walk(out), key=lambda w: -len(w[0]))[:-1]:
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
        here = out.absolute()
        while here != base and here != here.parent:
            try:
                here.rmdir()  # only succeeds when nothing was written
            except OSError:
                break
            here = here.parent
