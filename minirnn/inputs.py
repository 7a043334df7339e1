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

import contextvars
import functools
import types
from collections import namedtuple
from itertools import chain

import numpy as np

SparseInput = namedtuple("SparseInput", ["indices", "values", "dense_shape"])
SparseInput.__doc__ = ("TF's SparseTensor as plain arrays: indices [N, 2] (row, step) or [N, 3] "
                       "(row, step, slot), values [N], dense_shape [2] or [3].")


def sparse_to_dense(what, sparse, fill=0, rank=None):
    """A SparseInput as a dense array of its dense_shape, missing entries ``fill`` ('' for strings
    in place of 0 or -1), as TF's ``sparse.to_dense``. ``rank``: the number of dimensions required.
    A malformed one is a ValueError naming ``what``."""
    indices, values = np.asarray(sparse.indices), np.asarray(sparse.values)
    try:
        shape = tuple(int(d) for d in np.asarray(sparse.dense_shape).ravel())
    except (TypeError, ValueError):
        shape = ()
    if not shape or (rank is not None and len(shape) != rank) or indices.shape != (len(values), len(shape)) or \
            (indices.size and (indices.dtype.kind not in "iu" or indices.min() < 0
                               or np.any(indices.max(axis=0) >= shape))):
        raise ValueError(f"{what}: a SparseInput needs a dense_shape of {rank or 'any'} dimensions, integer "
                         f"indices [N, {rank or 'rank'}] inside it and N values; got dense_shape {shape}, indices "
                         f"{indices.shape}, values {values.shape}")
    strings = values.dtype.kind in "USO"
    dense = np.full(shape, "" if strings else fill,
                    dtype=object if strings else np.result_type(values.dtype, np.asarray(fill).dtype))
    dense[tuple(indices.T)] = values
    return dense


def _is_padding(values):
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return values == -1
    if values.dtype.kind in "USO":
        return np.array([_is_pad(v) for v in values.ravel()], dtype=bool).reshape(values.shape)
    return np.zeros(values.shape, dtype=bool)


def _is_pad(value):
    """TF's ignore values of categorical inputs: '' and b'' for strings, -1 for integers."""
    if isinstance(value, (str, bytes)):
        return not value
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value == -1


def parse_sequence(key, raw, width=1, categorical=False, lengths=None, mask=None, fill=0.0, sparse_length="indices"):
    """One sequence feature of a batch -> (values [B, T, width], present [B, T, width], mask [B, T]).

    ``present`` marks real values (a categorical step may hold fewer than ``width`` ids); ``fill``
    pads numeric values. ``lengths`` / ``mask`` come from the batch's sequence_length /
    sequence_mask features, for padded arrays (and SparseInput read at its dense_shape).
    ``sparse_length``: a SparseInput's steps are TF2's (``'indices'``: each row's highest step
    index + 1) or TF1's (``'dense_shape'``: all its dense_shape steps, like a padded array).
    """
    if isinstance(raw, SparseInput):
        return _parse_sparse(key, raw, width, categorical, fill, sparse_length == "dense_shape", lengths, mask)
    if isinstance(raw, (list, tuple)):
        return _parse_ragged(key, raw, width, categorical, fill)
    if isinstance(raw, np.ndarray):
        return _parse_padded(key, raw, width, categorical, lengths, mask)
    raise TypeError(f"feature {key!r}: expected a list of sequences, a padded numpy array or a "
                    f"SparseInput, got {type(raw).__name__}")


def ragged_tokens(raw):
    """Fast path for a ragged categorical feature with one value per step: flatten the batch once.

    Returns (Tokens of the flat values, mask [B, T]) or None when ``raw`` is not a non-empty list of
    sequences of scalars (then :func:`parse_sequence` handles it, with its checks and messages).
    """
    if not isinstance(raw, (list, tuple)) or isinstance(raw, SparseInput) or not raw:
        return None                                # (SparseInput is a tuple too)
    if any(isinstance(seq, (str, bytes)) for seq in raw):
        return None                                # a str is one value, not a sequence of characters
    try:
        lengths = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))
    except TypeError:
        return None
    values = list(chain.from_iterable(raw))
    if not values or isinstance(values[0], (list, tuple, np.ndarray)):
        return None
    return Tokens(values), np.arange(int(lengths.max()))[None, :] < lengths[:, None]


