"""Feature columns, input forms, the feature layers and sparse embedding updates."""

import json
import os

import numpy as np
import pytest
from _numeric import central_difference
from hypothesis import given, settings
from hypothesis import strategies as st

from minirnn import feature_column as fc
from minirnn import optimizers as O
from minirnn.features import ContextFeatures, SequenceFeatures
from minirnn.inputs import SparseInput, ragged_tokens

TF = json.load(open(os.path.join(os.path.dirname(__file__), "data", "tf_hash_buckets.json"), encoding="utf-8"))


def test_vocabulary_and_hash_ids_equal_tensorflow(tmp_path):
    col = fc.sequence_categorical_column_with_vocabulary_list("w", TF["vocab_list"], num_oov_buckets=TF["vocab_num_oov_buckets"])
    assert col.ids(np.array(TF["strings"])).tolist() == TF["vocab_ids"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(TF["vocab_list"]) + "\n", encoding="utf-8")
    from_file = fc.sequence_categorical_column_with_vocabulary_file("w", str(path), num_oov_buckets=5)
    assert from_file.ids(np.array(TF["strings"], dtype=object)).tolist() == TF["vocab_ids"]
    for n in (7, 1000):
        hashed = fc.categorical_column_with_hash_bucket("w", n)
        assert hashed.ids(np.array(TF["strings"])).tolist() == TF["string_buckets"][str(n)]
        assert hashed.ids(np.array(TF["ints"])).tolist() == TF["int_buckets"][str(n)]
    default = fc.categorical_column_with_vocabulary_list("w", ["a", "b"], default_value=-1)
    assert default.ids(np.array(["b", "zzz", "a"])).tolist() == [1, -1, 0]


def test_identity_and_bucketized_ids():
    ident = fc.categorical_column_with_identity("c", 5, default_value=0)
    assert ident.ids(np.array([4, 5, -3])).tolist() == [4, 0, 0]
    with pytest.raises(ValueError, match=r"feature 'c': id 7 is outside \[0, 5\)"):
        fc.categorical_column_with_identity("c", 5).ids(np.array([1, 7]))
    bucket = fc.bucketized_column(fc.numeric_column("a", shape=2), [0.0, 10.0])
    assert bucket.num_buckets == 6
    np.testing.assert_array_equal(bucket.ids(np.array([[-1.0, 5.0], [10.0, 20.0]])), [[0, 4], [2, 5]])


@pytest.mark.parametrize("make,message", [
    (lambda: fc.categorical_column_with_identity("c", 5, default_value=7), r"default_value 7 not in range"),
    (lambda: fc.categorical_column_with_hash_bucket("c", 0), "hash_bucket_size must be at least 1"),
    (lambda: fc.categorical_column_with_vocabulary_list("c", []), "vocabulary is empty"),
    (lambda: fc.categorical_column_with_vocabulary_list("c", ["a", "a"]), "duplicate key in vocabulary: 'a'"),
    (lambda: fc.categorical_column_with_vocabulary_list("c", ["a"], default_value=0, num_oov_buckets=2), "both default_value and num_oov_buckets"),
    (lambda: fc.categorical_column_with_vocabulary_file("c", "/no/such/file"), "is not a file"),
    (lambda: fc.numeric_column("c", dtype=str), "dtype must be convertible to float"),
    (lambda: fc.bucketized_column(fc.numeric_column("a"), [2, 1]), "boundaries must be a sorted list"),
    (lambda: fc.embedding_column(fc.categorical_column_with_identity("c", 3), 0), "dimension"),
    (lambda: fc.embedding_column(fc.categorical_column_with_identity("c", 3), 2, combiner="max"), "combiner"),
])
def test_column_construction_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_sparse_length_rule_matches_tensorflow():
    """TF: indices {(0,0),(0,1),(1,0),(2,3)} in a [4, 5] SparseTensor -> lengths [2, 1, 4, 0]."""
    layer = SequenceFeatures([fc.sequence_numeric_column("v")])
    sparse = SparseInput(np.array([[0, 0], [0, 1], [1, 0], [2, 3]]), np.array([1.0, 2.0, 3.0, 4.0]), [4, 5])
    x, mask = layer.forward({"v": sparse})
    assert mask.sum(axis=1).tolist() == [2, 1, 4, 0]
    assert x[2, :4, 0].tolist() == [0.0, 0.0, 0.0, 4.0]              # gaps count, filled with the default


