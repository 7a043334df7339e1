"""Turning raw per-feature inputs into padded arrays and a step mask, the way TF users and NumPy users
give them.

A sequence feature may be given, per batch, as

- a list of per-example sequences (ragged): arrays or lists of shape [T_i] or [T_i, k];
- a padded array [B, T] or [B, T, k]. Its valid steps come from the batch's ``sequence_length``
  ([B] ints) or ``sequence_mask`` ([B, T] bools) feature when present; otherwise, as TF, every step
  of a numeric feature is valid, and a categorical feature's padding is -1 (integers) or ''
  (strings): its length is the last non-padding step + 1 (TF densified only those away);
- :class:`SparseInput` (indices, values, dense_shape), mirroring TF's SparseTensor, with TF's length
  rule: each row's highest step index + 1 (gaps inside a row count as steps).

``parse_sequence`` returns the values padded to [B, T, k] plus a [B, T] mask of valid steps.
"""

from collections import namedtuple

import numpy as np

SparseInput = namedtuple("SparseInput", ["indices", "values", "dense_shape"])
SparseInput.__doc__ = ("TF's SparseTensor as plain arrays: indices [N, 2] (row, step) or [N, 3] "
                       "(row, step, slot), values [N], dense_shape [2] or [3].")


def _is_padding(values):
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return values == -1
    if values.dtype.kind in "USO":
        return np.array([v in ("", b"") for v in values.ravel()], dtype=bool).reshape(values.shape)
    return np.zeros(values.shape, dtype=bool)


def parse_sequence(key, raw, width=1, categorical=False, lengths=None, mask=None, fill=0.0):
    """One sequence feature of a batch -> (values [B, T, width], present [B, T, width], mask [B, T]).

    ``present`` marks real values (a categorical step may hold fewer than ``width`` ids); ``fill``
    pads numeric values. ``lengths`` / ``mask`` come from the batch's sequence_length /
    sequence_mask features, for padded arrays only.
    """
    if isinstance(raw, SparseInput):
        return _parse_sparse(key, raw, width, categorical, fill)
    if isinstance(raw, (list, tuple)):
        return _parse_ragged(key, raw, width, categorical, fill)
    if isinstance(raw, np.ndarray):
        return _parse_padded(key, raw, width, categorical, lengths, mask)
    raise TypeError(f"feature {key!r}: expected a list of sequences, a padded numpy array or a "
                    f"SparseInput, got {type(raw).__name__}")


def _check_categorical(key, arr):
    if np.asarray(arr).dtype.kind not in "iuUSO":
        raise TypeError(f"feature {key!r}: expected strings or integers, got dtype {np.asarray(arr).dtype}")


def _empty_values(shape, categorical, sample, fill):
    if categorical:
        dtype = np.asarray(sample).dtype if sample is not None and np.asarray(sample).size else np.int64
        return np.full(shape, "" if dtype.kind in "USO" else -1, dtype=object if dtype.kind in "USO" else np.int64)
    return np.full(shape, fill, dtype=np.float64)


def _parse_ragged(key, raw, width, categorical, fill):
    B = len(raw)
    if B == 0:
        raise ValueError(f"feature {key!r}: empty batch")
    seqs = []
    for b, seq in enumerate(raw):
        arr = np.asarray(seq, dtype=object if categorical and _has_strings(seq) else None)
        if arr.ndim == 0:
            raise ValueError(f"feature {key!r}, example {b}: expected a sequence, got a scalar {seq!r}")
        if not categorical and arr.dtype.kind not in "iufb":
            raise TypeError(f"feature {key!r}: expected numbers, got dtype {arr.dtype} (example {b})")
        if categorical and arr.size:
            _check_categorical(key, arr)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1) if width == 1 or categorical else arr.reshape(-1, width) if arr.size % width == 0 else None
            if arr is None:
                raise ValueError(f"feature {key!r}, example {b}: {len(seq)} values do not split into steps of {width}")
        if arr.ndim != 2 or (not categorical and arr.shape[1] != width):
            raise ValueError(f"feature {key!r}, example {b}: expected shape [steps{'' if width == 1 else f', {width}'}], "
                             f"got {arr.shape}")
        seqs.append(arr)
    T = max(s.shape[0] for s in seqs)
    k = max(s.shape[1] for s in seqs) if categorical else width
    if T == 0:
        raise ValueError(f"feature {key!r}: every sequence in the batch is empty")
    sample = next((s for s in seqs if s.size), None)
    values = _empty_values((B, T, k), categorical, sample, fill)
    present = np.zeros((B, T, k), dtype=bool)
    for b, s in enumerate(seqs):
        values[b, :s.shape[0], :s.shape[1]] = s
        present[b, :s.shape[0], :s.shape[1]] = True
    if categorical:
        present &= ~_is_padding(values)
    lengths = np.array([s.shape[0] for s in seqs])
    return values, present, np.arange(T)[None, :] < lengths[:, None]