class Tokens:
    """A flat list of tokens (str, bytes or integers; one per step of a ragged batch), encoded once
    for every column that reads it.

    ``encoded(key)`` gives the tokens' UTF-8 bytes as one buffer with spans (integers as their
    decimal strings, as TF hashes them) and the padding mask (TF's ignore values, which get no id:
    '' and b'' for strings, -1 for integers); ``fingerprints(key)`` their FarmHash Fingerprint64.
    ``key`` only names the feature in error messages.
    """

    def __init__(self, values):
        self.values = values
        self._encoded = self._fingerprints = None

    def check(self, key):
        """TypeError naming the feature unless every token is a str, bytes or (non-bool) integer."""
        for kind in set(map(type, self.values)):
            if not (issubclass(kind, (str, bytes, int, np.integer)) and not issubclass(kind, (bool, np.bool_))):
                bad = next(v for v in self.values if type(v) is kind)
                raise TypeError(f"feature {key!r}: expected strings or integers per step, got "
                                f"{kind.__name__} {bad!r}")

    def array(self, key):
        """The checked tokens as a NumPy array (integers, or strings when any token is one)."""
        self.check(key)
        return np.asarray(self.values)

    def encoded(self, key):
        """(buf uint8, starts, ends, padding): token i is buf[starts[i]:ends[i]]."""
        if self._encoded is None:
            from .kernels.farmhash import pack
            from .kernels.tokens import split_joined
            values, ok = self.values, False
            try:                                       # all str: join with NUL bytes, encode once
                joined = "\x00".join(values)
            except TypeError:
                joined = None
            if joined is not None and values:
                buf = np.frombuffer(_utf8(key, joined), dtype=np.uint8)
                starts, ends, ok = split_joined(buf, len(values))
                padding = starts == ends
            if not ok:                                 # other types, or a token holding a NUL
                self.check(key)
                strings = [v if isinstance(v, (str, bytes)) else str(int(v)) for v in values]
                for v in strings:
                    if isinstance(v, bytes) and not _is_utf8(v):
                        raise ValueError(f"feature {key!r}: {v!r} is not UTF-8 text")
                try:
                    buf, offsets = pack(strings)
                except UnicodeEncodeError as e:
                    raise _not_utf8(key, e) from None
                starts, ends = offsets[:-1], offsets[1:]
                padding = np.fromiter(map(_is_pad, values), dtype=bool, count=len(values))
            self._encoded = (buf, starts, ends, padding)
        return self._encoded

    def fingerprints(self, key):
        """FarmHash Fingerprint64 of each token's UTF-8 bytes: uint64 [N]."""
        if self._fingerprints is None:
            from .kernels.farmhash import fingerprint_spans
            buf, starts, ends, _ = self.encoded(key)
            self._fingerprints = fingerprint_spans(buf, starts, ends)
        return self._fingerprints


def _is_utf8(data):
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _utf8(key, text):
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _not_utf8(key, e) from None


def _not_utf8(key, error):
    return ValueError(f"feature {key!r}: a token cannot be encoded as UTF-8 ({error.reason}: "
                      f"{error.object[error.start:error.end]!r})")


def _check_categorical(key, arr):
    if np.asarray(arr).dtype.kind not in "iuUSO":
        raise TypeError(f"feature {key!r}: expected strings or integers, got dtype {np.asarray(arr).dtype}")


def _empty_values(shape, categorical, strings, fill):
    """Padding to fill in: '' (object array) or -1 for categorical values, ``fill`` for numbers."""
    if categorical:
        return np.full(shape, "", dtype=object) if strings else np.full(shape, -1, dtype=np.int64)
    return np.full(shape, fill, dtype=np.float64)


