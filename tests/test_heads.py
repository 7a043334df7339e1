"""Heads: losses, gradients, reductions, predictions, label checks and streamed metrics."""

import numpy as np
import pytest
from _numeric import central_difference
from hypothesis import given, settings
from hypothesis import strategies as st

from minirnn.heads import BinaryClassHead, MultiClassHead, RegressionHead
from minirnn.metrics import AUC

HEADS = [lambda r="sum_over_batch_size": BinaryClassHead(loss_reduction=r),
         lambda r="sum_over_batch_size": MultiClassHead(4, loss_reduction=r),
         lambda r="sum_over_batch_size": RegressionHead(2, loss_reduction=r)]
HEAD_IDS = ["binary", "multi", "regression"]


def _batch(head, B, rng, T=None):
    lead = (B,) if T is None else (B, T)
    logits = rng.standard_normal(lead + (head.logits_dimension,)) * 3
    if isinstance(head, BinaryClassHead):
        labels = rng.integers(0, 2, size=lead)
    elif isinstance(head, MultiClassHead):
        labels = rng.integers(0, head.n_classes, size=lead)
    else:
        labels = rng.standard_normal(lead + (head.label_dimension,))
    return logits, labels


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "sum_by_nonzero_weights", "mean"])
@pytest.mark.parametrize("make", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("sequence", [False, True], ids=["last", "sequence"])
def test_gradient_matches_central_differences(make, reduction, sequence):
    head = make(reduction)
    rng = np.random.default_rng(1)
    logits, labels = _batch(head, 4, rng, T=3 if sequence else None)
    weights = np.array([0.5, 0.0, 2.0, 1.0])
    mask = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 1, 1]], bool) if sequence else None
    result = head.loss(logits, labels, weights, mask)
    numeric = central_difference(lambda: head.loss(logits, labels, weights, mask).loss, logits)
    np.testing.assert_allclose(result.d_logits, numeric, atol=1e-7)
    if sequence:
        assert np.all(result.d_logits[~mask] == 0)


def test_reductions_by_hand():
    logits = np.array([[0.0], [2.0], [-1.0], [3.0]])
    labels = np.array([1, 0, 0, 1])
    w = np.array([1.0, 2.0, 0.0, 0.5])
    per = np.log1p(np.exp(-np.abs(logits[:, 0]))) + np.maximum(logits[:, 0], 0) - logits[:, 0] * labels
    loss = {r: BinaryClassHead(loss_reduction=r).loss(logits, labels, w).loss
            for r in ["sum", "sum_over_batch_size", "sum_by_nonzero_weights", "mean", "auto"]}
    total = np.sum(w * per)
    assert np.isclose(loss["sum"], total)
    assert np.isclose(loss["sum_over_batch_size"], total / 4)     # zero-weight rows count
    assert np.isclose(loss["auto"], total / 4)
    assert np.isclose(loss["sum_by_nonzero_weights"], total / 3)
    assert np.isclose(loss["mean"], total / 3.5)
    # regression: elements are B * d
    r = RegressionHead(2).loss(np.array([[1.0, 2.0], [3.0, 5.0]]), [[0.0, 0.0], [3.0, 3.0]])
    assert np.isclose(r.loss, (1 + 4 + 0 + 4) / 4)


@pytest.mark.parametrize("make", HEADS[:2], ids=HEAD_IDS[:2])
def test_stable_at_extreme_logits(make):
    head = make()
    k = head.logits_dimension
    logits = np.full((2, k), -1e4)
    logits[:, 0] = [1e4, -1e4]                      # row 0 is confidently class 0 (or "negative")
    if k > 1:
        logits[1, 1] = 1e4                          # row 1 confidently class 1
    right, wrong = ([0, 1], [1, 0]) if k > 1 else ([1, 0], [0, 1])
    bad = head.loss(logits, wrong)
    assert np.isfinite(bad.loss) and np.all(np.isfinite(bad.d_logits))
    assert bad.loss > 1e3                           # confidently wrong: a large, finite loss
    assert head.loss(logits, right).loss < 1e-6


