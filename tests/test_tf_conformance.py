"""Input forms and API items of TF's estimators, fed as a TF user migrating would: each form that TF
accepts means the same here (the same metrics as its plain padded form), or is refused with an
error naming the feature. Cases: TF 2.15 / TF 1.14 behaviour and the two API pages."""

import os

import numpy as np
import pytest

import minirnn
from minirnn import feature_column as fc
from minirnn.contrib import DynamicRnnEstimator, PredictionType, ProblemType
from minirnn.hooks import StopAtStepHook
from minirnn.inputs import SparseInput

X = [np.array([0.1, 0.5, 0.9]), np.array([0.3, 0.2]), np.array([0.7])]     # ragged, 3 examples
Y = np.array([1, 0, 1])


def classifier(columns=None, context=None, **kwargs):
    return minirnn.RNNClassifier(columns or [fc.sequence_numeric_column("x")], context, units=[4],
                                 config=minirnn.RunConfig(random_seed=0), **kwargs)


def sparse(rows, dense_shape):
    """A SparseInput from {(example, step): value}."""
    keys = sorted(rows)
    return SparseInput(np.array(keys, dtype=np.int64), np.array([rows[k] for k in keys]),
                       np.array(dense_shape, dtype=np.int64))


def padded(seqs, fill=0.0):
    out = np.full((len(seqs), max(map(len, seqs))), fill, dtype=np.asarray(seqs[0]).dtype)
    for b, s in enumerate(seqs):
        out[b, :len(s)] = s
    return out


def same_metrics(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key


# ---- 1. an input_fn returning one (features, labels) --------------------------------------------

def test_one_pair_is_read_at_every_step_as_tf_does():
    clf = classifier()
    pair = lambda: ({"x": X}, Y)                                         # noqa: E731
    assert clf.train(pair, steps=10).get_variable_value("global_step") == 10
    assert clf.train(pair, max_steps=25).get_variable_value("global_step") == 25
    assert clf.train(pair, hooks=[StopAtStepHook(num_steps=3)]).get_variable_value("global_step") == 28
    with pytest.raises(ValueError, match="one .features, labels. batch.*give steps or max_steps"):
        clf.train(pair)
    three = lambda: iter([({"x": X}, Y)] * 3)                            # noqa: E731
    assert clf.train(three, steps=10).get_variable_value("global_step") == 31   # a generator ends training
    assert clf.evaluate(pair)["global_step"] == 31                       # evaluate reads the pair once


# ---- 2. SparseInput labels and weights --------------------------------------------------------

def per_step_batches():
    labels = [np.array([1, 0, 1]), np.array([1, 0]), np.array([0])]
    weights = [np.array([1.0, 2.0, 1.0]), np.array([1.0, 3.0]), np.array([0.5])]
    dense = ({"x": X, "w": padded(weights)}, labels)
    cells = lambda seqs: {(b, t): v for b, s in enumerate(seqs) for t, v in enumerate(s)}   # noqa: E731
    as_sparse = ({"x": sparse(cells(X), (3, 3)), "w": sparse(cells(weights), (3, 3))},
                 sparse(cells(labels), (3, 3)))
    return dense, as_sparse


def test_sparse_labels_and_weights_mean_their_dense_form():
    dense, as_sparse = per_step_batches()
    runs = []
    for batch in (dense, as_sparse):
        clf = classifier(return_sequences=True, weight_column="w")
        clf.train(lambda: batch, steps=5)
        runs.append((clf.evaluate(lambda: dense), clf.get_variable_value("rnn_model/logits/kernel")))
    same_metrics(runs[0][0], runs[1][0])
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-6)


def test_sparse_labels_that_do_not_fit_the_steps_are_named():
    _, (features, labels) = per_step_batches()
    clf = classifier(return_sequences=True, weight_column="w")
    short = labels._replace(dense_shape=np.array([3, 2]), indices=labels.indices[labels.indices[:, 1] < 2],
                            values=labels.values[labels.indices[:, 1] < 2])
    with pytest.raises(ValueError, match="labels: a SparseInput of 2 steps, but the batch has valid steps up to 3"):
        clf.train(lambda: (features, short), steps=1)
    wrong = labels._replace(dense_shape=np.array([2, 3]))
    with pytest.raises(ValueError, match=r"labels: .*(expected \[3, time\] for 3 examples|indices \[N, 2\] inside it)"):
        clf.train(lambda: (features, wrong), steps=1)


# ---- 3. sequence_mask for every input form -----------------------------------------------------

MASK = np.array([[1, 1, 0], [1, 1, 0], [1, 0, 0]])          # drops the last step of example 0


