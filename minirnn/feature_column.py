"""Feature columns: TF's names and arguments, for sequence inputs and context (per-example) inputs.

Sequence columns (one value, vector or id per time step)::

    sequence_numeric_column(key, shape=(1,), default_value=0., dtype='float32', normalizer_fn=None,
                            normalizer=None)
    sequence_categorical_column_with_identity(key, num_buckets, default_value=None)
    sequence_categorical_column_with_hash_bucket(key, hash_bucket_size, dtype=str)
    sequence_categorical_column_with_vocabulary_list(key, vocabulary_list, dtype=None,
                                                     default_value=-1, num_oov_buckets=0)
    sequence_categorical_column_with_vocabulary_file(key, vocabulary_file, vocabulary_size=None,
                                                     num_oov_buckets=0, default_value=None, dtype=str)

Context columns (one value per example, tiled over time by the model)::

    numeric_column, categorical_column_with_identity / _hash_bucket / _vocabulary_list /
    _vocabulary_file, bucketized_column(source, boundaries),
    weighted_categorical_column(categorical, weight_feature_key)

Categorical columns become dense through ``embedding_column(categorical, dimension, combiner='mean',
initializer=None, max_norm=None, trainable=True)`` or ``indicator_column(categorical)`` (multi-hot
counts). Ids follow TF exactly: hash buckets are FarmHash Fingerprint64 of the UTF-8 bytes modulo
the bucket count (integers hashed as decimal strings); vocabulary out-of-vocabulary values go to
``vocabulary_size + Fingerprint64 % num_oov_buckets``, or to ``default_value``; an id of -1 is
dropped (an embedding gives zeros there, an indicator a zero row), but the step still counts.

Numeric columns take a ``normalizer``: a :class:`Normalization` (Keras's), whose per-feature mean and
variance ``adapt`` learns from the training data; raw-scale inputs (a heart rate of 60-120, a
pressure near 1013) need it to train well.

Where TF raised cryptic errors late, these raise at once, naming the feature: an identity id out of
range with no default, a value of the wrong type, NaN in a numeric feature, sequence features of
different lengths in one example. See :mod:`minirnn.inputs` for the accepted input forms.
"""

import math
import os

import numpy as np

from .inputs import Tokens, _is_padding

__all__ = ["sequence_numeric_column", "sequence_categorical_column_with_identity",
           "sequence_categorical_column_with_hash_bucket", "sequence_categorical_column_with_vocabulary_list",
           "sequence_categorical_column_with_vocabulary_file", "numeric_column",
           "categorical_column_with_identity", "categorical_column_with_hash_bucket",
           "categorical_column_with_vocabulary_list", "categorical_column_with_vocabulary_file",
           "bucketized_column", "weighted_categorical_column", "embedding_column", "indicator_column",
           "Normalization"]


def _check_key(key):
    if not isinstance(key, str) or not key:
        raise ValueError(f"key: expected a non-empty string (the feature name), got {key!r}")
    return key


