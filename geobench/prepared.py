"""The prepared-dataset contract: `index.csv`, `positives.csv`, `manifest.json`.

This module is the only reader and writer of a prepared dataset directory (DS). It
validates on both sides, so every later stage can trust what it loads: columns and
values as DESIGN.md defines them, unique uids, positives that link existing uids of
the same split, and (on request) image files that exist. Errors name the file, the
line and the fix.
"""
from __future__ import annotations

import json
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geobench import __version__
from geobench.errors import DataError, SchemaError
from geobench.fileio import atomic_open, sha256_file, write_json

SCHEMA = "geobench.prepared/1"
INDEX_FILE, POSITIVES_FILE, MANIFEST_FILE = "index.csv", "positives.csv", "manifest.json"

INDEX_COLUMNS = ("uid", "split", "role", "view", "path", "item", "lat", "lon",
                 "utm_e", "utm_n", "heading", "city")
POSITIVE_COLUMNS = ("split", "query", "reference", "kind", "distance_m", "dy", "dx")
SPLITS = ("train", "val", "test")
ROLES = ("query", "reference")
VIEWS = ("ground", "aerial", "polar", "drone", "street", "perspective")
KINDS = ("positive", "semi_positive", "train_positive")

_INDEX_TEXT = ("uid", "split", "role", "view", "path", "item", "city")
_INDEX_FLOAT = ("lat", "lon", "utm_e", "utm_n", "heading")
_POS_TEXT = ("split", "query", "reference", "kind")
_POS_FLOAT = ("distance_m", "dy", "dx")

_RERUN = "re-create it with `geobench prepare`"


def _frame(rows: pd.DataFrame | Iterable[Mapping[str, Any]], columns: tuple[str, ...],
           text: tuple[str, ...], floats: tuple[str, ...]) -> pd.DataFrame:
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for col in columns:
        if col not in frame.columns:
            frame[col] = "" if col in text else np.nan
    frame = frame[list(columns)]
    for col in text:
        frame[col] = frame[col].fillna("").astype(str)
    for col in floats:
        frame[col] = pd.to_numeric(frame[col].replace("", np.nan), errors="raise").astype(float)
    return frame.reset_index(drop=True)


def _check_columns(found: list[str], expected: tuple[str, ...], path: Path) -> None:
    if list(found) != list(expected):
        missing = [c for c in expected if c not in found]
        extra = [c for c in found if c not in expected]
        detail = []
        if missing:
            detail.append(f"missing {', '.join(missing)}")
        if extra:
            detail.append(f"unexpected {', '.join(extra)}")
        if not detail:
            detail.append(f"columns out of order, expected {','.join(expected)}")
        raise SchemaError(f"{path}: wrong header ({'; '.join(detail)}); {_RERUN}")


def _check_values(frame: pd.DataFrame, col: str, allowed: tuple[str, ...], path: Path) -> None:
    bad = ~frame[col].isin(allowed)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SchemaError(f"{path}:{i + 2}: {col} {frame[col].iloc[i]!r} is not one of "
                          f"{', '.join(allowed)}; {_RERUN}")


