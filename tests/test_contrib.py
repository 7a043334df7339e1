"""DynamicRnnEstimator: TF1's surface (tf-estimator-behaviour.md section f) and where we do better."""

import os

import numpy as np
import pytest

import minirnn
from minirnn import feature_column as fc
from minirnn.contrib import (DynamicRnnEstimator, GraphRewriteSpec, LSTMStateTuple, ModeKeys, ModelFnOps,
                             NotFittedError, PredictionType, ProblemType, construct_rnn_cell, dict_to_state_tuple,
                             state_tuple_to_dict)
from minirnn.estimator import EstimatorSpec, StopAtStepHook

CLS, REG = ProblemType.CLASSIFICATION, ProblemType.LINEAR_REGRESSION
SINGLE, MULTIPLE = PredictionType.SINGLE_VALUE, PredictionType.MULTIPLE_VALUE


def numeric():
    return [fc.sequence_numeric_column("x")]


def make(tmp_path, problem=CLS, prediction=SINGLE, **kwargs):
    kwargs.setdefault("num_units", [8])
    if problem == CLS:
        kwargs.setdefault("num_classes", 2)
    return DynamicRnnEstimator(problem, prediction, numeric(), model_dir=str(tmp_path / kwargs.pop("name", "m")),
                               config=minirnn.RunConfig(random_seed=0), **kwargs)


def ragged(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=rng.integers(3, 12)).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("args, kwargs, match", [
    ((99, SINGLE), {}, "problem_type must be either ProblemType.LINEAR_REGRESSION or ProblemType.CLASSIFICATION; got 99"),
    ((CLS, 7), {"num_classes": 2}, "prediction_type must be one of"),
    ((CLS, SINGLE), {}, "For CLASSIFICATION problem_type, num_classes must be specified."),
    ((CLS, SINGLE), {"num_classes": 1}, "n_classes must be > 1 for classification"),
    ((REG, SINGLE), {"predict_probabilities": True}, "predict_probabilities can only be set to True for problem_type"),
    ((CLS, SINGLE), {"num_classes": 2, "num_units": None}, "num_units: give the number of units"),
    ((CLS, SINGLE), {"num_classes": 2, "cell_type": "bogus"}, "cell_type: expected 'basic_rnn', 'lstm', 'gru'"),
    ((CLS, SINGLE), {"num_classes": 2, "dropout_keep_probabilities": [0.5]},
     "The number of dropout probabilities must be one greater than the number of cells"),
    ((CLS, SINGLE), {"num_classes": 2, "optimizer": "Momentum"}, "optimizer='Momentum' needs momentum"),
    ((CLS, SINGLE), {"num_classes": 2, "optimizer": "Bogus"}, "optimizer: expected one of"),
    ((CLS, SINGLE), {"num_classes": 2, "learning_rate": 0}, "learning_rate: expected a positive number"),
    ((CLS, SINGLE), {"num_classes": 2, "gradient_clipping_norm": -1}, "gradient_clipping_norm: expected a positive"),
])
def test_constructor_errors(tmp_path, args, kwargs, match):
    kwargs.setdefault("num_units", 4)
    with pytest.raises(ValueError, match=match):
        DynamicRnnEstimator(*args, numeric(), model_dir=str(tmp_path), **kwargs)


def test_integers_accepted_where_tf1_demanded_floats(tmp_path):
    est = make(tmp_path, learning_rate=1, gradient_clipping_norm=5, optimizer="Momentum", momentum=0.9)
    assert est._session.state.optimizer.global_clipnorm == 5.0 and est._session.state.optimizer.learning_rate == 1.0


def test_not_fitted_before_any_checkpoint(tmp_path):
    est = make(tmp_path)
    with pytest.raises(NotFittedError, match="Couldn't find trained model at"):
        est.predict(x=ragged(2))
    with pytest.raises(NotFittedError):
        est.evaluate(x=ragged(2), y=[0, 1])


