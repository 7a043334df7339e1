"""minirnn.sklearn: SequenceClassifier / SequenceRegressor under scikit-learn's contract.

Tests that need scikit-learn call ``pytest.importorskip("sklearn")``; the rest run without it, and
one runs the module in a subprocess where scikit-learn cannot be imported (its own get_params /
set_params / repr path).
"""

import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minirnn import optimizers
from minirnn.estimator import NotFittedError as MinirnnNotFittedError
from minirnn.sklearn import HAVE_SKLEARN, SequenceClassifier, SequenceRegressor

FAST = dict(units=8, epochs=3, random_state=0)


def ragged(n, d=2, seed=0, low=2, high=12):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(rng.integers(low, high)), d)) for _ in range(n)]


def padded(seqs, T=None, fill=None, seed=1):
    """[B, T, D] with each sequence at the start of its row; the rest is ``fill`` (random when None)."""
    T = T or max(len(s) for s in seqs)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(seqs), T, seqs[0].shape[1])) * 100 if fill is None else \
        np.full((len(seqs), T, seqs[0].shape[1]), float(fill))
    for b, s in enumerate(seqs):
        x[b, :len(s)] = s
    return x, np.array([len(s) for s in seqs])


def clone_of(est):
    return pickle.loads(pickle.dumps(est))


def last_steps_labels(seqs):
    """1 iff the sum of the first feature over the last 3 steps is positive: needs order and length."""
    return np.array([int(s[-3:, 0].sum() > 0) for s in seqs])


@pytest.fixture(scope="module")
def fitted_classifier():
    X = ragged(120, seed=3)
    y = np.array(["neg", "pos"])[last_steps_labels(X)]
    return SequenceClassifier(units=8, epochs=5, random_state=0).fit(X, y), X


# ---------------------------------------------------------------------------------------------
# scikit-learn's own checks and tools
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("make", [lambda: SequenceClassifier(units=16, epochs=30),
                                  lambda: SequenceRegressor(units=16, epochs=30)],
                         ids=["classifier", "regressor"])
def test_check_estimator(make):
    pytest.importorskip("sklearn")
    from sklearn.utils.estimator_checks import check_estimator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # SkipTestWarning for pandas / array-API checks
        results = check_estimator(make(), on_fail=None)
    failed = [(r["check_name"], repr(r["exception"])) for r in results if r["status"] == "failed"]
    assert not failed
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    # the checks that matter most did run (not skipped)
    assert {"check_fit_idempotent", "check_methods_subset_invariance", "check_estimators_nan_inf",
            "check_n_features_in_after_fitting", "check_sample_weight_equivalence_on_dense_data",
            "check_estimators_pickle", "check_dont_overwrite_parameters"} <= passed


def test_tags_and_clone():
    pytest.importorskip("sklearn")
    from sklearn.base import clone, is_classifier, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils import get_tags
    assert is_classifier(SequenceClassifier()) and is_regressor(SequenceRegressor())
    assert get_tags(SequenceClassifier()).input_tags.three_d_array
    assert get_tags(SequenceRegressor()).target_tags.multi_output
    opt = optimizers.Adam(learning_rate=0.02)
    est = SequenceClassifier(units=[8, 4], cell_type=["gru", "lstm"], optimizer=opt, epochs=2, random_state=1)
    copy = clone(est)
    assert copy.get_params().keys() == est.get_params().keys()
    assert copy.units == [8, 4] and copy.optimizer is not opt and copy.optimizer.learning_rate == 0.02
    X, y = np.random.default_rng(0).normal(size=(20, 5)), np.arange(20) % 2
    est.fit(X, y)
    assert opt.iterations == 0 and est.optimizer_.iterations > 0     # the parameter was not trained
    unfitted = clone(est)
    assert not hasattr(unfitted, "model_")
    with pytest.raises(NotFittedError, match="not fitted yet"):
        unfitted.predict(X)
    with pytest.raises(MinirnnNotFittedError):
        unfitted.predict_proba(X)


