"""ONNX export (minirnn.onnx_export): onnx.checker accepts the model and onnxruntime's predictions
equal minirnn's (1e-5) for every cell, stacked layers, variable lengths, context features,
return_sequences, every head and every kind of input column; unsupported inputs fail at export
with the column named."""

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import minirnn  # noqa: E402
from minirnn import feature_column as fc  # noqa: E402
from minirnn.export import ExportedModel, predict_batch  # noqa: E402
from minirnn.heads import BinaryClassHead, MultiClassHead, RegressionHead  # noqa: E402
from minirnn.inputs import numpy_input_fn  # noqa: E402
from minirnn.network import Network  # noqa: E402
from minirnn.onnx_export import DEFAULT_OPSET, export_onnx  # noqa: E402

B, T = 6, 7
LENGTHS = np.array([7, 3, 1, 0, 5, 7])          # full, partial, one step, empty rows


def _network(sequence_columns, context_columns=None, head=None, seed=0, **net_args):
    """A network (NumPy reference kernels) with random weights of size ~1, so biases and every gate
    matter: a gate-order or bias-layout mistake changes the outputs far beyond the tolerance."""
    head = head or BinaryClassHead()
    net = Network(sequence_columns, context_columns, logits_dimension=head.logits_dimension, seed=seed,
                  backend="numpy", **net_args)
    rng = np.random.default_rng(seed + 100)
    for p in net.params():
        p[...] = rng.uniform(-0.9, 0.9, p.shape)
    return net, head


def _exported(net, head, kind="rnn", options=None):
    spec = {"kind": kind, "options": options or {}, "signatures": {"predict": {"method": "predict", "outputs": None}}}
    return ExportedModel(None, spec, net, head)


def _session(source, tmp_path, name="model.onnx", **kwargs):
    path = export_onnx(source, os.path.join(tmp_path, name), **kwargs)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]), model


def _run(session, features):
    names = [o.name for o in session.get_outputs()]
    feeds = {i.name: features[i.name] for i in session.get_inputs()}
    return dict(zip(names, session.run(None, feeds)))


def _assert_same(got, want):
    """Every ONNX output equals minirnn's prediction of that key (the constant all_* keys aside)."""
    assert set(got) == {k for k in want if not k.startswith("all_")}
    for key, value in got.items():
        expected = want[key]
        assert value.shape == expected.shape, key
        if expected.dtype == object:                       # class names: bytes in minirnn, str in onnxruntime
            assert [v.decode() for v in expected.ravel()] == [str(v) for v in value.ravel()], key
        elif expected.dtype.kind in "biu":
            np.testing.assert_array_equal(value, expected, err_msg=key)
        else:
            np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-5, err_msg=key)


def _check(net, head, features, tmp_path, kind="rnn", options=None, **kwargs):
    session, model = _session(_exported(net, head, kind, options), tmp_path, **kwargs)
    want, _ = predict_batch(kind, head, net, features, options=options)
    got = _run(session, features)
    _assert_same(got, want)
    return got, model


def _x(seed=0, width=3):
    x = np.random.default_rng(seed).standard_normal((B, T, width)).astype(np.float32)
    x[np.arange(T)[None, :] >= LENGTHS[:, None]] = 10.0    # padding: never read
    return x


CELLS = [("simple_rnn", {}), ("lstm", {}), ("lstm", {"unit_forget_bias": False}), ("gru", {"reset_after": True}),
         ("gru", {"reset_after": False})]


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("cell,options", CELLS)
def test_each_cell_matches_minirnn(cell, options, return_sequences, tmp_path):
    net, head = _network([fc.sequence_numeric_column("x", shape=3)], units=[5], cell_type=cell,
                         cell_options=[options], return_sequences=return_sequences)
    got, model = _check(net, head, {"x": _x(), "sequence_length": LENGTHS}, tmp_path)
    op = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[cell]
    nodes = [n for n in model.graph.node if n.op_type == op]
    assert len(nodes) == 1 and nodes[0].input[4]           # the native operator, with sequence_lens
    if cell == "gru":
        attrs = {a.name: a.i for a in nodes[0].attribute}
        assert attrs["linear_before_reset"] == int(options["reset_after"])
    if return_sequences:                                   # padded steps repeat the last valid step
        assert got["sequence_mask"].tolist() == (np.arange(T)[None, :] < LENGTHS[:, None]).tolist()
        np.testing.assert_allclose(got["logits"][1, 3:], np.broadcast_to(got["logits"][1, 2], (T - 3, 1)))


