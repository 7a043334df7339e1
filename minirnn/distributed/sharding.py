"""What one rank reads: its contiguous part of each global batch (:func:`split_batch`), the
``input_fn(input_context)`` protocol (:class:`InputContext`) and input functions that read only this
rank's rows (:func:`shard_input_fn`, :func:`shard_hdf5_input_fn`)."""

import zlib

import numpy as np

from ..inputs import SparseInput, _num_examples, _take, default_seed

__all__ = ["InputContext", "split_batch", "shard_input_fn", "shard_hdf5_input_fn", "Batch", "takes_input_context",
           "fingerprint", "bounds"]


class InputContext:
    """What an ``input_fn(input_context)`` is told (TF's ``tf.distribute.InputContext``).

    ``num_input_pipelines`` (N, the number of ranks), ``input_pipeline_id`` (this rank),
    ``num_replicas_in_sync`` (N), and ``seed``: the same random integer on every rank, drawn afresh
    for each train/evaluate/predict call (for shuffles that must agree between ranks).
    """

    def __init__(self, num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=None, seed=None):
        if not 0 <= input_pipeline_id < num_input_pipelines:
            raise ValueError(f"input_pipeline_id {input_pipeline_id} is not in [0, {num_input_pipelines})")
        self.num_input_pipelines, self.input_pipeline_id = int(num_input_pipelines), int(input_pipeline_id)
        self.num_replicas_in_sync = int(num_replicas_in_sync or num_input_pipelines)
        self.seed = seed

    def get_per_replica_batch_size(self, global_batch_size):
        """``global_batch_size / num_replicas_in_sync``; a ValueError unless it divides evenly (TF's rule)."""
        if global_batch_size % self.num_replicas_in_sync:
            raise ValueError(f"The `global_batch_size` {global_batch_size} is not divisible by "
                             f"`num_replicas_in_sync` {self.num_replicas_in_sync}")
        return global_batch_size // self.num_replicas_in_sync

    def bounds(self, n):
        """This rank's contiguous rows [start, stop) of n (the first n % N ranks get one more)."""
        return bounds(n, self.input_pipeline_id, self.num_input_pipelines)

    def __repr__(self):
        return (f"InputContext(num_input_pipelines={self.num_input_pipelines}, "
                f"input_pipeline_id={self.input_pipeline_id}, num_replicas_in_sync={self.num_replicas_in_sync})")


def bounds(n, rank, size):
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _example_count(key, value):
    if isinstance(value, SparseInput):
        return int(np.asarray(value.dense_shape)[0])
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            raise ValueError(f"feature {key!r}: a scalar cannot be split between ranks; give one value per example")
        return value.shape[0]
    if isinstance(value, (list, tuple)):
        return len(value)
    if np.isscalar(value):
        raise ValueError(f"feature {key!r}: a scalar cannot be split between ranks; give one value per example")
    raise TypeError(f"feature {key!r}: {type(value).__name__} cannot be split between ranks; give an array, a list "
                    "of per-example values or a SparseInput, or an input_fn(input_context) that reads its own share")


def _slice(value, start, stop):
    if isinstance(value, SparseInput):
        indices, values = np.asarray(value.indices), np.asarray(value.values)
        keep = (indices[:, 0] >= start) & (indices[:, 0] < stop) if indices.size else np.zeros(0, bool)
        part = indices[keep].copy()
        if part.size:
            part[:, 0] -= start
        shape = np.array(value.dense_shape).copy()
        shape[0] = stop - start
        return SparseInput(part, values[keep], shape)
    if isinstance(value, np.ndarray):
        return value[start:stop]
    return list(value[start:stop])


def split_batch(features, labels, rank, size):
    """Rank ``rank``'s contiguous part of a global batch: (features, labels, global batch size).

    Every feature (arrays, lists of per-example values, SparseInput) and the labels (an array, a list
    or a one-entry dict) must have the same number of examples."""
    if not isinstance(features, dict) or not features:
        raise TypeError(f"a batch to split between ranks needs a non-empty features dict, got {type(features).__name__}")
    sizes = {key: _example_count(key, value) for key, value in features.items()}
    label_values = labels
    if isinstance(labels, dict):
        if len(labels) != 1:
            raise ValueError(f"labels: a dict of labels must have one entry, got keys {sorted(labels)}")
        label_values = next(iter(labels.values()))
    if label_values is not None:
        sizes["<labels>"] = _example_count("<labels>", label_values if not np.isscalar(label_values)
                                           else np.asarray(label_values))
    if len(set(sizes.values())) != 1:
        raise ValueError(f"a batch split between ranks needs every feature and the labels to have the same number "
                         f"of examples, got {sizes}")
    n = next(iter(sizes.values()))
    start, stop = bounds(n, rank, size)
    part = {key: _slice(value, start, stop) for key, value in features.items()}
    if labels is None:
        part_labels = None
    elif isinstance(labels, dict):
        part_labels = {k: _slice(v, start, stop) for k, v in labels.items()}
    else:
        part_labels = _slice(labels, start, stop)
    return part, part_labels, n