def validate_index(index: pd.DataFrame, path: Path = Path(INDEX_FILE)) -> None:
    _check_columns(list(index.columns), INDEX_COLUMNS, path)
    if index.empty:
        raise SchemaError(f"{path}: the index has no rows; check the dataset root and {_RERUN}")
    for col, allowed in (("split", SPLITS), ("role", ROLES), ("view", VIEWS)):
        _check_values(index, col, allowed, path)
    for col in ("uid", "path"):
        empty = index[col] == ""
        if empty.any():
            i = int(np.flatnonzero(empty.to_numpy())[0])
            raise SchemaError(f"{path}:{i + 2}: empty {col}; {_RERUN}")
    dup = index["uid"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        first = int(np.flatnonzero((index["uid"] == index["uid"].iloc[i]).to_numpy())[0])
        raise SchemaError(f"{path}:{i + 2}: duplicate uid {index['uid'].iloc[i]!r} "
                          f"(first on line {first + 2}); uids must be unique")


def validate_positives(positives: pd.DataFrame, index: pd.DataFrame,
                       path: Path = Path(POSITIVES_FILE)) -> None:
    _check_columns(list(positives.columns), POSITIVE_COLUMNS, path)
    if positives.empty:
        return
    _check_values(positives, "split", SPLITS, path)
    _check_values(positives, "kind", KINDS, path)
    split_of = pd.Series(index["split"].to_numpy(), index=index["uid"].to_numpy())
    for col in ("query", "reference"):
        known = positives[col].isin(split_of.index)
        if not known.all():
            i = int(np.flatnonzero(~known.to_numpy())[0])
            raise SchemaError(f"{path}:{i + 2}: {col} {positives[col].iloc[i]!r} is not a uid "
                              f"in {INDEX_FILE} (dangling link); {_RERUN}")
    query_split = split_of.reindex(positives["query"]).to_numpy()
    wrong = query_split != positives["split"].to_numpy()
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise SchemaError(f"{path}:{i + 2}: split {positives['split'].iloc[i]!r} but query "
                          f"{positives['query'].iloc[i]!r} is in split {query_split[i]!r}")


@dataclass
class Prepared:
    """A loaded, validated prepared dataset."""

    root: Path
    index: pd.DataFrame
    positives: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.manifest.get("dataset", ""))

    @property
    def raw_root(self) -> Path:
        raw = Path(self.manifest.get("raw_root", "."))
        return raw if raw.is_absolute() else (self.root / raw)

    @property
    def derived_dirs(self) -> tuple[str, ...]:
        return tuple(self.manifest.get("derived_dirs", ()))

    def resolve(self, rel: str) -> Path:
        """Absolute path of an index `path`: under DS for derived images, else the raw root."""
        first = Path(rel).parts[0] if rel else ""
        return (self.root if first in self.derived_dirs else self.raw_root) / rel

    def paths(self, rows: pd.DataFrame | None = None) -> list[Path]:
        rows = self.index if rows is None else rows
        return [self.resolve(p) for p in rows["path"]]

    def select(self, split: str | None = None, role: str | None = None,
               view: str | None = None) -> pd.DataFrame:
        mask = np.ones(len(self.index), dtype=bool)
        for col, value in (("split", split), ("role", role), ("view", view)):
            if value is not None:
                mask &= (self.index[col] == value).to_numpy()
        return self.index[mask]

    def dataset_hash(self) -> str:
        return str(self.manifest.get("sha256", {}).get(INDEX_FILE, ""))

    def check_files(self, limit: int = 5) -> None:
        """Raise DataError naming the first missing image files (and how many are missing)."""
        paths = self.paths()
        missing = [(i, p) for i, p in enumerate(paths) if not p.is_file()]
        if missing:
            shown = ", ".join(f"{p} ({INDEX_FILE}:{i + 2})" for i, p in missing[:limit])
            raise DataError(f"{self.root / INDEX_FILE}: {len(missing)} of {len(paths)} images are "
                            f"missing, e.g. {shown}; restore them or re-run `geobench prepare` "
                            f"with the right --root")


def counts(index: pd.DataFrame) -> dict[str, int]:
    grouped = index.groupby(["split", "role", "view"]).size()
    return {"/".join(key): int(n) for key, n in grouped.items()}


def versions() -> dict[str, str]:
    return {"geobench": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "pandas": pd.__version__}


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_open(path, "w") as handle:
        frame.to_csv(handle, index=False, float_format="%.12g", lineterminator="\n")