def test_stacked_mixed_layers_with_context_and_embeddings(tmp_path):
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 20, (B, T, 1))
    tokens[np.arange(T)[None, :] >= LENGTHS[:, None]] = -1
    tokens[2, 0, 0] = -1                                   # a step without an id still counts
    columns = [fc.sequence_numeric_column("x", shape=3),
               fc.embedding_column(fc.sequence_categorical_column_with_identity("tokens", 20), 4)]
    context = [fc.numeric_column("age", shape=2), fc.embedding_column(fc.categorical_column_with_identity("kind", 5), 3)]
    features = {"x": _x(1), "tokens": tokens, "age": rng.standard_normal((B, 2)).astype(np.float32),
                "kind": rng.integers(0, 5, (B, 1)), "sequence_length": LENGTHS}
    for return_sequences in (False, True):
        net, head = _network(columns, context, MultiClassHead(4), units=[6, 3, 5],
                             cell_type=["lstm", "gru", "simple_rnn"],
                             cell_options=[{}, {"reset_after": False}, {}], return_sequences=return_sequences)
        got, _ = _check(net, head, features, tmp_path)
        assert got["probabilities"].shape == ((B, T, 4) if return_sequences else (B, 4))


def test_regression_head_and_every_categorical_input(tmp_path):
    """Vocabulary lookups in the graph (strings and integers), several ids per step with each
    combiner, max_norm, indicators, identity defaults, weighted and bucketized context columns and
    affine normalizers baked in."""
    rng = np.random.default_rng(2)
    words = rng.choice(np.array(["a", "b", "c", "zz", ""], dtype=object), (B, T, 2))
    numbers = rng.choice([3, 5, 9, 4, -1], (B, T, 1))
    ids = rng.choice([0, 1, 2, 7, -1, -3], (B, T, 1))       # 7 and -3: out of range -> default_value
    ctx_words = np.array([["a", "b", "", ""], ["zz", "c", "a", "b"], ["", "", "", ""], ["b", "b", "a", "c"],
                          ["c", "", "", "q"], ["a", "a", "a", "a"]], dtype=object)
    features = {"x": _x(2, 2), "w": words, "n": numbers, "i": ids, "cw": ctx_words,
                "cw_weight": rng.uniform(0, 2, (B, 4)).astype(np.float32),
                "num": rng.uniform(-2, 2, (B, 2)).astype(np.float32), "sequence_length": LENGTHS}
    sequence = [fc.sequence_numeric_column("x", shape=2, normalizer_fn=lambda v: (v - 1.5) / 2.0),
                fc.embedding_column(fc.sequence_categorical_column_with_vocabulary_list("w", ["a", "b", "c"]), 3,
                                    combiner="sqrtn", max_norm=0.5),
                fc.indicator_column(fc.sequence_categorical_column_with_vocabulary_list("n", [3, 5, 9], default_value=1)),
                fc.embedding_column(fc.sequence_categorical_column_with_identity("i", 3, default_value=2), 2,
                                    combiner="sum")]
    context = [fc.embedding_column(fc.weighted_categorical_column(
                   fc.categorical_column_with_vocabulary_list("cw", ["a", "b", "c"]), "cw_weight"), 2, combiner="mean"),
               fc.indicator_column(fc.categorical_column_with_vocabulary_list("cw", ["a", "b", "c", "zz"])),
               fc.embedding_column(fc.bucketized_column(fc.numeric_column("num", shape=2), [-1.0, 0.0, 1.0]), 3),
               fc.numeric_column("num", shape=2, normalizer_fn=lambda v: v * 3.0 + 1.0)]
    net, head = _network(sequence, context, RegressionHead(2), units=[4, 3], cell_type="lstm")
    got, model = _check(net, head, features, tmp_path)
    assert {o.domain for o in model.opset_import} == {"", "ai.onnx.ml"}
    assert any(n.op_type == "LabelEncoder" for n in model.graph.node)
    # the lookups really matter: another vocabulary entry gives other predictions
    words[0, 0, 0] = "c" if words[0, 0, 0] != "c" else "a"
    assert not np.allclose(_run(ort.InferenceSession(os.path.join(tmp_path, "model.onnx"),
                                                     providers=["CPUExecutionProvider"]), features)["predictions"][0],
                           got["predictions"][0])