def test_pipeline_with_transformers_and_routed_lengths():
    pytest.importorskip("sklearn")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 10)) * 5 + 3
    y = (X[:, -4:].sum(axis=1) > 12).astype(int)
    pipe = make_pipeline(StandardScaler(), SequenceClassifier(units=16, epochs=20, random_state=0)).fit(X, y)
    assert pipe.score(X, y) > 0.85
    # a transformer over ragged sequences (per-sequence differences), then the classifier
    seqs = ragged(100, d=1, seed=4, low=4)
    yy = np.array([int(s[-1, 0] > s[-2, 0]) for s in seqs])     # the last difference is positive
    diff = FunctionTransformer(lambda Z: [np.diff(s, axis=0) for s in Z])
    pipe = make_pipeline(diff, SequenceClassifier(units=8, epochs=30, random_state=0)).fit(seqs, yy)
    assert pipe.score(seqs, yy) > 0.9
    # a padded array with its lengths routed to fit, predict and score
    x, lengths = padded(seqs)
    pipe = make_pipeline(FunctionTransformer(np.tanh), SequenceClassifier(**FAST))
    pipe.fit(x, yy, sequenceclassifier__lengths=lengths)
    direct = SequenceClassifier(**FAST).fit([np.tanh(s) for s in seqs], yy)
    np.testing.assert_allclose(pipe.predict_proba(x, lengths=lengths), direct.predict_proba([np.tanh(s) for s in seqs]),
                               rtol=1e-9)


