"""Streamed, weighted metric pieces with TF/Keras definitions: means, confusion counts, AUC.

Each accumulator takes batches through ``update`` and reports with ``result``; weights are per
element. ``state()`` gives its sums as plain arrays and ``merge_state(state)`` adds another's in, so
accumulators filled apart (data-parallel ranks) merge into the result of one pass over all batches. AUC follows ``tf.keras.metrics.AUC()`` by default: 200 thresholds evenly spread on [0, 1]
(plus -1e-7 and 1 + 1e-7 at the ends), weighted confusion counts per threshold, and the interpolated area (trapezoids
for ROC; Davis & Goadrich interpolation for precision-recall). Labels count as positive when non-zero
(Keras casts them to bool, so a soft label of 0.3 is a positive). ``exact=True`` keeps every score
instead (memory grows with the data) and computes the exact rank-based ROC AUC (ties count half)
and the exact step-wise PR area (average precision).
"""

import numpy as np

EPSILON = 1e-7


def _div(a, b):
    """a / b, 0 where b == 0 (TF's div_no_nan)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b != 0)


class Mean:
    """Weighted mean: sum(w * x) / sum(w)."""

    def __init__(self):
        self.total = 0.0
        self.count = 0.0

    def update(self, values, weights=None):
        values = np.asarray(values, dtype=np.float64)
        weights = np.ones_like(values) if weights is None else np.broadcast_to(weights, values.shape)
        self.total += float(np.sum(values * weights))
        self.count += float(np.sum(weights))

    def result(self):
        return float(_div(self.total, self.count))

    def state(self):
        """The sums this mean streams (plain arrays): ``merge_state`` adds another's in."""
        return {"total": self.total, "count": self.count}

    def merge_state(self, state):
        self.total += float(state["total"])
        self.count += float(state["count"])


class ConfusionCounts:
    """Weighted tp, fp, tn, fn of ``score > threshold`` for each threshold."""

    def __init__(self, thresholds):
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        n = len(self.thresholds)
        self.tp, self.fp, self.tn, self.fn = (np.zeros(n) for _ in range(4))

    def update(self, labels, scores, weights=None):
        labels = (np.asarray(labels).ravel() != 0).astype(np.float64)      # Keras: cast to bool
        scores = np.asarray(scores, dtype=np.float64).ravel()
        weights = np.ones_like(labels) if weights is None else np.broadcast_to(weights, labels.shape).ravel()
        pos, neg = labels * weights, (1.0 - labels) * weights
        n = len(self.thresholds)
        # bucket k = number of thresholds strictly below the score: score > thresholds[i] iff i < k
        bucket = np.searchsorted(self.thresholds, scores, side="left")
        pos_in = np.bincount(bucket, weights=pos, minlength=n + 1)
        neg_in = np.bincount(bucket, weights=neg, minlength=n + 1)
        above_pos = np.cumsum(pos_in[::-1])[::-1][1:]     # sum over buckets > i
        above_neg = np.cumsum(neg_in[::-1])[::-1][1:]
        self.tp += above_pos
        self.fp += above_neg
        self.fn += pos.sum() - above_pos
        self.tn += neg.sum() - above_neg

    def state(self):
        """The weighted counts per threshold: ``merge_state`` adds another's in."""
        return {"tp": self.tp.copy(), "fp": self.fp.copy(), "tn": self.tn.copy(), "fn": self.fn.copy()}

    def merge_state(self, state):
        for key in ("tp", "fp", "tn", "fn"):
            counts = np.asarray(state[key], dtype=np.float64)
            if counts.shape != self.tp.shape:
                raise ValueError(f"merge_state: {key} has {counts.shape[0] if counts.ndim else 0} thresholds, "
                                 f"this metric {len(self.thresholds)}")
            getattr(self, key).__iadd__(counts)


def keras_thresholds(num_thresholds=200):
    """Keras AUC's thresholds: [-eps, 1/(n-1), ..., (n-2)/(n-1), 1 + eps]."""
    inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    return np.array([0.0 - EPSILON] + inner + [1.0 + EPSILON])