def _parse_ragged(key, raw, width, categorical, fill):
    B = len(raw)
    if B == 0:
        raise ValueError(f"feature {key!r}: empty batch")
    seqs = []
    for b, seq in enumerate(raw):
        try:
            arr = np.asarray(seq, dtype=object if categorical and _has_strings(seq) else None)
        except ValueError:                         # numpy refuses nested lists of unequal lengths
            raise ValueError(f"feature {key!r}, example {b}: its steps have different numbers of values; "
                             f"expected shape [steps{'' if width == 1 else f', {width}'}]") from None
        if arr.ndim == 0:
            raise ValueError(f"feature {key!r}, example {b}: expected a sequence, got a scalar {seq!r}")
        if not categorical and arr.dtype.kind not in "iufb":
            raise TypeError(f"feature {key!r}: expected numbers, got dtype {arr.dtype} (example {b})")
        if categorical and arr.size:
            _check_categorical(key, arr)
        if arr.ndim == 1:                          # one value per step, or k values per step flattened
            step = 1 if categorical else width
            if arr.size % step:
                raise ValueError(f"feature {key!r}, example {b}: {len(seq)} values do not split into steps of {width}")
            arr = arr.reshape(-1, step)
        if arr.ndim != 2 or (not categorical and arr.shape[1] != width):
            raise ValueError(f"feature {key!r}, example {b}: expected shape [steps{'' if width == 1 else f', {width}'}], "
                             f"got {arr.shape}")
        seqs.append(arr)
    T = max(s.shape[0] for s in seqs)
    k = max(s.shape[1] for s in seqs) if categorical else width
    if T == 0:
        raise ValueError(f"feature {key!r}: every sequence in the batch is empty")
    strings = any(s.size and s.dtype.kind in "USO" for s in seqs)
    values = _empty_values((B, T, k), categorical, strings, fill)
    present = np.zeros((B, T, k), dtype=bool)
    for b, s in enumerate(seqs):
        values[b, :s.shape[0], :s.shape[1]] = s
        present[b, :s.shape[0], :s.shape[1]] = True
    if categorical:
        present &= ~_is_padding(values)
    lengths = np.array([s.shape[0] for s in seqs])
    return values, present, np.arange(T)[None, :] < lengths[:, None]


def _has_strings(seq):
    """Whether a ragged example holds any str or bytes (it then stays an object array)."""
    try:
        flat = np.asarray(seq, dtype=object).ravel()
    except ValueError:
        return False
    return any(isinstance(v, (str, bytes)) for v in flat)


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
    if mask is None and lengths is None and categorical:   # TF: padding is -1 / '', length = last real + 1
        any_step = present.any(axis=2)
        last = np.where(any_step.any(axis=1), T - np.argmax(any_step[:, ::-1], axis=1), 0)
        step_mask = np.arange(T)[None, :] < last[:, None]
    else:
        step_mask = _given_steps(key, f"the padded array {raw.shape}", B, T, lengths, mask)
    present &= step_mask[:, :, None]
    return arr, present, step_mask


def _given_steps(key, what, B, T, lengths, mask):
    """The valid steps [B, T] of a feature padded to T steps: the batch's ``sequence_mask``, its
    ``sequence_length``, or all T steps."""
    if mask is not None:
        step_mask = mask
    elif lengths is not None:
        if lengths.shape == (B,) and np.any(lengths > T):
            b = int(np.argmax(lengths > T))
            raise ValueError(f"feature {key!r}: sequence length {lengths[b]} of example {b} is more than the "
                             f"{T} steps of {what}")
        step_mask = np.arange(T)[None, :] < lengths[:, None]
    else:
        step_mask = np.ones((B, T), dtype=bool)
    if step_mask.shape != (B, T):
        raise ValueError(f"feature {key!r}: the batch's sequence mask / lengths cover [examples, steps] = "
                         f"{list(step_mask.shape)}, {what} has [{B}, {T}]")
    return step_mask