def test_input_forms_agree():
    tokens = fc.embedding_column(fc.sequence_categorical_column_with_vocabulary_list("tok", ["a", "b", "c"], num_oov_buckets=2), 3)
    value = fc.sequence_numeric_column("val", shape=(2,))
    ragged = {"tok": [["a", "b", "zz"], ["c"]], "val": [[[1, 2], [3, 4], [5, 6]], [[7, 8]]]}
    padded = {"tok": np.array([["a", "b", "zz"], ["c", "", ""]]),
              "val": np.array([[[1, 2], [3, 4], [5, 6]], [[7, 8], [0, 0], [0, 0]]], dtype=float),
              "sequence_length": np.array([3, 1])}
    sparse = {"tok": SparseInput(np.array([[0, 0], [0, 1], [0, 2], [1, 0]]), np.array(["a", "b", "zz", "c"]), [2, 3]),
              "val": SparseInput(np.array([[0, 0], [0, 1], [0, 2], [0, 3], [0, 4], [0, 5], [1, 0], [1, 1]]),
                                 np.arange(1.0, 9.0), [2, 6])}
    outputs = [SequenceFeatures([value, tokens], seed=0).forward(f) for f in (ragged, padded, sparse)]
    for x, mask in outputs[1:]:
        np.testing.assert_array_equal(mask, outputs[0][1])
        np.testing.assert_allclose(x, outputs[0][0])
    x, mask = outputs[0]
    assert x.shape == (2, 3, 5) and mask.tolist() == [[True, True, True], [True, False, False]]
    layer = SequenceFeatures([value, tokens], seed=0)
    assert [c.name for c in layer.columns] == ["tok_embedding", "val"]     # sorted by name, as TF
    np.testing.assert_allclose(x[0, 0, 3:], [1, 2])


def test_tf_padding_rule_for_padded_categorical_inputs():
    layer = SequenceFeatures([fc.indicator_column(fc.sequence_categorical_column_with_identity("ids", 4))])
    x, mask = layer.forward({"ids": np.array([[1, 2, -1, -1], [3, -1, 2, -1], [-1, -1, -1, -1]])})
    assert mask.sum(axis=1).tolist() == [2, 3, 0]                    # -1 is padding; a gap still counts
    np.testing.assert_array_equal(x[1, 1], 0)                         # the gap gives a zero row
    np.testing.assert_array_equal(x[0, 1], [0, 0, 1, 0])


def test_combiners_max_norm_and_indicator_counts():
    cat = fc.sequence_categorical_column_with_identity("ids", 4)
    ids = np.array([[[0, 1], [2, -1]]])                                # two ids in step 0, one in step 1
    table = np.arange(8, dtype=np.float32).reshape(4, 2)
    for combiner, expected in (("sum", table[0] + table[1]), ("mean", (table[0] + table[1]) / 2),
                               ("sqrtn", (table[0] + table[1]) / np.sqrt(2))):
        layer = SequenceFeatures([fc.embedding_column(cat, 2, combiner=combiner, initializer=lambda s: table)])
        x, _ = layer.forward({"ids": ids})
        np.testing.assert_allclose(x[0, 0], expected, rtol=1e-6)
        np.testing.assert_allclose(x[0, 1], table[2], rtol=1e-6)
    clipped = SequenceFeatures([fc.embedding_column(cat, 2, combiner="sum", max_norm=1.0, initializer=lambda s: table)])
    x, _ = clipped.forward({"ids": ids})
    np.testing.assert_allclose(x[0, 1], table[2] / np.linalg.norm(table[2]), rtol=1e-6)
    counts = SequenceFeatures([fc.indicator_column(cat)]).forward({"ids": np.array([[[1, 1], [3, -1]]])})[0]
    np.testing.assert_array_equal(counts[0], [[0, 2, 0, 0], [0, 0, 0, 1]])


@pytest.mark.parametrize("combiner,max_norm", [("mean", None), ("sqrtn", None), ("sum", 0.5)])
def test_embedding_gradient_matches_central_differences(combiner, max_norm):
    cat = fc.sequence_categorical_column_with_identity("ids", 6)
    layer = SequenceFeatures([fc.embedding_column(cat, 3, combiner=combiner, max_norm=max_norm)], seed=1, dtype="float64")
    features = {"ids": np.array([[[0, 2], [2, -1], [5, 5]], [[1, -1], [-1, -1], [0, 3]]])}
    weights = np.random.default_rng(0).standard_normal((2, 3, 3))

    def loss():
        return float(np.sum(layer.forward(features)[0] * weights))

    loss()
    (grad,) = layer.backward(weights)
    assert sorted(grad.rows.tolist()) == [0, 1, 2, 3, 5]               # only looked-up rows
    np.testing.assert_allclose(grad.to_dense(), central_difference(loss, layer.params()[0]), atol=1e-7)


