"""Input layers built from feature columns, with explicit forward and backward (TF's SequenceFeatures
and DenseFeatures).

``SequenceFeatures(columns).forward(features)`` -> (x [B, T, Ds], mask [B, T]): each sequence column
made dense per step ([B, T, width]) and concatenated in order of column name, as TF does, so weights
line up with TF's layout. ``ContextFeatures(columns).forward(features)`` -> [B, Dc], one row per
example, which the model tiles over time.

Embedding tables are the layers' parameters (``params()``, named like TF's variables
``sequence_features/<key>_embedding/embedding_weights``). Their gradients are sparse: ``backward``
returns :class:`minirnn.optimizers.SparseRows` holding only the rows that were looked up, and the
optimizers update only those rows.
"""

import numpy as np

from . import feature_column as fc
from .inputs import _is_padding, parse_sequence, ragged_tokens
from .optimizers import SparseRows


def _dense_columns(columns, sequence, where):
    columns = list(columns or [])
    if not columns:
        raise ValueError(f"{where}: feature_columns must not be empty.")
    for c in columns:
        if not isinstance(c, (fc.NumericColumn, fc.EmbeddingColumn, fc.IndicatorColumn)):
            hint = " (wrap categorical columns in embedding_column or indicator_column)" \
                if isinstance(c, fc.CategoricalColumn) else ""
            raise ValueError(f"{where}: items of feature_columns must be numeric, embedding or indicator "
                             f"columns, got {c!r}{hint}")
        if c.sequence != sequence:
            kind = "sequence_*" if sequence else "context (non-sequence)"
            raise ValueError(f"{where}: column {c.name!r} is {'a sequence' if c.sequence else 'a context'} column; "
                             f"only {kind} columns belong here")
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: duplicate feature column names {sorted(n for n in names if names.count(n) > 1)}")
    return sorted(columns, key=lambda c: c.name)


def _feature(features, key, where):
    if not isinstance(features, dict):
        raise TypeError(f"{where}: features must be a dict of feature name -> values, got {type(features).__name__}")
    if key not in features:
        raise KeyError(f"feature {key!r} is missing; the batch has {sorted(features)}")
    return features[key]


class _Embeddings:
    """Embedding tables of the embedding columns, their lookups and their sparse gradients."""

    def __init__(self, columns, scope, seed, dtype):
        self.columns = [c for c in columns if isinstance(c, fc.EmbeddingColumn)]
        self.scope, self.dtype = scope, np.dtype(dtype)
        rng = np.random.default_rng(seed)
        self.tables = {c.name: c.initial_table(rng, self.dtype) for c in self.columns}
        self._cache = {}

    def names(self):
        return [f"{self.scope}/{c.name}/embedding_weights" for c in self.columns]

    def params(self):
        return [self.tables[c.name] for c in self.columns]

    def trainable(self):
        return [c.trainable for c in self.columns]

    def lookup(self, column, ids, present, weights=None):
        """ids [..., k] (present marks real ids) -> combined vectors [..., dimension]."""
        table = self.tables[column.name]
        w = present.astype(self.dtype) if weights is None else np.where(present, weights, 0).astype(self.dtype)
        safe = np.where(present, ids, 0)
        vectors = table[safe]                                          # [..., k, dim]
        scale = None
        if column.max_norm is not None:                                # clip each looked-up vector
            norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
            scale = np.minimum(1.0, column.max_norm / np.maximum(norms, 1e-30)).astype(self.dtype)
            vectors = vectors * scale
        total = w.sum(axis=-1, keepdims=True)
        if column.combiner == "sum":
            coef = w
        elif column.combiner == "mean":
            coef = w / np.where(total > 0, total, 1)
        else:                                                          # sqrtn
            coef = w / np.sqrt(np.where(np.sum(w * w, axis=-1, keepdims=True) > 0, np.sum(w * w, axis=-1, keepdims=True), 1))
        out = np.einsum("...k,...kd->...d", coef, vectors)
        self._cache[column.name] = (safe, present, coef, scale, table[safe] if scale is not None else None)
        return out.astype(self.dtype)

    def backward(self, column, d_out):
        """Sparse gradient of the table from d_out [..., dimension]."""
        safe, present, coef, scale, raw = self._cache[column.name]
        d_vec = coef[..., None] * d_out[..., None, :]                  # [..., k, dim]
        if scale is not None:                                          # through v * min(1, m / |v|)
            clipped = scale[..., 0] < 1
            norm2 = np.sum(raw * raw, axis=-1, keepdims=True)
            proj = np.sum(raw * d_vec, axis=-1, keepdims=True) / np.maximum(norm2, 1e-30)
            d_vec = np.where(clipped[..., None], scale * (d_vec - proj * raw), d_vec)
        ids, grads = safe[present], d_vec[present]
        rows, inverse = np.unique(ids, return_inverse=True)
        values = np.zeros((len(rows), column.dimension), dtype=self.dtype)
        np.add.at(values, inverse.ravel(), grads)
        return SparseRows(rows, values, self.tables[column.name].shape)