def test_context_numeric_of_any_shape_is_fed_flat(tmp_path):
    """A context column of shape (2, 3) is a [batch, 6] input; a per-feature affine normalizer holds."""
    grid = fc.numeric_column("grid", shape=(2, 3), normalizer_fn=lambda v: v * np.arange(1.0, 7.0).reshape(2, 3) - 1)
    net, head = _network([fc.sequence_numeric_column("x", shape=3)], [grid], units=[4], cell_type="gru")
    values = np.random.default_rng(7).standard_normal((B, 2, 3)).astype(np.float32)
    session, _ = _session(_exported(net, head), tmp_path)
    want, _ = predict_batch("rnn", head, net, {"x": _x(7), "grid": values, "sequence_length": LENGTHS})
    _assert_same(_run(session, {"x": _x(7), "grid": values.reshape(B, 6), "sequence_length": LENGTHS}), want)


def test_adapted_normalizers_are_baked_into_the_graph(tmp_path):
    """A Normalization per feature (after an affine normalizer_fn), sequence and context."""
    rng = np.random.default_rng(3)
    x = np.stack([rng.uniform(60, 120, (B, T)), rng.normal(1013, 5, (B, T))], axis=-1).astype(np.float32)
    norm = fc.Normalization().adapt([x[b, :n] for b, n in enumerate(LENGTHS)])
    sequence = [fc.sequence_numeric_column("x", shape=2, normalizer_fn=lambda v: v * 2.0, normalizer=norm)]
    context = [fc.numeric_column("c", shape=(2, 2), normalizer=fc.Normalization([1.0, -2.0], [4.0, 0.25]))]
    net, head = _network(sequence, context, units=[4])
    c = rng.normal(size=(B, 2, 2)).astype(np.float32)
    session, _ = _session(_exported(net, head), tmp_path)
    want, _ = predict_batch("rnn", head, net, {"x": x, "c": c, "sequence_length": LENGTHS})
    _assert_same(_run(session, {"x": x, "c": c.reshape(B, 4), "sequence_length": LENGTHS}), want)


def test_hash_buckets_and_oov_buckets_take_ids_computed_outside(tmp_path):
    tokens = fc.sequence_categorical_column_with_hash_bucket("tokens", 50)
    vocab = fc.sequence_categorical_column_with_vocabulary_list("v", ["a", "b"], num_oov_buckets=3)
    net, head = _network([fc.embedding_column(tokens, 4), fc.indicator_column(vocab)], units=[4], cell_type="gru")
    for key in ("tokens", "v"):
        with pytest.raises(ValueError, match=rf"feature '{key}'.*FarmHash.*id_inputs=\['{key}'\]"):
            export_onnx(_exported(net, head), os.path.join(tmp_path, "x.onnx"),
                        id_inputs={"tokens", "v"} - {key})
    rng = np.random.default_rng(3)
    raw = rng.choice(np.array(["cat", "dog", "a", "b", "emu", "", "7"], dtype=object), (B, T, 1))
    features = {"tokens": raw, "v": raw, "sequence_length": LENGTHS}
    session, _ = _session(_exported(net, head), tmp_path, id_inputs=["tokens", "v"])
    ids = {"tokens": np.where(raw == "", -1, tokens.ids(np.where(raw == "", "x", raw))),
           "v": np.where(raw == "", -1, vocab.ids(np.where(raw == "", "x", raw)))}
    want, _ = predict_batch("rnn", head, net, features)
    _assert_same(_run(session, dict(ids, sequence_length=LENGTHS)), want)


def test_unsupported_inputs_and_arguments_fail_at_export(tmp_path):
    path = os.path.join(tmp_path, "x.onnx")
    net, head = _network([fc.sequence_numeric_column("x", normalizer_fn=np.log1p)], units=[3])
    with pytest.raises(ValueError, match="feature 'x'.*not an elementwise affine"):
        export_onnx(_exported(net, head), path)
    net, head = _network([fc.sequence_numeric_column("x")], units=[3])
    for opset in (13, 10_000, "17"):
        with pytest.raises(ValueError, match="opset"):
            export_onnx(_exported(net, head), path, opset=opset)
    with pytest.raises(ValueError, match=r"id_inputs: \['nope'\]"):
        export_onnx(_exported(net, head), path, id_inputs=["nope"])
    with pytest.raises(TypeError, match="source"):
        export_onnx(net, path)
    assert not os.path.exists(path)