@pytest.mark.parametrize("form", ["padded", "ragged", "sparse"])
@pytest.mark.parametrize("dtype", [bool, np.int32])
def test_sequence_mask_is_honoured_for_every_input_form(form, dtype):
    labels = padded([np.array([1, 0, 1]), np.array([1, 0]), np.array([0])])
    clf = classifier(return_sequences=True)
    clf.train(lambda: ({"x": X}, labels), steps=3)
    x = {"padded": padded(X), "ragged": X,
         "sparse": sparse({(b, t): v for b, s in enumerate(X) for t, v in enumerate(s)}, (3, 3))}[form]
    features = {"x": x, "sequence_mask": MASK.astype(dtype)}
    metrics = clf.evaluate(lambda: (features, labels))
    predicted = next(clf.predict(lambda: features, yield_single_examples=False))
    np.testing.assert_array_equal(predicted["sequence_mask"], MASK.astype(bool))
    # the loss is the mean over the masked steps only, from the predictions themselves
    p = predicted["probabilities"][..., 1][MASK.astype(bool)]
    y = labels[MASK.astype(bool)]
    assert metrics["average_loss"] == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)), rel=1e-4)
    assert metrics["label/mean"] == pytest.approx(y.mean())


def test_a_mask_that_ragged_lengths_would_ignore_is_refused_without_return_sequences():
    clf = classifier()
    clf.train(lambda: ({"x": X}, Y), steps=1)
    with pytest.raises(ValueError, match="feature 'sequence_mask' marks other steps than the lengths"):
        clf.evaluate(lambda: ({"x": X, "sequence_mask": MASK}, Y))
    agreeing = np.arange(3)[None, :] < np.array([3, 2, 1])[:, None]
    assert clf.evaluate(lambda: ({"x": X, "sequence_mask": agreeing}, Y))["global_step"] == 1
    with pytest.raises(ValueError, match="feature 'sequence_mask': expected bools or 0/1 integers"):
        clf.evaluate(lambda: ({"x": padded(X), "sequence_mask": MASK * 2}, Y))


# ---- 4. context SparseInput; 5. hash_bucket_size=1 ---------------------------------------------

def test_sparse_context_features_mean_their_padded_form():
    context = [fc.embedding_column(fc.categorical_column_with_vocabulary_list("c", ["a", "b", "z"]), 2),
               fc.indicator_column(fc.weighted_categorical_column(fc.categorical_column_with_identity("i", 4), "iw"))]
    clf = classifier(context=context)
    as_sparse = {"x": X, "c": sparse({(0, 0): "a", (2, 0): "b", (2, 1): "z"}, (3, 2)),
                 "i": sparse({(0, 0): 1, (1, 0): 3, (1, 1): 2}, (3, 2)),
                 "iw": sparse({(0, 0): 0.5, (1, 0): 2.0, (1, 1): 1.0}, (3, 2))}
    dense = {"x": X, "c": np.array([["a", ""], ["", ""], ["b", "z"]]), "i": np.array([[1, -1], [3, 2], [-1, -1]]),
             "iw": np.array([[0.5, 0.0], [2.0, 1.0], [0.0, 0.0]])}
    clf.train(lambda: (as_sparse, Y), steps=3)
    same_metrics(clf.evaluate(lambda: (as_sparse, Y)), clf.evaluate(lambda: (dense, Y)))
    numeric = classifier(context=[fc.numeric_column("n")])
    with pytest.raises(TypeError, match="feature 'n': a numeric context feature must be an array"):
        numeric.train(lambda: ({"x": X, "n": sparse({(0, 0): 1.0}, (3, 1))}, Y), steps=1)


def test_one_hash_bucket_is_a_valid_column():
    column = fc.embedding_column(fc.sequence_categorical_column_with_hash_bucket("t", 1), 3)
    clf = classifier([column])
    clf.train(lambda: ({"t": [["a", "b"], ["c"], ["d", "e"]]}, Y), steps=2)
    assert clf.get_variable_value("sequence_features/t_embedding/embedding_weights").shape == (1, 3)
    with pytest.raises(ValueError, match="hash_bucket_size must be at least 1. hash_bucket_size: 0"):
        fc.sequence_categorical_column_with_hash_bucket("t", 0)


# ---- 7. TF1's sparse sequences: every step of dense_shape --------------------------------------