def test_grid_search_and_cross_val_score_with_string_labels():
    pytest.importorskip("sklearn")
    from sklearn.model_selection import GridSearchCV, cross_val_score
    X = ragged(90, seed=5)
    y = np.array(["down", "up"])[last_steps_labels(X)]
    grid = GridSearchCV(SequenceClassifier(epochs=15, random_state=0),
                        {"units": [4, 12], "cell_type": ["gru", "simple_rnn"]}, cv=3).fit(X, y)
    assert set(grid.best_params_) == {"units", "cell_type"}
    assert grid.best_estimator_.classes_.tolist() == ["down", "up"]
    assert set(grid.predict(X)) <= {"down", "up"}
    assert grid.best_score_ > 0.6
    targets = np.array([s[-3:, 0].sum() for s in X])
    scores = cross_val_score(SequenceRegressor(units=12, epochs=20, random_state=0), X, targets, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.5


# ---------------------------------------------------------------------------------------------
# learning, determinism, parameters
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_defaults_learn_an_order_dependent_task_on_held_out_data():
    X = ragged(600, seed=7, low=3, high=15)
    y = last_steps_labels(X)
    clf = SequenceClassifier(random_state=0).fit(X[:400], y[:400])
    assert clf.score(X[400:], y[400:]) > 0.9
    targets = np.array([s[-3:, 0].sum() - s[-1, 1] for s in X]) * 50 + 1000     # any scale
    reg = SequenceRegressor(random_state=0).fit(X[:400], targets[:400])
    assert reg.score(X[400:], targets[400:]) > 0.95
    assert len(reg.loss_curve_) == reg.n_iter_ == 50 and reg.loss_curve_[-1] < reg.loss_curve_[0]


@pytest.mark.parametrize("cell_type", ["lstm", "gru", "simple_rnn"])
def test_deterministic_given_random_state(cell_type):
    X = ragged(40, seed=2)
    y = last_steps_labels(X)
    a = SequenceClassifier(units=6, epochs=2, cell_type=cell_type, random_state=3).fit(X, y).predict_proba(X)
    b = SequenceClassifier(units=6, epochs=2, cell_type=cell_type, random_state=3).fit(X, y).predict_proba(X)
    c = SequenceClassifier(units=6, epochs=2, cell_type=cell_type, random_state=4).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.random.seed(0)
    d = SequenceClassifier(units=6, epochs=2, cell_type=cell_type).fit(X, y).predict_proba(X)
    np.random.seed(0)
    e = SequenceClassifier(units=6, epochs=2, cell_type=cell_type).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(d, e)          # None draws from NumPy's global generator, as sklearn


@pytest.mark.parametrize("optimizer", ["sgd", "Momentum", "adagrad", "rmsprop", "ftrl", "adam",
                                       optimizers.RMSProp(learning_rate=0.005)])
def test_every_optimizer_trains(optimizer):
    X = ragged(30, seed=1)
    y = np.arange(30) % 2
    clf = SequenceClassifier(units=4, epochs=2, optimizer=optimizer, random_state=0).fit(X, y)
    assert clf.t_ == 2 and np.isfinite(clf.loss_)
    expected = type(optimizer).__name__ if isinstance(optimizer, optimizers.Optimizer) else optimizer.lower()
    assert type(clf.optimizer_).__name__.lower() == expected.lower()


def test_partial_fit_continues_exactly_as_fit():
    X = ragged(50, seed=8)
    y = np.array(["a", "b", "c"])[np.arange(50) % 3]
    full = SequenceClassifier(units=6, epochs=3, random_state=2).fit(X, y)
    steps = SequenceClassifier(units=6, epochs=99, random_state=2)
    for _ in range(3):
        steps.partial_fit(X, y, classes=["a", "b", "c"])
    assert steps.n_iter_ == full.n_iter_ == 3 and steps.t_ == full.t_ == 6
    for p, q in zip(steps.model_.params(), full.model_.params()):
        np.testing.assert_array_equal(p, q)
    warm = SequenceClassifier(units=6, epochs=1, random_state=2).fit(X, y)
    warm.set_params(warm_start=True, epochs=2).fit(X, y)
    np.testing.assert_array_equal(warm.predict_proba(X), full.predict_proba(X))
    assert warm.n_iter_ == 3
    # warm_start=False starts afresh
    again = warm.set_params(warm_start=False, epochs=3).fit(X, y)
    assert again.n_iter_ == 3
    np.testing.assert_array_equal(again.predict_proba(X), full.predict_proba(X))


def test_partial_fit_rules():
    X = ragged(12, seed=9)
    y = np.arange(12) % 2
    clf = SequenceClassifier(**FAST)
    with pytest.raises(ValueError, match="classes: pass every class label"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:6], np.zeros(6, dtype=int), classes=[0, 1, 2])      # a batch may lack classes
    assert clf.classes_.tolist() == [0, 1, 2] and clf.model_.logits_dimension == 3
    with pytest.raises(ValueError, match=r"label 5 is not one of the classes \[0, 1, 2\]"):
        clf.partial_fit(X[:2], [5, 0])
    with pytest.raises(ValueError, match="differ from the fitted classes_"):
        clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="X has 3 features per step, but SequenceClassifier is expecting 2"):
        clf.partial_fit(ragged(4, d=3), [0, 1, 0, 1])
    clf.set_params(learning_rate=0.5, gradient_clipping_norm=None).partial_fit(X[:2], [1, 0])
    assert clf.optimizer_.learning_rate == 0.5 and clf.optimizer_.global_clipnorm is None   # applies from now on
    for params, match in (({"units": 9}, "units / cell_type / dtype"), ({"cell_type": "gru"}, "units / cell_type"),
                          ({"dtype": "float32"}, "dtype: the fitted network"), ({"optimizer": "sgd"}, "trained with Adam")):
        with pytest.raises(ValueError, match=match):
            clone_of(clf).set_params(**params).partial_fit(X[:2], [1, 0])
    reg = SequenceRegressor(**FAST).partial_fit(X, np.arange(12.0))
    reg.partial_fit(X[:3], [1.0, 2.0, 3.0])
    assert reg.n_iter_ == 2
    with pytest.raises(ValueError, match="y: has 2 outputs per example, the model was fitted with 1"):
        reg.partial_fit(X[:3], np.ones((3, 2)))


