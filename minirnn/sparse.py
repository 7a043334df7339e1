"""Sparse gradients: :class:`SparseRows`, the gradient of an embedding table (the feature layers
make them, the optimizers and the MPI runner consume them). Also ``minirnn.optimizers.SparseRows``."""

import numpy as np

__all__ = ["SparseRows"]


class SparseRows:
    """A gradient that is zero except in some rows of a 2-D parameter (an embedding table):
    ``rows`` [n] distinct row indices, ``values`` [n, ...] their gradients, ``shape`` the parameter's.

    Optimizers update only these rows and their slots. For SGD and Adagrad that equals the dense
    update (a zero gradient changes nothing). For Momentum, Adam, RMSProp and Ftrl, untouched rows
    keep their values and slots (no decay of momentum or moments; Ftrl does not recompute them):
    TF's "lazy" sparse update (LazyAdam), not Keras's dense Adam, which moves every row each step.
    """

    def __init__(self, rows, values, shape):
        rows = np.asarray(rows)
        if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
            raise TypeError(f"SparseRows: rows must be a 1-D array of integers, got {rows.dtype} {rows.shape}")
        self.rows = rows.astype(np.int64)
        self.values = np.asarray(values)
        self.shape = tuple(shape)
        if self.rows.size and (self.rows.min() < 0 or self.rows.max() >= self.shape[0]):
            raise ValueError(f"SparseRows: rows must be in [0, {self.shape[0]}), got {self.rows.min()}..{self.rows.max()}")
        if self.values.shape != (len(self.rows),) + self.shape[1:]:
            raise ValueError(f"SparseRows: values {self.values.shape} do not fit {len(self.rows)} rows of {self.shape}")
        increasing = self.rows.size < 2 or bool(np.all(self.rows[1:] > self.rows[:-1]))   # the usual case: cheap
        if not increasing and len(np.unique(self.rows)) != len(self.rows):
            raise ValueError("SparseRows: rows must be distinct")

    @classmethod
    def _distinct(cls, rows, values, shape):
        """A SparseRows from arrays minirnn made itself (int64 rows, distinct and within ``shape``,
        values of matching shape), without the checks of the constructor."""
        self = cls.__new__(cls)
        self.rows, self.values, self.shape = rows, values, tuple(shape)
        return self

    def scaled(self, factor):
        return SparseRows._distinct(self.rows, self.values * factor, self.shape)

    def to_dense(self):
        dense = np.zeros(self.shape, dtype=self.values.dtype)
        dense[self.rows] = self.values
        return dense