def test_context_features_weighted_and_bucketized():
    color = fc.categorical_column_with_vocabulary_list("color", ["red", "green", "blue"])
    layer = ContextFeatures([fc.numeric_column("age"),
                             fc.indicator_column(fc.weighted_categorical_column(color, "color_weight")),
                             fc.indicator_column(fc.bucketized_column(fc.numeric_column("h"), [1.0, 2.0]))])
    out = layer.forward({"age": np.array([30.0, 40.0]), "color": np.array([["red", "blue"], ["green", ""]]),
                         "color_weight": np.array([[0.5, 2.0], [1.0, 0.0]]), "h": np.array([0.5, 3.0])})
    assert [c.name for c in layer.columns] == ["age", "color_weighted_by_color_weight_indicator", "h_bucketized_indicator"]
    np.testing.assert_allclose(out, [[30, 0.5, 0, 2.0, 1, 0, 0], [40, 0, 1.0, 0, 0, 0, 1]])


def test_layer_errors_name_the_feature():
    seq = SequenceFeatures([fc.sequence_numeric_column("a"), fc.embedding_column(
        fc.sequence_categorical_column_with_hash_bucket("b", 10), 2)], seed=0)
    with pytest.raises(KeyError, match=r"feature 'b' is missing; the batch has \['a'\]"):
        seq.forward({"a": [[1.0, 2.0]]})
    with pytest.raises(ValueError, match=r"sequence features 'a' and 'b' have different lengths: example 1 has "
                                         r"1 steps in 'a' and 2 in 'b'"):
        seq.forward({"a": [[1.0, 2.0], [1.0]], "b": [["x", "y"], ["x", "y"]]})
    with pytest.raises(ValueError, match="feature 'a': contains NaN or inf"):
        seq.forward({"a": [[1.0, np.nan]], "b": [["x", "y"]]})
    with pytest.raises(TypeError, match="feature 'a': expected numbers"):
        seq.forward({"a": [["x", "y"]], "b": [["x", "y"]]})
    with pytest.raises(TypeError, match="feature 'b': expected strings or integers"):
        seq.forward({"a": [[1.0, 2.0]], "b": [[1.5, 2.5]]})
    with pytest.raises(ValueError, match="only sequence_\\* columns belong here"):
        SequenceFeatures([fc.numeric_column("c")])
    with pytest.raises(ValueError, match="wrap categorical columns in embedding_column or indicator_column"):
        SequenceFeatures([fc.sequence_categorical_column_with_identity("c", 3)])
    with pytest.raises(ValueError, match="feature_columns must not be empty"):
        ContextFeatures([])


# ---------------------------------------------------------------------------------------------
# the ragged token fast path (Numba token table) against the array path and a plain-Python oracle
# ---------------------------------------------------------------------------------------------

VOCAB = ["a", "b", "w1", "été", "日本", "x" * 70, "7", ""]
ODD_TOKENS = ["", "zz", "é", "\x00", "a\x00b", "b\x00", "y" * 65, "ü" * 20, "日本語" * 9, "a", "w1", "7",
              b"w1", b"", "日本".encode(), 7, -1, 0, np.int64(7), np.str_("b")]
tokens = st.one_of(st.sampled_from(ODD_TOKENS), st.text(max_size=20), st.text(max_size=8).map(str.encode),
                   st.integers(-(2 ** 62), 2 ** 62))