def _parse_sparse(key, raw, width, categorical, fill, full_length=False, lengths=None, mask=None):
    indices = np.asarray(raw.indices)
    values = np.asarray(raw.values)
    dense_shape = np.asarray(raw.dense_shape)
    if dense_shape.ndim != 1 or dense_shape.dtype.kind not in "iu":
        raise ValueError(f"feature {key!r}: SparseInput dense_shape must be 2 or 3 integers, got {raw.dense_shape!r}")
    shape = tuple(int(d) for d in dense_shape)
    if indices.ndim != 2 or indices.shape[1] not in (2, 3) or len(shape) != indices.shape[1] or \
            (indices.size and indices.dtype.kind not in "iu"):
        raise ValueError(f"feature {key!r}: SparseInput indices must be integers [N, 2] or [N, 3] matching "
                         f"dense_shape, got indices {indices.dtype} {indices.shape} and dense_shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"feature {key!r}: empty batch")
    if values.size and categorical:                     # (an empty list of values has no dtype to check)
        _check_categorical(key, values)
    elif values.size and values.dtype.kind not in "iufb":
        raise TypeError(f"feature {key!r}: expected numbers, got dtype {values.dtype}")
    if values.shape != (indices.shape[0],):
        raise ValueError(f"feature {key!r}: SparseInput has {indices.shape[0]} indices but values of shape {values.shape}")
    if indices.size and (indices.min() < 0 or np.any(indices.max(axis=0) >= np.array(shape))):
        raise ValueError(f"feature {key!r}: SparseInput indices outside dense_shape {shape}")
    indices = indices.astype(np.int64)
    B = shape[0]
    rows, cols = indices[:, 0], indices[:, 1]
    if not categorical and width > 1 and indices.shape[1] == 2:   # TF flattens [T, k] numerics into T*k
        steps, slots, T = cols // width, cols % width, -(-shape[1] // width)
    else:
        steps, slots, T = cols, (indices[:, 2] if indices.shape[1] == 3 else np.zeros_like(cols)), shape[1]
    k = width if not categorical else (shape[2] if len(shape) == 3 else 1)
    if T == 0:
        raise ValueError(f"feature {key!r}: empty sequences (dense_shape {shape})")
    out = _empty_values((B, T, k), categorical, values.dtype.kind in "USO", fill)
    present = np.zeros((B, T, k), dtype=bool)
    out[rows, steps, slots] = values
    present[rows, steps, slots] = True
    if categorical:
        present &= ~_is_padding(out)
    if full_length:                                     # TF1: every step of dense_shape, as a padded array
        step_mask = _given_steps(key, f"the SparseInput's dense_shape {shape}", B, T, lengths, mask)
        present &= step_mask[:, :, None]
        return out, present, step_mask
    length = np.zeros(B, dtype=np.int64)
    np.maximum.at(length, rows, steps + 1)              # TF: highest step index + 1; gaps count
    return out, present, np.arange(T)[None, :] < length[:, None]


# ---------------------------------------------------------------------------------------------
# input functions
# ---------------------------------------------------------------------------------------------

def batches(input_fn, repeat=False, endless=None):
    """Iterate the (features, labels) batches of a TF-style ``input_fn``: a callable returning one
    ``(features, labels)`` tuple, a features dict alone, or an iterable/generator of them.

    A single batch is one batch, or with ``repeat`` every batch for ever (TF's ``train`` reads the
    same tensors at every step); ``endless``: an exception raised instead of repeating for ever
    (a training run with nothing to stop it)."""
    if not callable(input_fn):
        raise TypeError(f"input_fn must be callable, got {type(input_fn).__name__}")
    out = input_fn()
    single = out if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], dict) else \
        (out, None) if isinstance(out, dict) else None
    if single is not None:
        if repeat and endless is not None:
            raise endless
        yield single
        while repeat:
            yield single
        return
    try:
        iterator = iter(out)
    except TypeError:
        raise TypeError("input_fn must return (features, labels), a features dict, or an iterable of them; "
                        f"got {type(out).__name__}") from None
    for k, item in enumerate(iterator):
        if isinstance(item, dict):
            yield item, None
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], dict):
            yield item
        else:
            raise TypeError(f"input_fn batch {k}: expected (features dict, labels) or a features dict, "
                            f"got {type(item).__name__}")