def test_predictions_keys_and_shapes():
    preds = BinaryClassHead(label_vocabulary=["no", "yes"]).predictions(np.array([[0.3], [-2.0], [0.0]], np.float32))
    assert sorted(preds) == sorted(["logits", "logistic", "probabilities", "class_ids", "classes",
                                    "all_class_ids", "all_classes"])
    assert preds["probabilities"].shape == (3, 2) and preds["logistic"].dtype == np.float32
    np.testing.assert_array_equal(preds["class_ids"], [[1], [0], [0]])        # tie -> 0
    assert preds["classes"].tolist() == [[b"yes"], [b"no"], [b"no"]]
    assert preds["all_class_ids"].dtype == np.int32 and preds["all_classes"][0].tolist() == [b"no", b"yes"]
    np.testing.assert_allclose(preds["probabilities"].sum(axis=1), 1, rtol=1e-6)
    multi = MultiClassHead(3).predictions(np.array([[0.0, 5.0, 1.0]]))
    assert "logistic" not in multi and multi["class_ids"].tolist() == [[1]] and multi["classes"].tolist() == [[b"1"]]
    seq = BinaryClassHead().predictions(np.zeros((2, 5, 1)))
    assert seq["class_ids"].shape == (2, 5, 1) and seq["all_class_ids"].shape == (2, 2)
    assert list(RegressionHead(3).predictions(np.zeros((2, 3)))) == ["predictions"]


@pytest.mark.parametrize("head,logits,labels,weights,message", [
    (BinaryClassHead(), np.zeros((2, 1)), [0, 3], None, r"must be in \[0, 1\] .*got 3"),
    (BinaryClassHead(), np.zeros((2, 1)), ["a", "b"], None, "expected numbers"),
    (BinaryClassHead(label_vocabulary=["no", "yes"]), np.zeros((2, 1)), ["yes", "maybe"], None, "'maybe' is not in label_vocabulary"),
    (MultiClassHead(3), np.zeros((2, 3)), [0, 3], None, r"must be in \[0, 3\), got 3"),
    (MultiClassHead(3), np.zeros((2, 3)), [0.0, 1.0], None, "expected integer class ids"),
    (MultiClassHead(3), np.zeros((2, 3)), [0, -1], None, r"got -1"),
    (MultiClassHead(3), np.zeros((2, 2)), [0, 1], None, r"logits: expected shape \[batch, 3\]"),
    (RegressionHead(), np.zeros((2, 1)), [0.0, np.nan], None, "must be finite numbers, got nan"),
    (RegressionHead(), np.zeros((2, 1)), [np.inf, 0.0], None, "must be finite numbers, got inf"),
    (RegressionHead(), np.zeros((2, 1)), [0.0, 1.0, 2.0], None, r"labels: expected shape \[2, 1\]"),
    (BinaryClassHead(), np.zeros((2, 1)), [0, 1], [1.0, -1.0], "weights: must be finite and >= 0, got -1.0"),
    (BinaryClassHead(), np.zeros((2, 1)), [0, 1], [1.0, 1.0, 1.0], r"weights: expected shape \[2\]"),
    (BinaryClassHead(), np.zeros((0, 1)), np.zeros(0), None, "empty batch"),
])
def test_bad_labels_and_weights(head, logits, labels, weights, message):
    with pytest.raises(ValueError, match=message):
        head.loss(logits, labels, weights)


def test_constructor_errors():
    with pytest.raises(ValueError, match="n_classes must be > 2: 2"):
        MultiClassHead(2)
    with pytest.raises(ValueError, match="Invalid loss_reduction: none"):
        BinaryClassHead(loss_reduction="none")
    with pytest.raises(ValueError, match="label_vocabulary should be a list or a tuple"):
        BinaryClassHead(label_vocabulary="ab")
    with pytest.raises(ValueError, match="has 2 items, n_classes is 3"):
        MultiClassHead(3, label_vocabulary=["a", "b"])
    with pytest.raises(ValueError, match="label_dimension"):
        RegressionHead(0)


