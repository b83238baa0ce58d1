"""The features file (DESIGN.md "Features file"): reader with validation, and writer.

HDF5 layout: /query/descriptors (Nq, D) and /reference/descriptors (Nr, D), float32 or
float16, L2-normalised; /query/positives_indptr (Nq+1,) + /query/positives_indices
(reference row numbers), optionally /query/semi_positives_indptr|indices. Optional
additions read by geobench: /query/latlon and /reference/latlon (N, 2) degrees (VIGOR
metre error), /query/uids and /reference/uids (strings), and root attributes run,
dataset, split, model, protocol, checkpoint_sha256, dataset_sha256.
Every error names the file and the dataset path inside it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geobench.errors import DataError, SchemaError
from geobench.eval.csr import CSR
from geobench.fileio import atomic_h5, h5_bytes

SCHEMA = "geobench.features/1"
QUERY, REFERENCE = "/query/descriptors", "/reference/descriptors"
_NORM_TOL = {np.dtype(np.float16): 1e-2, np.dtype(np.float32): 1e-3, np.dtype(np.float64): 1e-3}
_CHUNK_BYTES = 8 << 20  # validation and copies work in blocks of about this size


def _chunk(x) -> int:
    """Rows per block of about 8 MB (row counts alone would not bound memory at large D)."""
    return max(1, _CHUNK_BYTES // max(1, int(np.prod(x.shape[1:])) * 8))


@dataclass
class Features:
    path: Path
    query: np.ndarray
    reference: np.ndarray
    positives: CSR
    semi_positives: CSR | None = None
    query_latlon: np.ndarray | None = None
    reference_latlon: np.ndarray | None = None
    query_uids: list[str] | None = None
    reference_uids: list[str] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    normalised: bool = False  # True when the reader had to normalise (caller warns)
    handle: Any = None        # the open HDF5 file while descriptors are streamed

    @property
    def streamed(self) -> bool:
        return self.handle is not None

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _dataset(h5: Any, name: str, path: Path, required: bool = True) -> Any:
    obj = h5.get(name)
    if obj is None:
        if required:
            raise SchemaError(f"{path}:{name}: missing dataset; a features file needs "
                              f"{QUERY}, {REFERENCE} and /query/positives_indptr|indices")
        return None
    if not hasattr(obj, "dtype"):
        raise SchemaError(f"{path}:{name}: is a group, expected a dataset")
    return obj


def _descriptors(h5: Any, name: str, path: Path, normalise: bool,
                 load: bool) -> tuple[Any, bool]:
    """Validate one descriptor set block by block; return it loaded (float32 or float16),
    normalised if asked, or, when `load` is False, the open on-disk dataset itself."""
    ds = _dataset(h5, name, path)
    if ds.ndim != 2:
        raise SchemaError(f"{path}:{name}: shape {ds.shape}, expected (N, D) descriptors")
    if ds.dtype not in _NORM_TOL:
        raise SchemaError(f"{path}:{name}: dtype {ds.dtype}, expected float32 or float16")
    if ds.shape[0] == 0:
        role = "query" if name == QUERY else "reference"
        raise DataError(f"{path}:{name}: the {role} set is empty (0 rows); write at least one "
                        f"{role} descriptor")
    if ds.shape[1] == 0:
        raise SchemaError(f"{path}:{name}: descriptors have dimension 0")
    data = ds[...] if load else ds
    bad_norm = []
    step = _chunk(data)
    for s in range(0, data.shape[0], step):
        block = np.asarray(data[s:s + step], dtype=np.float32)
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = s + int(np.flatnonzero(~finite)[0])
            raise DataError(f"{path}:{name}: row {row} contains NaN or Inf; fix the model "
                            f"output (e.g. a diverged checkpoint) and write the file again")
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        if (norms == 0).any():
            row = s + int(np.flatnonzero(norms == 0)[0])
            raise DataError(f"{path}:{name}: row {row} is all zeros and cannot be "
                            f"L2-normalised; fix the model output")
        off = np.abs(norms - 1.0) > _NORM_TOL[ds.dtype]
        if off.any():
            bad_norm.append((s + int(np.flatnonzero(off)[0]), float(norms[off][0])))
    if not bad_norm:
        return data, False
    row, norm = bad_norm[0]
    if not normalise:
        raise DataError(f"{path}:{name}: descriptors are not L2-normalised (row {row} has norm "
                        f"{norm:.4g}); normalise them before writing, or pass --normalise")
    if not load:
        raise DataError(f"{path}:{name}: descriptors are not L2-normalised (row {row} has norm "
                        f"{norm:.4g}) and are streamed from disk, so --normalise cannot fix them "
                        f"in memory; write normalised descriptors or raise --memory")
    out = np.empty(data.shape, dtype=np.float32)
    for s in range(0, data.shape[0], step):
        block = data[s:s + step].astype(np.float32)
        out[s:s + step] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out, True


def _csr(h5: Any, stem: str, n_query: int, n_reference: int, path: Path,
         required: bool) -> CSR | None:
    iname, jname = f"/query/{stem}_indptr", f"/query/{stem}_indices"
    ip = _dataset(h5, iname, path, required)
    ix = _dataset(h5, jname, path, required)
    if ip is None and ix is None:
        return None
    if ip is None or ix is None:
        raise SchemaError(f"{path}:{iname if ip is None else jname}: missing; "
                          f"{iname} and {jname} go together")
    for ds, name in ((ip, iname), (ix, jname)):
        if ds.ndim != 1 or not np.issubdtype(ds.dtype, np.integer):
            raise SchemaError(f"{path}:{name}: expected a 1-D integer array, got "
                              f"{ds.dtype} {ds.shape}")
    indptr, indices = ip[...].astype(np.int64), ix[...].astype(np.int64)
    if len(indptr) != n_query + 1:
        raise SchemaError(f"{path}:{iname}: length {len(indptr)}, expected Nq+1 = {n_query + 1} "
                          f"({QUERY} has {n_query} rows)")
    if indptr[0] != 0 or (np.diff(indptr) < 0).any() or indptr[-1] != len(indices):
        raise SchemaError(f"{path}:{iname}: not a valid CSR index (must start at 0, never "
                          f"decrease and end at len({jname}) = {len(indices)})")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_reference):
        bad = int(indices[(indices < 0) | (indices >= n_reference)][0])
        raise DataError(f"{path}:{jname}: reference number {bad} is out of range "
                        f"[0, {n_reference}) ({REFERENCE} has {n_reference} rows)")
    return CSR(indptr, indices)


def _latlon(h5: Any, name: str, n: int, path: Path) -> np.ndarray | None:
    ds = _dataset(h5, name, path, required=False)
    if ds is None:
        return None
    values = ds[...].astype(np.float64)
    if values.shape != (n, 2):
        raise SchemaError(f"{path}:{name}: shape {values.shape}, expected ({n}, 2) lat/lon")
    if not np.isfinite(values).all() or (np.abs(values[:, 0]) > 90).any():
        raise DataError(f"{path}:{name}: latitudes/longitudes must be finite degrees with "
                        f"|lat| <= 90")
    return values


def _uids(h5: Any, name: str, n: int, path: Path) -> list[str] | None:
    ds = _dataset(h5, name, path, required=False)
    if ds is None:
        return None
    values = [_attr(v) for v in ds[...].tolist()]
    if len(values) != n:
        raise SchemaError(f"{path}:{name}: {len(values)} uids for {n} rows")
    return [str(v) for v in values]


def read_features(path: str | Path, *, normalise: bool = False,
                  stream: bool = False) -> Features:
    """Read and validate a features file; unnormalised descriptors raise unless `normalise`.

    stream=True keeps the descriptors on disk: `query`/`reference` are the open HDF5
    datasets, read block by block by the search (call `close()` when done).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; pass the features HDF5 written by your model "
                        f"(layout: `geobench eval --help` and the README's evaluation section)")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc}); re-write it with h5py") from None
    try:
        attrs = {k: _attr(v) for k, v in h5.attrs.items()}
        schema = attrs.get("schema")
        if schema is not None and not str(schema).startswith("geobench.features/"):
            raise SchemaError(f"{path}: schema attribute {schema!r}, expected {SCHEMA!r}")
        query, q_norm = _descriptors(h5, QUERY, path, normalise, load=not stream)
        reference, r_norm = _descriptors(h5, REFERENCE, path, normalise, load=not stream)
        if query.shape[1] != reference.shape[1]:
            raise SchemaError(f"{path}:{REFERENCE}: dimension D={reference.shape[1]} differs "
                              f"from {QUERY} D={query.shape[1]}; both sides must come from "
                              f"the same model head")
        nq, nr = query.shape[0], reference.shape[0]
        positives = _csr(h5, "positives", nq, nr, path, required=True)
        semi = _csr(h5, "semi_positives", nq, nr, path, required=False)
        feats = Features(path, query, reference, positives, semi,
                         _latlon(h5, "/query/latlon", nq, path),
                         _latlon(h5, "/reference/latlon", nr, path),
                         _uids(h5, "/query/uids", nq, path),
                         _uids(h5, "/reference/uids", nr, path), attrs, q_norm or r_norm)
    except BaseException:
        h5.close()
        raise
    if stream:
        feats.handle = h5
    else:
        h5.close()
    return feats