def test_get_set_params_and_validation_at_fit_time():
    est = SequenceClassifier(units=0, cell_type="bogus")        # __init__ only stores
    assert est.get_params()["units"] == 0
    X, y = ragged(8), np.arange(8) % 2
    bad = [({"units": 0}, "units: expected a positive int"),
           ({"cell_type": "bogus"}, "cell_type: expected one of"),
           ({"cell_type": ["lstm", "gru"]}, "cell_type / cell_options: give one per layer"),
           ({"epochs": 0}, "epochs: expected a positive integer"),
           ({"batch_size": 2.5}, "batch_size: expected a positive integer"),
           ({"optimizer": "nope"}, "optimizer: expected one of"),
           ({"learning_rate": -1}, "learning_rate: expected a positive number"),
           ({"gradient_clipping_norm": 0}, "gradient_clipping_norm: expected a positive number"),
           ({"shuffle": "yes"}, "shuffle: expected True or False"),
           ({"dtype": "int32"}, "dtype: expected 'float32' or 'float64'"),
           ({"random_state": "seed"}, "random_state: expected None, an int")]
    for params, match in bad:
        est = SequenceClassifier(**FAST).set_params(**params)
        with pytest.raises(ValueError, match=match):
            est.fit(X, y)
        assert not hasattr(est, "model_") and not hasattr(est, "classes_")   # nothing half-fitted
    est = SequenceRegressor(**FAST).set_params(units=[4, 3], cell_type="gru", dtype="float32")
    assert est.get_params()["units"] == [4, 3]
    pred = est.fit(X, np.arange(8.0)).predict(X)
    assert est.model_.dtype == np.float32 and pred.dtype == np.float64 and pred.shape == (8,)
    with pytest.raises(ValueError, match="Invalid parameter"):
        est.set_params(bogus=1)


def test_pickle_round_trip(fitted_classifier):
    clf, X = fitted_classifier
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


# ---------------------------------------------------------------------------------------------
# the forms of X, and predictions that do not depend on padding or batching
# ---------------------------------------------------------------------------------------------

def test_every_form_of_x_trains_the_same_model():
    seqs = ragged(40, seed=11)
    y = last_steps_labels(seqs)
    x, lengths = padded(seqs)                                   # random garbage in the padding
    mask = np.arange(x.shape[1])[None, :] < lengths[:, None]
    ref = SequenceClassifier(**FAST).fit(seqs, y)
    objects = np.empty(len(seqs), dtype=object)
    objects[:] = seqs
    for fitted in (SequenceClassifier(**FAST).fit(x, y, lengths=lengths),
                   SequenceClassifier(**FAST).fit(x, y, mask=mask),
                   SequenceClassifier(**FAST).fit(objects, y)):
        for p, q in zip(fitted.model_.params(), ref.model_.params()):
            np.testing.assert_array_equal(p, q)
        np.testing.assert_array_equal(fitted.predict_proba(x, lengths=lengths), ref.predict_proba(seqs))
    assert ref.n_features_in_ == ref.n_features_per_step_ == 2
    # 2-D univariate table == list of 1-D arrays == list of [T, 1] arrays == 3-D [B, T, 1]
    table = np.random.default_rng(0).normal(size=(30, 7))
    yt = (table[:, -1] > 0).astype(int)
    ref = SequenceRegressor(**FAST).fit(table, yt * 1.0)
    assert ref.n_features_in_ == 7 and ref.n_features_per_step_ == 1
    for form in ([row for row in table], [row[:, None] for row in table], table[:, :, None], table.tolist()):
        np.testing.assert_allclose(ref.predict(form), ref.predict(table), rtol=1e-12)
        np.testing.assert_allclose(SequenceRegressor(**FAST).fit(form, yt * 1.0).predict(table), ref.predict(table),
                                   rtol=1e-12)


