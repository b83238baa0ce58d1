"""Run an image -> image(s) function over many files: listing, decoding, worker pool,
atomic writes, per-file failures. Shared by the polar transform and panorama crops.

A job is one source image and the output paths it produces. The caller decides which
jobs are already up to date (it knows its parameters); this module only runs the rest.
Each worker process decodes, calls `fn(img, params, job)` (which returns one
`(array, info)` per output) and encodes; only small status records travel back.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from geobench.errors import DataError, DiskFullError, UsageError
from geobench.fileio import atomic_path, disk_full, is_disk_full
from geobench.progress import bar

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
JPEG_QUALITY = 95
PNG_COMPRESSION = 1  # fast; PNG is lossless whatever the level
BATCH = 16


@dataclass(frozen=True)
class ImageJob:
    src: str
    outputs: tuple[str, ...]
    key: str = ""  # stable name of the source (its relative path), e.g. for seeding


@dataclass
class JobResult:
    job: ImageJob
    ok: bool
    error: str = ""
    shape: tuple[int, ...] = ()
    infos: list[dict[str, Any]] = field(default_factory=list)


def list_sources(src: str | Path, exclude: str | Path | None = None
                 ) -> list[tuple[Path, PurePosixPath]]:
    """(absolute path, relative path) of every image under a folder, or listed in a file.

    A list file holds one path per line (blank lines and # comments ignored); relative
    entries are relative to the list file's folder, and outputs mirror the paths relative
    to that folder (or to the entries' common folder when some lie outside it).
    """
    src = Path(src)
    if not src.exists():
        raise DataError(f"{src}: not found; pass an existing folder of images or a list file")
    if src.is_dir():
        found = _walk(src, Path(exclude).resolve() if exclude is not None else None)
        if not found:
            raise DataError(f"{src}: no images ({', '.join(IMAGE_EXTENSIONS)}) found in this "
                            f"folder or its sub-folders")
        return found
    return _read_list(src)


def _walk(root: Path, exclude: Path | None) -> list[tuple[Path, PurePosixPath]]:
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (exclude is None or (here / d).resolve() != exclude))
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                path = here / name
                found.append((path, PurePosixPath(path.relative_to(root).as_posix())))
    return found


def _read_list(listfile: Path) -> list[tuple[Path, PurePosixPath]]:
    try:
        lines = listfile.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{listfile}: not a text list of image paths (is it an image? pass "
                        f"its folder instead)") from None
    base = listfile.parent.resolve()
    entries = []
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            path = Path(text)
            entries.append(path if path.is_absolute() else base / path)
    if not entries:
        raise DataError(f"{listfile}: the list file names no images; write one path per line")
    resolved = [Path(os.path.abspath(p)) for p in entries]
    if not all(p.is_relative_to(base) for p in resolved):
        base = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    return [(p, PurePosixPath(p.relative_to(base).as_posix())) for p in resolved]


def check_unique_outputs(jobs: Sequence[ImageJob]) -> None:
    seen: dict[str, str] = {}
    for job in jobs:
        for out in job.outputs:
            if out in seen:
                raise UsageError(f"{job.src} and {seen[out]} would both be written to {out}; "
                                 f"rename one of them or process them separately")
            seen[out] = job.src
    # A list file can name images anywhere: no output may land on an input image.
    sources = {os.path.realpath(job.src) for job in jobs}
    for job in jobs:
        for out in job.outputs:
            if os.path.realpath(out) in sources:
                raise UsageError(f"{out}: is also an input image; writing it would overwrite "
                                 f"your source. Choose an output folder outside the inputs")


def up_to_date(job: ImageJob, stale_before: float) -> bool:
    """All outputs exist and are newer than the source and the last parameter change."""
    try:
        newest_input = max(os.stat(job.src).st_mtime, stale_before)
        return all(os.stat(out).st_mtime >= newest_input for out in job.outputs)
    except FileNotFoundError:
        return False


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image as 8-bit BGR; DataError naming the path if it is missing or damaged
    (a truncated or corrupt JPEG included: see geobench.imagefile)."""
    from geobench.imagefile import decode_image

    return decode_image(path)


def encode(img: np.ndarray, suffix: str) -> bytes:
    import cv2

    suffix = suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        flags = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    elif suffix == ".png":
        flags = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
    else:
        flags = []
    ok, data = cv2.imencode(suffix, img, flags)
    if not ok:
        raise DataError(f"cannot encode a {img.shape} image as {suffix}")
    return data.tobytes()


def write_image(img: np.ndarray, dst: str | Path) -> None:
    # Atomic rename without fsync: an interrupted run never leaves a partial image, and
    # fsync per small image would dominate the run time.
    data = encode(img, Path(dst).suffix)
    with atomic_path(dst) as tmp:
        tmp.write_bytes(data)


Fn = Callable[[np.ndarray, Any, ImageJob], list[tuple[np.ndarray, dict[str, Any]]]]


def _one(fn: Fn, params: Any, job: ImageJob, write: bool) -> JobResult:
    try:
        img = read_image(job.src)
        produced = fn(img, params, job)
        if len(produced) != len(job.outputs):
            raise RuntimeError(f"{fn.__name__} returned {len(produced)} images for "
                               f"{len(job.outputs)} outputs")
        if write:
            for (arr, _), dst in zip(produced, job.outputs, strict=False):
                write_image(arr, dst)
        return JobResult(job, True, shape=tuple(img.shape), infos=[i for _, i in produced])
    except DiskFullError:
        raise  # not a problem of this image: every later one would fail the same way
    except DataError as exc:
        return JobResult(job, False, error=str(exc))
    except OSError as exc:
        if is_disk_full(exc, Path(job.outputs[0]).parent):
            raise disk_full(job.outputs[0], 0) from None
        return JobResult(job, False, error=f"{job.src}: cannot write output ({exc}); check "
                         f"the destination folder is writable and has space")


def _batch(fn: Fn, params: Any, jobs: list[ImageJob], write: bool = True) -> list[JobResult]:
    return [_one(fn, params, job, write) for job in jobs]


def _log_level(level: int | None = None) -> int:
    """Get (and optionally set) OpenCV's log level; the API moved between versions."""
    import cv2

    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    getter = getattr(logging, "getLogLevel", None) or getattr(cv2, "getLogLevel", None)
    setter = getattr(logging, "setLogLevel", None) or getattr(cv2, "setLogLevel", None)
    old = int(getter()) if getter else 0
    if level is not None and setter:
        setter(level)
    return old


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already; threads would oversubscribe
    _log_level(2)  # errors only: corrupt files are reported by us, by path


def _context() -> Any:
    # fork starts workers instantly and shares the parent's already-imported modules; the
    # pool is started before any progress thread exists.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods and sys.platform == "linux"
                                       else "spawn")


def run_jobs(jobs: Sequence[ImageJob], fn: Fn, params: Any, *, workers: int = 1,
             strict: bool = False, description: str = "images",
             write: bool = True) -> list[JobResult]:
    """Run `fn` over `jobs` (in order of results = order of jobs).

    Failures are collected per file; with `strict` the first one raises DataError at once.
    `write=False` decodes and transforms without encoding (used by benchmarks).
    """
    if workers < 0:
        raise UsageError(f"--workers {workers} must be >= 0 (0: no worker processes)")
    workers = max(1, workers)  # 0 and 1 both run in this process
    jobs = list(jobs)
    results: list[JobResult | None] = [None] * len(jobs)

    def done(start: int, batch_results: list[JobResult]) -> None:
        for k, res in enumerate(batch_results):
            results[start + k] = res
            if strict and not res.ok:
                raise DataError(f"{res.error} (stopped at the first failure because of "
                                f"--strict)")

    # Small batches when there are few jobs, so every worker gets a share.
    size = max(1, min(BATCH, -(-len(jobs) // (4 * workers))))
    starts = list(range(0, len(jobs), size))
    try:
        if workers == 1 or len(jobs) <= 1:
            _run_here(fn, params, jobs, starts, size, write, description, done)
        else:
            _run_pool(fn, params, jobs, starts, size, write, description, done, workers)
    except KeyboardInterrupt as exc:
        # The caller may record what finished (None: not finished) so a re-run skips it.
        exc.partial_results = results  # type: ignore[attr-defined]
        raise
    return results  # type: ignore[return-value]


def _run_here(fn, params, jobs, starts, size, write, description, done) -> None:
    import cv2

    threads, level = cv2.getNumThreads(), _log_level()
    _init_worker()
    try:
        with bar(description, total=len(jobs)) as progress:
            for s in starts:
                done(s, _batch(fn, params, jobs[s:s + size], write))
                progress.advance(len(jobs[s:s + size]))
    finally:
        cv2.setNumThreads(threads)
        _log_level(level)


def _run_pool(fn, params, jobs, starts, size, write, description, done, workers) -> None:
    """Workers never see Ctrl-C (see geobench.lifeline): on Ctrl-C here the batches not
    started are cancelled and those already running finish and are recorded, so what the
    caller reports as finished is exactly what is on disk."""
    from geobench.lifeline import workers_ignore_ctrl_c

    ctx = _context()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                               initializer=_init_pool_worker, initargs=(os.getpid(),))
    futures = {}
    try:
        with workers_ignore_ctrl_c(ctx.get_start_method()):  # workers start on submit
            for s in starts:
                futures[pool.submit(_batch, fn, params, jobs[s:s + size], write)] = s
        with bar(description, total=len(jobs)) as progress:
            pending = set(futures)
            try:
                for future in as_completed(futures):
                    pending.discard(future)
                    batch_results = future.result()
                    done(futures[future], batch_results)
                    progress.advance(len(batch_results))
            except KeyboardInterrupt:
                for future in pending:
                    future.cancel()
                for future in as_completed(f for f in pending if not f.cancelled()):
                    if future.exception() is None:
                        with contextlib.suppress(DataError):  # --strict: stop anyway
                            done(futures[future], future.result())
                raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _init_pool_worker(parent: int) -> None:
    from geobench.lifeline import watch_parent

    watch_parent(parent)  # a SIGKILLed parent must not leave workers holding its pipes
    _init_worker()