class _FeatureLayer:
    """Columns sorted by name, their embedding tables, and backward over the concatenated output."""

    def __init__(self, columns, sequence, where, scope, seed, dtype):
        self.columns = _dense_columns(columns, sequence, where)
        self.dtype = np.dtype(dtype)
        self.embeddings = _Embeddings(self.columns, scope, seed, self.dtype)
        self.output_dim = sum(c.width for c in self.columns)
        self._widths = None

    def param_names(self):
        return self.embeddings.names()

    def params(self):
        return self.embeddings.params()

    def backward(self, d_out):
        """Gradients of the embedding tables (SparseRows), aligned with ``params()``."""
        grads, start = {}, 0
        for c, w in zip(self.columns, self._widths):
            if isinstance(c, fc.EmbeddingColumn):
                grads[c.name] = self.embeddings.backward(c, d_out[..., start:start + w])
            start += w
        return [grads[c.name] for c in self.embeddings.columns]


class SequenceFeatures(_FeatureLayer):
    """Sequence columns -> (x [B, T, Ds], mask [B, T]). See the module docstring."""

    def __init__(self, columns, seed=None, dtype="float32", mask_key="sequence_mask", length_key="sequence_length"):
        super().__init__(columns, True, "sequence_feature_columns", "sequence_features", seed, dtype)
        self.mask_key, self.length_key = mask_key, length_key

    def _batch_mask(self, features):
        mask = features.get(self.mask_key) if isinstance(features, dict) else None
        lengths = features.get(self.length_key) if isinstance(features, dict) else None
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype != bool or mask.ndim != 2:
                raise ValueError(f"feature {self.mask_key!r}: expected a bool array [batch, time], got "
                                 f"{mask.dtype} {mask.shape}")
        if lengths is not None:
            lengths = np.asarray(lengths)
            if lengths.ndim != 1 or lengths.dtype.kind not in "iu" or (lengths.size and lengths.min() < 0):
                raise ValueError(f"feature {self.length_key!r}: expected non-negative integers [batch], got "
                                 f"{lengths.dtype} {lengths.shape}")
        return mask, lengths

    def forward(self, features):
        mask_in, lengths_in = self._batch_mask(features)
        parts, mask, first = [], None, None
        for c in self.columns:
            raw = _feature(features, c.key, "sequence features")
            categorical = not isinstance(c, fc.NumericColumn)
            if categorical:
                fast = ragged_tokens(raw) if isinstance(raw, (list, tuple)) else None
                if fast is not None:                   # one value per step: flatten the batch once
                    tokens, rows, steps, step_mask = fast
                    ids = np.full(step_mask.shape + (1,), -1, dtype=np.int64)
                    ids[rows, steps, 0] = c.categorical.ids(tokens)
                    present = ids >= 0
                else:
                    values, present, step_mask = parse_sequence(c.key, raw, 1, True, lengths_in, mask_in)
                    ids = np.full(values.shape, -1, dtype=np.int64)
                    if present.any():
                        ids[present] = c.categorical.ids(values[present])
                present = present & (ids >= 0)                       # -1 (default) ids are dropped
                if isinstance(c, fc.EmbeddingColumn):
                    dense = self.embeddings.lookup(c, ids, present)
                else:
                    dense = np.zeros(ids.shape[:2] + (c.width,), dtype=self.dtype)
                    b, t, _ = np.nonzero(present)
                    np.add.at(dense, (b, t, ids[present]), 1.0)
            else:
                fill = 0.0 if c.default_value is None else c.default_value
                values, present, step_mask = parse_sequence(c.key, raw, c.width, False, lengths_in, mask_in, fill)
                values = np.array(values, dtype=np.float64)
                values[present] = c.values(values[present])
                dense = np.where(present, values, fill).astype(self.dtype)
            if mask is None:
                mask, first = step_mask, c.key
            elif step_mask.shape != mask.shape or not np.array_equal(step_mask, mask):
                rows = (np.arange(mask.shape[0]) if step_mask.shape != mask.shape else
                        np.nonzero(np.any(step_mask != mask, axis=1))[0])
                raise ValueError(f"sequence features {first!r} and {c.key!r} have different lengths "
                                 f"(first in example {rows[0] if len(rows) else 0}): every sequence feature of "
                                 "an example must have the same number of steps")
            parts.append(dense)
        self._widths = [p.shape[-1] for p in parts]
        return np.concatenate(parts, axis=-1), mask