def _has_strings(seq):
    flat = np.asarray(seq, dtype=object).ravel()
    return flat.size > 0 and isinstance(flat[0], (str, bytes))


def _parse_padded(key, raw, width, categorical, lengths, mask):
    arr = raw
    if arr.ndim == 2:
        arr = arr[:, :, None] if (categorical or width == 1) else None
        if arr is None:
            raise ValueError(f"feature {key!r}: expected [batch, time, {width}] for a numeric column of width {width}, "
                             f"got {raw.shape}")
    if arr.ndim != 3 or (not categorical and arr.shape[2] != width):
        raise ValueError(f"feature {key!r}: expected a padded array [batch, time{'' if width == 1 else f', {width}'}], "
                         f"got shape {raw.shape}")
    B, T, _ = arr.shape
    if B == 0 or T == 0:
        raise ValueError(f"feature {key!r}: empty batch or sequence (shape {raw.shape})")
    if categorical:
        _check_categorical(key, arr)
    elif arr.dtype.kind not in "iufb":
        raise TypeError(f"feature {key!r}: expected numbers, got dtype {arr.dtype}")
    present = np.ones(arr.shape, dtype=bool)
    if categorical:
        present &= ~_is_padding(arr)
    if mask is not None:
        step_mask = mask
    elif lengths is not None:
        step_mask = np.arange(T)[None, :] < lengths[:, None]
    elif categorical:                                   # TF: padding is -1 / '', length = last real + 1
        any_step = present.any(axis=2)
        last = np.where(any_step.any(axis=1), T - np.argmax(any_step[:, ::-1], axis=1), 0)
        step_mask = np.arange(T)[None, :] < last[:, None]
    else:
        step_mask = np.ones((B, T), dtype=bool)
    if step_mask.shape != (B, T):
        raise ValueError(f"feature {key!r}: the sequence mask/lengths cover {step_mask.shape}, the feature is "
                         f"[{B}, {T}, ...]")
    present &= step_mask[:, :, None]
    return arr, present, step_mask


def _parse_sparse(key, raw, width, categorical, fill):
    indices = np.asarray(raw.indices)
    values = np.asarray(raw.values)
    shape = tuple(int(d) for d in np.asarray(raw.dense_shape))
    if indices.ndim != 2 or indices.shape[1] not in (2, 3) or len(shape) != indices.shape[1]:
        raise ValueError(f"feature {key!r}: SparseInput indices must be [N, 2] or [N, 3] matching dense_shape, "
                         f"got indices {indices.shape} and dense_shape {shape}")
    if categorical:
        _check_categorical(key, values)
    elif values.dtype.kind not in "iufb":
        raise TypeError(f"feature {key!r}: expected numbers, got dtype {values.dtype}")
    if values.shape != (indices.shape[0],):
        raise ValueError(f"feature {key!r}: SparseInput has {indices.shape[0]} indices but values of shape {values.shape}")
    if indices.size and (indices.min() < 0 or np.any(indices.max(axis=0) >= np.array(shape))):
        raise ValueError(f"feature {key!r}: SparseInput indices outside dense_shape {shape}")
    B = shape[0]
    if B == 0:
        raise ValueError(f"feature {key!r}: empty batch")
    rows, cols = indices[:, 0], indices[:, 1]
    if not categorical and width > 1 and indices.shape[1] == 2:   # TF flattens [T, k] numerics into T*k
        steps, slots, T = cols // width, cols % width, -(-shape[1] // width)
    else:
        steps, slots, T = cols, (indices[:, 2] if indices.shape[1] == 3 else np.zeros_like(cols)), shape[1]
    k = width if not categorical else (shape[2] if len(shape) == 3 else 1)
    if T == 0:
        raise ValueError(f"feature {key!r}: empty sequences (dense_shape {shape})")
    out = _empty_values((B, T, k), categorical, values, fill)
    present = np.zeros((B, T, k), dtype=bool)
    out[rows, steps, slots] = values
    present[rows, steps, slots] = True
    if categorical:
        present &= ~_is_padding(out)
    length = np.zeros(B, dtype=np.int64)
    np.maximum.at(length, rows, steps + 1)              # TF: highest step index + 1; gaps count
    return out, present, np.arange(T)[None, :] < length[:, None]