def test_gaps_in_a_mask_skip_those_steps(fitted_classifier):
    clf, seqs = fitted_classifier
    x, lengths = padded(seqs[:10])
    mask = np.arange(x.shape[1])[None, :] < lengths[:, None]
    mask[:, 0] = False                                          # drop the first step of every sequence
    np.testing.assert_allclose(clf.predict_proba(x, mask=mask), clf.predict_proba([s[1:] for s in seqs[:10]]),
                               rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_predictions_do_not_depend_on_batching_order_or_padding(fitted_classifier, data):
    clf, seqs = fitted_classifier
    expected = clf.predict_proba(seqs)
    n = len(seqs)
    order = data.draw(st.permutations(range(n)))
    cuts = sorted(data.draw(st.lists(st.integers(1, n - 1), max_size=4, unique=True)))
    extra = data.draw(st.integers(0, 7))
    fill = data.draw(st.sampled_from([None, 0.0, 1e6]))
    rows = []
    for part in np.split(np.asarray(order), cuts):
        chosen = [seqs[i] for i in part]
        x, lengths = padded(chosen, T=max(len(s) for s in chosen) + extra, fill=fill, seed=int(part[0]))
        rows.append(clf.predict_proba(x, lengths=lengths))
    got = np.concatenate(rows)
    np.testing.assert_allclose(got, expected[order], rtol=1e-10, atol=1e-12)


def test_regressor_outputs_and_score():
    seqs = ragged(60, seed=12)
    y2 = np.stack([[s[-1, 0], s[:, 1].mean()] for s in seqs])
    reg = SequenceRegressor(units=12, epochs=30, random_state=0).fit(seqs, y2)
    assert reg.n_outputs_ == 2 and reg.predict(seqs).shape == (60, 2)
    pred = reg.predict(seqs)
    r2 = np.mean([1 - ((y2[:, k] - pred[:, k]) ** 2).sum() / ((y2[:, k] - y2[:, k].mean()) ** 2).sum()
                  for k in range(2)])
    assert reg.score(seqs, y2) == pytest.approx(r2) and r2 > 0.5
    col = SequenceRegressor(**FAST).fit(seqs, y2[:, :1])
    assert col.predict(seqs).shape == (60, 1)
    flat = SequenceRegressor(**FAST).fit(seqs, y2[:, 0])
    assert flat.predict(seqs).shape == (60,)
    np.testing.assert_allclose(col.predict(seqs)[:, 0], flat.predict(seqs), rtol=1e-12)


def test_classifier_probabilities_labels_and_score(fitted_classifier):
    clf, seqs = fitted_classifier
    proba = clf.predict_proba(seqs)
    assert proba.shape == (len(seqs), 2) and clf.classes_.tolist() == ["neg", "pos"]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(seqs)), proba, rtol=1e-10)
    predicted = clf.predict(seqs)
    assert predicted.tolist() == [["neg", "pos"][k] for k in np.argmax(proba, axis=1)]
    y = np.array(["neg", "pos"])[last_steps_labels(seqs)]
    assert clf.score(seqs, y) == pytest.approx(np.mean(predicted == y))
    w = np.arange(len(seqs), dtype=float)
    assert clf.score(seqs, y, sample_weight=w) == pytest.approx(np.average(predicted == y, weights=w))
    bools = SequenceClassifier(**FAST).fit(seqs, y == "pos")
    assert bools.classes_.tolist() == [False, True] and bools.predict(seqs).dtype == bool
    multi = SequenceClassifier(**FAST).fit(seqs, np.arange(len(seqs)) % 4 * 10)
    assert multi.classes_.tolist() == [0, 10, 20, 30] and multi.predict_proba(seqs).shape == (len(seqs), 4)
    np.testing.assert_allclose(np.exp(multi.predict_log_proba(seqs)), multi.predict_proba(seqs), rtol=1e-10)


def test_sample_weight_zero_drops_examples_and_integers_repeat_them():
    seqs = ragged(30, seed=13)
    y = last_steps_labels(seqs)
    w = np.ones(30)
    w[::4] = 0
    keep = w > 0
    a = SequenceClassifier(**FAST).fit(seqs, y, sample_weight=w)
    b = SequenceClassifier(**FAST).fit([s for s, k in zip(seqs, keep) if k], y[keep])
    np.testing.assert_allclose(a.predict_proba(seqs), b.predict_proba(seqs), rtol=1e-10)
    # with one batch per epoch, a weight k is k copies of the example
    k = np.random.default_rng(0).integers(1, 4, size=30)
    full = dict(FAST, batch_size=128)
    weighted = SequenceRegressor(**full).fit(seqs, y * 2.0 + 1, sample_weight=k)
    repeated = SequenceRegressor(**full).fit([s for s, r in zip(seqs, k) for _ in range(r)], np.repeat(y * 2.0 + 1, k))
    np.testing.assert_allclose(weighted.predict(seqs), repeated.predict(seqs), rtol=1e-7)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------