def test_tf1_reads_sparse_sequences_at_their_dense_shape_and_tf2_by_their_indices():
    columns = [fc.sequence_numeric_column("a"), fc.sequence_numeric_column("b")]
    a = sparse({(0, 0): 0.1, (0, 1): 0.2, (1, 0): 0.3}, (2, 4))             # highest steps 1 and 0
    b = sparse({(0, 0): 0.5, (1, 0): 0.6, (1, 2): 0.7}, (2, 4))             # highest steps 0 and 2
    est = DynamicRnnEstimator(ProblemType.CLASSIFICATION, PredictionType.SINGLE_VALUE, columns, num_classes=2,
                              num_units=[4], config=minirnn.RunConfig(random_seed=0))
    labels = np.array([0, 1])
    est.fit(input_fn=lambda: ({"a": a, "b": b}, labels), steps=2)
    dense = {"a": np.array([[0.1, 0.2, 0, 0], [0.3, 0, 0, 0]]), "b": np.array([[0.5, 0, 0, 0], [0.6, 0, 0.7, 0]])}
    same_metrics(est.evaluate(input_fn=lambda: ({"a": a, "b": b}, labels), steps=1),
                 est.evaluate(input_fn=lambda: (dense, labels), steps=1))
    lengths = np.array([2, 3])                                               # sequence_length then masks
    same_metrics(est.evaluate(input_fn=lambda: ({"a": a, "b": b, "sequence_length": lengths}, labels), steps=1),
                 est.evaluate(input_fn=lambda: (dict(dense, sequence_length=lengths), labels), steps=1))
    with pytest.raises(ValueError, match="sequence features 'a' and 'b' have different lengths"):
        classifier(columns).train(lambda: ({"a": a, "b": b}, labels), steps=1)


# ---- 6, 9. the RNNClassifier page: export_savedmodel, model_fn, get_variable_value, TRAIN export --

def test_export_savedmodel_is_export_saved_model(tmp_path):
    clf = classifier()
    clf.train(lambda: ({"x": X}, Y), steps=2)
    path = clf.export_savedmodel(str(tmp_path / "e"), None, strip_default_attrs=True)
    assert isinstance(path, bytes) and os.path.isfile(os.path.join(os.fsdecode(path), "model.h5"))
    np.testing.assert_allclose(minirnn.load_exported(path).predict({"x": X})["logits"],
                               next(clf.predict(lambda: {"x": X}, yield_single_examples=False))["logits"])
    with pytest.raises(TypeError, match="strip_default_attrs: expected a bool"):
        clf.export_savedmodel(str(tmp_path / "e"), None, strip_default_attrs="yes")


def test_model_fn_gives_the_estimators_own_predictions_metrics_and_steps():
    clf = classifier()
    batch = {"x": X}
    assert clf.model_fn(batch, None, "infer").predictions["logits"].shape == (3, 1)     # TF2: initial weights
    loss = clf.model_fn(batch, Y, "train").train_op()
    assert clf.get_variable_value("global_step") == 1 and loss > 0
    spec = clf.model_fn(batch, Y, "eval")
    same_metrics(spec.eval_metric_ops, {k: v for k, v in clf.evaluate(lambda: (batch, Y)).items() if k != "global_step"})
    assert spec.loss == spec.eval_metric_ops["loss"] and spec.mode == "eval"
    np.testing.assert_array_equal(clf.model_fn(batch, None, "infer").predictions["class_ids"],
                                  next(clf.predict(lambda: batch, yield_single_examples=False))["class_ids"])
    with pytest.raises(ValueError, match="mode: expected 'train', 'eval' or 'infer'"):
        clf.model_fn(batch, Y, "fit")
    step, bias = clf.get_variable_value(["global_step", "rnn_model/logits/bias"])
    assert step == 1 and bias.shape == (1,)


@pytest.mark.parametrize("optimizer", ["Adam", "Adagrad", "SGD"])
def test_a_train_mode_export_trains_as_the_estimator_does(tmp_path, optimizer):
    clf = classifier(optimizer=optimizer)
    clf.train(lambda: ({"x": X}, Y), steps=3)
    exported = minirnn.load_exported(clf.export_saved_model(str(tmp_path / "e"), experimental_mode="train"))
    assert exported.global_step == 3
    from_export = [exported.train({"x": X}, Y) for _ in range(3)]
    from_estimator = [clf.model_fn({"x": X}, Y, "train").train_op() for _ in range(3)]
    np.testing.assert_allclose(from_export, from_estimator, rtol=1e-6)
    assert exported.global_step == 6
    np.testing.assert_allclose(exported.predict({"x": X})["logits"],
                               next(clf.predict(lambda: {"x": X}, yield_single_examples=False))["logits"], rtol=1e-5)
    infer_only = minirnn.load_exported(clf.export_saved_model(str(tmp_path / "i")))
    with pytest.raises(ValueError, match="this export has no 'train' mode"):
        infer_only.train({"x": X}, Y)