def fingerprint(n, labels):
    """A 20-bit checksum of a global batch (its size and labels): equal on ranks reading the same."""
    crc = zlib.crc32(np.int64(n).tobytes())
    try:
        values = next(iter(labels.values())) if isinstance(labels, dict) else labels
        if values is not None:
            array = np.asarray(values)
            if array.dtype.kind in "biuf":
                crc = zlib.crc32(np.ascontiguousarray(array).tobytes(), crc)
            else:
                for row in values:
                    crc = zlib.crc32(np.ascontiguousarray(np.asarray(row, dtype=np.float64)).tobytes(), crc)
    except (TypeError, ValueError):
        pass                                  # strings and the like: the size alone
    return crc & 0xFFFFF


class Batch:
    """One rank's share of one step: DATA (features, labels), EMPTY (no example here), EXHAUSTED
    (this rank's input has ended) or FAILED (reading the input raised ``error``)."""

    DATA, EMPTY, EXHAUSTED, FAILED = "data", "empty", "exhausted", "failed"
    __slots__ = ("kind", "features", "labels", "fingerprint", "error")

    def __init__(self, kind, features=None, labels=None, fingerprint=0, error=None):
        self.kind, self.features, self.labels, self.fingerprint, self.error = kind, features, labels, fingerprint, error


def takes_input_context(input_fn):
    try:
        import inspect
        return "input_context" in inspect.signature(input_fn).parameters
    except (TypeError, ValueError):
        return False


def shard_input_fn(x, y=None, batch_size=128, num_epochs=1, shuffle=None, seed=None):
    """``numpy_input_fn``'s global batches, each rank reading only its rows.

    Returns ``input_fn(input_context=None)``: without a context (one process) it is
    ``numpy_input_fn(x, y, ...)``; with one, it yields rank r's contiguous part of each of the same
    global batches (``{}`` where a short last batch leaves it none), so N ranks take the steps one
    process takes. ``batch_size`` is the global batch size. A shuffle without ``seed`` uses the
    context's seed, the same on every rank.
    """
    from ..inputs import numpy_input_fn
    single = numpy_input_fn(x, y, batch_size=batch_size, num_epochs=num_epochs, shuffle=shuffle, seed=seed)
    n = _num_examples(x, y)
    y = None if y is None else np.asarray(y)

    def input_fn(input_context=None):   # the seed is read when the estimator calls input_fn
        if input_context is None:
            return single()
        return shares(input_context, np.random.default_rng(_seed(seed, input_context)))

    def shares(input_context, rng):
        epoch = 0
        while num_epochs is None or epoch < num_epochs:
            order = rng.permutation(n) if shuffle else np.arange(n)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                a, b = input_context.bounds(len(idx))
                if a == b:
                    yield {}, None
                    continue
                part = idx[a:b]
                yield {key: _take(v, part) for key, v in x.items()}, (None if y is None else y[part])
            epoch += 1

    return input_fn


def _seed(seed, input_context):
    """A shuffle's seed: its own, else the estimator's (RunConfig.random_seed), else the context's
    (drawn on rank 0): the same on every rank."""
    return default_seed(seed) if default_seed(seed) is not None else input_context.seed


def shard_hdf5_input_fn(path, feature_keys, label_key=None, batch_size=128, num_epochs=1, shuffle=False, seed=None,
                        length_key=None):
    """``hdf5_input_fn``'s global batches (same block order and in-block shuffle), each rank
    reading only its rows from the file: ``input_fn(input_context=None)``, as :func:`shard_input_fn`."""
    import h5py

    from ..inputs import hdf5_batches, hdf5_input_fn
    single = hdf5_input_fn(path, feature_keys, label_key, batch_size, num_epochs, shuffle, seed, length_key)
    feature_keys = list(feature_keys)
    with h5py.File(path, "r") as f:
        n = f[feature_keys[0]].shape[0]

    def input_fn(input_context=None):   # the seed is read when the estimator calls input_fn
        if input_context is None:
            return single()
        return read(input_context, np.random.default_rng(_seed(seed, input_context)))

    def read(input_context, rng):
        with h5py.File(path, "r") as f:
            yield from hdf5_batches(f, feature_keys, label_key, length_key, n, batch_size, num_epochs, shuffle, rng,
                                    bounds=input_context.bounds)

    return input_fn
