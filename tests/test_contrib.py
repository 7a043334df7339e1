"""DynamicRnnEstimator: TF1's surface (tf-estimator-behaviour.md section f) and where we do better."""

import numpy as np
import pytest

import minirnn
from minirnn import feature_column as fc
from minirnn.contrib import DynamicRnnEstimator, NotFittedError, PredictionType, ProblemType

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
