"""`geobench doctor`: check a raw dataset copy before anyone trains on it.

Runs the dataset's adapter (nothing is written), then checks what it indexed: split
files naming missing images, counts against the public release, unreadable or truncated
images (a fast header + end-marker check; full decode with `deep`), unexpected native
sizes, and image files that no split uses. The copy is usable when the layout parses
and no indexed image is damaged.
"""
from __future__ import annotations

import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geobench.errors import GeobenchError


@dataclass(frozen=True)
class Check:
    name: str
    status: str          # ok | warn | fail
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class DoctorReport:
    dataset: str
    root: Path
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def usable(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)


def _jpeg_size(handle) -> tuple[int, int] | None:
    handle.seek(2)
    while True:
        byte = handle.read(1)
        while byte and byte != b"\xff":
            byte = handle.read(1)
        while byte == b"\xff":
            byte = handle.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        raw = handle.read(2)
        if len(raw) < 2:
            return None
        length = struct.unpack(">H", raw)[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            data = handle.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return h, w
        handle.seek(length - 2, 1)


def image_header(path: Path) -> tuple[int, int]:
    """(H, W) from a JPEG/PNG header; ValueError if the file is damaged or truncated."""
    with open(path, "rb") as handle:
        head = handle.read(32)
        handle.seek(0, 2)
        end = handle.tell()
        handle.seek(max(0, end - 64))
        tail = handle.read()
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            if len(head) < 24 or head[12:16] != b"IHDR":
                raise ValueError("PNG header is damaged")
            if b"IEND" not in tail:
                raise ValueError("PNG is truncated (no IEND chunk)")
            w, h = struct.unpack(">II", head[16:24])
            return h, w
        if head.startswith(b"\xff\xd8"):
            if b"\xff\xd9" not in tail.rstrip(b"\x00"):
                raise ValueError("JPEG is truncated (no end-of-image marker)")
            size = _jpeg_size(handle)
            if size is None:
                raise ValueError("JPEG header has no frame size")
            return size
    raise ValueError("not a JPEG or PNG file")


def _decode(path: Path) -> tuple[int, int]:
    """Full decode; the decoder's own warnings (bytes flipped mid-stream) count as damage."""
    from geobench.errors import DataError
    from geobench.imagefile import check_image

    try:
        return check_image(path)
    except DataError as exc:
        text = str(exc)
        reason = text[text.find("(") + 1:text.find(");")] if "(" in text else text
        raise ValueError(reason) from None


def _examples(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def doctor(name: str, root: Path, deep: bool = False, shard: Any = None,
           out: Path | None = None) -> DoctorReport:
    """Check the raw copy of dataset `name` at `root`.

    `shard` (geobench.shard): a Shard checks its share of the images and keeps what it found
    in out/.shards; "merge" reports every share as one whole run would.
    """
    from geobench.datasets import adapt
    from geobench.datasets.common import check_missing
    from geobench.prepared import counts

    root = Path(root)
    checks: list[Check] = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            adapted = adapt(name, root, Path(scratch), {})
        if not adapted.index:
            check_missing(adapted, name, strict=False)  # raises: nothing found or usable
    except GeobenchError as exc:
        checks.append(Check("layout", "fail", str(exc), "fix the file or folder the message "
                            "names, or point --root at the dataset folder"))
        return DoctorReport(name, root, tuple(checks))
    base = adapted.raw_root
    checks.append(Check("layout", "ok", f"{len(adapted.index)} images indexed from {base}"))

    missing = [p for v in adapted.missing.values() for p in v]
    if missing:
        checks.append(Check("missing images", "warn",
                            f"{len(missing)} images named by the split files are missing: "
                            f"{_examples(missing)}",
                            "restore them from the archive; `geobench prepare` skips them "
                            "(or fails with --strict)"))
    else:
        checks.append(Check("missing images", "ok", "every image the splits name exists"))

    found = counts_of(adapted.index, counts)
    diffs = [f"{k}: {found.get(k, 0)} (release: {n})" for k, n in adapted.expected_counts.items()
             if found.get(k, 0) != n]
    if diffs:
        checks.append(Check("counts", "warn", "; ".join(diffs),
                            "a subset or incomplete copy: results will not be comparable "
                            "with published numbers; re-download the missing parts"))
    elif adapted.expected_counts:
        checks.append(Check("counts", "ok", "counts match the public release"))

    seen = list(dict.fromkeys(row["path"] for row in adapted.index))  # unique, index order
    views = {row["path"]: row["view"] for row in adapted.index}
    how = "full decode" if deep else "header and end-marker check"
    if shard == "merge":
        damaged, odd_size = _merged(out, name, root, deep, len(seen))
    else:
        todo = seen
        if shard is not None:
            start, end = shard.share(len(seen))
            todo = seen[start:end]
        damaged, odd_size = _check_images(base, todo, views, adapted.expected_sizes, deep)
        if shard is not None:
            from geobench.shard import write_record

            write_record(out, "doctor", shard, len(seen), {
                "parameters": _parameters(name, root, deep), "complete": True,
                "damaged": damaged, "odd_size": odd_size})
            checks.append(Check("shard", "ok", f"images {start + 1}-{end} of {len(seen)} "
                                f"checked (shard {shard.index}/{shard.count})",
                                "run every shard, then --shard merge for the whole report"))
            seen_count = len(todo)
        else:
            seen_count = len(seen)
    if shard == "merge":
        seen_count = len(seen)
    if damaged:
        checks.append(Check("damaged images", "fail", f"{len(damaged)} of {seen_count} images "
                            f"are unreadable or truncated: {_examples(damaged)}",
                            "re-extract or re-download these files (the archive may have been "
                            "cut short); delete them to have prepare skip them"))
    else:
        checks.append(Check("damaged images", "ok", f"{seen_count} images pass the {how}"))
    if odd_size:
        checks.append(Check("image sizes", "warn", f"{len(odd_size)} images have an unexpected "
                            f"size: {_examples(odd_size)}",
                            "a resized or different release: models expecting the native size "
                            "will resize them; check where this copy came from"))
    elif adapted.expected_sizes:
        checks.append(Check("image sizes", "ok", "native sizes as expected"))
    seen = set(seen)

    unused: list[str] = []
    for folder, exts in adapted.scan:
        directory = base / folder
        if directory.is_dir():
            unused += sorted(f"{folder}/{p.name}" for p in directory.iterdir()
                             if p.suffix.lower() in exts and f"{folder}/{p.name}" not in seen)
    if unused:
        checks.append(Check("files in no split", "warn", f"{len(unused)} image files are used by "
                            f"no split: {_examples(unused)}",
                            "harmless if expected (CVUSA has ~100 such panoramas); otherwise "
                            "a split file may be out of date"))
    return DoctorReport(name, root, tuple(checks))


def _check_images(base: Path, paths: list[str], views: dict[str, str],
                  expected_sizes: dict, deep: bool) -> tuple[list[str], list[str]]:
    """(damaged, unexpected size) among `paths`, each an entry naming the file."""
    from geobench.progress import track

    damaged: list[str] = []
    odd_size: list[str] = []
    for rel in track(paths, "checking images"):
        path = base / rel
        try:
            size = image_header(path)
            if deep:
                size = _decode(path)
        except (ValueError, OSError) as exc:
            damaged.append(f"{rel} ({exc})")
            continue
        expected = expected_sizes.get(views[rel])
        if expected is not None and tuple(size) != tuple(expected):
            odd_size.append(f"{rel} is {size[0]}x{size[1]}, expected {expected[0]}x{expected[1]}")
    return damaged, odd_size


def _parameters(name: str, root: Path, deep: bool) -> dict[str, Any]:
    return {"dataset": name, "root": str(Path(root).resolve()), "deep": deep}


def _merged(out: Path | None, name: str, root: Path, deep: bool, total: int
            ) -> tuple[list[str], list[str]]:
    from geobench.shard import collect

    command = f"geobench doctor {name} --root {root}{' --deep' if deep else ''} --out {out}"
    records = collect(out, "doctor", total, _parameters(name, root, deep), command)
    return ([d for r in records for d in r["damaged"]],
            [o for r in records for o in r["odd_size"]])


def counts_of(index: list[dict], counts) -> dict[str, int]:
    import pandas as pd

    if not index:
        return {}
    return counts(pd.DataFrame(index, columns=["split", "role", "view"]))