def test_binary_metrics_by_hand():
    head = BinaryClassHead()
    logits = np.array([[2.0], [-1.0], [0.5], [-3.0], [1.0]])
    labels = np.array([1, 0, 0, 1, 1])
    weights = np.array([1.0, 2.0, 1.0, 0.5, 0.0])
    ev = head.metrics()
    first = ev.update(logits[:3], labels[:3], weights[:3])
    second = ev.update(logits[3:], labels[3:], weights[3:])
    out = ev.result()
    p = 1 / (1 + np.exp(-logits[:, 0]))
    per = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    assert sorted(out) == sorted(["accuracy", "accuracy_baseline", "auc", "auc_precision_recall", "average_loss",
                                  "label/mean", "loss", "precision", "prediction/mean", "recall"])
    assert np.isclose(out["average_loss"], np.sum(weights * per) / weights.sum())
    assert np.isclose(out["loss"], (first + second) / 2)                  # mean of batch losses
    assert np.isclose(first, np.sum(weights[:3] * per[:3]) / 3)
    pred = logits[:, 0] > 0
    assert np.isclose(out["accuracy"], np.sum(weights * (pred == labels)) / weights.sum())
    tp, fp, fn = (np.sum(weights * (pred & (labels == 1))), np.sum(weights * (pred & (labels == 0))),
                  np.sum(weights * (~pred & (labels == 1))))
    assert np.isclose(out["precision"], tp / (tp + fp)) and np.isclose(out["recall"], tp / (tp + fn))
    label_mean = np.sum(weights * labels) / weights.sum()
    assert np.isclose(out["label/mean"], label_mean)
    assert np.isclose(out["accuracy_baseline"], max(label_mean, 1 - label_mean))
    assert np.isclose(out["prediction/mean"], np.sum(weights * p) / weights.sum())
    # weighted Mann-Whitney by hand: positive/negative pairs ordered correctly
    pos = [(p[i], weights[i]) for i in range(5) if labels[i] == 1]
    neg = [(p[i], weights[i]) for i in range(5) if labels[i] == 0]
    auc = sum(wp * wn * (sp > sn) for sp, wp in pos for sn, wn in neg) / (sum(w for _, w in pos) * sum(w for _, w in neg))
    assert np.isclose(out["auc"], auc)                     # scores fall in distinct threshold buckets
    exact = head.metrics(exact_auc=True)
    exact.update(logits, labels, weights)
    assert np.isclose(exact.result()["auc"], auc)