def _positive_int(name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------------
# categorical columns: raw values -> int64 ids (-1 = dropped)
# ---------------------------------------------------------------------------------------------

class _Column:
    """What every column shares: a repr from its ``spec()``."""

    def __repr__(self):
        fields = {k: v for k, v in self.spec().items() if k not in ("type", "sequence")}
        inner = ", ".join(f"{k}={_column_repr(v)}" for k, v in fields.items())
        return f"{type(self).__name__}({inner}{', sequence=True' if getattr(self, 'sequence', False) else ''})"


def _column_repr(value):
    if isinstance(value, dict) and "type" in value:          # a nested column's spec
        fields = ", ".join(f"{k}={_column_repr(v)}" for k, v in value.items() if k not in ("type", "sequence"))
        return f"{value['type']}({fields})"
    return repr(value)


class CategoricalColumn(_Column):
    """Base of the id-producing columns. ``ids(values)`` maps an array of raw values to int64 ids;
    -1 means dropped. ``token_ids(tokens)`` does the same for a flat :class:`~minirnn.inputs.Tokens`
    (the ragged fast path), where padding ('' and b'', or the integer -1) gets -1."""

    sequence = False
    num_buckets = 0

    @property
    def name(self):
        return self.key

    def ids(self, values):
        raise NotImplementedError

    def token_ids(self, tokens):
        values = tokens.array(self.key)
        ids = np.full(len(values), -1, dtype=np.int64)
        keep = ~_is_padding(values)
        if keep.any():
            ids[keep] = self.ids(values[keep])
        return ids

    def spec(self):
        """A JSON-able description (what a checkpoint or export stores)."""
        raise NotImplementedError


def _token_text(key, value):
    """One categorical value as str: integers as decimal strings (as TF hashes them), bytes as UTF-8."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"feature {key!r}: {value!r} is not UTF-8 text") from None
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(int(value))
    raise TypeError(f"feature {key!r}: expected strings or integers, got {type(value).__name__} {value!r}")


def _as_strings(key, values):
    """Categorical values -> an array of str of the same shape (object arrays stay object arrays:
    NumPy's fixed-width str would drop trailing NUL characters)."""
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return values.astype(str)                    # TF hashes integers as their decimal strings
    if values.dtype.kind == "U":
        return values
    if values.dtype.kind in "SO":
        out = np.empty(values.size, dtype=object)
        out[:] = [_token_text(key, v) for v in values.ravel()]
        return out.reshape(values.shape)
    raise TypeError(f"feature {key!r}: expected strings or integers, got dtype {values.dtype}")


class IdentityColumn(CategoricalColumn):
    def __init__(self, key, num_buckets, default_value=None, sequence=False):
        self.key, self.num_buckets, self.sequence = _check_key(key), _positive_int("num_buckets", num_buckets), sequence
        if default_value is not None and not 0 <= default_value < num_buckets:
            raise ValueError(f"default_value {default_value} not in range [0, {num_buckets})")
        self.default_value = default_value

    def ids(self, values):
        values = np.asarray(values)
        if values.dtype.kind not in "iu":
            raise TypeError(f"feature {self.key!r}: identity ids must be integers, got dtype {values.dtype}")
        ids = values.astype(np.int64)
        if ids.size == 0 or (ids.min() >= 0 and ids.max() < self.num_buckets):   # the usual case: cheap
            return ids
        bad = (ids < 0) | (ids >= self.num_buckets)
        if np.any(bad):
            if self.default_value is None:
                raise ValueError(f"feature {self.key!r}: id {ids[bad][0]} is outside [0, {self.num_buckets}) "
                                 "and the column has no default_value")
            ids = np.where(bad, self.default_value, ids)
        return ids

    def spec(self):
        return {"type": "identity", "key": self.key, "num_buckets": self.num_buckets,
                "default_value": self.default_value, "sequence": self.sequence}


class HashBucketColumn(CategoricalColumn):
    def __init__(self, key, hash_bucket_size, dtype=str, sequence=False):
        self.key, self.sequence = _check_key(key), sequence
        if not isinstance(hash_bucket_size, (int, np.integer)) or isinstance(hash_bucket_size, bool) or \
                hash_bucket_size < 1:
            raise ValueError(f"hash_bucket_size must be at least 1. hash_bucket_size: {hash_bucket_size}")
        self.num_buckets = self.hash_bucket_size = int(hash_bucket_size)
        self.dtype = dtype

    def ids(self, values):
        from .kernels.farmhash import fingerprint64
        if isinstance(values, list):
            return self.token_ids(Tokens(values))
        strings = _as_strings(self.key, values)
        return (fingerprint64(strings.ravel()) % np.uint64(self.num_buckets)).astype(np.int64).reshape(strings.shape)

    def token_ids(self, tokens):
        from .kernels.tokens import hash_bucket_ids
        padding = tokens.encoded(self.key)[3]
        return hash_bucket_ids(tokens.fingerprints(self.key), padding, self.num_buckets)

    def spec(self):
        return {"type": "hash_bucket", "key": self.key, "hash_bucket_size": self.num_buckets,
                "sequence": self.sequence}


class VocabularyColumn(CategoricalColumn):
    def __init__(self, key, vocabulary, default_value=-1, num_oov_buckets=0, sequence=False, file=None):
        self.key, self.sequence, self.file = _check_key(key), sequence, file
        vocabulary = list(vocabulary)
        if not vocabulary:
            raise ValueError(f"feature {key!r}: the vocabulary is empty")
        if len(set(vocabulary)) != len(vocabulary):
            dup = next(v for v in vocabulary if vocabulary.count(v) > 1)
            raise ValueError(f"feature {key!r}: duplicate key in vocabulary: {dup!r}")
        if num_oov_buckets < 0:
            raise ValueError(f"num_oov_buckets: expected >= 0, got {num_oov_buckets}")
        if num_oov_buckets and default_value not in (None, -1):
            raise ValueError("Can't specify both default_value and num_oov_buckets.")
        self.vocabulary = vocabulary
        self.num_oov_buckets = int(num_oov_buckets)
        self.default_value = -1 if default_value is None else int(default_value)
        self.num_buckets = len(vocabulary) + self.num_oov_buckets
        self._numeric = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vocabulary)
        self._lookup = {v: i for i, v in enumerate(vocabulary)}

    def ids(self, values):
        if isinstance(values, list) and not self._numeric:
            return self.token_ids(Tokens(values))
        values = np.asarray(values)
        if self._numeric:
            if values.dtype.kind not in "iu":
                raise TypeError(f"feature {self.key!r}: the vocabulary holds integers, got dtype {values.dtype}")
            keys = values
        else:
            keys = _as_strings(self.key, values)
        uniq, inverse = np.unique(keys.ravel(), return_inverse=True)
        found = np.array([self._lookup.get(u.item() if hasattr(u, "item") else u, -1) for u in uniq], dtype=np.int64)
        missing = found < 0
        if self.num_oov_buckets and np.any(missing):
            from .kernels.farmhash import fingerprint64
            oov = fingerprint64(uniq[missing]) % np.uint64(self.num_oov_buckets)
            found[missing] = len(self.vocabulary) + oov.astype(np.int64)
        elif np.any(missing):
            found[missing] = self.default_value
        return found[inverse].reshape(keys.shape)

    def token_ids(self, tokens):
        if self._numeric:
            return super().token_ids(tokens)
        from .kernels.tokens import vocabulary_ids
        buf, starts, ends, padding = tokens.encoded(self.key)
        table, keys = self._table()
        return vocabulary_ids(buf, starts, ends, tokens.fingerprints(self.key), padding, table, keys,
                              len(self.vocabulary), self.num_oov_buckets, self.default_value)

    def _table(self):
        """(table, keys): the vocabulary's string entries in a Numba hash table (kernels/tokens.py),
        built on first use."""
        if "_token_table" not in self.__dict__:
            from .kernels.farmhash import pack
            from .kernels.farmhash import fingerprint_spans
            from .kernels.tokens import build_table
            # tokens are compared as strings (integers as decimal strings), so only str entries can match
            index = np.array([i for i, v in enumerate(self.vocabulary) if isinstance(v, str)], dtype=np.int64)
            keys, offsets = pack([self.vocabulary[i] for i in index])
            starts, ends = offsets[:-1], offsets[1:]
            self._token_table = (build_table(keys, starts, ends, fingerprint_spans(keys, starts, ends), index), keys)
        return self._token_table

    def spec(self):
        return {"type": "vocabulary", "key": self.key, "vocabulary": self.vocabulary, "file": self.file,
                "default_value": self.default_value, "num_oov_buckets": self.num_oov_buckets,
                "sequence": self.sequence}


def _read_vocabulary(path, vocabulary_size):
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise ValueError(f"vocabulary_file: {path!r} is not a file")
    with open(path, encoding="utf-8") as f:
        words = [line.rstrip("\r\n") for line in f]
    if vocabulary_size is not None:
        if vocabulary_size < 1 or vocabulary_size > len(words):
            raise ValueError(f"vocabulary_size: {vocabulary_size} but {path!r} has {len(words)} lines")
        words = words[:vocabulary_size]
    return words


def sequence_categorical_column_with_identity(key, num_buckets, default_value=None):
    """Integer ids in [0, num_buckets) per step; out-of-range ids become ``default_value`` (or raise)."""
    return IdentityColumn(key, num_buckets, default_value, sequence=True)


def sequence_categorical_column_with_hash_bucket(key, hash_bucket_size, dtype=str):
    """Strings or integers per step, hashed into ``hash_bucket_size`` buckets (TF's Fingerprint64)."""
    return HashBucketColumn(key, hash_bucket_size, dtype, sequence=True)


def sequence_categorical_column_with_vocabulary_list(key, vocabulary_list, dtype=None, default_value=-1,
                                                     num_oov_buckets=0):
    """Values per step looked up in ``vocabulary_list``; others to OOV buckets or ``default_value``."""
    return VocabularyColumn(key, vocabulary_list, default_value, num_oov_buckets, sequence=True)


def sequence_categorical_column_with_vocabulary_file(key, vocabulary_file, vocabulary_size=None,
                                                     num_oov_buckets=0, default_value=None, dtype=str):
    """As the vocabulary list, read from a UTF-8 file with one entry per line."""
    return VocabularyColumn(key, _read_vocabulary(vocabulary_file, vocabulary_size), default_value,
                            num_oov_buckets, sequence=True, file=os.fspath(vocabulary_file))


def categorical_column_with_identity(key, num_buckets, default_value=None):
    return IdentityColumn(key, num_buckets, default_value)


def categorical_column_with_hash_bucket(key, hash_bucket_size, dtype=str):
    return HashBucketColumn(key, hash_bucket_size, dtype)


def categorical_column_with_vocabulary_list(key, vocabulary_list, dtype=None, default_value=-1, num_oov_buckets=0):
    return VocabularyColumn(key, vocabulary_list, default_value, num_oov_buckets)


def categorical_column_with_vocabulary_file(key, vocabulary_file, vocabulary_size=None, num_oov_buckets=0,
                                            default_value=None, dtype=str):
    return VocabularyColumn(key, _read_vocabulary(vocabulary_file, vocabulary_size), default_value,
                            num_oov_buckets, file=os.fspath(vocabulary_file))


class Normalization:
    """Keras's ``Normalization`` for a numeric column: ``(x - mean) / max(sqrt(variance), 1e-7)``
    per feature (the last axis of the column's [k] values), after its ``normalizer_fn``.

    Give ``mean`` and ``variance`` (a number or one per feature), or learn them from training data
    with :meth:`adapt`. They are part of the column: checkpoints, exports and ONNX graphs hold them.

    >>> norm = Normalization().adapt([np.array([60.0, 80.0]), np.array([100.0])])   # two sequences
    >>> norm.mean, norm.variance
    (array([80.]), array([266.66666667]))
    """

    EPSILON = 1e-7

    def __init__(self, mean=None, variance=None):
        if (mean is None) != (variance is None):
            raise ValueError("Normalization: give both mean and variance, or neither (then call adapt)")
        self.mean = self.variance = None
        if mean is not None:
            self.mean, self.variance = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (mean, variance))
            if self.mean.ndim != 1 or self.mean.shape != self.variance.shape:
                raise ValueError(f"Normalization: mean and variance must be numbers or matching 1-D lists, got "
                                 f"shapes {self.mean.shape} and {self.variance.shape}")
            if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.variance))
                    and np.all(self.variance >= 0)):
                raise ValueError("Normalization: mean must be finite and variance finite and >= 0")

    def adapt(self, data):
        """Learn the mean and variance of each feature from ``data``: an array [N, k], [N, T, k] or
        [N] / [N, T] (one feature), or a list of sequences [T_i] / [T_i, k]. Returns self."""
        if isinstance(data, (list, tuple)) and data and np.ndim(data[0]) >= 1:
            rows = [np.asarray(s, dtype=np.float64) for s in data]
            k = rows[0].shape[-1] if rows[0].ndim == 2 else 1
            if any(r.ndim not in (1, 2) or (r.shape[-1] if r.ndim == 2 else 1) != k for r in rows):
                raise ValueError("Normalization.adapt: sequences must all be [T] or all [T, k] with one k")
            values = np.concatenate([r.reshape(-1, k) for r in rows])
        else:
            values = np.asarray(data, dtype=np.float64)
            values = values.reshape(-1, values.shape[-1] if values.ndim >= 2 else 1)
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise ValueError("Normalization.adapt: expected finite numbers, at least one")
        self.mean, self.variance = values.mean(axis=0), values.var(axis=0)
        return self

    def __call__(self, values):
        """``values`` [..., k] normalised (float64)."""
        if self.mean is None:
            raise ValueError("Normalization: not adapted; call adapt(training data) or give mean and variance")
        return (values - self.mean) / np.maximum(np.sqrt(self.variance), self.EPSILON)

    def config(self):
        return None if self.mean is None else {"mean": self.mean.tolist(), "variance": self.variance.tolist()}

    def __repr__(self):
        if self.mean is None:
            return "Normalization(not adapted)"
        return f"Normalization(mean={np.round(self.mean, 6).tolist()}, variance={np.round(self.variance, 6).tolist()})"