def _num_examples(x, y):
    sizes = {key: len(v) for key, v in x.items()}
    if y is not None:
        sizes["<labels>"] = len(y)
    if len(set(sizes.values())) != 1:
        raise ValueError(f"every feature and the labels need the same number of examples, got {sizes}")
    n = next(iter(sizes.values()))
    if n == 0:
        raise ValueError("no examples: the arrays are empty")
    return n


def _take(value, idx):
    if isinstance(value, np.ndarray):
        return value[idx]
    return [value[i] for i in idx]


def numpy_input_fn(x, y=None, batch_size=128, num_epochs=1, shuffle=None, seed=None):
    """TF's ``numpy_input_fn``: batches of a dict of per-example arrays or lists (ragged sequences).

    x: {feature name: array [N, ...] or list of N per-example values}; y: array [N] / [N, d] or None.
    ``shuffle`` must be given (as TF required); ``num_epochs=None`` repeats for ever; ``seed`` fixes
    the order. The last batch of an epoch may be smaller.
    """
    if not isinstance(x, dict) or not x:
        raise TypeError("x must be a non-empty dict of feature name -> per-example values")
    if shuffle is None:
        raise ValueError("shuffle must be provided explicitly as a bool (as TF's numpy_input_fn requires)")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if num_epochs is not None and (not isinstance(num_epochs, (int, np.integer)) or num_epochs < 1):
        raise ValueError(f"num_epochs: expected None or a positive integer, got {num_epochs!r}")
    for key, value in x.items():
        if isinstance(value, SparseInput):
            raise TypeError(f"feature {key!r}: numpy_input_fn takes arrays or lists of sequences, not SparseInput")
    n = _num_examples(x, y)
    y = None if y is None else np.asarray(y)

    def epochs(rng):
        epoch = 0
        while num_epochs is None or epoch < num_epochs:
            order = rng.permutation(n) if shuffle else np.arange(n)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                yield {key: _take(v, idx) for key, v in x.items()}, (None if y is None else y[idx])
            epoch += 1

    def input_fn():                    # the seed is read when the estimator calls input_fn
        return epochs(np.random.default_rng(default_seed(seed)))

    return input_fn


_ESTIMATOR_SEED = contextvars.ContextVar("minirnn_estimator_seed", default=None)


def default_seed(seed=None):
    """``seed``, or when None the seed of the estimator calling the input_fn (its
    ``RunConfig.random_seed``, as TF's graph-level seed drove unseeded shuffles), or None."""
    return seed if seed is not None else _ESTIMATOR_SEED.get()


def with_estimator_seed(input_fn, seed):
    """``input_fn`` that, while it is called, gives ``seed`` as :func:`default_seed` to the input
    functions that have no seed of their own (numpy_input_fn, hdf5_input_fn and their shards)."""
    if seed is None:
        return input_fn

    @functools.wraps(input_fn)
    def seeded(*args, **kwargs):
        token = _ESTIMATOR_SEED.set(seed)
        try:
            out = input_fn(*args, **kwargs)
        finally:
            _ESTIMATOR_SEED.reset(token)
        return _seeded_generator(out, seed) if isinstance(out, types.GeneratorType) else out
    return seeded