def test_auc_interpolation_properties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    scores = np.clip(labels * 0.3 + rng.random(2000) * 0.7, 0, 1)
    roc, roc_exact, pr, pr_exact = AUC("ROC"), AUC("ROC", exact=True), AUC("PR"), AUC("PR", exact=True)
    for metric in (roc, roc_exact, pr, pr_exact):
        for chunk in np.array_split(np.arange(2000), 7):      # streamed in uneven batches
            metric.update(labels[chunk], scores[chunk])
    assert abs(roc.result() - roc_exact.result()) < 2e-3
    assert abs(pr.result() - pr_exact.result()) < 1e-2
    perfect_roc, perfect_pr = AUC("ROC"), AUC("PR")
    for m in (perfect_roc, perfect_pr):
        m.update([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert np.isclose(perfect_roc.result(), 1.0) and np.isclose(perfect_pr.result(), 1.0)
    tie = AUC("ROC", exact=True)
    tie.update([0, 1], [0.5, 0.5])
    assert tie.result() == 0.5


def test_multiclass_and_regression_metric_keys():
    ev = MultiClassHead(3).metrics()
    ev.update(np.array([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]]), [1, 2])
    out = ev.result()
    assert sorted(out) == ["accuracy", "average_loss", "loss"] and out["accuracy"] == 0.5
    ev = RegressionHead().metrics()
    ev.update(np.array([[1.0], [3.0]]), [2.0, 2.0], weights=[1.0, 3.0])
    out = ev.result()
    assert sorted(out) == ["average_loss", "label/mean", "loss", "prediction/mean"]
    assert np.isclose(out["prediction/mean"], (1 + 9) / 4) and np.isclose(out["average_loss"], 1.0)


@pytest.mark.parametrize("make", HEADS, ids=HEAD_IDS)
@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 6), T=st.integers(1, 6), pad=st.integers(1, 4), seed=st.integers(0, 2**31))
def test_padding_never_changes_loss_or_metrics(make, B, T, pad, seed):
    head = make()
    rng = np.random.default_rng(seed)
    logits, labels = _batch(head, B, rng, T=T)
    mask = rng.random((B, T)) < 0.7
    mask[:, 0] = True
    weights = rng.random(B) + 0.1
    junk_logits, junk_labels = _batch(head, B, rng, T=pad)
    big_logits = np.concatenate([logits, junk_logits], axis=1)
    big_labels = np.concatenate([labels, junk_labels], axis=1)
    big_mask = np.concatenate([mask, np.zeros((B, pad), bool)], axis=1)
    small, big = head.loss(logits, labels, weights, mask), head.loss(big_logits, big_labels, weights, big_mask)
    assert np.isclose(small.loss, big.loss, rtol=1e-12)
    np.testing.assert_allclose(big.d_logits[:, :T], small.d_logits, rtol=1e-12)
    assert np.all(big.d_logits[:, T:] == 0)
    e1, e2 = head.metrics(), head.metrics()
    e1.update(logits, labels, weights, mask)
    e2.update(big_logits, big_labels, weights, big_mask)
    r1, r2 = e1.result(), e2.result()
    assert r1.keys() == r2.keys() and all(np.isclose(r1[k], r2[k], rtol=1e-12) for k in r1)


def test_soft_labels_count_as_keras_does():
    """Keras casts labels to bool for AUC / precision / recall; accuracy compares with class_ids."""
    ev = BinaryClassHead().metrics()
    ev.update(np.array([[-2.0], [2.0]]), np.array([0.3, 0.8]))
    out = ev.result()
    assert out["accuracy"] == 0.0 and out["precision"] == 1.0 and out["recall"] == 0.5
    auc = AUC("ROC")
    auc.update([0.3, 0.0, 1.0], [0.9, 0.2, 0.5])
    assert np.isclose(auc.result(), 1.0)


def test_keras_auc_documentation_example():
    auc = AUC("ROC", num_thresholds=3)          # tf.keras.metrics.AUC docstring: 0.75
    auc.update([0, 0, 1, 1], [0, 0.5, 0.3, 0.9])
    assert np.isclose(auc.result(), 0.75)


def test_tiny_positive_logit_is_class_one_everywhere():
    ev = BinaryClassHead().metrics()
    ev.update(np.array([[1e-17], [-1.0]]), [1, 0])
    out = ev.result()
    assert out["accuracy"] == out["precision"] == out["recall"] == 1.0


def test_all_masked_sequence_batch_gives_zero_loss():
    head = BinaryClassHead()
    result = head.loss(np.ones((2, 3, 1)), np.ones((2, 3)), mask=np.zeros((2, 3), bool))
    assert result.loss == 0.0 and np.all(result.d_logits == 0)
    ev = head.metrics()
    ev.update(np.ones((2, 3, 1)), np.ones((2, 3)), mask=np.zeros((2, 3), bool))
    ev.update(np.ones((1, 3, 1)), np.ones((1, 3)), mask=np.ones((1, 3), bool))
    assert ev.result()["accuracy"] == 1.0


def test_predictions_check_logits_and_keep_precision():
    with pytest.raises(ValueError, match=r"logits: expected floats of shape \[batch, 1\]"):
        BinaryClassHead().predictions(np.zeros(3))
    with pytest.raises(ValueError, match=r"\[batch, 3\]"):
        MultiClassHead(3).predictions(np.zeros((2, 5)))
    probs = BinaryClassHead().predictions(np.array([[20.0]], np.float32))["probabilities"]
    assert probs[0, 0] > 0 and np.isclose(probs[0, 0], 2.06e-9, rtol=1e-2)