def test_bad_x_is_refused_with_a_clear_error(fitted_classifier):
    clf, seqs = fitted_classifier
    x, lengths = padded(seqs[:4])
    nan = [s.copy() for s in seqs[:3]]
    nan[1][0, 0] = np.nan
    cases = [
        (ValueError, r"X\[1\]: contains NaN or inf", lambda: clf.predict(nan)),
        (ValueError, "X: contains NaN or inf", lambda: clf.predict(np.where(x > 1e9, np.inf, np.full_like(x, np.inf)))),
        (ValueError, "Reshape your data", lambda: clf.predict(seqs[0][:, 0])),
        (ValueError, r"X\[2\]: empty sequence", lambda: clf.predict(seqs[:2] + [np.zeros((0, 2))])),
        (ValueError, r"X\[1\]: has 3 features per step, X\[0\] has 2", lambda: clf.predict([seqs[0], np.ones((4, 3))])),
        (ValueError, "X has 3 features per step, but SequenceClassifier is expecting 2", lambda: clf.predict(
            np.ones((2, 4, 3)))),
        (ValueError, "X has 5 features, but SequenceClassifier is expecting 2 features as input",
         lambda: clf.predict(np.ones((2, 5)))),
        (ValueError, r"lengths: each must be in \[1, ", lambda: clf.predict(x, lengths=lengths * 0)),
        (ValueError, r"lengths: expected 4 integers", lambda: clf.predict(x, lengths=lengths[:3])),
        (ValueError, "give either lengths or mask", lambda: clf.predict(x, lengths=lengths, mask=x[..., 0] > 0)),
        (ValueError, "mask: example 0 has no valid step", lambda: clf.predict(x, mask=np.zeros(x.shape[:2]))),
        (ValueError, r"mask: expected shape", lambda: clf.predict(x, mask=np.ones((4, 2), bool))),
        (ValueError, "a list of sequences carries its own lengths", lambda: clf.predict(seqs[:4], lengths=lengths)),
        (ValueError, "X: expected numbers", lambda: clf.predict(np.array([["a", "b"]]))),
        (ValueError, "Complex data not supported", lambda: clf.predict(x + 1j)),
        (ValueError, "at most 3 dimensions", lambda: clf.predict(x[None])),
        (ValueError, r"0 sample\(s\)", lambda: clf.predict([])),
    ]
    for error, match, call in cases:
        with pytest.raises(error, match=match):
            call()


def test_sparse_input_is_refused():
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="sparse matrices are not supported"):
        SequenceClassifier(**FAST).fit(sparse.csr_matrix(np.eye(4)), [0, 1, 0, 1])


def test_bad_y_and_weights_are_refused():
    X = ragged(6, seed=14)
    clf, reg = SequenceClassifier(**FAST), SequenceRegressor(**FAST)
    cases = [
        (clf, [0, 1, 0, 1, 0], {}, "found 6 examples in X but 5 labels in y"),
        (clf, [1.5, 0, 1, 0, 1, 0], {}, "Unknown label type: continuous"),
        (clf, [1] * 6, {}, "at least 2 classes, got 1 class"),
        (clf, np.array(["a", 1, "a", 1, "a", 1], dtype=object), {}, "Unknown label type: mixed"),
        (clf, np.zeros((6, 2), int), {}, "multi-output classification is not supported"),
        (clf, None, {}, "requires y to be passed, but the target y is None"),
        (clf, [0, 1] * 3, {"sample_weight": [0, 1] * 3}, "only 1 class has a non-zero weight"),
        (clf, [0, 1] * 3, {"sample_weight": [0] * 6}, "all weights are zero"),
        (clf, [0, 1] * 3, {"sample_weight": [-1] + [1] * 5}, "every weight must be finite and >= 0"),
        (clf, [0, 1] * 3, {"sample_weight": [1] * 5}, r"sample_weight: expected shape \(6,\)"),
        (reg, [np.nan] + [1.0] * 5, {}, "Input y contains NaN or infinity"),
        (reg, ["a"] * 6, {}, "y: expected numeric targets"),
        (reg, np.zeros((6, 2, 2)), {}, "y: expected targets of shape"),
    ]
    for est, y, kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            est.fit(X, y, **kwargs)


