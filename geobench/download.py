"""`geobench download`: resumable, verified downloads and safe extraction.

A file is streamed to `<name>.part` (resumed with an HTTP Range request when a partial
file is there), checked against its size and sha256, and only then renamed to its final
name, so a corrupt or partial file never sits under the final name, and a file already
there is never deleted before its replacement has been verified. Archives are
extracted with `geobench.archive.extract` (refuses escaping members, idempotent).
Gated datasets (most of the field's) are not downloadable: the access instructions are
raised as the error, and `--from PATH` accepts the copy the user already has.
"""
from __future__ import annotations

import http.client
import os
import re
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from geobench.errors import DataError, UsageError
from geobench.fileio import disk_full, is_disk_full, require_space, sha256_file, write_json

CHUNK = 1 << 16
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FileResult:
    name: str
    path: Path
    size: int
    sha256: str
    action: str          # downloaded | resumed | present | copied
    extracted: str = ""  # extracted | already extracted | ""


@dataclass(frozen=True)
class DownloadResult:
    dataset: str
    root: Path           # the folder to pass to `geobench prepare NAME --root`
    files: tuple[FileResult, ...] = field(default_factory=tuple)


def check_sha256(text: str | None, what: str) -> str | None:
    if text is None:
        return None
    value = text.strip().lower()
    if not _HEX64.match(value):
        raise UsageError(f"{what}: sha256 {text!r} is not 64 hex digits")
    return value


def _open(url: str, start: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "geobench"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:
            return None  # nothing left to fetch: the partial file may be complete
        raise DataError(f"{url}: server answered HTTP {exc.code} ({exc.reason}); try again later "
                        f"or pass --mirror URL_PREFIX") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"{url}: cannot connect ({reason}); check the network or pass "
                        f"--mirror URL_PREFIX") from None


def _stream(url: str, part: Path, size: int | None, timeout: float) -> str:
    """Fetch url into `part`, continuing it when possible; returns downloaded | resumed."""
    from geobench.progress import bar

    start = part.stat().st_size if part.is_file() else 0
    if size is not None and start > size:
        part.unlink()
        start = 0
    response = _open(url, start, timeout)
    if response is None:
        return "resumed"
    with response:
        resumed = start > 0 and response.status == 206
        if start and not resumed:
            start = 0  # the server ignored Range: start over
        length = response.headers.get("Content-Length")
        total = size if size is not None else (start + int(length) if length else None)
        with open(part, "ab" if resumed else "wb") as handle, \
                bar(f"download {part.name[:-5]}", total) as progress:
            progress.advance(start)
            received = 0
            try:
                while block := response.read(CHUNK):
                    handle.write(block)
                    received += len(block)
                    progress.advance(len(block))
                if length is not None and received < int(length):
                    # urllib returns a short body silently when the connection drops
                    raise ConnectionError("connection closed early")
            except (http.client.IncompleteRead, ConnectionError, TimeoutError, OSError) as exc:
                got = start + received
                if is_disk_full(exc, part.parent):
                    needed = (total - got) if total is not None else received
                    raise disk_full(part, needed, at_least=total is None) from None
                handle.flush()
                got = handle.tell()
                raise DataError(f"{url}: transfer interrupted after {got} bytes ({exc}); the "
                                f"partial file {part} was kept, re-run to resume") from None
    return "resumed" if resumed else "downloaded"


def _verify(path: Path, size: int | None, sha256: str | None) -> str:
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise DataError(f"size {actual_size} bytes, expected {size}")
    digest = sha256_file(path)
    if sha256 is not None and digest != sha256:
        raise DataError(f"sha256 {digest}, expected {sha256}")
    return digest