class ContextFeatures(_FeatureLayer):
    """Context columns -> [B, Dc] (TF's DenseFeatures), sorted by column name."""

    def __init__(self, columns, seed=None, dtype="float32"):
        super().__init__(columns, False, "context_feature_columns", "dense_features", seed, dtype)

    def forward(self, features):
        parts, B = [], None
        for c in self.columns:
            raw = np.asarray(_feature(features, c.key, "context features"))
            if raw.ndim == 0:
                raise ValueError(f"feature {c.key!r}: expected one value (or row) per example, got a scalar")
            B = raw.shape[0] if B is None else B
            if raw.shape[0] != B:
                raise ValueError(f"feature {c.key!r}: {raw.shape[0]} examples, other features have {B}")
            if isinstance(c, fc.NumericColumn):
                values = c.values(raw).reshape(B, -1)
                if values.shape[1] != c.width:
                    raise ValueError(f"feature {c.key!r}: expected {c.width} value(s) per example, got {values.shape[1]}")
                parts.append(values.astype(self.dtype))
                continue
            cat = c.categorical
            flat = raw.reshape(B, -1)
            present = ~_is_padding(flat)
            ids = np.full(flat.shape, -1, dtype=np.int64)
            if isinstance(cat, fc.BucketizedColumn):
                ids = cat.ids(flat)
                present = np.ones(ids.shape, dtype=bool)
            elif present.any():
                ids[present] = cat.ids(flat[present])
            present &= ids >= 0
            weights = None
            if isinstance(cat, fc.WeightedCategoricalColumn):
                weights = np.asarray(_feature(features, cat.weight_key, "context features"), dtype=np.float64).reshape(B, -1)
                if weights.shape != ids.shape:
                    raise ValueError(f"feature {cat.weight_key!r}: weights {weights.shape} must match the ids of "
                                     f"{cat.key!r} {ids.shape}")
            if isinstance(c, fc.EmbeddingColumn):
                parts.append(self.embeddings.lookup(c, ids, present, weights))
            else:
                dense = np.zeros((B, c.width), dtype=self.dtype)
                rows = np.nonzero(present)[0]
                np.add.at(dense, (rows, ids[present]), 1.0 if weights is None else weights[present])
                parts.append(dense)
        self._widths = [p.shape[-1] for p in parts]
        return np.concatenate(parts, axis=-1)