def _oracle_ids(column, token):
    """TF's id of one token, written out in plain Python (-1: padding, no id)."""
    from minirnn.kernels.farmhash import fingerprint64
    if token in ("", b"") or (isinstance(token, (int, np.integer)) and token == -1):
        return -1
    text = token if isinstance(token, bytes) else str(int(token)) if isinstance(token, (int, np.integer)) else token
    fp = int(fingerprint64([text])[0])
    if isinstance(column, fc.HashBucketColumn):
        return fp % column.num_buckets
    key = text.decode("utf-8") if isinstance(text, bytes) else text
    if key in column.vocabulary:
        return column.vocabulary.index(key)
    return len(column.vocabulary) + fp % column.num_oov_buckets if column.num_oov_buckets else column.default_value


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(st.lists(tokens, min_size=1, max_size=6), min_size=1, max_size=4))
def test_ragged_token_ids_equal_the_oracle_and_the_padded_path(batch):
    cols = [fc.sequence_categorical_column_with_vocabulary_list("t", VOCAB, num_oov_buckets=3),
            fc.sequence_categorical_column_with_vocabulary_list("t", VOCAB, default_value=2),
            fc.sequence_categorical_column_with_hash_bucket("t", 11)]
    flat = [t for seq in batch for t in seq]
    for col in cols:
        got = col.ids(flat)
        assert got.tolist() == [_oracle_ids(col, t) for t in flat]
    # the layer: ragged lists (fast path) == padded object array (array path) == nested ragged steps
    layer_cols = [fc.embedding_column(cols[0], 3), fc.indicator_column(cols[2])]
    T = max(map(len, batch))
    padded = np.full((len(batch), T), "", dtype=object)
    for b, seq in enumerate(batch):
        padded[b, :len(seq)] = [t if isinstance(t, (str, bytes)) else "" if t == -1 else str(int(t)) for t in seq]
    lengths = np.array([len(s) for s in batch])
    forms = [{"t": batch}, {"t": padded, "sequence_length": lengths}, {"t": [[[t] for t in seq] for seq in batch]}]
    outputs = [SequenceFeatures(layer_cols, seed=0).forward(f) for f in forms]
    for x, mask in outputs[1:]:
        np.testing.assert_array_equal(mask, outputs[0][1])
        np.testing.assert_array_equal(x, outputs[0][0])


def test_vocabulary_table_compares_bytes_when_fingerprints_collide():
    from minirnn.kernels.farmhash import pack
    from minirnn.kernels.tokens import build_table, vocabulary_ids
    keys, offsets = pack(["a", "bb", "ccc"])
    same = np.full(3, 12345, dtype=np.uint64)                          # every key on one fingerprint
    table = build_table(keys, offsets[:-1], offsets[1:], same, np.array([4, 5, 6]))
    buf, spans = pack(["ccc", "a", "zz", "bb", ""])
    got = vocabulary_ids(buf, spans[:-1], spans[1:], np.full(5, 12345, dtype=np.uint64),
                         np.array([False, False, False, False, True]), table, keys, 7, 0, -1)
    assert got.tolist() == [6, 4, -1, 5, -1]                           # 'zz' collides but is not a key


def test_ragged_fast_path_runs_and_shares_one_flattening(monkeypatch):
    from minirnn import features
    vocab = fc.embedding_column(
        fc.sequence_categorical_column_with_vocabulary_list("tok", ["a", "b"], num_oov_buckets=2), 4)
    hashed = fc.embedding_column(fc.sequence_categorical_column_with_hash_bucket("tok2", 5), 4)
    batch = [["a", "b", "zz"], ["b"]]
    expected = SequenceFeatures([vocab, hashed], seed=0).forward({"tok": batch, "tok2": [list(s) for s in batch]})
    calls = []
    monkeypatch.setattr(features, "parse_sequence", lambda *a, **k: pytest.fail("the general parser ran"))
    monkeypatch.setattr(features, "ragged_tokens", lambda raw: calls.append(raw) or ragged_tokens(raw))
    x, mask = SequenceFeatures([vocab, hashed], seed=0).forward({"tok": batch, "tok2": batch})
    assert len(calls) == 1                                           # one list under two keys: flattened once
    np.testing.assert_array_equal(x, expected[0])
    np.testing.assert_array_equal(mask, expected[1])


def test_ragged_integer_padding_and_strings_are_not_sequences():
    ident = fc.indicator_column(fc.sequence_categorical_column_with_identity("t", 4))
    layer = SequenceFeatures([ident])
    flat, _ = layer.forward({"t": [[1, -1, 2]]})
    nested, _ = layer.forward({"t": [[[1], [-1], [2]]]})
    padded, _ = layer.forward({"t": np.array([[1, -1, 2]])})
    np.testing.assert_array_equal(flat, nested)                      # -1 is padding in every form
    np.testing.assert_array_equal(flat, padded)
    np.testing.assert_array_equal(flat[0, 1], 0)
    hashed = SequenceFeatures([fc.indicator_column(fc.sequence_categorical_column_with_hash_bucket("t", 3))])
    with pytest.raises(ValueError, match=r"feature 't', example 0: expected a sequence, got a scalar 'ab'"):
        hashed.forward({"t": ["ab", "cd"]})                          # not two sequences of characters