def _seeded_generator(generator, seed):
    """``generator``'s items, each computed with ``seed`` as the estimator's seed (a generator
    input_fn may call numpy_input_fn's input_fn lazily, inside its body)."""
    try:
        while True:
            token = _ESTIMATOR_SEED.set(seed)
            try:
                item = next(generator)
            except StopIteration:
                return
            finally:
                _ESTIMATOR_SEED.reset(token)
            yield item
    finally:
        generator.close()


def _hdf5_read(dataset, rows):
    """Rows of an HDF5 dataset (a slice, or indices in any order), strings decoded."""
    import h5py
    if isinstance(rows, slice):
        data = dataset[rows]
    else:                                        # h5py reads increasing indices: read sorted, then reorder
        order = np.argsort(rows, kind="stable")
        data = np.empty_like(dataset[rows[order]])
        data[order] = dataset[rows[order]]
    if data.dtype.kind == "O" or h5py.check_string_dtype(dataset.dtype) is not None:
        data = np.array([v.decode("utf-8") if isinstance(v, bytes) else v for v in data.ravel()],
                        dtype=object).reshape(data.shape)
    return data


def hdf5_batches(f, feature_keys, label_key, length_key, n, batch_size, num_epochs, shuffle, rng, bounds=None):
    """The batches of :func:`hdf5_input_fn` from the open file ``f``: contiguous blocks (in a random
    order with ``shuffle``), shuffled inside the block. ``bounds(size) -> (a, b)`` keeps rows a..b of
    each (shuffled) batch, for data-parallel ranks; an empty share yields ``({}, None)``."""
    epoch = 0
    while num_epochs is None or epoch < num_epochs:
        starts = np.arange(0, n, batch_size)
        if shuffle:
            starts = rng.permutation(starts)
        for start in starts:
            size = min(start + batch_size, n) - start
            perm = rng.permutation(size) if shuffle else None
            a, b = (0, size) if bounds is None else bounds(size)
            if a == b:
                yield {}, None
                continue
            if perm is None:
                rows, after = slice(start + a, start + b), slice(None)
            elif (a, b) == (0, size):                # the whole block: one contiguous read, shuffled in memory
                rows, after = slice(start, start + size), perm
            else:
                rows, after = start + perm[a:b], slice(None)
            features = {k: _hdf5_read(f[k], rows)[after] for k in feature_keys}
            if length_key:
                features["sequence_length"] = _hdf5_read(f[length_key], rows)[after]
            yield features, (_hdf5_read(f[label_key], rows)[after] if label_key else None)
        epoch += 1


def hdf5_input_fn(path, feature_keys, label_key=None, batch_size=128, num_epochs=1, shuffle=False, seed=None,
                  length_key=None):
    """Stream batches from an HDF5 file larger than memory: one read per batch, never the whole file.

    Each of ``feature_keys`` (and ``label_key``) names a dataset with one row per example (padded
    sequences [N, T, ...], strings, numbers). ``length_key`` names an [N] dataset of sequence lengths,
    delivered as the ``sequence_length`` feature. With ``shuffle``, batches are read in a random order
    of contiguous blocks and shuffled inside the block (reads stay contiguous).
    """
    import h5py
    feature_keys = list(feature_keys)
    keys = feature_keys + ([label_key] if label_key else []) + ([length_key] if length_key else [])
    with h5py.File(path, "r") as f:
        missing = [k for k in keys if k not in f]
        if missing:
            raise KeyError(f"{path}: no dataset {missing[0]!r}; the file has {sorted(f.keys())}")
        sizes = {k: f[k].shape[0] for k in keys}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"{path}: datasets have different numbers of rows: {sizes}")
    n = next(iter(sizes.values()))
    if n == 0:
        raise ValueError(f"{path}: the datasets are empty")

    def read(rng):
        with h5py.File(path, "r") as f:
            yield from hdf5_batches(f, feature_keys, label_key, length_key, n, batch_size, num_epochs, shuffle, rng)

    def input_fn():                    # the seed is read when the estimator calls input_fn
        return read(np.random.default_rng(default_seed(seed)))

    return input_fn
