"""Ground-truth links as compressed sparse rows: reference numbers per query."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CSR:
    """Rows of reference numbers per query (compressed sparse rows)."""

    indptr: np.ndarray
    indices: np.ndarray

    @classmethod
    def from_lists(cls, rows: Sequence[Iterable[int]]) -> CSR:
        lists = [np.asarray(list(r), dtype=np.int64) for r in rows]
        indptr = np.zeros(len(lists) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(r) for r in lists])
        indices = np.concatenate(lists) if lists else np.zeros(0, np.int64)
        return cls(indptr, indices.astype(np.int64))

    @classmethod
    def from_pairs(cls, query: np.ndarray, reference: np.ndarray, n_query: int) -> CSR:
        query = np.asarray(query, dtype=np.int64)
        reference = np.asarray(reference, dtype=np.int64)
        order = np.lexsort((reference, query))
        counts = np.bincount(query, minlength=n_query)
        indptr = np.zeros(n_query + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(counts)
        return cls(indptr, reference[order])

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def row_ids(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), self.lengths)

    def row(self, i: int) -> np.ndarray:
        return self.indices[self.indptr[i]:self.indptr[i + 1]]

    def unique(self) -> CSR:
        """Rows sorted ascending with duplicates removed."""
        rows = self.row_ids()
        if len(rows) == 0:
            return CSR(self.indptr.astype(np.int64), self.indices.astype(np.int64))
        order = np.lexsort((self.indices, rows))
        rows, cols = rows[order], self.indices[order].astype(np.int64)
        keep = np.ones(len(rows), dtype=bool)
        keep[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
        return CSR.from_pairs(rows[keep], cols[keep], self.n_rows)
