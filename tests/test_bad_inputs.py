"""Bad input gets a clear error naming the feature, and leaves nothing half-done behind.

Hypothesis builds a valid batch (random feature keys, batch size, lengths, values, and an input form
per feature: ragged lists, padded arrays with ``sequence_length`` or ``sequence_mask``, SparseInput),
then breaks one feature: a missing key, a different length, a wrong rank or dtype, NaN/inf, an empty
batch. Each test asserts the exception type and that the message names the feature; then that the
layer is as it was: the same embedding tables, the same column attributes, ``backward`` still gives
the gradients of the last good batch, and the next valid batch gives what a fresh layer gives.
Labels are validated by the heads; those messages must show the offending value.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirnn import feature_column as fc
from minirnn.features import ContextFeatures, SequenceFeatures
from minirnn.heads import BinaryClassHead, MultiClassHead
from minirnn.inputs import SparseInput

SETTINGS = settings(max_examples=25, deadline=None)
WORDS = ["the", "cat", "sat", "été", "日本"]
TOKENS = WORDS + ["zz", "dog", ""]                  # out-of-vocabulary words, and '' (padding)
KEY = st.text("abcdefghij_", min_size=1, max_size=5)
FORMS = ("ragged", "padded", "sparse")
SEQUENCE_KINDS = ("numeric", "hashed", "vocabulary", "identity")


# ---------------------------------------------------------------------------------------------
# the check every test ends with: the error, then no partial state
# ---------------------------------------------------------------------------------------------

LAZY = {"_token_table"}      # built from the column's own vocabulary on first use, never from a batch


def _column_objects(layer):
    return [getattr(c, "categorical", c) for c in layer.columns]


def _assert_same_attributes(column, before, fresh):
    """The column's attributes are the objects they were; a lazily built table may have appeared,
    equal to the one a fresh column builds."""
    now = vars(column)
    assert all(now[k] is v for k, v in before.items())
    for k in now.keys() - before.keys():
        assert k in LAZY, k
        for a, b in zip(now[k], fresh._table()):
            np.testing.assert_array_equal(a, b)


def _assert_same_grads(got, expected):
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g.rows, e.rows)
        np.testing.assert_array_equal(g.values, e.values)


def _fails_cleanly(make_layer, good, bad, error, key, *other_keys):
    """Run the good batch, then the bad one: it must raise ``error`` naming ``key`` (or one of
    ``other_keys``) and change nothing. Returns the message."""
    layer = make_layer()
    before = layer.forward(good)
    x = before[0] if isinstance(before, tuple) else before
    d_out = np.random.default_rng(0).standard_normal(x.shape)
    grads = layer.backward(d_out)
    tables = [p.copy() for p in layer.params()]
    attrs = [dict(vars(c)) for c in _column_objects(layer)]

    with pytest.raises(error) as info:
        layer.forward(bad)
    message = str(info.value.args[0])
    assert any(repr(k) in message for k in (key,) + other_keys), message

    # nothing changed: tables, column attributes, what backward uses
    for p, t in zip(layer.params(), tables):
        np.testing.assert_array_equal(p, t)
    fresh = make_layer()
    for c, a, f in zip(_column_objects(layer), attrs, _column_objects(fresh)):
        _assert_same_attributes(c, a, f)
    _assert_same_grads(layer.backward(d_out), grads)
    # the next valid batch gives what a fresh layer gives
    again, new = layer.forward(good), fresh.forward(good)
    for u, v in zip(again if isinstance(again, tuple) else [again], new if isinstance(new, tuple) else [new]):
        np.testing.assert_array_equal(u, v)
    _assert_same_grads(layer.backward(d_out), fresh.backward(d_out))
    return message


# ---------------------------------------------------------------------------------------------
# sequence batches in every input form
# ---------------------------------------------------------------------------------------------

class SequenceBatch:
    """Four sequence features (numeric [T, 2], hashed, vocabulary and identity tokens), each in
    its own input form; padded forms take their valid steps from sequence_length or sequence_mask."""

    def __init__(self, keys, lengths, forms, mask_key, seed):
        self.keys, self.lengths, self.forms, self.mask_key = keys, np.array(lengths), forms, mask_key
        self.kind = dict(zip(keys, SEQUENCE_KINDS))
        rng = np.random.default_rng(seed)
        self.values = {k: [self.draw(k, n, rng) for n in lengths] for k in keys}

    def draw(self, key, n, rng):
        kind = self.kind[key]
        if kind == "numeric":
            return rng.standard_normal((n, 2))
        if kind == "identity":
            return [int(v) for v in rng.integers(0, 5, n)]
        return [TOKENS[i] for i in rng.integers(0, len(TOKENS), n)]

    def make_layer(self):
        num, hashed, vocab, ident = self.keys
        return SequenceFeatures([
            fc.sequence_numeric_column(num, shape=(2,)),
            fc.embedding_column(fc.sequence_categorical_column_with_hash_bucket(hashed, 7), 3),
            fc.embedding_column(fc.sequence_categorical_column_with_vocabulary_list(vocab, WORDS, num_oov_buckets=2),
                                2, combiner="sqrtn", max_norm=1.0),
            fc.indicator_column(fc.sequence_categorical_column_with_identity(ident, 5))], seed=0)

    def encode(self, key, form, seqs=None):
        seqs = self.values[key] if seqs is None else seqs
        kind, B = self.kind[key], len(seqs)
        T = max(len(s) for s in seqs)
        # values of another type than the column's (the bad inputs) make object arrays
        flat = [v for s in seqs for v in np.ravel(np.asarray(s, dtype=object))]
        natural = {"numeric": (float, np.floating), "identity": (int, np.integer)}.get(kind, str)
        dtype = None if all(isinstance(v, natural) and not isinstance(v, bool) for v in flat) else object
        if form == "ragged":
            return [np.asarray(s, dtype=object).tolist() if kind == "numeric" else list(s) for s in seqs]
        if form == "padded":
            if kind == "numeric":
                out = np.zeros((B, T, 2), dtype=dtype or float)
            else:
                out = np.full((B, T), -1, dtype=dtype or int) if kind == "identity" else \
                    np.full((B, T), "", dtype=object)
            for b, s in enumerate(seqs):
                out[b, :len(s)] = s
            return out
        # SparseInput: (row, step) per value; numeric [T, 2] flattened to T * 2 columns, as TF
        if kind == "numeric":
            idx = [(b, 2 * t + j) for b, s in enumerate(seqs) for t in range(len(s)) for j in range(2)]
            return SparseInput(np.array(idx).reshape(-1, 2), np.array(flat, dtype=dtype), [B, 2 * T])
        idx = [(b, t) for b, s in enumerate(seqs) for t in range(len(s))]
        return SparseInput(np.array(idx).reshape(-1, 2), np.array(flat, dtype=dtype), [B, T])

    def features(self, forms=None):
        forms = self.forms if forms is None else forms
        out = {k: self.encode(k, f) for k, f in zip(self.keys, forms)}
        if "padded" in forms:
            T = int(self.lengths.max())
            out[self.mask_key] = (self.lengths if self.mask_key == "sequence_length"
                                  else np.arange(T)[None, :] < self.lengths[:, None])
        return out

    def valid_step(self, data):
        """(example, step) of a valid step, drawn."""
        b = data.draw(st.sampled_from([b for b, n in enumerate(self.lengths) if n > 0]))
        return b, data.draw(st.integers(0, self.lengths[b] - 1))


@st.composite
def sequence_batches(draw):
    keys = draw(st.lists(KEY, min_size=4, max_size=4, unique=True))
    B = draw(st.integers(1, 4))
    lengths = draw(st.lists(st.integers(0, 5), min_size=B, max_size=B).filter(any))
    forms = draw(st.lists(st.sampled_from(FORMS), min_size=4, max_size=4))
    mask_key = draw(st.sampled_from(["sequence_length", "sequence_mask"]))
    return SequenceBatch(keys, lengths, forms, mask_key, draw(st.integers(0, 2 ** 32 - 1)))


@SETTINGS
@given(batch=sequence_batches())
def test_every_input_form_gives_the_same_batch(batch):
    x, mask = batch.make_layer().forward(batch.features())
    x_ragged, mask_ragged = batch.make_layer().forward(batch.features(["ragged"] * 4))
    np.testing.assert_array_equal(mask, mask_ragged)
    np.testing.assert_array_equal(x, x_ragged)
    assert mask.sum(axis=1).tolist() == batch.lengths.tolist()


@SETTINGS
@given(batch=sequence_batches(), data=st.data())
def test_missing_sequence_feature(batch, data):
    key = data.draw(st.sampled_from(batch.keys))
    bad = batch.features()
    del bad[key]
    message = _fails_cleanly(batch.make_layer, batch.features(), bad, KeyError, key)
    assert f"feature {key!r} is missing; the batch has {sorted(bad)}" in message


@SETTINGS
@given(batch=sequence_batches(), data=st.data())
def test_sequence_features_of_different_lengths(batch, data):
    key = data.draw(st.sampled_from(batch.keys))
    b = data.draw(st.integers(0, len(batch.lengths) - 1))
    others = [n for i, n in enumerate(batch.lengths) if i != b]
    n = data.draw(st.integers(0 if any(others) else 1, 6).filter(lambda n: n != batch.lengths[b]))
    seqs = list(batch.values[key])
    seqs[b] = batch.draw(key, n, np.random.default_rng(n))
    bad = batch.features()
    # padded forms share the batch's sequence_length: give the changed feature its own lengths
    bad[key] = batch.encode(key, data.draw(st.sampled_from(["ragged", "sparse"])), seqs)
    message = _fails_cleanly(batch.make_layer, batch.features(), bad, ValueError, key)
    assert "have different lengths: example" in message


def _wrong_shapes(batch, key):
    """(bad value, error) pairs: wrong rank, width or nesting, and non-container values."""
    B, T = len(batch.lengths), int(batch.lengths.max())
    ragged = batch.encode(key, "ragged")
    if batch.kind[key] == "numeric":
        return [(np.zeros(B), ValueError), (np.zeros((B, T, 2, 1)), ValueError), (np.zeros((B, T, 3)), ValueError),
                (ragged[:-1] + [1.5], ValueError), (ragged[:-1] + [[[1.0, 2.0, 3.0]]], ValueError),
                (ragged[:-1] + [[[1.0, 2.0], [1.0]]], ValueError),
                (SparseInput(np.zeros(1, int), np.ones(1), [B, 2 * T]), ValueError), (1.5, TypeError)]
    token = "the" if batch.kind[key] != "identity" else 1
    return [(np.full(B, token), ValueError), (np.full((B, T, 1, 1), token), ValueError),
            (ragged[:-1] + [token], ValueError),
            (SparseInput(np.zeros(1, int), np.array([token]), [B, T]), ValueError), (token, TypeError)]


@SETTINGS
@given(batch=sequence_batches(), data=st.data())
def test_wrong_rank_or_shape(batch, data):
    key = data.draw(st.sampled_from(batch.keys))
    value, error = data.draw(st.sampled_from(_wrong_shapes(batch, key)))
    bad = dict(batch.features(), **{key: value})
    _fails_cleanly(batch.make_layer, batch.features(), bad, error, key)


def _wrong_values(kind):
    """(bad value for one step, error): values of the wrong type, or text that is not UTF-8."""
    if kind == "numeric":
        return [("a", TypeError), (None, TypeError)]
    bad = [(1.5, TypeError), (True, TypeError), (None, TypeError), (2.0, TypeError)]
    if kind == "identity":
        return bad + [("x", TypeError)]
    return bad + [(b"\xff", ValueError), ("\ud800", ValueError)]


@SETTINGS
@given(batch=sequence_batches(), data=st.data())
def test_wrong_dtype(batch, data):
    key = data.draw(st.sampled_from(batch.keys))
    value, error = data.draw(st.sampled_from(_wrong_values(batch.kind[key])))
    b, t = batch.valid_step(data)
    seqs = [np.array(s, dtype=object) if batch.kind[key] == "numeric" else list(s) for s in batch.values[key]]
    seqs[b][t] = value
    form = data.draw(st.sampled_from(FORMS if error is TypeError else ["ragged"]))
    bad = batch.features()
    bad[key] = batch.encode(key, form, seqs)
    _fails_cleanly(batch.make_layer, batch.features(), bad, error, key)


@SETTINGS
@given(batch=sequence_batches(), data=st.data(), value=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_nan_or_inf_in_a_numeric_feature(batch, data, value):
    key = batch.keys[0]
    b, t = batch.valid_step(data)
    seqs = [s.copy() for s in batch.values[key]]
    seqs[b][t, data.draw(st.integers(0, 1))] = value
    bad = batch.features()
    bad[key] = batch.encode(key, batch.forms[0], seqs)
    message = _fails_cleanly(batch.make_layer, batch.features(), bad, ValueError, key)
    assert "contains NaN or inf" in message


@SETTINGS
@given(batch=sequence_batches(), data=st.data())
def test_empty_batch(batch, data):
    key = data.draw(st.sampled_from(batch.keys))
    T = int(batch.lengths.max())
    form = data.draw(st.sampled_from(FORMS))
    width = 2 if batch.kind[key] == "numeric" else 1
    empty = {"ragged": [], "padded": np.zeros((0, T, 2)) if width == 2 else np.zeros((0, T), dtype=int),
             "sparse": SparseInput(np.zeros((0, 2), int), np.zeros(0), [0, width * T])}[form]
    bad = dict(batch.features(), **{key: empty})
    message = _fails_cleanly(batch.make_layer, batch.features(), bad, ValueError, key)
    assert "empty" in message


@SETTINGS
@given(batch=sequence_batches(), data=st.data())
def test_bad_sequence_length_or_mask(batch, data):
    B, T = len(batch.lengths), int(batch.lengths.max())
    good = batch.features(["padded"] * 4)
    bad = dict(good)
    bad[batch.mask_key] = data.draw(st.sampled_from(
        [np.ones(B + 1, dtype=int), np.full(B, T + 1), np.ones(B) * 0.5, -np.ones(B, dtype=int)]
        if batch.mask_key == "sequence_length" else
        [np.ones((B, T + 1), dtype=bool), np.full((B, T), 2), np.ones(B, dtype=bool)]))
    # the message names the mask / length feature, or the feature it does not fit
    _fails_cleanly(batch.make_layer, good, bad, ValueError, batch.mask_key, *batch.keys)


# ---------------------------------------------------------------------------------------------
# context features
# ---------------------------------------------------------------------------------------------

class ContextBatch:
    """numeric [B, 2]; a vocabulary column weighted by another feature [B, 2]; a bucketized numeric;
    hashed strings [B]; identity ids [B, 2] padded with -1. Arrays, or plain lists."""

    def __init__(self, keys, B, as_lists, seed):
        self.keys, self.as_lists = keys, as_lists
        num, vocab, weight, bucket, hashed, ident = keys
        rng = np.random.default_rng(seed)
        self.values = {num: rng.standard_normal((B, 2)), vocab: rng.choice(np.array(TOKENS, dtype=object), (B, 2)),
                       weight: rng.random((B, 2)), bucket: rng.standard_normal(B),
                       hashed: rng.choice(np.array(TOKENS, dtype=object), B), ident: rng.integers(-1, 4, (B, 2))}

    def make_layer(self):
        num, vocab, weight, bucket, hashed, ident = self.keys
        vocab_col = fc.categorical_column_with_vocabulary_list(vocab, WORDS, num_oov_buckets=1)
        return ContextFeatures([
            fc.numeric_column(num, shape=2),
            fc.embedding_column(fc.weighted_categorical_column(vocab_col, weight), 2, combiner="sum"),
            fc.indicator_column(fc.bucketized_column(fc.numeric_column(bucket), [0.0, 1.0])),
            fc.embedding_column(fc.categorical_column_with_hash_bucket(hashed, 5), 3, max_norm=0.5),
            fc.indicator_column(fc.categorical_column_with_identity(ident, 4))], seed=0)

    def features(self, **changes):
        out = dict(self.values, **changes)
        return {k: v.tolist() if self.as_lists and isinstance(v, np.ndarray) else v for k, v in out.items()}


@st.composite
def context_batches(draw):
    keys = draw(st.lists(KEY, min_size=6, max_size=6, unique=True))
    return ContextBatch(keys, draw(st.integers(1, 4)), draw(st.booleans()), draw(st.integers(0, 2 ** 32 - 1)))


def _context_breakages(batch):
    """(key, bad value, error) for every kind of breakage of every context feature."""
    num, vocab, weight, bucket, hashed, ident = batch.keys
    B = len(batch.values[bucket])

    def with_value(key, value, dtype=None):
        """The feature with ``value`` in its first row (as ``dtype``)."""
        out = batch.values[key].astype(dtype or batch.values[key].dtype)
        out[0] = value
        return out

    return [
        # wrong rank or width, rows of different lengths
        (num, np.float64(1.0), ValueError), (num, np.ones((B, 3)), ValueError), (bucket, "x", ValueError),
        (vocab, [["the", "cat"]] * max(B - 1, 1) + [["the"]], ValueError), (ident, 3, ValueError),
        (weight, np.ones((B, 3)), ValueError),
        # batch size differs from the other features
        (hashed, np.array(["the"] * (B + 1), dtype=object), ValueError),
        # wrong dtype
        (num, np.full((B, 2), "a"), TypeError), (bucket, with_value(bucket, None, object), TypeError),
        (vocab, np.full((B, 2), 1.5), TypeError), (hashed, with_value(hashed, None), TypeError),
        (ident, with_value(ident, "x", object), TypeError), (weight, np.full((B, 2), "w"), TypeError),
        (hashed, with_value(hashed, b"\xff"), ValueError),
        # NaN / inf
        (num, with_value(num, np.nan), ValueError), (bucket, with_value(bucket, np.inf), ValueError),
        (weight, with_value(weight, -np.inf), ValueError),
        # empty batch
        (num, np.zeros((0, 2)), ValueError), (hashed, np.array([], dtype=object), ValueError),
    ]


@settings(max_examples=40, deadline=None)
@given(batch=context_batches(), data=st.data())
def test_bad_context_features(batch, data):
    key, value, error = data.draw(st.sampled_from(_context_breakages(batch)))
    _fails_cleanly(batch.make_layer, batch.features(), batch.features(**{key: value}), error, key)


@SETTINGS
@given(batch=context_batches(), data=st.data())
def test_missing_context_feature(batch, data):
    key = data.draw(st.sampled_from(batch.keys))            # the weight feature's key included
    bad = batch.features()
    del bad[key]
    message = _fails_cleanly(batch.make_layer, batch.features(), bad, KeyError, key)
    assert f"feature {key!r} is missing; the batch has {sorted(bad)}" in message


# ---------------------------------------------------------------------------------------------
# labels (minirnn/heads.py)
# ---------------------------------------------------------------------------------------------

@SETTINGS
@given(n=st.integers(3, 6), B=st.integers(1, 5), data=st.data())
def test_class_ids_outside_the_classes_show_the_value(n, B, data):
    bad = data.draw(st.one_of(st.integers(-(10 ** 6), -1), st.integers(n, 10 ** 6)))
    labels = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=B, max_size=B)))
    labels[data.draw(st.integers(0, B - 1))] = bad
    with pytest.raises(ValueError) as info:
        MultiClassHead(n).loss(np.zeros((B, n)), labels)
    assert f"[0, {n})" in str(info.value) and repr(bad) in str(info.value)


@SETTINGS
@given(B=st.integers(1, 5), data=st.data())
def test_labels_outside_the_vocabulary_show_the_value(B, data):
    vocabulary = ["low", "mid", "high"]
    bad = data.draw(st.text(max_size=6).filter(lambda s: s not in vocabulary))
    labels = np.array(data.draw(st.lists(st.sampled_from(vocabulary), min_size=B, max_size=B)), dtype=object)
    labels[data.draw(st.integers(0, B - 1))] = bad
    with pytest.raises(ValueError) as info:
        MultiClassHead(3, label_vocabulary=vocabulary).loss(np.zeros((B, 3)), labels)
    assert repr(bad) in str(info.value) and "label_vocabulary" in str(info.value)


@SETTINGS
@given(bad=st.one_of(st.floats(1.0, 1e9, exclude_min=True), st.floats(-1e9, 0.0, exclude_max=True),
                     st.just(np.nan)))
def test_binary_labels_outside_0_1_show_the_value(bad):
    with pytest.raises(ValueError) as info:
        BinaryClassHead().loss(np.zeros((2, 1)), np.array([1.0, bad]))
    assert repr(bad) in str(info.value)


def test_empty_batch_of_labels():
    with pytest.raises(ValueError, match="empty batch"):
        MultiClassHead(3).loss(np.zeros((0, 3)), np.zeros(0, dtype=int))
