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
from .inputs import SparseInput, _is_padding, parse_sequence, ragged_tokens, sparse_to_dense
from .sparse import SparseRows


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


def layer_size(columns, sequence):
    """(output width, embedding weights) of a feature layer of ``columns``, without building it."""
    columns = _dense_columns(columns, sequence, "sequence_feature_columns" if sequence else "context_feature_columns")
    tables = sum(c.categorical.num_buckets * c.dimension for c in columns if isinstance(c, fc.EmbeddingColumn))
    return sum(c.width for c in columns), tables


def _feature(features, key, where):
    if not isinstance(features, dict):
        raise TypeError(f"{where}: features must be a dict of feature name -> values, got {type(features).__name__}")
    if key not in features:
        raise KeyError(f"feature {key!r} is missing; the batch has {sorted(features)}")
    return features[key]


def _steps_differ(first, mask, key, step_mask):
    """The error for two sequence features of one batch whose valid steps differ."""
    if step_mask.shape[0] != mask.shape[0]:
        return ValueError(f"sequence features {first!r} and {key!r} have different batch sizes: "
                          f"{mask.shape[0]} and {step_mask.shape[0]} examples")
    n_first, n_key = mask.sum(axis=1), step_mask.sum(axis=1)
    if np.any(n_first != n_key):
        b = int(np.argmax(n_first != n_key))
        return ValueError(f"sequence features {first!r} and {key!r} have different lengths: example {b} has "
                          f"{n_first[b]} steps in {first!r} and {n_key[b]} in {key!r}; every sequence feature "
                          "of an example must have the same number of steps")
    if step_mask.shape != mask.shape:
        return ValueError(f"sequence features {first!r} and {key!r} are padded to different numbers of steps "
                          f"({mask.shape[1]} and {step_mask.shape[1]}) although their lengths agree: pad every "
                          "sequence feature of a batch to the same number of steps")
    b = int(np.argmax(np.any(step_mask != mask, axis=1)))
    return ValueError(f"sequence features {first!r} and {key!r} have different valid steps in example {b}")