class AUC:
    """Area under the ROC (``curve='ROC'``) or precision-recall (``curve='PR'``) curve."""

    def __init__(self, curve="ROC", num_thresholds=200, exact=False):
        if curve not in ("ROC", "PR"):
            raise ValueError(f"curve: expected 'ROC' or 'PR', got {curve!r}")
        if num_thresholds < 2:
            raise ValueError(f"num_thresholds: expected >= 2, got {num_thresholds}")
        self.curve, self.exact = curve, exact
        self.counts = None if exact else ConfusionCounts(keras_thresholds(num_thresholds))
        self._scores, self._labels, self._weights = [], [], []

    def update(self, labels, scores, weights=None):
        labels = (np.asarray(labels).ravel() != 0).astype(np.float64)      # Keras: cast to bool
        if self.exact:
            self._labels.append(labels)
            self._scores.append(np.asarray(scores, dtype=np.float64).ravel())
            self._weights.append(np.ones_like(labels) if weights is None
                                 else np.broadcast_to(weights, labels.shape).ravel().astype(np.float64))
        else:
            self.counts.update(labels, scores, weights)

    def state(self):
        """Threshold counts, or with ``exact`` every (label, score, weight) seen so far: plain
        arrays that ``merge_state`` adds to another AUC of the same kind (data-parallel evaluation
        sums the counts or concatenates the scores, so the merged result equals one pass over all)."""
        if self.exact:
            cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0))
            return {"exact": True, "labels": cat(self._labels), "scores": cat(self._scores),
                    "weights": cat(self._weights)}
        return {"exact": False, **self.counts.state()}

    def merge_state(self, state):
        if bool(state["exact"]) != self.exact:
            raise ValueError("merge_state: an exact AUC and a thresholded AUC cannot be merged")
        if self.exact:
            if len(state["labels"]):
                self._labels.append(np.asarray(state["labels"], dtype=np.float64))
                self._scores.append(np.asarray(state["scores"], dtype=np.float64))
                self._weights.append(np.asarray(state["weights"], dtype=np.float64))
        else:
            self.counts.merge_state(state)

    def result(self):
        if self.exact:
            if not self._labels:
                return 0.0
            y, s, w = (np.concatenate(a) for a in (self._labels, self._scores, self._weights))
            return _exact_roc_auc(y, s, w) if self.curve == "ROC" else _exact_pr_auc(y, s, w)
        c = self.counts
        if self.curve == "ROC":
            tpr, fpr = _div(c.tp, c.tp + c.fn), _div(c.fp, c.fp + c.tn)
            return float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2.0))
        return _interpolated_pr_auc(c.tp, c.fp, c.fn)


def _interpolated_pr_auc(tp, fp, fn):
    """Davis & Goadrich interpolation between thresholds, as Keras's AUC(curve='PR')."""
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = _div(dtp, np.maximum(dp, 0.0))
    intercept = tp[1:] - slope * p[1:]
    both = (p[:-1] > 0) & (p[1:] > 0)
    ratio = np.where(both, _div(p[:-1], np.maximum(p[1:], 0.0)), 1.0)
    with np.errstate(divide="ignore"):
        log_ratio = np.log(np.where(ratio > 0, ratio, 1.0))
    return float(np.sum(_div(slope * (dtp + intercept * log_ratio), np.maximum(tp[1:] + fn[1:], 0.0))))


def _exact_roc_auc(y, s, w):
    """P(score_pos > score_neg) + P(tie) / 2, weighted; labels may be soft."""
    order = np.argsort(s, kind="mergesort")
    s, pos, neg = s[order], (y * w)[order], ((1.0 - y) * w)[order]
    uniq, start = np.unique(s, return_index=True)
    pos_g, neg_g = np.add.reduceat(pos, start), np.add.reduceat(neg, start)
    neg_below = np.cumsum(neg_g) - neg_g
    total = pos_g.sum() * neg_g.sum()
    return float(_div(np.sum(pos_g * (neg_below + 0.5 * neg_g)), total))


def _exact_pr_auc(y, s, w):
    """Average precision: sum over distinct thresholds of precision * (recall increase)."""
    order = np.argsort(-s, kind="mergesort")
    s, pos, neg = s[order], (y * w)[order], ((1.0 - y) * w)[order]
    uniq, start = np.unique(-s, return_index=True)
    tp = np.cumsum(np.add.reduceat(pos, start))
    fp = np.cumsum(np.add.reduceat(neg, start))
    total_pos = tp[-1] if len(tp) else 0.0
    recall = _div(tp, total_pos)
    precision = _div(tp, tp + fp)
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