def fetch(url: str, dest: Path, sha256: str | None = None, size: int | None = None,
          timeout: float = 60.0) -> FileResult:
    """Download url to dest (resuming dest.part), verified; never a bad file at dest."""
    dest = Path(dest)
    sha256 = check_sha256(sha256, url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        try:
            digest = _verify(dest, size, sha256)
            return FileResult(dest.name, dest, dest.stat().st_size, digest, "present")
        except DataError:
            pass  # stale or corrupt: replaced below, but only by a verified download
    part = dest.with_name(dest.name + ".part")
    if size is not None:
        have = part.stat().st_size if part.is_file() else 0
        require_space(dest.parent, size - min(have, size), f"downloading {dest.name}")
    for attempt in (1, 2):
        action = _stream(url, part, size, timeout)
        try:
            digest = _verify(part, size, sha256)
        except DataError as exc:
            was_resumed = action == "resumed"
            part.unlink()
            if was_resumed and attempt == 1:
                continue  # the old partial file may have been the bad part: one clean retry
            kept = f"; {dest} already there was left as it was" if dest.exists() else ""
            raise DataError(f"{url}: downloaded file fails verification ({exc}); it was deleted"
                            f"{kept}. Re-run to retry, or check the checksum in datasets.yaml / "
                            f"--sha256") from None
        os.replace(part, dest)
        return FileResult(dest.name, dest, dest.stat().st_size, digest, action)
    raise AssertionError("unreachable")


def mirrored(url: str, mirror: str | None) -> str:
    """The URL with its origin and folder replaced by the mirror prefix (file name kept)."""
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + Path(urlsplit(url).path).name


def url_file_name(url: str) -> str:
    """The file name a URL's path ends with; refused when it names none (`/`, `/..`, `/.`)."""
    path = urlsplit(url).path
    name = path.rsplit("/", 1)[-1]
    if name in ("", ".", "..") or "\\" in name:
        raise UsageError(f"{url}: the URL names no file (its path ends in {'/' + name!r}); "
                         f"give the URL of the file itself, e.g. https://host/path/data.zip")
    return name


def safe_file_name(name: str, where: str) -> str:
    """A plain file name: no folder part, not `.` or `..` (it is joined to the target)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise UsageError(f"{where}: file name {name!r} is not a plain file name; it would be "
                         f"written outside the target folder")
    return name


def download_url(url: str, root: Path, sha256: str | None) -> DownloadResult:
    """`geobench download URL --sha256 HEX`: one verified file under root, archives extracted
    with the same checks as a dataset download."""
    from geobench.archive import extract, is_archive

    if sha256 is None:
        raise UsageError(f"{url}: pass --sha256 HEX so the download can be verified")
    name = url_file_name(url)
    result = fetch(url, Path(root) / name, sha256=sha256)
    if is_archive(result.path):
        done = "extracted" if extract(result.path, Path(root)) else "already extracted"
        result = FileResult(result.name, result.path, result.size, result.sha256, result.action,
                            done)
    return DownloadResult(name, Path(root), (result,))


def _from_path(name: str, source: Path, target: Path) -> tuple[FileResult, ...]:
    from geobench.archive import extract, is_archive

    if not source.exists():
        raise DataError(f"{source}: --from path not found; pass the archive or folder you "
                        f"received for {name}")
    if source.is_dir():
        if target.is_symlink() or target.exists():
            if target.resolve() != source.resolve():
                raise DataError(f"{target}: already exists; remove it or choose another --root")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(source.resolve(), target, target_is_directory=True)
        write_json(target.parent / f".geobench-{name}-source.json", {"from": str(source.resolve())})
        return (FileResult(source.name, target, 0, "", "linked"),)
    if not is_archive(source):
        raise DataError(f"{source}: not a zip or tar archive nor a folder; pass the archive "
                        f"you downloaded or the extracted folder")
    copy = target / source.name
    created, copied = not target.exists(), False
    target.mkdir(parents=True, exist_ok=True)
    if copy.resolve() != source.resolve():
        part = copy.with_name(copy.name + ".part")
        require_space(target, source.stat().st_size, f"copying {source.name}")
        try:
            shutil.copyfile(source, part)
        except OSError as exc:
            if is_disk_full(exc, target):
                written = part.stat().st_size if part.exists() else 0
                part.unlink(missing_ok=True)
                raise disk_full(copy, source.stat().st_size - written, at_least=False) from None
            raise
        os.replace(part, copy)
        copied = True
    try:
        done = extract(copy, target)
    except DataError:
        if copied:  # refused: the copy is of no use, and the message says nothing was kept
            copy.unlink(missing_ok=True)
            if created and not any(target.iterdir()):
                target.rmdir()
        raise
    return (FileResult(source.name, copy, copy.stat().st_size, sha256_file(copy), "copied",
                       "extracted" if done else "already extracted"),)


def download_dataset(name: str, root: Path, mirror: str | None = None,
                     from_path: Path | None = None, catalog_path: Path | None = None
                     ) -> DownloadResult:
    """Download (or take --from) dataset `name` into root/name, verified and extracted."""
    from geobench.archive import extract, is_archive
    from geobench.catalog import get_spec

    spec = get_spec(name, catalog_path)
    target = Path(root) / name
    if from_path is not None:
        return DownloadResult(name, target, _from_path(name, Path(from_path), target))
    if spec.access_kind == "generated":
        raise UsageError(f"{name}: nothing to download; {spec.access_how}")
    if not spec.files:
        raise DataError(f"{name} needs access approval ({spec.access_kind}): {spec.access_how} "
                        f"Homepage: {spec.homepage}")
    results = []
    for entry in spec.files:
        safe_file_name(entry.name, f"datasets.{name}.files")
        got = fetch(mirrored(entry.url, mirror), target / entry.name, entry.sha256, entry.size)
        done = ""
        if entry.extract and is_archive(got.path):
            done = "extracted" if extract(got.path, target) else "already extracted"
        results.append(FileResult(got.name, got.path, got.size, got.sha256, got.action, done))
    return DownloadResult(name, target, tuple(results))