@pytest.mark.parametrize("combiner,max_norm", [("mean", None), ("sqrtn", 0.4), ("sum", 0.5)])
def test_one_id_per_step_gradient_matches_central_differences(combiner, max_norm):
    col = fc.sequence_categorical_column_with_vocabulary_list("w", ["a", "b", "c"], num_oov_buckets=1)
    layer = SequenceFeatures([fc.embedding_column(col, 3, combiner=combiner, max_norm=max_norm),
                              fc.sequence_numeric_column("v")], seed=2, dtype="float64")
    features = {"w": [["a", "zz", "a", ""], ["c", "b"]], "v": [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0]]}
    weights = np.random.default_rng(1).standard_normal((2, 4, 4))

    def loss():
        return float(np.sum(layer.forward(features)[0] * weights))

    loss()
    (grad,) = layer.backward(weights)
    assert grad.rows.tolist() == [0, 1, 2, 3]                        # '' is padding: no row
    np.testing.assert_allclose(grad.to_dense(), central_difference(loss, layer.params()[0]), atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 5), T=st.integers(1, 6), bad_row=st.integers(0, 4), bad_step=st.integers(0, 5),
       bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_bad_numeric_values_raise_and_change_nothing(B, T, bad_row, bad_step, bad):
    layer = SequenceFeatures([fc.sequence_numeric_column("x"), fc.embedding_column(
        fc.sequence_categorical_column_with_identity("t", 5), 2)], seed=0)
    before = [p.copy() for p in layer.params()]
    x = np.ones((B, T))
    x[bad_row % B, bad_step % T] = bad
    with pytest.raises(ValueError, match="feature 'x': contains NaN or inf"):
        layer.forward({"x": x, "t": np.zeros((B, T), dtype=int)})
    for a, b in zip(layer.params(), before):
        np.testing.assert_array_equal(a, b)


def test_sparse_rows_updates():
    rows = O.SparseRows([1, 3], np.ones((2, 2)), (5, 2))
    for name, lazy in (("SGD", False), ("Adagrad", False), ("Adam", True)):
        sparse_w, dense_w = np.zeros((5, 2)), np.zeros((5, 2))
        sparse_opt, dense_opt = O.NAMES[name](0.1), O.NAMES[name](0.1)
        for step in range(3):
            grad = rows if step != 1 else O.SparseRows([0], np.ones((1, 2)), (5, 2))
            sparse_opt.apply([sparse_w], [grad])
            dense_opt.apply([dense_w], [grad.to_dense()])
        if lazy:          # Adam: untouched rows keep their moments, so rows 1 and 3 differ from dense
            assert np.all(sparse_w[[2, 4]] == 0) and not np.allclose(sparse_w, dense_w)
        else:
            np.testing.assert_allclose(sparse_w, dense_w)
    clipped = O.clip_by_global_norm([O.SparseRows([0], [[3.0, 4.0]], (2, 2))], 1.0)[0]
    np.testing.assert_allclose(clipped.values, [[0.6, 0.8]])


def test_numpy_input_fn_batches_epochs_and_shuffle():
    from minirnn.inputs import batches, numpy_input_fn
    x = {"seq": [[1.0] * (i + 1) for i in range(10)], "ctx": np.arange(10.0)}
    y = np.arange(10)
    fn = numpy_input_fn(x, y, batch_size=4, num_epochs=2, shuffle=True, seed=3)
    got = list(batches(fn))
    assert [len(labels) for _, labels in got] == [4, 4, 2, 4, 4, 2]
    first_epoch = np.concatenate([labels for _, labels in got[:3]])
    assert sorted(first_epoch) == list(range(10)) and list(first_epoch) != list(range(10))
    for features, labels in got:                                     # rows stay aligned
        np.testing.assert_array_equal(features["ctx"], labels)
        assert [len(s) for s in features["seq"]] == [int(v) + 1 for v in labels]
    assert [l.tolist() for _, l in batches(numpy_input_fn(x, y, batch_size=4, num_epochs=2, shuffle=True, seed=3))] == \
           [l.tolist() for _, l in got]                               # the seed fixes the order
    with pytest.raises(ValueError, match="shuffle must be provided"):
        numpy_input_fn(x, y)
    with pytest.raises(ValueError, match="same number of examples"):
        numpy_input_fn(x, y[:5], shuffle=False)