def descriptor_bytes(path: str | Path) -> int:
    """Bytes of the two descriptor sets as stored (to decide whether to stream them)."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            return sum(int(np.prod(h5[n].shape)) * h5[n].dtype.itemsize
                       for n in (QUERY, REFERENCE) if n in h5)
    except OSError:
        return 0  # read_features reports the unreadable file


def write_features(path: str | Path, query: np.ndarray, reference: np.ndarray,
                   positives: CSR, *, semi_positives: CSR | None = None,
                   query_latlon: np.ndarray | None = None,
                   reference_latlon: np.ndarray | None = None,
                   query_uids: Sequence[str] | None = None,
                   reference_uids: Sequence[str] | None = None,
                   attrs: Mapping[str, Any] | None = None, dtype: Any = None) -> Path:
    """Write a features file atomically (the training engine's embedding output).

    query/reference: arrays, or (N, D) row-sliceable sources copied block by block;
    dtype: storage type of the descriptors (float16 halves the file), default as given.
    """
    import h5py

    path = Path(path)
    size = np.dtype(dtype).itemsize if dtype is not None else None
    data = sum(int(np.prod(src.shape)) * (size or np.dtype(src.dtype).itemsize)
               for src in (query, reference))
    data += h5_bytes(positives.indptr, positives.indices, query_latlon, reference_latlon,
                     query_uids, reference_uids)
    if semi_positives is not None:
        data += h5_bytes(semi_positives.indptr, semi_positives.indices)
    with atomic_h5(path, data) as h5:
        h5.attrs["schema"] = SCHEMA
        for key, value in (attrs or {}).items():
            h5.attrs[key] = "" if value is None else value
        for name, src in ((QUERY, query), (REFERENCE, reference)):
            out = h5.create_dataset(name, shape=src.shape, dtype=np.dtype(dtype or src.dtype))
            step = _chunk(src)
            for s in range(0, src.shape[0], step):
                out[s:s + step] = np.asarray(src[s:s + step], dtype=out.dtype)
        for stem, csr in (("positives", positives), ("semi_positives", semi_positives)):
            if csr is not None:
                h5.create_dataset(f"/query/{stem}_indptr", data=csr.indptr.astype(np.int64))
                h5.create_dataset(f"/query/{stem}_indices", data=csr.indices.astype(np.int64))
        for name, values in (("/query/latlon", query_latlon),
                             ("/reference/latlon", reference_latlon)):
            if values is not None:
                h5.create_dataset(name, data=np.asarray(values, dtype=np.float64))
        for name, uids in (("/query/uids", query_uids), ("/reference/uids", reference_uids)):
            if uids is not None:
                h5.create_dataset(name, data=np.asarray([str(u) for u in uids], dtype=object),
                                  dtype=h5py.string_dtype())
    return path
