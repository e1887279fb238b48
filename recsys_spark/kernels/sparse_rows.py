"""Sparse rows (CSR) as query vectors of the top-N kernel: each user's history as a row over items."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass
class SparseRows:
    """CSR rows: row r holds values[indptr[r]:indptr[r+1]] at columns indices[...]; values None: all 1."""
    indptr: np.ndarray  # (B + 1,) int64
    indices: np.ndarray  # (nnz,) int64 column of each entry
    values: Optional[np.ndarray] = None  # (nnz,) float32, or None for binary rows

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def __getitem__(self, rows) -> "SparseRows":
        """The sub-matrix of the given rows (an int array), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.indptr[rows + 1] - self.indptr[rows]
        indptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        at = np.repeat(self.indptr[rows] - indptr[:-1], lengths) + np.arange(indptr[-1])
        return SparseRows(indptr, self.indices[at], None if self.values is None else self.values[at])

    def norms(self) -> np.ndarray:
        """float64 L2 norm of each row."""
        if self.values is None:
            return np.sqrt(self.lengths.astype(np.float64))
        rows = np.repeat(np.arange(len(self)), self.lengths)
        return np.sqrt(np.bincount(rows, weights=self.values.astype(np.float64) ** 2, minlength=len(self)))

    def all_finite(self) -> bool:
        return self.values is None or bool(np.isfinite(self.values).all())