def test_single_value_classification_keys_and_states(tmp_path):
    est = make(tmp_path, num_units=[16, 8], cell_type="lstm", predict_probabilities=True, optimizer="Adagrad")
    x = ragged(40)
    y = np.array([int(s.sum() > 0) for s in x])
    est.fit(x=x, y=y, steps=5, batch_size=8)                 # ragged arrays work (TF1's broke)
    p = next(iter(est.predict(x=x[:3])))
    assert p["classes"].dtype == np.int64 and p["classes"].shape == ()
    assert p["probabilities"].shape == (2,)
    assert [p[f"rnn_cell_state_{i}"].shape for i in range(4)] == [(16,), (16,), (8,), (8,)]   # c0 h0 c1 h1
    assert sorted(est.evaluate(x=x, y=y)) == ["accuracy", "global_step", "loss"]
    # TF1 order for an LSTM layer: (c, h); h is the layer's output, the [h, c] of minirnn's layer
    est._session.state.network.forward({"x": x[:1]})
    h, c = est._session.state.network.model.final_states[0]
    np.testing.assert_allclose(p["rnn_cell_state_0"], c[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(p["rnn_cell_state_1"], h[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cell_type, n_states", [("lstm", 2), ("gru", 1), ("basic_rnn", 1)])
def test_state_fed_back_continues_the_sequence(tmp_path, cell_type, n_states):
    est = make(tmp_path, REG, num_units=[6, 5], cell_type=cell_type)
    x = ragged(16)
    est.fit(x=x, y=np.array([s.mean() for s in x]), steps=3)
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=7).astype(np.float32), rng.normal(size=4).astype(np.float32)
    whole = next(iter(est.predict(x=[np.concatenate([a, b])])))
    first = next(iter(est.predict(x=[a])))
    states = {k: v[None] for k, v in first.items() if k.startswith("rnn_cell_state_")}
    assert len(states) == 2 * n_states
    second = next(iter(est.predict(input_fn=lambda: {"x": [b], **states})))
    np.testing.assert_allclose(second["scores"], whole["scores"], rtol=1e-6, atol=1e-6)
    for key in states:
        np.testing.assert_allclose(second[key], whole[key], rtol=1e-6, atol=1e-6)
    partial = dict(list(states.items())[:1])
    with pytest.raises(ValueError, match="RNN state was partially specified"):
        next(iter(est.predict(input_fn=lambda: {"x": [b], **partial})))


def test_padding_never_enters_the_state(tmp_path):
    est = make(tmp_path, REG)
    x = ragged(8)
    est.fit(x=x, y=np.zeros(8), steps=1)
    padded = np.zeros((1, 20), dtype=np.float32)
    padded[0, :5] = x[0][:5]
    with_length = next(iter(est.predict(input_fn=lambda: {"x": padded, "sequence_length": np.array([5])})))
    exact = next(iter(est.predict(x=[x[0][:5]])))
    np.testing.assert_allclose(with_length["rnn_cell_state_0"], exact["rnn_cell_state_0"], rtol=1e-6)


def test_multiple_value_learns_and_masks(tmp_path):
    """TF1's per-step task: label = 1 where the running sum is positive (TF1 reached 0.969)."""
    est = make(tmp_path, CLS, MULTIPLE, num_units=[16], cell_type="lstm", optimizer="Adagrad", learning_rate=0.3)
    x = ragged(256, seed=1)
    y = [(np.cumsum(s) > 0).astype(np.int64) for s in x]
    est.fit(x={"x": x}, y=y, steps=300, batch_size=32)
    test_x = ragged(128, seed=2)
    metrics = est.evaluate(x=test_x, y=[(np.cumsum(s) > 0).astype(np.int64) for s in test_x])
    assert metrics["accuracy"] > 0.9
    out = est.predict(x=test_x[:4], as_iterable=False)
    assert out["classes"].shape == (4, max(len(s) for s in test_x[:4]))
    assert sorted(out) == ["classes", "rnn_cell_state_0", "rnn_cell_state_1"]     # LSTM: c and h


def test_partial_fit_get_params_set_params(tmp_path):
    est = make(tmp_path, REG, num_units=4)
    x, y = ragged(16), np.arange(16, dtype=float) / 16
    est.partial_fit(x=x, y=y)
    est.partial_fit(x=x, y=y)
    assert est.get_variable_value("global_step") == 2
    params = est.get_params()
    assert params["num_units"] == 4 and params["cell_type"] == "basic_rnn" and params["learning_rate"] == 0.1
    est.set_params(learning_rate=0.01)
    assert est.get_params()["learning_rate"] == 0.01 and est._session.state.optimizer.learning_rate == 0.01
    est.partial_fit(x=x, y=y)                          # continues from the checkpoint
    assert est.get_variable_value("global_step") == 3
    with pytest.raises(ValueError, match="Invalid parameter num_unitz for estimator DynamicRnnEstimator"):
        est.set_params(num_unitz=3)
    with pytest.raises(ValueError, match="learning_rate: expected a positive number"):
        est.set_params(learning_rate=-1)
    assert est.get_params()["learning_rate"] == 0.01   # a rejected change leaves the old value
    est.set_params(num_units=5)
    with pytest.raises(ValueError, match="different model .*units"):
        est.partial_fit(x=x, y=y)


def test_regression_metrics_and_export(tmp_path):
    est = make(tmp_path, REG, num_units=4, cell_type="gru")
    x, y = ragged(16), np.linspace(-1, 1, 16)
    est.fit(x=x, y=y, steps=2)
    assert sorted(est.evaluate(x=x, y=y)) == ["global_step", "loss"]
    path = est.export_savedmodel(str(tmp_path / "export"))
    model = minirnn.load_exported(path)
    assert model.signatures == ["dynamic_rnn_output", "predict", "serving_default"]
    expected = est.predict(x=x[:3], as_iterable=False)
    np.testing.assert_array_equal(model.predict({"x": x[:3]})["scores"], expected["scores"])
    assert sorted(model.signature()({"x": x[:3]})) == ["scores"]


def test_feature_engineering_fn_and_custom_metrics(tmp_path):
    seen = []

    def engineer(features, labels):
        seen.append(1)
        return {"x": [s * 2 for s in features["x"]]}, labels
    est = make(tmp_path, REG, feature_engineering_fn=engineer)
    x, y = ragged(8), np.zeros(8)
    est.fit(x=x, y=y, steps=1)
    metrics = est.evaluate(x=x, y=y, metrics={"mean_score": lambda labels, p: float(np.mean(p["scores"]))})
    assert seen and "mean_score" in metrics
    with pytest.raises(ValueError, match="feed_fn"):
        est.evaluate(x=x, y=y, feed_fn=lambda: {})


# ---- the API page's items -------------------------------------------------------------------

def padded(seqs, T=None):
    T = T or max(len(s) for s in seqs)
    out = np.zeros((len(seqs), T), dtype=np.float32)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, np.array([len(s) for s in seqs])


def test_model_fn_per_mode(tmp_path):
    est = make(tmp_path, CLS, num_units=[6], dropout_keep_probabilities=[1.0, 1.0])
    x = ragged(8)
    features, labels = {"x": x}, np.array([int(s.sum() > 0) for s in x])
    model_fn = est.model_fn
    for mode in (ModeKeys.INFER, ModeKeys.EVAL):
        with pytest.raises(NotFittedError, match="Couldn't find trained model at"):
            model_fn(features, labels, mode)
    est.fit(x=x, y=labels, steps=2)
    infer = model_fn(features, None, "infer")
    assert isinstance(infer, ModelFnOps) and isinstance(infer, EstimatorSpec)
    assert infer.mode == "infer" and infer.loss is None and infer.train_op is None
    np.testing.assert_array_equal(infer.predictions["classes"], est.predict(x=x, as_iterable=False)["classes"])
    evaluation = model_fn(features, labels, "eval", metrics={"n": lambda y, p: len(p["classes"])})
    expected = est.evaluate(input_fn=lambda: (features, labels))
    assert evaluation.loss == expected["loss"] and evaluation.eval_metric_ops["accuracy"] == expected["accuracy"]
    assert evaluation.eval_metric_ops["n"] == 8
    train = model_fn(features, labels, ModeKeys.TRAIN, params=est.params, config=est.config)
    assert train.loss == evaluation.loss and train.eval_metric_ops == {}
    loss = train.train_op()                        # one step on the batch, as fit(input_fn, steps=1)
    assert est.get_variable_value("global_step") == 3 and np.isfinite(loss)
    twin = make(tmp_path, CLS, num_units=[6], dropout_keep_probabilities=[1.0, 1.0], name="twin")
    twin.fit(x=x, y=labels, steps=2)
    twin.fit(input_fn=lambda: (features, labels), steps=1)
    for name in est.get_variable_names():
        np.testing.assert_array_equal(est.get_variable_value(name), twin.get_variable_value(name))
    with pytest.raises(ValueError, match="mode: expected 'train', 'eval' or 'infer'"):
        model_fn(features, labels, "predict_all")
    with pytest.raises(ValueError, match="params: this model_fn is bound"):
        model_fn(features, labels, "eval", params={"num_units": [3]})
    with pytest.raises(ValueError, match="labels: mode 'eval' needs"):
        model_fn(features, None, "eval")


def test_model_fn_train_mode_starts_a_fresh_model(tmp_path):
    est = make(tmp_path, REG)
    x = ragged(4)
    ops = est.model_fn({"x": x}, np.zeros(4), ModeKeys.TRAIN)
    assert np.isfinite(ops.loss) and est.latest_checkpoint() is None
    ops.train_op()
    assert est.get_variable_value("global_step") == 1


def test_export_deprecated(tmp_path):
    est = make(tmp_path, REG)
    x = ragged(6)
    est.fit(x=x, y=np.zeros(6), steps=1)
    base = tmp_path / "exports"
    path = est.export(str(base))
    assert isinstance(path, str) and os.path.dirname(path) == str(base)
    model = minirnn.load_exported(path)
    np.testing.assert_array_equal(model.predict({"x": x})["scores"], est.predict(x=x, as_iterable=False)["scores"])
    newest = est.export(str(base), exports_to_keep=1)
    assert os.listdir(base) == [os.path.basename(newest)]
    raw = est.export(str(tmp_path / "raw"), input_fn=lambda: ({"x": x}, None), use_deprecated_input_fn=False)
    assert minirnn.load_exported(raw).signatures == ["predict", "serving_default"]
    parsing = est.export(str(tmp_path / "parsing"), input_fn=lambda: ({"x": x, "examples": None}, None),
                         input_feature_key="examples", use_deprecated_input_fn=False)
    assert "dynamic_rnn_output" in minirnn.load_exported(parsing).signatures
    for kwargs, error, match in [
            ({"signature_fn": lambda examples, features, predictions: None}, ValueError, "signature_fn"),
            ({"prediction_key": "scores"}, ValueError, "prediction_key 'scores'"),
            ({"input_fn": lambda estimator, examples: {}}, ValueError, "input_fn\\(estimator, examples\\)"),
            ({"use_deprecated_input_fn": False}, ValueError, "input_fn must be defined"),
            ({"input_fn": lambda: ({"x": x}, None), "input_feature_key": "nope", "use_deprecated_input_fn": False},
             ValueError, "input_feature_key 'nope'"),
            ({"default_batch_size": 0}, ValueError, "default_batch_size"),
            ({"exports_to_keep": 0}, ValueError, "exports_to_keep"),
            ({"use_deprecated_input_fn": "yes"}, TypeError, "use_deprecated_input_fn")]:
        with pytest.raises(error, match=match):
            est.export(str(tmp_path / "refused"), **kwargs)
    assert not os.path.exists(tmp_path / "refused")


@pytest.mark.parametrize("cell_type, units", [("lstm", [6, 5]), ("gru", [4]), ("basic_rnn", 3)])
def test_dict_to_state_tuple_round_trip(tmp_path, cell_type, units):
    est = make(tmp_path, REG, num_units=units, cell_type=cell_type)
    x = ragged(4)
    est.fit(x=x, y=np.zeros(4), steps=1)
    states = {k: v for k, v in est.predict(x=x, as_iterable=False).items() if k.startswith("rnn_cell_state_")}
    for cell in (est, construct_rnn_cell(units, cell_type)):
        state = dict_to_state_tuple(states, cell)
        if cell_type == "lstm":                   # stacked: one LSTMStateTuple(c, h) per layer
            assert isinstance(state, tuple) and all(isinstance(s, LSTMStateTuple) for s in state)
            np.testing.assert_array_equal(state[1].h, states["rnn_cell_state_3"])
        else:                                     # one layer: its state array
            np.testing.assert_array_equal(state, states["rnn_cell_state_0"])
        back = state_tuple_to_dict(state)
        assert sorted(back) == sorted(states)
        for key in states:
            np.testing.assert_array_equal(back[key], states[key])
    assert dict_to_state_tuple({"x": x}, est) is None
    if len(states) > 1:
        with pytest.raises(ValueError, match="RNN state was partially specified.Expected zero or 4 state Tensors; "
                                             "got 1"):
            dict_to_state_tuple({"rnn_cell_state_0": states["rnn_cell_state_0"]}, est)
    with pytest.raises(ValueError, match="feature 'rnn_cell_state_0': expected shape"):
        dict_to_state_tuple({k: v[:, :1] for k, v in states.items()}, est)


def test_export_savedmodel_tf1_arguments(tmp_path):
    est = make(tmp_path, REG)
    x = ragged(4)
    est.fit(x=x, y=np.zeros(4), steps=1)
    path = est.export_savedmodel(str(tmp_path / "e"), default_output_alternative_key="dynamic_rnn_output",
                                 graph_rewrite_specs=[GraphRewriteSpec(("serve",), ()), (("serve", "gpu"), [])],
                                 strip_default_attrs=True)
    assert minirnn.load_exported(path).signatures == ["dynamic_rnn_output", "predict", "serving_default"]
    for kwargs, error, match in [
            ({"default_output_alternative_key": "head_2"}, ValueError, "alternatives are \\['dynamic_rnn_output'\\]"),
            ({"default_output_alternative_key": "dynamic_rnn_output",
              "serving_input_fn": minirnn.export.build_raw_serving_input_receiver_fn({"x": None})},
             ValueError, "raw serving input receiver"),
            ({"graph_rewrite_specs": [GraphRewriteSpec(("serve",), ("strip_unused_nodes",))]}, ValueError,
             "transforms \\('strip_unused_nodes',\\) rewrite a TF graph"),
            ({"graph_rewrite_specs": []}, ValueError, "at least one GraphRewriteSpec"),
            ({"graph_rewrite_specs": [GraphRewriteSpec("serve", ())]}, TypeError, "tuple of tag strings"),
            ({"strip_default_attrs": "yes"}, TypeError, "strip_default_attrs")]:
        with pytest.raises(error, match=match):
            est.export_savedmodel(str(tmp_path / "refused"), **kwargs)
    multiple = make(tmp_path, REG, MULTIPLE, name="multiple")
    multiple.fit(x=x, y=[np.zeros(len(s)) for s in x], steps=1)
    with pytest.raises(ValueError, match="MULTIPLE_VALUE models have none"):
        multiple.export_savedmodel(str(tmp_path / "refused"), default_output_alternative_key="dynamic_rnn_output")
    assert not os.path.exists(tmp_path / "refused")


def test_evaluate_calls_feed_fn_before_each_step(tmp_path):
    est = make(tmp_path, REG)
    x = ragged(12)
    y = np.array([s.mean() for s in x])
    est.fit(x=x, y=y, steps=2)
    replacement = ragged(4, seed=5)
    calls = []

    def feed_fn():
        calls.append(1)
        return {"x": replacement}
    batches = [({"x": x[i:i + 4]}, y[i:i + 4]) for i in (0, 4, 8)]
    fed = est.evaluate(input_fn=lambda: iter(batches), feed_fn=feed_fn, steps=2)
    assert len(calls) == 2
    expected = est.evaluate(input_fn=lambda: iter([({"x": replacement}, b[1]) for b in batches[:2]]))
    assert fed["loss"] == expected["loss"] != est.evaluate(input_fn=lambda: iter(batches[:2]))["loss"]
    with pytest.raises(TypeError, match="feed_fn must return a dict"):
        est.evaluate(input_fn=lambda: iter(batches), feed_fn=lambda: [1])


def test_evaluate_metrics_must_be_a_dict_before_anything_runs(tmp_path):
    est = make(tmp_path, REG)
    x = ragged(4)
    est.fit(x=x, y=np.zeros(4), steps=1)
    with pytest.raises(ValueError, match="Metrics argument should be None or dict"):
        est.evaluate(x=x, y=np.zeros(4), metrics=[lambda y, p: 0.0])
    assert not os.path.exists(est.eval_dir())


def test_fit_without_steps(tmp_path):
    sizes = []

    def engineer(features, labels):
        sizes.append(len(features["x"]))
        return features, labels
    est = make(tmp_path, REG, feature_engineering_fn=engineer)
    x, y = ragged(10), np.zeros(10)
    with pytest.raises(ValueError, match="neither steps, max_steps nor a monitor would end training"):
        est.fit(x=x, y=y)
    assert est.latest_checkpoint() is None
    est.fit(x=x, y=y, monitors=[StopAtStepHook(num_steps=3)])     # epochs repeat until the monitor stops
    assert est.get_variable_value("global_step") == 3
    assert sizes == [10, 10, 10]                                  # batch_size: the first dimension of x
    est.fit(x=x, y=y, max_steps=5, batch_size=4)
    assert est.get_variable_value("global_step") == 5 and sizes[3:] == [4, 4]


def test_iterators_of_examples(tmp_path):
    est = make(tmp_path, CLS, num_units=[4])
    x = ragged(10)
    y = [int(s.sum() > 0) for s in x]
    est.fit(x=iter(x), y=iter(y))                   # batches of one example until the iterators end
    assert est.get_variable_value("global_step") == 10
    est.fit(x=({"x": s} for s in x), y=iter(y), batch_size=4)
    assert est.get_variable_value("global_step") == 13
    predictions = list(est.predict(x=iter(x)))
    assert len(predictions) == 10
    np.testing.assert_array_equal([p["classes"] for p in predictions], est.predict(x=x, as_iterable=False)["classes"])
    metrics = est.evaluate(x=iter(x), y=iter(y))
    assert metrics["accuracy"] == est.evaluate(x=x, y=y)["accuracy"]
    with pytest.raises(ValueError, match="Both x and y should be iterators"):
        est.fit(x=iter(x), y=y, steps=1)
    with pytest.raises(ValueError, match="y ended before x"):
        est.fit(x=iter(x), y=iter(y[:3]), batch_size=5)


def test_multiple_value_predictions_have_padded_length(tmp_path):
    est = make(tmp_path, REG, MULTIPLE)
    x = ragged(6)
    est.fit(x=x, y=[np.zeros(len(s)) for s in x], steps=1)
    seqs = x[:2]
    array, lengths = padded(seqs, T=20)
    longest = int(lengths.max())
    per_batch = next(est.predict(input_fn=lambda: {"x": array, "sequence_length": lengths}, iterate_batches=True))
    assert per_batch["scores"].shape == (2, longest)
    np.testing.assert_allclose(per_batch["scores"], est.predict(x=seqs, as_iterable=False)["scores"], rtol=1e-6)
    one = next(iter(est.predict(input_fn=lambda: {"x": array, "sequence_length": lengths})))
    assert one["scores"].shape == (longest,)
    sparse_rows, sparse_steps = np.nonzero(array)
    sparse = minirnn.inputs.SparseInput(np.stack([sparse_rows, sparse_steps], 1), array[sparse_rows, sparse_steps],
                                        np.array([2, 20]))
    fed = next(est.predict(input_fn=lambda: {"x": sparse, "sequence_length": lengths}, iterate_batches=True))
    assert fed["scores"].shape == (2, longest)
    assert est.predict(input_fn=lambda: {"x": array}, as_iterable=False)["scores"].shape == (2, 20)   # no lengths
    ops = est.model_fn({"x": array, "sequence_length": lengths}, None, ModeKeys.INFER)
    assert ops.predictions["scores"].shape == (2, longest)
    exported = minirnn.load_exported(est.export_savedmodel(str(tmp_path / "export")))     # the bundle too
    np.testing.assert_allclose(exported.predict({"x": array, "sequence_length": lengths})["scores"],
                               per_batch["scores"], rtol=1e-6)