def test_batches_accepts_tf_input_fn_forms():
    from minirnn.inputs import batches
    one = ({"a": np.ones(2)}, np.zeros(2))
    assert len(list(batches(lambda: one))) == 1
    assert len(list(batches(lambda: iter([one, one, one])))) == 3
    assert list(batches(lambda: {"a": 1}))[0][1] is None
    with pytest.raises(TypeError, match="input_fn batch 1"):
        list(batches(lambda: [one, 5]))


def test_hdf5_input_fn_streams_batches(tmp_path):
    import h5py
    from minirnn.inputs import batches, hdf5_input_fn
    path = tmp_path / "data.h5"
    tokens = np.array([["a", "b", ""], ["c", "", ""], ["a", "a", "a"], ["b", "c", ""], ["c", "c", ""]], dtype=object)
    with h5py.File(path, "w") as f:
        f.create_dataset("tokens", data=tokens.astype("S"))
        f.create_dataset("length", data=np.array([2, 1, 3, 2, 2]))
        f.create_dataset("label", data=np.array([0, 1, 0, 1, 1]))
    fn = hdf5_input_fn(path, ["tokens"], "label", batch_size=2, length_key="length")
    got = list(batches(fn))
    assert [len(l) for _, l in got] == [2, 2, 1]
    assert got[0][0]["tokens"][0].tolist() == ["a", "b", ""] and got[0][0]["sequence_length"].tolist() == [2, 1]
    layer = SequenceFeatures([fc.indicator_column(fc.sequence_categorical_column_with_vocabulary_list("tokens", ["a", "b", "c"]))])
    x, mask = layer.forward(got[0][0])
    assert mask.sum(axis=1).tolist() == [2, 1] and x[0, 1].tolist() == [0, 1, 0]
    shuffled = [l.tolist() for _, l in batches(hdf5_input_fn(path, ["tokens"], "label", batch_size=2, shuffle=True, seed=0))]
    assert sorted(sum(shuffled, [])) == [0, 0, 1, 1, 1]
    with pytest.raises(KeyError, match="no dataset 'nope'"):
        hdf5_input_fn(path, ["nope"])


@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(1, 6), seed=st.integers(0, 2**31), max_norm=st.sampled_from([None, 0.3]),
       dtype=st.sampled_from(["float32", "float64"]))
def test_one_id_per_step_lookup_compiled_equals_numpy(B, T, seed, max_norm, dtype):
    """One id per step: the looked-up rows are written into x by a compiled loop (or NumPy without
    Numba), here into the middle of x (a numeric column before, a second embedding after), with
    padding and gaps; both equal a plain-Python oracle."""
    from unittest import mock
    from minirnn import features as F
    rng = np.random.default_rng(seed)
    ids = rng.integers(-1, 5, (B, T))                                  # -1: padding (at the end) or a gap
    num = rng.standard_normal((B, T))
    columns = [fc.sequence_numeric_column("a"),
               fc.embedding_column(fc.sequence_categorical_column_with_identity("b", 5), 3, max_norm=max_norm),
               fc.embedding_column(fc.sequence_categorical_column_with_identity("c", 5), 2)]
    layer = SequenceFeatures(columns, seed=seed % 1000, dtype=dtype)
    features = {"a": num, "b": ids, "c": np.where(ids >= 0, 4 - ids, -1), "sequence_length": np.full(B, T)}
    outs = []
    for usable in (True, False):
        with mock.patch.object(F, "_numba_usable", lambda: usable):
            outs.append(layer.forward(features)[0])
    np.testing.assert_array_equal(outs[0], outs[1])
    table_b, table_c = (layer.embeddings.tables[c.name].astype(np.float64) for c in columns[1:])
    for b in range(B):
        for t in range(T):
            expected = np.zeros(6)
            expected[0] = num[b, t]
            if ids[b, t] >= 0:
                row = table_b[ids[b, t]]
                if max_norm is not None:
                    row = row * min(1.0, max_norm / np.linalg.norm(row))
                expected[1:4], expected[4:6] = row, table_c[4 - ids[b, t]]
            np.testing.assert_allclose(outs[0][b, t], expected, rtol=1e-6, atol=1e-7)