def test_column_vector_y_warns_and_is_raveled():
    X, y = ragged(10, seed=15), np.arange(10) % 2
    with pytest.warns(UserWarning, match="A column-vector y was passed"):
        clf = SequenceClassifier(**FAST).fit(X, y[:, None])
    np.testing.assert_array_equal(clf.predict_proba(X), SequenceClassifier(**FAST).fit(X, y).predict_proba(X))


def test_not_fitted():
    with pytest.raises(MinirnnNotFittedError, match="SequenceRegressor instance is not fitted yet"):
        SequenceRegressor().predict(np.ones((2, 3)))
    err = pytest.raises(ValueError, SequenceClassifier().score, np.ones((2, 3)), [0, 1])
    assert isinstance(err.value, AttributeError)


def test_a_model_fitted_on_a_table_reads_univariate_sequences_of_other_lengths():
    table = np.random.default_rng(0).normal(size=(20, 6))
    clf = SequenceClassifier(**FAST).fit(table, np.arange(20) % 2)
    short = [row[:4] for row in table]
    x, lengths = padded([r[:, None] for r in short], T=9, fill=0)
    np.testing.assert_allclose(clf.predict_proba(short), clf.predict_proba(x[:, :, 0], lengths=lengths), rtol=1e-12)
    assert clf.predict_proba(table[:, :4], lengths=np.full(20, 4)).shape == (20, 2)
    with pytest.raises(ValueError, match="X has 4 features, but SequenceClassifier is expecting 6"):
        clf.predict(table[:, :4])
    seq_model = SequenceClassifier(**FAST).fit([r[:, None] for r in short], np.arange(20) % 2)
    assert seq_model.predict(table).shape == (20,)         # fitted on sequences: a table of any width
    two = SequenceClassifier(**FAST).fit(ragged(6), np.arange(6) % 2)
    with pytest.raises(ValueError, match="fitted on sequences of 2 features per step"):
        two.predict(table)


def test_dataframe_feature_names():
    pd = pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(20, 3)), columns=["t0", "t1", "t2"])
    clf = SequenceClassifier(**FAST).fit(frame, np.arange(20) % 2)
    assert clf.feature_names_in_.tolist() == ["t0", "t1", "t2"]
    with pytest.raises(ValueError, match="The feature names should match"):
        clf.predict(frame[["t2", "t1", "t0"]])
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        clf.predict(frame.to_numpy())


# ---------------------------------------------------------------------------------------------
# without scikit-learn, and the lazy import
# ---------------------------------------------------------------------------------------------

