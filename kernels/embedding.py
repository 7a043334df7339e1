"""Embedding tables: looked-up rows written into the input (forward), and the gradient rows of
repeated ids summed into one row per id (backward).

:func:`scatter_rows` writes looked-up rows into their steps of the sequence input (forward), one
compiled loop instead of NumPy's fancy-index assignment ``out[rows] = values``, whose general
indexing machinery costs more than the copy at the few short rows of an embedding.

A batch of N looked-up ids gives N gradient rows; an id that occurs several times must become one
row (the optimizers update each table row once). :func:`sum_rows_by_id` does it in one pass with a
slot per table row, for tables that are small next to the batch (up to ``DENSE_SLOTS_PER_ID`` slots
per id); ``minirnn.features`` sorts the ids instead for larger tables. Ids come out ascending and
each sum adds its rows in the order they appear, the same result as the sort-based path.
"""

import numpy as np

from ._jit import kernel_jit

DENSE_SLOTS_PER_ID = 16


@kernel_jit
def sum_rows_by_id(ids, values, table_rows):
    """ids [N] int64 in [0, table_rows), values [N, dim] -> (unique ids ascending [U], sums [U, dim])."""
    slot = np.full(table_rows, -1, dtype=np.int64)
    for n in range(ids.shape[0]):
        slot[ids[n]] = 0                           # mark the ids that occur
    count = 0
    for r in range(table_rows):
        if slot[r] == 0:
            slot[r] = count
            count += 1
    rows = np.empty(count, dtype=np.int64)
    for r in range(table_rows):
        if slot[r] >= 0:
            rows[slot[r]] = r
    sums = np.zeros((count, values.shape[1]), dtype=values.dtype)
    for n in range(ids.shape[0]):
        s = slot[ids[n]]
        for d in range(values.shape[1]):
            sums[s, d] += values[n, d]
    return rows, sums


@kernel_jit
def scatter_rows(values, rows, out, start):
    """out[rows[n], start:start + dim] = values[n] for each n; values [N, dim], rows [N] int64 in
    [0, R), out [R, width] C-contiguous with start + dim <= width."""
    for n in range(rows.shape[0]):
        r = rows[n]
        for d in range(values.shape[1]):
            out[r, start + d] = values[n, d]