# ---- 8. the matrix: every form TF accepts means what its padded form means ----------------------

LENGTHS = np.array([3, 2, 1])
STEPS = {(b, t): X[b][t] for b in range(3) for t in range(LENGTHS[b])}
NUMERIC_FORMS = {
    "ragged arrays": lambda: {"x": X},
    "ragged lists": lambda: {"x": [list(s) for s in X]},
    "padded + sequence_length": lambda: {"x": padded(X), "sequence_length": LENGTHS},
    "padded + bool mask": lambda: {"x": padded(X), "sequence_mask": np.arange(3)[None] < LENGTHS[:, None]},
    "padded + 0/1 mask": lambda: {"x": padded(X), "sequence_mask": (np.arange(3)[None] < LENGTHS[:, None]) * 1},
    "padded [B, T, 1]": lambda: {"x": padded(X)[..., None], "sequence_length": LENGTHS},
    "SparseInput": lambda: {"x": sparse(STEPS, (3, 3))},
    "SparseInput, wider dense_shape": lambda: {"x": sparse(STEPS, (3, 5))},
}
TOKENS = [["a", "b", "c"], ["b", "q"], ["c"]]
TOKEN_FORMS = {
    "ragged str": lambda: {"t": TOKENS},
    "ragged bytes": lambda: {"t": [[w.encode() for w in s] for s in TOKENS]},
    "padded with ''": lambda: {"t": padded([np.array(s, dtype=object) for s in TOKENS], "")},
    "SparseInput [B, T]": lambda: {"t": sparse({(b, t): w for b, s in enumerate(TOKENS) for t, w in enumerate(s)},
                                               (3, 3))},
    "SparseInput [B, T, 1]": lambda: {"t": SparseInput(
        np.array([(b, t, 0) for b, s in enumerate(TOKENS) for t in range(len(s))]),
        np.array([w for s in TOKENS for w in s]), np.array([3, 3, 1]))},
}
LABEL_FORMS = {"[B] int": Y, "[B, 1] int": Y[:, None], "[B] float": Y.astype(np.float32), "list": list(Y),
               "[B, 1] float64": Y[:, None].astype(np.float64)}


def metrics_for(make, features, labels=Y, **kwargs):
    clf = make(**kwargs)
    clf.train(lambda: (features, labels), steps=2)
    return clf.evaluate(lambda: (features, labels))


@pytest.mark.parametrize("form", sorted(NUMERIC_FORMS))
def test_numeric_sequence_forms(form):
    same_metrics(metrics_for(classifier, NUMERIC_FORMS[form]()), metrics_for(classifier, {"x": X}))


@pytest.mark.parametrize("form", sorted(TOKEN_FORMS))
def test_categorical_sequence_forms(form):
    make = lambda: classifier([fc.embedding_column(                                     # noqa: E731
        fc.sequence_categorical_column_with_vocabulary_list("t", ["a", "b", "c"]), 2)])
    same_metrics(metrics_for(make, TOKEN_FORMS[form]()), metrics_for(make, {"t": TOKENS}))


@pytest.mark.parametrize("form", sorted(LABEL_FORMS))
def test_label_forms(form):
    same_metrics(metrics_for(classifier, {"x": X}, LABEL_FORMS[form]), metrics_for(classifier, {"x": X}))


@pytest.mark.parametrize("form", ["[B]", "[B, 1]", "list"])
def test_weight_and_context_forms(form):
    w, c = np.array([1.0, 2.0, 0.5]), np.array([0.3, -1.0, 2.0])
    shape = {"[B]": lambda a: a, "[B, 1]": lambda a: a[:, None], "list": lambda a: list(a)}[form]
    make = lambda: classifier(context=[fc.numeric_column("c")], weight_column="w")      # noqa: E731
    same_metrics(metrics_for(make, {"x": X, "w": shape(w), "c": shape(c)}), metrics_for(make, {"x": X, "w": w, "c": c}))


def test_string_labels_with_a_vocabulary_and_what_is_refused():
    vocab = metrics_for(classifier, {"x": X}, np.array(["yes", "no", "yes"]), label_vocabulary=["no", "yes"])
    same_metrics(vocab, metrics_for(classifier, {"x": X}))
    for labels, message in ((np.array(["yes", "no", "yes"]), "label"), (np.array([[1, 0], [0, 1], [1, 0]]), "label"),
                            (np.array([1, 0, 2]), r"labels: must be in \[0, 1\]")):
        with pytest.raises((ValueError, TypeError), match=message):
            classifier().train(lambda: ({"x": X}, labels), steps=1)