class NumericColumn(_Column):
    """Dense numbers: [k] per step (sequence) or per example (context), k = prod(shape)."""

    def __init__(self, key, shape=(1,), default_value=None, dtype="float32", normalizer_fn=None, sequence=False,
                 normalizer=None):
        self.key, self.sequence = _check_key(key), sequence
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if not shape or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
            raise ValueError(f"shape: expected positive integers, got {shape!r}")
        if np.dtype(dtype).kind not in "iuf":
            raise ValueError(f"dtype must be convertible to float. dtype: {dtype!r}, key: {key}")
        if normalizer_fn is not None and not callable(normalizer_fn):
            raise TypeError(f"normalizer_fn must be a callable. Given: {normalizer_fn!r}")
        self.shape, self.default_value, self.dtype, self.normalizer_fn = shape, default_value, np.dtype(dtype), normalizer_fn
        self.width = int(np.prod(shape))
        if normalizer is not None:
            if not isinstance(normalizer, Normalization):
                raise TypeError(f"normalizer: expected a feature_column.Normalization, got {normalizer!r}")
            if normalizer.mean is None:
                raise ValueError(f"normalizer of {key!r}: not adapted; call adapt(training data) first")
            if normalizer.mean.shape[0] not in (1, shape[-1]):
                raise ValueError(f"normalizer of {key!r}: {normalizer.mean.shape[0]} features, the column has "
                                 f"{shape[-1]} per value")
        self.normalizer = normalizer

    @property
    def name(self):
        return self.key

    def values(self, raw):
        """Validated float values (normalizer applied)."""
        arr = np.asarray(raw)
        if arr.dtype.kind not in "iufb":
            raise TypeError(f"feature {self.key!r}: expected numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        if self.normalizer_fn is not None:
            arr = np.asarray(self.normalizer_fn(arr), dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"feature {self.key!r}: contains NaN or inf")
        return arr

    def normalized(self, values):
        """``values`` [..., *shape] through the column's ``normalizer`` (unchanged without one)."""
        if self.normalizer is None:
            return values
        return self.normalizer(values.reshape(values.shape[:-1] + (-1, self.shape[-1]))).reshape(values.shape)

    def spec(self):
        spec = {"type": "numeric", "key": self.key, "shape": list(self.shape), "default_value": self.default_value,
                "sequence": self.sequence, "normalizer_fn": None if self.normalizer_fn is None else
                f"{getattr(self.normalizer_fn, '__module__', '?')}.{getattr(self.normalizer_fn, '__qualname__', '?')}"}
        if self.normalizer is not None:
            spec["normalizer"] = self.normalizer.config()
        return spec


def sequence_numeric_column(key, shape=(1,), default_value=0.0, dtype="float32", normalizer_fn=None, normalizer=None):
    """Numbers per step; padded steps hold ``default_value``. ``normalizer_fn`` gets the valid values;
    ``normalizer``: a :class:`Normalization` (mean and variance per feature, e.g. adapted to the
    training data) applied after it."""
    return NumericColumn(key, shape, default_value, dtype, normalizer_fn, sequence=True, normalizer=normalizer)


def numeric_column(key, shape=(1,), default_value=None, dtype="float32", normalizer_fn=None, normalizer=None):
    """Numbers per example (context); ``normalizer_fn`` and ``normalizer`` as for sequences."""
    return NumericColumn(key, shape, default_value, dtype, normalizer_fn, normalizer=normalizer)


class BucketizedColumn(CategoricalColumn):
    """A context numeric column cut at ``boundaries``: id i for boundaries[i-1] <= x < boundaries[i]."""

    def __init__(self, source_column, boundaries):
        if not isinstance(source_column, NumericColumn) or source_column.sequence:
            raise ValueError("source_column must be a column generated with numeric_column(). "
                             f"Given: {source_column!r}")
        boundaries = list(boundaries)
        if not boundaries or any(boundaries[i] >= boundaries[i + 1] for i in range(len(boundaries) - 1)):
            raise ValueError(f"boundaries must be a sorted list. boundaries: {boundaries}")
        self.source, self.boundaries = source_column, [float(b) for b in boundaries]
        self.key = source_column.key
        self.num_buckets = (len(boundaries) + 1) * source_column.width

    @property
    def name(self):
        return f"{self.key}_bucketized"

    def ids(self, values):
        v = self.source.values(values)
        bucket = np.searchsorted(self.boundaries, v, side="right")
        width = self.source.width
        return bucket.reshape(v.shape[0], -1) + (len(self.boundaries) + 1) * np.arange(width)[None, :]

    def spec(self):
        return {"type": "bucketized", "source": self.source.spec(), "boundaries": self.boundaries}


def bucketized_column(source_column, boundaries):
    return BucketizedColumn(source_column, boundaries)


class WeightedCategoricalColumn(CategoricalColumn):
    """Context ids with a weight per id (from ``weight_feature_key``), combined by the embedding."""

    def __init__(self, categorical_column, weight_feature_key, dtype="float32"):
        if not isinstance(categorical_column, CategoricalColumn) or categorical_column.sequence:
            raise ValueError("categorical_column must be of type CategoricalColumn (not a sequence column): "
                             f"got {categorical_column!r}")
        self.categorical, self.weight_key = categorical_column, _check_key(weight_feature_key)
        self.key, self.num_buckets = categorical_column.key, categorical_column.num_buckets

    @property
    def name(self):
        return f"{self.key}_weighted_by_{self.weight_key}"

    def ids(self, values):
        return self.categorical.ids(values)

    def spec(self):
        return {"type": "weighted", "categorical": self.categorical.spec(), "weight_feature_key": self.weight_key}


def weighted_categorical_column(categorical_column, weight_feature_key, dtype="float32"):
    return WeightedCategoricalColumn(categorical_column, weight_feature_key, dtype)


# ---------------------------------------------------------------------------------------------
# dense wrappers of categorical columns
# ---------------------------------------------------------------------------------------------

class EmbeddingColumn(_Column):
    """A trainable table [num_buckets, dimension]; a step's (or example's) ids are looked up and
    combined ('mean', 'sum' or 'sqrtn'; weighted for weighted columns). Default initializer: TF's
    truncated normal with stddev 1/sqrt(dimension)."""

    def __init__(self, categorical_column, dimension, combiner="mean", initializer=None, max_norm=None,
                 trainable=True):
        if not isinstance(categorical_column, CategoricalColumn):
            raise ValueError(f"categorical_column: expected a categorical column, got {categorical_column!r}")
        self.categorical = categorical_column
        self.dimension = _positive_int("dimension", dimension)
        if combiner not in ("mean", "sum", "sqrtn"):
            raise ValueError(f"combiner: expected 'mean', 'sum' or 'sqrtn', got {combiner!r}")
        if initializer is not None and not callable(initializer):
            raise ValueError(f"initializer must be callable if specified. Embedding of column_name: "
                             f"{categorical_column.key}")
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"max_norm: expected a positive number, got {max_norm!r}")
        self.combiner, self.initializer, self.max_norm, self.trainable = combiner, initializer, max_norm, bool(trainable)
        self.key, self.sequence, self.width = categorical_column.key, categorical_column.sequence, self.dimension

    @property
    def name(self):
        return f"{self.categorical.name}_embedding"

    def initial_table(self, rng, dtype):
        shape = (self.categorical.num_buckets, self.dimension)
        if self.initializer is not None:
            table = np.asarray(self.initializer(shape), dtype=dtype)
            if table.shape != shape:
                raise ValueError(f"embedding {self.name}: initializer returned shape {table.shape}, expected {shape}")
            return table
        std = 1.0 / math.sqrt(self.dimension)
        table = rng.standard_normal(shape)
        while np.any(np.abs(table) > 2.0):                 # truncated at two standard deviations
            redo = np.abs(table) > 2.0
            table[redo] = rng.standard_normal(int(redo.sum()))
        return (table * std).astype(dtype)

    def spec(self):
        return {"type": "embedding", "categorical": self.categorical.spec(), "dimension": self.dimension,
                "combiner": self.combiner, "max_norm": self.max_norm, "trainable": self.trainable}


class IndicatorColumn(_Column):
    """Multi-hot counts of the ids: [num_buckets] per step or per example."""

    def __init__(self, categorical_column):
        if not isinstance(categorical_column, CategoricalColumn):
            raise ValueError(f"categorical_column: expected a categorical column, got {categorical_column!r}")
        self.categorical = categorical_column
        self.key, self.sequence, self.width = categorical_column.key, categorical_column.sequence, categorical_column.num_buckets

    @property
    def name(self):
        return f"{self.categorical.name}_indicator"

    def spec(self):
        return {"type": "indicator", "categorical": self.categorical.spec()}


def embedding_column(categorical_column, dimension, combiner="mean", initializer=None, max_norm=None, trainable=True):
    return EmbeddingColumn(categorical_column, dimension, combiner, initializer, max_norm, trainable)


def indicator_column(categorical_column):
    return IndicatorColumn(categorical_column)
