"""Decode image files and tell damaged ones from good ones.

OpenCV hides most damage: a JPEG cut short is decoded as a partly grey image and a JPEG
with flipped bytes decodes with stripes, while libjpeg prints its warning ("Premature end
of JPEG file", "Corrupt JPEG data: ...") straight to the process's stderr, without a file
name and past `--quiet`. So every decode here

* checks the JPEG end-of-image marker (a truncated file has none) before decoding,
* captures file descriptor 2 while the decoder runs: libjpeg's warnings become a
  `DamagedImage` error naming the file, and never reach the terminal raw.

`decode_image` is used by training, evaluation, the polar transform and crops;
`check_image` is the full check of `prepare --strict` and `doctor --deep`.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from geobench.errors import DataError

JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
# Some writers pad after the end marker; a cut-off file has no marker in its last bytes
# (entropy-coded data escapes 0xFF, so the marker cannot appear there by chance).
_EOI_WINDOW = 64


class DamagedImage(DataError):
    """An image file that exists but is truncated, corrupt or undecodable."""


def _damaged(path: str | Path, why: str) -> DamagedImage:
    return DamagedImage(f"{path}: damaged image ({why}); re-download or re-extract it, or "
                        f"delete it (training and evaluation can skip it with "
                        f"--on-bad-image skip)")


def is_jpeg(data: bytes | np.ndarray) -> bool:
    return bytes(data[:2]) == JPEG_SOI


def jpeg_end_missing(data: bytes | np.ndarray) -> bool:
    """True when a JPEG's bytes lack the end-of-image marker near their end (truncated)."""
    tail = bytes(data[-_EOI_WINDOW:]).rstrip(b"\x00")
    return JPEG_EOI not in tail


# One capture file per process: forked workers must not share the parent's file offset.
_sink: dict[int, int] = {}
_lock = threading.Lock()


def _sink_fd() -> int:
    pid = os.getpid()
    if pid not in _sink:
        handle = tempfile.TemporaryFile(prefix="geobench-stderr-")
        _sink[pid] = os.dup(handle.fileno())
        handle.close()
    return _sink[pid]


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Send fd 2 to a private file for the block; yields a list that receives the text.

    Lines written meanwhile by other threads of this process that are terminal output
    (progress bars, recognised by their escape sequences) are passed on to the real
    stderr; everything else is the decoder's and is returned, not printed.
    """
    box: list[str] = []
    with _lock:
        try:
            sink = _sink_fd()
            saved = os.dup(2)
        except OSError:  # no fd 2 (closed) or no temp dir: decode without capturing
            yield box
            return
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.lseek(sink, 0, os.SEEK_SET)
        os.ftruncate(sink, 0)
        os.dup2(sink, 2)
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            size = os.lseek(sink, 0, os.SEEK_CUR)
            os.lseek(sink, 0, os.SEEK_SET)
            text = os.read(sink, size).decode("utf-8", "replace") if size else ""
            foreign = [ln for ln in text.splitlines(keepends=True) if "\x1b" in ln]
            if foreign:
                with contextlib.suppress(OSError):
                    os.write(2, "".join(foreign).encode())
            box.extend(ln.strip() for ln in text.splitlines() if ln.strip() and "\x1b" not in ln)


def read_bytes(path: str | Path) -> np.ndarray:
    try:
        return np.fromfile(str(path), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: cannot read (file not found); restore it or run `geobench "
                        f"doctor` on the dataset root") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc}); check the file exists "
                        f"and is readable") from None


def decode_bytes(data: np.ndarray, path: str | Path, flags: int | None = None) -> np.ndarray:
    """Decode image bytes (BGR for colour); DamagedImage naming `path` on any damage."""
    import cv2

    if not data.size:
        raise _damaged(path, "empty file")
    jpeg = is_jpeg(data)
    if jpeg and jpeg_end_missing(data):
        raise _damaged(path, "JPEG is truncated: no end-of-image marker")
    with captured_stderr() as messages:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR if flags is None else flags)
    if img is None:
        why = messages[0] if messages else "not a decodable image"
        raise _damaged(path, why)
    if jpeg and messages:  # libjpeg recovered, but the picture is wrong (grey or striped)
        raise _damaged(path, "; ".join(dict.fromkeys(messages)))
    return img


def decode_image(path: str | Path, flags: int | None = None) -> np.ndarray:
    """Read and decode an image file as OpenCV does (BGR), refusing damaged files."""
    return decode_bytes(read_bytes(path), path, flags)


def check_image(path: str | Path) -> tuple[int, int]:
    """Fully decode `path`; (H, W) or DamagedImage/DataError naming it."""
    import cv2

    img = decode_image(path, cv2.IMREAD_UNCHANGED)
    return int(img.shape[0]), int(img.shape[1])