@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(1, 6), vocab=st.integers(1, 300), seed=st.integers(0, 2**31))
def test_embedding_gradient_sum_paths_agree(B, T, vocab, seed):
    """Repeated ids are summed by a compiled pass (small tables) or by sorting (large ones): same rows,
    same sums, ids ascending."""
    from unittest import mock
    from minirnn import features as F
    rng = np.random.default_rng(seed)
    layer = SequenceFeatures([fc.embedding_column(fc.sequence_categorical_column_with_identity("t", vocab), 3)],
                             seed=0, dtype="float64")
    ids = rng.integers(0, min(vocab, 4), (B, T))                       # few distinct ids: many repeats
    d_out = rng.standard_normal((B, T, 3))
    grads = []
    for slots in (F._dense_slots_per_id(), 0):                        # compiled pass, then the sort path
        with mock.patch.object(F, "_dense_slots_per_id", lambda: slots):
            layer.forward({"t": ids})
            grads.append(layer.backward(d_out)[0])
    expected = np.zeros((vocab, 3))
    np.add.at(expected, ids.ravel(), d_out.reshape(-1, 3))
    for g in grads:
        assert g.rows.tolist() == sorted(set(ids.ravel().tolist()))
        np.testing.assert_allclose(g.to_dense(), expected, rtol=1e-12, atol=1e-12)


def test_normalization_adapts_per_feature_as_keras_and_travels_with_the_model(tmp_path):
    import minirnn
    rng = np.random.default_rng(0)
    seqs = [np.c_[rng.uniform(60, 120, n), rng.normal(1013, 5, n), np.full(n, 2.0)] for n in (3, 1, 6)]
    flat = np.concatenate(seqs)
    norm = fc.Normalization().adapt(seqs)
    np.testing.assert_allclose(norm.mean, flat.mean(axis=0))
    np.testing.assert_allclose(norm.variance, flat.var(axis=0))            # population variance, as Keras
    padded = np.zeros((3, 6, 3))
    for b, s in enumerate(seqs):
        padded[b, :len(s)] = s
    np.testing.assert_allclose(fc.Normalization().adapt(flat).mean, norm.mean)
    # Keras's formula: (x - mean) / max(sqrt(variance), 1e-7); a constant feature becomes 0
    np.testing.assert_allclose(norm(flat), (flat - norm.mean) / np.maximum(np.sqrt(norm.variance), 1e-7))
    assert np.all(norm(flat)[:, 2] == 0)
    column = fc.sequence_numeric_column("x", shape=3, normalizer=norm)
    clf = minirnn.RNNClassifier([column], units=[4], model_dir=str(tmp_path / "m"),
                                config=minirnn.RunConfig(random_seed=0))
    labels = np.array([1, 0, 1])
    clf.train(lambda: ({"x": seqs}, labels), steps=2)
    exported = minirnn.load_exported(clf.export_saved_model(str(tmp_path / "e")))
    np.testing.assert_allclose(exported.predict({"x": seqs})["logits"],
                               next(clf.predict(lambda: {"x": seqs}, yield_single_examples=False))["logits"])
    assert exported.spec["sequence_columns"][0]["normalizer"]["mean"] == norm.mean.tolist()
    other = fc.sequence_numeric_column("x", shape=3, normalizer=fc.Normalization(0.0, 1.0))   # resuming checks it
    with pytest.raises(ValueError, match="normalizer"):
        minirnn.RNNClassifier([other], units=[4], model_dir=str(tmp_path / "m")).train(
            lambda: ({"x": seqs}, labels), steps=1)


@pytest.mark.parametrize("make,message", [
    (lambda: fc.sequence_numeric_column("x", normalizer=fc.Normalization()), "not adapted"),
    (lambda: fc.sequence_numeric_column("x", shape=3, normalizer=fc.Normalization([0, 0], [1, 1])),
     "2 features, the column has 3"),
    (lambda: fc.Normalization(mean=[0.0]), "give both mean and variance"),
    (lambda: fc.Normalization([0.0], [-1.0]), "variance finite and >= 0"),
    (lambda: fc.Normalization().adapt([np.array([1.0, np.nan])]), "finite numbers"),
    (lambda: fc.numeric_column("c", normalizer=lambda v: v), "expected a feature_column.Normalization"),
])
def test_normalization_errors_name_what_to_change(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()