class _Embeddings:
    """Embedding tables of the embedding columns, their lookups and their sparse gradients.

    A lookup returns what the column's backward needs; the layer stores it with ``save`` only once
    its whole forward has succeeded, so a failed forward leaves the last good state in place."""

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

    def save(self, saved):
        self._cache = saved

    def _clip(self, column, vectors):
        """max_norm: each looked-up vector scaled by min(1, max_norm / |v|); returns (vectors, scale)."""
        if column.max_norm is None:
            return vectors, None
        norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
        scale = np.minimum(1.0, column.max_norm / np.maximum(norms, 1e-30)).astype(self.dtype)
        return vectors * scale, scale

    def lookup(self, column, ids, present, weights=None):
        """ids [..., k] (present marks real ids) -> (combined vectors [..., dimension], saved)."""
        table = self.tables[column.name]
        w = present.astype(self.dtype) if weights is None else np.where(present, weights, 0).astype(self.dtype)
        safe = np.where(present, ids, 0)
        vectors, scale = self._clip(column, table[safe])               # [..., k, dim]
        total = w.sum(axis=-1, keepdims=True)
        if column.combiner == "sum":
            coef = w
        elif column.combiner == "mean":
            coef = w / np.where(total > 0, total, 1)
        else:                                                          # sqrtn
            coef = w / np.sqrt(np.where(np.sum(w * w, axis=-1, keepdims=True) > 0, np.sum(w * w, axis=-1, keepdims=True), 1))
        out = np.einsum("...k,...kd->...d", coef, vectors)
        saved = ("combined", safe, present, coef, scale, table[safe] if scale is not None else None)
        return out.astype(self.dtype), saved

    def lookup_one(self, column, positions, ids, out, start):
        """One id per output row, no weights: out[positions, start:start + dimension] = the table rows
        of ids [N] (ids >= 0); out [R, width] C-contiguous, its other values are left as they are.
        Returns saved.

        A combiner over a single id is the identity (mean and sqrtn divide by 1), so the table rows
        are gathered directly, without the combiner's weights."""
        raw = np.take(self.tables[column.name], ids, axis=0)            # [N, dim]
        vectors, scale = self._clip(column, raw)
        if _numba_usable():
            from minirnn.kernels.embedding import scatter_rows
            scatter_rows(np.ascontiguousarray(vectors), positions.astype(np.int64, copy=False), out, start)
        else:
            out[positions, start:start + column.dimension] = vectors
        return ("one", ids, positions, scale, raw if scale is not None else None)

    def backward(self, column, d_out):
        """Sparse gradient of the table from d_out [..., dimension]."""
        saved = self._cache[column.name]
        if saved[0] == "one":                                          # one id per output row
            _, ids, positions, scale, raw = saved
            d_vec = d_out.reshape(-1, column.dimension)[positions]     # [N, dim]
        else:                                                          # combined: d v_k = coef_k * d_out
            _, safe, present, coef, scale, raw = saved
            d_vec = coef[..., None] * d_out[..., None, :]              # [..., k, dim]
        if scale is not None:                                          # through v * min(1, m / |v|)
            clipped = scale[..., 0] < 1
            norm2 = np.sum(raw * raw, axis=-1, keepdims=True)
            proj = np.sum(raw * d_vec, axis=-1, keepdims=True) / np.maximum(norm2, 1e-30)
            d_vec = np.where(clipped[..., None], scale * (d_vec - proj * raw), d_vec)
        if saved[0] != "one":                                          # keep the real ids only
            ids, d_vec = safe[present], d_vec[present]
        # sum the gradients of repeated ids into one row each: a compiled pass with a slot per table
        # row when the table is small next to the batch; else sort, then add each run of equal ids
        # (3-4x faster than np.unique + np.add.at)
        ids = ids.ravel()
        d_vec = d_vec.reshape(len(ids), column.dimension)
        table_rows = self.tables[column.name].shape[0]
        if len(ids) == 0:
            rows, values = ids.astype(np.int64), np.zeros((0, column.dimension), dtype=self.dtype)
        elif table_rows <= _dense_slots_per_id() * len(ids):
            from minirnn.kernels.embedding import sum_rows_by_id
            rows, values = sum_rows_by_id(np.ascontiguousarray(ids, dtype=np.int64),
                                          np.ascontiguousarray(d_vec, dtype=self.dtype), table_rows)
        else:
            order = np.argsort(ids, kind="stable")
            sorted_ids = ids[order]
            starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
            rows = sorted_ids[starts]
            values = np.add.reduceat(d_vec[order], starts, axis=0).astype(self.dtype, copy=False)
        return SparseRows._distinct(rows.astype(np.int64, copy=False), values, self.tables[column.name].shape)


def _numba_usable():
    from minirnn import kernels
    return kernels._numba_usable()