def write_prepared(out: str | Path, index: pd.DataFrame | Iterable[Mapping[str, Any]],
                   positives: pd.DataFrame | Iterable[Mapping[str, Any]], *, dataset: str,
                   raw_root: str | Path, parameters: Mapping[str, Any] | None = None,
                   derived_dirs: Iterable[str] = (), extra: Mapping[str, Any] | None = None,
                   ) -> Prepared:
    """Validate and write DS/index.csv, DS/positives.csv and DS/manifest.json atomically.

    The manifest is written last and records the CSVs' sha256, so a reader detects a
    directory whose CSVs changed under it (or whose writer was interrupted).
    """
    out = Path(out)
    index_df = _frame(index, INDEX_COLUMNS, _INDEX_TEXT, _INDEX_FLOAT)
    pos_df = _frame(positives, POSITIVE_COLUMNS, _POS_TEXT, _POS_FLOAT)
    validate_index(index_df, out / INDEX_FILE)
    validate_positives(pos_df, index_df, out / POSITIVES_FILE)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(index_df, out / INDEX_FILE)
    _write_csv(pos_df, out / POSITIVES_FILE)
    raw = Path(raw_root).resolve()
    try:
        raw_entry = str(raw.relative_to(out.resolve())) or "."
    except ValueError:
        raw_entry = str(raw)
    manifest = {
        "schema": SCHEMA,
        "dataset": dataset,
        "raw_root": raw_entry,
        "derived_dirs": sorted(set(derived_dirs)),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": counts(index_df),
        "n_positives": {k: int(v) for k, v in pos_df.groupby("kind").size().items()},
        "parameters": dict(parameters or {}),
        "sha256": {INDEX_FILE: sha256_file(out / INDEX_FILE),
                   POSITIVES_FILE: sha256_file(out / POSITIVES_FILE)},
        "versions": versions(),
        **dict(extra or {}),
    }
    write_json(out / MANIFEST_FILE, manifest)
    return Prepared(out, index_df, pos_df, manifest)


def _read_csv(path: Path, columns: tuple[str, ...], text: tuple[str, ...],
              floats: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found; {_RERUN}")
    try:
        frame = pd.read_csv(path, dtype={c: str for c in text}, keep_default_na=False,
                            na_values={c: [""] for c in floats})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path}: not a readable CSV ({exc}); {_RERUN}") from None
    _check_columns(list(frame.columns), columns, path)
    for col in floats:
        try:
            frame[col] = pd.to_numeric(frame[col]).astype(float)
        except (ValueError, TypeError):
            bad = pd.to_numeric(frame[col], errors="coerce").isna() & (frame[col].astype(str) != "")
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise SchemaError(f"{path}:{i + 2}: {col} {frame[col].iloc[i]!r} is not a number") from None
    return frame


def check_prepared_dir(ds: str | Path) -> Path:
    """The cheap part of read_prepared: `ds` is a folder holding a manifest (so a missing
    dataset is named before anything slow, e.g. a weights download, starts)."""
    ds = Path(ds)
    if not ds.is_dir():
        raise DataError(f"{ds}: not a directory; prepare a dataset first with "
                        f"`geobench prepare NAME --out {ds}`")
    if not (ds / MANIFEST_FILE).is_file():
        raise DataError(f"{ds / MANIFEST_FILE}: file not found, {ds} is not a prepared dataset "
                        f"(or its preparation was interrupted); {_RERUN}")
    return ds


def read_prepared(ds: str | Path, check_files: bool = False) -> Prepared:
    """Load and validate a prepared dataset directory."""
    ds = check_prepared_dir(ds)
    manifest_path = ds / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{manifest_path}: not valid JSON ({exc}); {_RERUN}") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        found = manifest.get("schema") if isinstance(manifest, dict) else None
        raise SchemaError(f"{manifest_path}: schema {found!r}, expected {SCHEMA!r}; {_RERUN}")
    index = _read_csv(ds / INDEX_FILE, INDEX_COLUMNS, _INDEX_TEXT, _INDEX_FLOAT)
    positives = _read_csv(ds / POSITIVES_FILE, POSITIVE_COLUMNS, _POS_TEXT, _POS_FLOAT)
    for name in (INDEX_FILE, POSITIVES_FILE):
        recorded = manifest.get("sha256", {}).get(name)
        if recorded and recorded != sha256_file(ds / name):
            raise SchemaError(f"{ds / name}: changed after it was prepared (sha256 differs from "
                              f"{MANIFEST_FILE}); {_RERUN} rather than editing it")
    validate_index(index, ds / INDEX_FILE)
    validate_positives(positives, index, ds / POSITIVES_FILE)
    prepared = Prepared(ds, index, positives, manifest)
    if check_files:
        prepared.check_files()
    return prepared