def test_opset_and_ir_version_are_pinned(tmp_path):
    net, head = _network([fc.sequence_numeric_column("x", shape=3)], units=[4], cell_type="lstm")
    features = {"x": _x(), "sequence_length": LENGTHS}
    _, model = _check(net, head, features, tmp_path)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", DEFAULT_OPSET)] and model.ir_version == 8
    _, model = _check(net, head, features, tmp_path, opset=14)
    assert model.opset_import[0].version == 14 and model.ir_version == 8


def test_rows_with_gaps_equal_their_compacted_rows(tmp_path):
    """ONNX takes prefix lengths; a minirnn mask with gaps gives what the compacted row gives."""
    net, head = _network([fc.sequence_numeric_column("x", shape=3)], units=[5], cell_type="lstm")
    x = _x(4)
    mask = np.random.default_rng(4).random((B, T)) < 0.6
    compact, lengths = np.zeros_like(x), mask.sum(axis=1)
    for b in range(B):
        compact[b, :lengths[b]] = x[b, mask[b]]
    session, _ = _session(_exported(net, head), tmp_path)
    want, _ = predict_batch("rnn", head, net, {"x": x, "sequence_mask": mask})
    _assert_same(_run(session, {"x": compact, "sequence_length": lengths}), want)


@pytest.mark.parametrize("head,keys", [(MultiClassHead(3), ["classes", "probabilities"]),
                                       (BinaryClassHead(), ["classes", "probabilities"]),
                                       (RegressionHead(), ["scores"])])
def test_dynamic_rnn_keys_and_final_states(head, keys, tmp_path):
    """TF1's keys, and the final states depth first with LSTM states as (c, h)."""
    net, head = _network([fc.sequence_numeric_column("x", shape=3)], head=head, units=[4, 3],
                         cell_type=["lstm", "gru"])
    got, _ = _check(net, head, {"x": _x(5), "sequence_length": LENGTHS}, tmp_path, kind="dynamic_rnn",
                    options={"predict_probabilities": True})
    assert sorted(got) == sorted(keys + ["rnn_cell_state_0", "rnn_cell_state_1", "rnn_cell_state_2"])
    assert [got[f"rnn_cell_state_{i}"].shape[1] for i in range(3)] == [4, 4, 3]


def test_estimator_export_dir_and_exported_model(tmp_path):
    rng = np.random.default_rng(6)
    seqs = [rng.integers(0, 30, rng.integers(2, 9)).tolist() for _ in range(32)]
    labels = np.array([int(3 in s) for s in seqs])
    column = fc.embedding_column(fc.sequence_categorical_column_with_identity("tokens", 30), 4)
    clf = minirnn.RNNClassifier([column], rnn_cell_fn=lambda: [minirnn.layers.GRU(6, reset_after=False),
                                                               minirnn.layers.LSTM(4)],
                                model_dir=os.path.join(tmp_path, "model"), config=minirnn.RunConfig(random_seed=0))
    with pytest.raises(minirnn.estimator.NotFittedError):
        clf.export_onnx(os.path.join(tmp_path, "early.onnx"))
    clf.train(numpy_input_fn({"tokens": seqs}, labels, batch_size=16, num_epochs=None, shuffle=True), steps=3)
    lengths = np.array([len(s) for s in seqs[:8]])
    padded = np.full((8, lengths.max(), 1), -1)
    for b, s in enumerate(seqs[:8]):
        padded[b, :len(s), 0] = s
    features = {"tokens": padded, "sequence_length": lengths}
    want = next(clf.predict(lambda: (features, None), yield_single_examples=False))
    path = clf.export_onnx(os.path.join(tmp_path, "clf.onnx"))
    _assert_same(_run(ort.InferenceSession(path, providers=["CPUExecutionProvider"]), features), want)
    export_dir = clf.export_saved_model(os.path.join(tmp_path, "export"))
    exported = minirnn.load_exported(export_dir)
    for source in (exported, export_dir):
        session, _ = _session(source, tmp_path, name="bundle.onnx")
        _assert_same(_run(session, features), exported.predict(features))
    path = exported.export_onnx(os.path.join(tmp_path, "method.onnx"))
    _assert_same(_run(ort.InferenceSession(path, providers=["CPUExecutionProvider"]), features), want)