def _run(code, cwd):
    # cwd outside the checkout: the installed minirnn (with minirnn.kernels), not the source folder
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                         cwd=cwd)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_works_without_scikit_learn(tmp_path):
    out = _run("""
        import pickle, sys
        sys.modules["sklearn"] = None                 # import sklearn now raises ImportError
        import numpy as np
        from minirnn.sklearn import HAVE_SKLEARN, SequenceClassifier, SequenceRegressor, NotFittedError
        assert not HAVE_SKLEARN
        X = np.random.default_rng(0).normal(size=(40, 6))
        y = np.where(X[:, -1] > 0, "a", "b")
        clf = SequenceClassifier(units=8, epochs=40, random_state=0)
        assert repr(clf) == "SequenceClassifier(epochs=40, random_state=0, units=8)", repr(clf)
        assert clf.get_params()["units"] == 8 and clf.set_params(units=6) is clf and clf.units == 6
        try:
            clf.set_params(bogus=1)
            raise AssertionError("set_params accepted a bad name")
        except ValueError as error:
            assert "Invalid parameter 'bogus'" in str(error)
        try:
            clf.predict(X)
            raise AssertionError("predicted unfitted")
        except NotFittedError:
            pass
        assert clf.fit(X, y).score(X, y) > 0.9, clf.score(X, y)
        copy = type(clf)(**clf.get_params())
        assert copy.get_params() == clf.get_params() and not hasattr(copy, "model_")
        again = pickle.loads(pickle.dumps(clf))
        assert (again.predict_proba(X) == clf.predict_proba(X)).all()
        assert SequenceClassifier._estimator_type == "classifier"
        reg = SequenceRegressor(units=4, epochs=2, random_state=0).fit(X, X[:, -1])
        assert repr(reg) == "SequenceRegressor(epochs=2, random_state=0, units=4)"
        assert "sklearn" not in [m for m in sys.modules if sys.modules[m] is not None]
        print("ok")
    """, tmp_path)
    assert out.strip() == "ok"


def test_import_minirnn_stays_lazy(tmp_path):
    out = _run("""
        import sys, minirnn
        assert "sklearn" not in sys.modules and "minirnn.sklearn" not in sys.modules
        print(minirnn.sklearn.SequenceClassifier.__module__)
    """, tmp_path)
    assert out.strip() == "minirnn.sklearn"


@pytest.mark.skipif(not HAVE_SKLEARN, reason="scikit-learn is not installed")
def test_not_fitted_error_is_also_scikit_learns():
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        SequenceClassifier().predict(np.ones((2, 3)))


def test_errors_found_in_review_name_the_argument():
    X = np.random.default_rng(0).normal(size=(10, 4))
    clf = SequenceClassifier(epochs=1, random_state=0).fit(X, [0, 1] * 5)
    with pytest.raises(ValueError, match="units: expected a positive int or a non-empty list"):
        clf.set_params(warm_start=True, units=None).fit(X, [0, 1] * 5)
    with pytest.raises(ValueError, match=r"X\[0\]: expected numbers"):
        SequenceClassifier(epochs=1).fit([[[1, 2], [3]]] * 20, [0, 1] * 10)
    with pytest.raises(ValueError, match="y: the targets' mean or spread overflows float64"):
        SequenceRegressor(epochs=1).fit(X, [1e200, -1e200] * 5)


def test_values_too_large_for_float32_are_refused_by_name():
    X = np.random.default_rng(0).normal(size=(10, 4))
    X[3, 1] = 1e300
    with pytest.raises(ValueError, match=r"X: contains a value too large for float32 \(1e\+300\)"):
        SequenceClassifier(epochs=1, units=2, dtype="float32").fit(X, np.arange(10) % 2)


def test_standardize_learns_raw_scale_sequences_and_applies_at_predict():
    rng = np.random.default_rng(0)
    X = [np.c_[rng.uniform(60, 120, n), rng.normal(1013, 5, n)] for n in rng.integers(3, 8, 120)]
    y = np.array([int(s[:, 0].mean() > 90) for s in X])
    raw = SequenceClassifier(units=8, epochs=30, random_state=0).fit(X, y)
    std = SequenceClassifier(units=8, epochs=30, random_state=0, standardize=True).fit(X, y)
    assert std.score(X, y) >= 0.95 > raw.score(X, y) + 0.2
    np.testing.assert_allclose(std.normalizer_.mean, np.concatenate(X).mean(axis=0))
    assert std.get_params()["standardize"] is True and not hasattr(raw, "normalizer_")
    norm = std.normalizer_                                 # the same as standardising by hand
    by_hand = SequenceClassifier(units=8, epochs=30, random_state=0).fit([norm(s) for s in X], y)
    np.testing.assert_allclose(std.predict_proba(X), by_hand.predict_proba([norm(s) for s in X]), rtol=1e-10)
    with pytest.raises(ValueError, match="standardize: the model was fitted with standardize=True"):
        std.set_params(standardize=False, warm_start=True).fit(X, y)