def _dense_slots_per_id():
    """How many table rows per looked-up id the compiled gradient sum may allocate (0 without Numba)."""
    if not _numba_usable():
        return 0
    from minirnn.kernels.embedding import DENSE_SLOTS_PER_ID
    return DENSE_SLOTS_PER_ID


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

    def __init__(self, columns, seed=None, dtype="float32", mask_key="sequence_mask", length_key="sequence_length",
                 sparse_length="indices"):
        super().__init__(columns, True, "sequence_feature_columns", "sequence_features", seed, dtype)
        if sparse_length not in ("indices", "dense_shape"):
            raise ValueError(f"sparse_length: expected 'indices' (TF2) or 'dense_shape' (TF1), got {sparse_length!r}")
        self.mask_key, self.length_key, self.sparse_length = mask_key, length_key, sparse_length

    def _batch_mask(self, features):
        mask = features.get(self.mask_key) if isinstance(features, dict) else None
        lengths = features.get(self.length_key) if isinstance(features, dict) else None
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype.kind in "iu" and mask.ndim == 2 and np.all((mask == 0) | (mask == 1)):
                mask = mask.astype(bool)                # TF takes 0/1 integer masks too
            if mask.dtype != bool or mask.ndim != 2:
                raise ValueError(f"feature {self.mask_key!r}: expected bools or 0/1 integers [batch, time], got "
                                 f"{mask.dtype} {mask.shape}")
        if lengths is not None:
            lengths = np.asarray(lengths)
            if lengths.ndim != 1 or lengths.dtype.kind not in "iu" or (lengths.size and lengths.min() < 0):
                raise ValueError(f"feature {self.length_key!r}: expected non-negative integers [batch], got "
                                 f"{lengths.dtype} {lengths.shape}")
        return mask, lengths

    def head_mask(self, features, mask, return_sequences):
        """The steps the head scores: the batch's ``sequence_mask`` feature where it marks other
        steps than ``mask`` (the data's valid steps: ragged lists and SparseInput have their own
        lengths), as TF's sequential head does; otherwise ``mask``."""
        given, _ = self._batch_mask(features)
        if given is None or (given.shape == mask.shape and np.array_equal(given, mask)):
            return mask
        if given.shape != mask.shape:
            raise ValueError(f"feature {self.mask_key!r}: shape {given.shape}, but the batch's sequences are "
                             f"padded to {mask.shape} [batch, time]")
        if not return_sequences:
            raise ValueError(f"feature {self.mask_key!r} marks other steps than the lengths of the batch's ragged "
                             "or SparseInput sequence features, and return_sequences is False: the valid steps of "
                             "such features are their lengths. A sequence_mask of its own applies to padded "
                             "arrays, or to the loss, metrics and predictions of return_sequences=True")
        return given

    def _categorical_ids(self, c, raw, mask_in, lengths_in, flattened):
        """-> (present [B, T, k], ids [N] of the present values in row-major order, step mask [B, T]).
        Values whose id is -1 (padding, or a default of -1) are not present; the step still counts."""
        flat = None
        if isinstance(raw, (list, tuple)):
            if id(raw) not in flattened:
                flattened[id(raw)] = ragged_tokens(raw)
            flat = flattened[id(raw)]
        if flat is not None:                    # ragged, one value per step: the flat tokens
            tokens, step_mask = flat
            ids = c.categorical.token_ids(tokens)
            present = step_mask.copy()
            present[step_mask] = ids >= 0
            return present[..., None], ids[ids >= 0], step_mask
        values, present, step_mask = parse_sequence(c.key, raw, 1, True, lengths_in, mask_in,
                                                    sparse_length=self.sparse_length)
        ids = c.categorical.ids(values[present]) if present.any() else np.zeros(0, dtype=np.int64)
        found = ids >= 0
        if found.all():                         # the usual case: every value has an id
            return present, ids, step_mask
        present[present] = found
        return present, ids[found], step_mask

    def forward(self, features):
        mask_in, lengths_in = self._batch_mask(features)
        flattened = {}                          # id(raw) -> the ragged list flattened once, for all its columns
        x, mask, first, start, saved = None, None, None, 0, {}
        for c in self.columns:
            raw = _feature(features, c.key, "sequence features")
            # parse and check the column's values
            if isinstance(c, fc.NumericColumn):
                fill = 0.0 if c.default_value is None else c.default_value
                values, present, step_mask = parse_sequence(c.key, raw, c.width, False, lengths_in, mask_in, fill,
                                                            self.sparse_length)
                dense = c.normalizer_fn is None and present.all()    # no gaps: no values to skip
                if dense:
                    values = c.normalized(c.values(values))
                else:
                    values = np.array(values, dtype=np.float64)
                    values[present] = c.values(values[present])
                    values = c.normalized(values)
            else:
                present, ids, step_mask = self._categorical_ids(c, raw, mask_in, lengths_in, flattened)
            # every column must have the steps of the first
            if mask is None:
                mask, first = step_mask, c.key
                x = np.zeros(mask.shape + (self.output_dim,), dtype=self.dtype)
            elif step_mask.shape != mask.shape or not np.array_equal(step_mask, mask):
                raise _steps_differ(first, mask, c.key, step_mask)
            # write the column's dense values into its slice of x [B, T, width]
            end = start + c.width
            if isinstance(c, fc.NumericColumn):
                x[..., start:end] = values if dense else np.where(present, values, fill)
            elif isinstance(c, fc.EmbeddingColumn) and present.shape[-1] == 1:
                steps = np.flatnonzero(present)              # the steps (rows of x as [B * T, Ds]) with an id
                saved[c.name] = self.embeddings.lookup_one(c, steps, ids, x.reshape(-1, self.output_dim), start)
            elif isinstance(c, fc.EmbeddingColumn):
                padded = np.full(present.shape, -1, dtype=np.int64)
                padded[present] = ids
                combined, saved[c.name] = self.embeddings.lookup(c, padded, present)
                x[..., start:end] = combined
            else:                                            # indicator: counts of each id
                b, t, _ = np.nonzero(present)
                np.add.at(x[..., start:end], (b, t, ids), 1.0)
            start = end
        self.embeddings.save(saved)
        self._widths = [c.width for c in self.columns]
        return x, mask


def _context_array(key, raw, fill=None):
    """A context feature as an array [batch, ...], or an error naming it. A SparseInput [batch, k]
    (TF: a SparseTensor) is densified with ``fill`` for its missing entries (None: refused)."""
    if isinstance(raw, SparseInput):
        if fill is None:
            raise TypeError(f"feature {key!r}: a numeric context feature must be an array [batch] or [batch, k], "
                            "not a SparseInput")
        dense = sparse_to_dense(f"feature {key!r}", raw, fill, rank=2)
        if dense.shape[0] == 0:
            raise ValueError(f"feature {key!r}: empty batch")
        return dense
    try:
        raw = np.asarray(raw)
    except ValueError:                              # numpy refuses rows of unequal lengths
        raise ValueError(f"feature {key!r}: rows of different lengths; a context feature must be an array "
                         "[batch] or [batch, k] (pad categorical rows with '' or -1)") from None
    if raw.ndim == 0:
        raise ValueError(f"feature {key!r}: expected one value (or row) per example, got a scalar")
    if raw.shape[0] == 0:
        raise ValueError(f"feature {key!r}: empty batch")
    return raw


class ContextFeatures(_FeatureLayer):
    """Context columns -> [B, Dc] (TF's DenseFeatures), sorted by column name."""

    def __init__(self, columns, seed=None, dtype="float32"):
        super().__init__(columns, False, "context_feature_columns", "dense_features", seed, dtype)

    def forward(self, features):
        parts, B, first, saved = [], None, None, {}
        for c in self.columns:
            raw = _context_array(c.key, _feature(features, c.key, "context features"),
                                 None if isinstance(c, fc.NumericColumn) or isinstance(c.categorical, fc.BucketizedColumn)
                                 else -1)
            if B is None:
                B, first = raw.shape[0], c.key
            if raw.shape[0] != B:
                raise ValueError(f"feature {c.key!r}: {raw.shape[0]} examples, but feature {first!r} has {B}: "
                                 "every feature of a batch needs one row per example")
            if isinstance(c, fc.NumericColumn):
                values = c.normalized(c.values(raw).reshape(B, -1))
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
                weights = _context_array(cat.weight_key, _feature(features, cat.weight_key, "context features"), 0)
                if weights.dtype.kind not in "biuf":
                    raise TypeError(f"feature {cat.weight_key!r}: weights must be numbers, got dtype {weights.dtype}")
                weights = weights.astype(np.float64).reshape(weights.shape[0], -1)
                if not np.all(np.isfinite(weights)):
                    raise ValueError(f"feature {cat.weight_key!r}: contains NaN or inf")
                if weights.shape != ids.shape:
                    raise ValueError(f"feature {cat.weight_key!r}: weights {weights.shape} must match the ids of "
                                     f"{cat.key!r} {ids.shape}")
            if isinstance(c, fc.EmbeddingColumn):
                combined, saved[c.name] = self.embeddings.lookup(c, ids, present, weights)
                parts.append(combined)
            else:
                dense = np.zeros((B, c.width), dtype=self.dtype)
                rows = np.nonzero(present)[0]
                np.add.at(dense, (rows, ids[present]), 1.0 if weights is None else weights[present])
                parts.append(dense)
        self.embeddings.save(saved)
        self._widths = [p.shape[-1] for p in parts]
        return np.concatenate(parts, axis=-1)
