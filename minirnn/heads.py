"""Heads: how logits become a loss, its gradient, predictions and evaluation metrics (TF's heads).

- :class:`BinaryClassHead`: one logit, sigmoid cross-entropy; labels in [0, 1] (soft allowed) or two
  strings with ``label_vocabulary``.
- :class:`MultiClassHead`: ``n_classes`` logits, softmax cross-entropy; integer labels in
  [0, n_classes) or strings with ``label_vocabulary``.
- :class:`RegressionHead`: ``label_dimension`` outputs, squared error.

Every head takes per-example ``weights`` ([B] or [B, 1]; regression also [B, d]) and TF's
``loss_reduction``: ``'sum_over_batch_size'`` (default; ``'auto'`` is the same) = sum(w * l) / number
of loss elements (zero-weight rows count), ``'sum'`` = sum(w * l), ``'sum_by_nonzero_weights'`` =
sum(w * l) / count of non-zero weights, ``'mean'`` = sum(w * l) / sum(w) (TF1's names).

Sequence heads (``return_sequences=True``): logits [B, T, k] with a mask [B, T]; the loss, its
gradient and the metrics use valid steps only (TF flattens with ``boolean_mask``); weights are per
example ([B], broadcast to its steps) or per step ([B, T]).

Losses are computed stably for any logit magnitude (log-sum-exp, ``log1p(exp(-|x|))``).
"""

import numpy as np

from . import metrics as M
from .inputs import SparseInput, sparse_to_dense

__all__ = ["BinaryClassHead", "MultiClassHead", "RegressionHead", "REDUCTIONS", "head_from_config"]

REDUCTIONS = ("sum_over_batch_size", "sum", "sum_by_nonzero_weights", "mean", "auto")


def _first(values, bad):
    """The first offending value, as a plain Python object (for error messages)."""
    v = np.asarray(values).ravel()[np.argmax(np.asarray(bad).ravel())]
    return v.item() if hasattr(v, "item") else v


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softmax(x):
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class LossResult:
    """``loss`` (the training loss, a float), ``d_logits`` (its gradient, shaped as the logits), and
    for the valid rows: ``unreduced`` per-element losses, ``weights`` per element, ``logits`` [N, k]
    and ``labels`` (validated: class ids, or floats). ``weighted_sum`` (sum of w * l) and
    ``denominator`` (what the loss reduction divides it by; 0 gives a zero loss) let batches computed
    apart (data-parallel ranks, :mod:`minirnn.distributed`) be added into one batch's loss."""

    def __init__(self, loss, d_logits, unreduced, weights, logits, labels, weighted_sum=None, denominator=None):
        self.loss, self.d_logits, self.unreduced, self.weights = loss, d_logits, unreduced, weights
        self.logits, self.labels = logits, labels
        self.weighted_sum, self.denominator = weighted_sum, denominator


def _dense(value, what, mask):
    """A SparseInput label or weight (TF: a SparseTensor) as a dense array (missing entries 0, ''
    for strings: :func:`~minirnn.inputs.sparse_to_dense`); with a mask [B, T], fitted to the batch's
    T steps (columns past T must hold no value; steps past the SparseInput's, no valid step)."""
    if not isinstance(value, SparseInput):
        return value
    dense = sparse_to_dense(what, value, rank=None if mask is None else 2)
    if mask is None:
        return dense
    (B, T), steps = mask.shape, dense.shape[1]
    if dense.shape[0] != B:
        raise ValueError(f"{what}: a SparseInput of dense_shape {dense.shape}; expected [{B}, time] for {B} examples")
    if steps > T:
        last = int(np.asarray(value.indices)[:, 1].max()) if len(value.values) else -1
        if last >= T:
            raise ValueError(f"{what}: a value at step {last}, but the batch's sequences have {T} steps")
        return dense[:, :T]
    if steps < T:
        if mask[:, steps:].any():
            raise ValueError(f"{what}: a SparseInput of {steps} steps, but the batch has valid steps up to {T}; "
                             "its dense_shape must cover every valid step")
        pad = np.full((B, T - steps), "" if dense.dtype == object else 0, dtype=dense.dtype)
        return np.concatenate([dense, pad], axis=1)
    return dense


class _Head:
    logits_dimension = 1

    def __init__(self, weight_column=None, loss_reduction="sum_over_batch_size"):
        if loss_reduction not in REDUCTIONS:
            raise ValueError(f"Invalid loss_reduction: {loss_reduction}. Expected one of {REDUCTIONS}")
        if weight_column is not None and not isinstance(weight_column, str) \
                and not hasattr(weight_column, "key"):
            raise TypeError(f"weight_column: expected a feature name (str), got {weight_column!r}")
        self.weight_column = weight_column
        self.loss_reduction = "sum_over_batch_size" if loss_reduction == "auto" else loss_reduction

    # ---- shapes ------------------------------------------------------------------------------

    def _flatten(self, logits, labels, weights, mask):
        """Valid rows: logits [N, k], labels [N, ...], weights [N] or [N, d]; and the scatter index."""
        logits = np.asarray(logits)
        if not np.issubdtype(logits.dtype, np.floating):
            raise TypeError(f"logits: expected floats, got {logits.dtype}")
        k = self.logits_dimension
        labels, weights = _dense(labels, "labels", mask), _dense(weights, "weight_column", mask)
        if mask is None:
            if logits.ndim != 2 or logits.shape[1] != k:
                raise ValueError(f"logits: expected shape [batch, {k}], got {logits.shape}")
            B = logits.shape[0]
            labels = self._check_label_shape(labels, (B,))
            weights = self._check_weight_shape(weights, (B,))
            return logits, labels, weights, None
        mask = np.asarray(mask, dtype=bool)
        if logits.ndim != 3 or logits.shape[2] != k or logits.shape[:2] != mask.shape:
            raise ValueError(f"logits: expected shape [batch, time, {k}] matching the mask {mask.shape}, "
                             f"got {logits.shape}")
        B, T = mask.shape
        labels = self._check_label_shape(labels, (B, T))
        if weights is not None:
            w = np.asarray(weights)
            if w.shape in ((B,), (B, 1)):
                weights = np.broadcast_to(w.reshape(B, 1), (B, T))
        weights = self._check_weight_shape(weights, (B, T))
        return logits[mask], labels[mask], (None if weights is None else weights[mask]), mask

    def _check_label_shape(self, labels, lead):
        if labels is None:
            raise ValueError("labels: missing (None)")
        labels = np.asarray(labels)
        if labels.shape == lead + (1,):
            labels = labels.reshape(lead)
        if labels.shape[:len(lead)] != lead or labels.ndim != len(lead) + self._label_extra_dims():
            raise ValueError(f"labels: expected shape {list(lead) + self._label_tail()}, got {list(labels.shape)}")
        return labels

    def _label_extra_dims(self):
        return 0

    def _label_tail(self):
        return []

    def _check_weight_shape(self, weights, lead):
        if weights is None:
            return None
        w = np.asarray(weights)
        if not np.issubdtype(w.dtype, np.number) or np.issubdtype(w.dtype, np.complexfloating):
            raise TypeError(f"weights: expected numbers, got dtype {w.dtype}")
        if w.shape == lead + (1,):
            w = w.reshape(lead)
        if w.shape != lead and not self._extra_weight_shape_ok(w.shape, lead):
            raise ValueError(f"weights: expected shape {list(lead)} (or {list(lead) + [1]}), got {list(w.shape)}")
        w = w.astype(np.float64)
        bad = ~np.isfinite(w) | (w < 0)
        if np.any(bad):
            raise ValueError(f"weights: must be finite and >= 0, got {_first(w, bad)!r}")
        return w

    def _extra_weight_shape_ok(self, shape, lead):
        return False

    # ---- loss --------------------------------------------------------------------------------

    def loss(self, logits, labels, weights=None, mask=None):
        """Training loss and its gradient w.r.t. ``logits``. See the module docstring for shapes."""
        flat_logits, flat_labels, w, index = self._flatten(logits, labels, weights, mask)
        if flat_logits.shape[0] == 0 and index is None:
            raise ValueError("loss: empty batch (no example)")
        y = self.label_ids(flat_labels)
        x = flat_logits.astype(np.float64)
        unreduced, d_unreduced = self._losses(x, y)           # [N] or [N, d] and d/dx [N, k]
        w_elem = np.ones_like(unreduced) if w is None else np.broadcast_to(
            w if w.ndim == unreduced.ndim else w.reshape(w.shape + (1,) * (unreduced.ndim - w.ndim)),
            unreduced.shape)
        weighted = np.sum(w_elem * unreduced)          # an all-masked sequence batch gives 0, as TF
        denom = self.denominator(w_elem)
        scale = 1.0 / denom if denom > 0 else 0.0
        loss = float(weighted * scale)
        d_flat = d_unreduced * self._grad_weights(w_elem) * scale
        logits = np.asarray(logits)
        if index is None:
            d_logits = d_flat.astype(logits.dtype)
        else:
            d_logits = np.zeros(logits.shape, dtype=logits.dtype)
            d_logits[index] = d_flat
        return LossResult(loss, d_logits, unreduced, w_elem, flat_logits, y, float(weighted), denom)

    def denominator(self, w_elem):
        """What ``loss_reduction`` divides sum(w * l) by, from the per-element weights ``w_elem``
        (shaped as the unreduced losses): 1 for 'sum', the element count for
        'sum_over_batch_size', the non-zero weights for 'sum_by_nonzero_weights', sum(w) for 'mean'."""
        if self.loss_reduction == "sum":
            return 1.0
        if self.loss_reduction == "sum_over_batch_size":
            return float(np.size(w_elem))
        if self.loss_reduction == "sum_by_nonzero_weights":
            return float(np.count_nonzero(w_elem))
        return float(np.sum(w_elem))                            # mean

    def _grad_weights(self, w_elem):
        return w_elem[:, None] if w_elem.ndim == 1 else w_elem

    def _check_logits(self, logits):
        logits = np.asarray(logits)
        k = self.logits_dimension
        if not np.issubdtype(logits.dtype, np.floating) or logits.ndim not in (2, 3) or logits.shape[-1] != k:
            raise ValueError(f"logits: expected floats of shape [batch, {k}] or [batch, time, {k}], "
                             f"got {logits.dtype} {logits.shape}")
        return logits

    def metrics(self, exact_auc=False):
        """A fresh streaming evaluator with this head's TF metric keys."""
        return _Evaluator(self, exact_auc)

    def get_config(self):
        """A JSON-able description; :func:`head_from_config` rebuilds the head from it."""
        weight = self.weight_column
        if weight is not None and not isinstance(weight, str):
            weight = weight.key                          # a numeric_column: its feature key
        config = {"class": type(self).__name__, "weight_column": weight, "loss_reduction": self.loss_reduction}
        config.update(self._config())
        return config

    def _config(self):
        return {}

    def weights(self, features):
        """The batch's example weights from ``weight_column`` (None without one)."""
        if self.weight_column is None:
            return None
        key = self.weight_column if isinstance(self.weight_column, str) else self.weight_column.key
        if not isinstance(features, dict) or key not in features:
            present = sorted(features) if isinstance(features, dict) else []
            raise KeyError(f"weight_column: feature {key!r} is not in the batch; the batch has {present}")
        raw = features[key]
        w = np.asarray(raw.values if isinstance(raw, SparseInput) else raw)
        if not isinstance(self.weight_column, str) and getattr(self.weight_column, "normalizer_fn", None):
            w = np.asarray(self.weight_column.normalizer_fn(w.astype(np.float64)))
        if not np.issubdtype(w.dtype, np.number) or w.dtype.kind == "c":
            raise TypeError(f"weight_column {key!r}: expected numbers, got dtype {w.dtype}")
        return raw._replace(values=w) if isinstance(raw, SparseInput) else w


class _ClassHead(_Head):
    def __init__(self, n_classes, weight_column=None, label_vocabulary=None,
                 loss_reduction="sum_over_batch_size"):
        super().__init__(weight_column, loss_reduction)
        if label_vocabulary is not None:
            if not isinstance(label_vocabulary, (list, tuple)):
                raise ValueError(f"label_vocabulary should be a list or a tuple. Given type: {type(label_vocabulary)}")
            if len(label_vocabulary) != n_classes:
                raise ValueError(f"label_vocabulary has {len(label_vocabulary)} items, n_classes is {n_classes}: "
                                 "they must match")
            if not all(isinstance(v, str) for v in label_vocabulary) or len(set(label_vocabulary)) != n_classes:
                raise ValueError("label_vocabulary: expected distinct strings")
        self.n_classes = n_classes
        self.label_vocabulary = None if label_vocabulary is None else tuple(label_vocabulary)

    def label_ids(self, labels):
        """Validated labels: class ids (ints) or, for the binary head, floats in [0, 1]."""
        labels = np.asarray(labels)
        if self.label_vocabulary is not None:
            if labels.dtype.kind not in "USO":
                raise ValueError(f"labels: expected strings from label_vocabulary {list(self.label_vocabulary)}, "
                                 f"got dtype {labels.dtype}")
            lookup = {v: i for i, v in enumerate(self.label_vocabulary)}
            flat = [lookup.get(v.decode() if isinstance(v, bytes) else v, -1) for v in labels.ravel()]
            ids = np.array(flat, dtype=np.int64).reshape(labels.shape)
            if np.any(ids < 0):
                bad = _first(labels, ids < 0)
                raise ValueError(f"labels: {bad!r} is not in label_vocabulary {list(self.label_vocabulary)}")
            return ids
        return self._numeric_labels(labels)

    def _config(self):
        return {"n_classes": self.n_classes,
                "label_vocabulary": None if self.label_vocabulary is None else list(self.label_vocabulary)}

    def class_names(self):
        """The class names as TF gives them (bytes), built once."""
        if getattr(self, "_class_names", None) is None:
            names = self.label_vocabulary if self.label_vocabulary is not None else \
                [str(i) for i in range(self.n_classes)]
            self._class_names = np.array([v.encode() for v in names], dtype=object)
        return self._class_names


class BinaryClassHead(_ClassHead):
    """Binary classification: one logit, sigmoid cross-entropy (TF's BinaryClassHead)."""

    logits_dimension = 1

    def __init__(self, weight_column=None, label_vocabulary=None, loss_reduction="sum_over_batch_size"):
        super().__init__(2, weight_column, label_vocabulary, loss_reduction)

    def _numeric_labels(self, labels):
        if not np.issubdtype(labels.dtype, np.number) and labels.dtype != bool:
            raise ValueError(f"labels: expected numbers in [0, 1] (or set label_vocabulary), got dtype {labels.dtype}")
        y = labels.astype(np.float64)
        bad = ~np.isfinite(y) | (y < 0) | (y > 1)
        if np.any(bad):
            raise ValueError(f"labels: must be in [0, 1] for binary classification, got {_first(labels, bad)!r}")
        return y

    def _losses(self, x, y):
        x = x[:, 0]
        loss = np.maximum(x, 0.0) - x * y + np.log1p(np.exp(-np.abs(x)))   # sigmoid cross-entropy
        return loss, (_sigmoid(x) - y)[:, None]

    def predictions(self, logits):
        """TF's keys for logits [B, 1] or [B, T, 1]: logits, logistic, probabilities, class_ids,
        classes, all_class_ids, all_classes."""
        logits = self._check_logits(logits)
        x = logits.astype(np.float64)
        e = np.exp(-np.abs(x))                       # both sigmoids from one exp, each without overflow
        near, far = 1.0 / (1.0 + e), e / (1.0 + e)   # sigmoid(|x|), sigmoid(-|x|)
        positive = x >= 0
        probabilities = np.empty(x.shape[:-1] + (2,), dtype=logits.dtype)
        probabilities[..., 1:] = np.where(positive, near, far)
        probabilities[..., :1] = np.where(positive, far, near)
        class_ids = (x > 0).astype(np.int64)         # TF: argmax of [0, logit], a tie is class 0
        names = self.class_names()
        B = logits.shape[0]
        return {"logits": logits, "logistic": probabilities[..., 1:].copy(), "probabilities": probabilities,
                "class_ids": class_ids, "classes": names[class_ids],
                "all_class_ids": np.tile(np.arange(2, dtype=np.int32), (B, 1)), "all_classes": np.tile(names, (B, 1))}


class MultiClassHead(_ClassHead):
    """Multi-class classification: n_classes logits, softmax cross-entropy (TF's MultiClassHead)."""

    def __init__(self, n_classes, weight_column=None, label_vocabulary=None, loss_reduction="sum_over_batch_size"):
        if not isinstance(n_classes, (int, np.integer)) or isinstance(n_classes, bool):
            raise ValueError(f"n_classes: expected an integer, got {n_classes!r}")
        if n_classes <= 2:
            raise ValueError(f"n_classes must be > 2: {n_classes}.")
        super().__init__(int(n_classes), weight_column, label_vocabulary, loss_reduction)
        self.logits_dimension = self.n_classes

    def _numeric_labels(self, labels):
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels: expected integer class ids in [0, {self.n_classes}) (or set label_vocabulary), "
                             f"got dtype {labels.dtype}")
        bad = (labels < 0) | (labels >= self.n_classes)
        if np.any(bad):
            raise ValueError(f"labels: must be in [0, {self.n_classes}), got {_first(labels, bad)!r}")
        return labels.astype(np.int64)

    def _losses(self, x, y):
        z = x - x.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(z).sum(axis=1))
        rows = np.arange(len(y))
        loss = log_sum - z[rows, y]                                      # softmax cross-entropy
        grad = np.exp(z - log_sum[:, None])
        grad[rows, y] -= 1.0
        return loss, grad

    def predictions(self, logits):
        """TF's keys for logits [B, n] or [B, T, n]: logits, probabilities, class_ids, classes, all_*."""
        logits = self._check_logits(logits)
        probabilities = _softmax(logits.astype(np.float64)).astype(logits.dtype)
        class_ids = np.argmax(logits, axis=-1)[..., None].astype(np.int64)
        names = self.class_names()
        lead = logits.shape[:1]
        return {"logits": logits, "probabilities": probabilities, "class_ids": class_ids,
                "classes": names[class_ids],
                "all_class_ids": np.broadcast_to(np.arange(self.n_classes, dtype=np.int32), lead + (self.n_classes,)).copy(),
                "all_classes": np.broadcast_to(names, lead + (self.n_classes,)).copy()}


class RegressionHead(_Head):
    """Regression: label_dimension outputs, squared error (TF's RegressionHead)."""

    def __init__(self, label_dimension=1, weight_column=None, loss_reduction="sum_over_batch_size"):
        if not isinstance(label_dimension, (int, np.integer)) or label_dimension < 1:
            raise ValueError(f"label_dimension: expected a positive integer, got {label_dimension!r}")
        super().__init__(weight_column, loss_reduction)
        self.logits_dimension = self.label_dimension = int(label_dimension)

    def _check_label_shape(self, labels, lead):
        if labels is None:
            raise ValueError("labels: missing (None)")
        labels = np.asarray(labels)
        d = self.label_dimension
        if d == 1 and labels.shape == lead:
            labels = labels[..., None]
        if labels.shape != lead + (d,):
            raise ValueError(f"labels: expected shape {list(lead) + [d]}, got {list(labels.shape)}")
        return labels

    def _extra_weight_shape_ok(self, shape, lead):
        return shape == lead + (self.label_dimension,)

    def _config(self):
        return {"label_dimension": self.label_dimension}

    def label_ids(self, labels):
        if not np.issubdtype(labels.dtype, np.number):
            raise ValueError(f"labels: expected numbers for regression, got dtype {labels.dtype}")
        y = labels.astype(np.float64)
        bad = ~np.isfinite(y)
        if np.any(bad):
            raise ValueError(f"labels: regression labels must be finite numbers, got {_first(labels, bad)!r}")
        return y

    def _losses(self, x, y):
        diff = x - y
        return diff * diff, 2.0 * diff

    def _grad_weights(self, w_elem):
        return w_elem

    def predictions(self, logits):
        """``predictions``: the outputs [B, d] or [B, T, d]."""
        return {"predictions": self._check_logits(logits)}


def head_from_config(config):
    """The head described by :meth:`get_config` (weight columns come back as their feature key)."""
    config = dict(config)
    cls = {c.__name__: c for c in (BinaryClassHead, MultiClassHead, RegressionHead)}.get(config.pop("class", None))
    if cls is None:
        raise ValueError(f"head config: unknown head class in {config!r}")
    if cls is BinaryClassHead:
        config.pop("n_classes", None)
    return cls(**config)


class _Evaluator:
    """Streams TF's evaluation metrics for one head over batches; ``result()`` gives the dict.
    ``state()`` / ``merge_state()`` add up evaluators filled apart (data-parallel ranks): batch k
    of the merged evaluator is the union of every part's batch k."""

    def __init__(self, head, exact_auc=False):
        self.head = head
        self.average_loss, self.batch_losses = M.Mean(), []
        self.batch_sums = []                    # per batch: (sum of w * l, the reduction's denominator)
        if isinstance(head, BinaryClassHead):
            self.accuracy, self.label_mean, self.prediction_mean = M.Mean(), M.Mean(), M.Mean()
            self.auc = M.AUC("ROC", exact=exact_auc)
            self.auc_pr = M.AUC("PR", exact=exact_auc)
            self.at_half = M.ConfusionCounts([0.5])
        elif isinstance(head, MultiClassHead):
            self.accuracy = M.Mean()
        else:
            self.label_mean, self.prediction_mean = M.Mean(), M.Mean()

    def update(self, logits, labels, weights=None, mask=None):
        """Add one batch; returns its training loss."""
        result = self.head.loss(logits, labels, weights, mask)
        flat_logits, y, w = result.logits, result.labels, result.weights   # valid rows; w per element
        self.average_loss.update(result.unreduced, w)
        self.batch_losses.append(result.loss)
        self.batch_sums.append((result.weighted_sum, result.denominator))
        head = self.head
        if isinstance(head, BinaryClassHead):
            p = _sigmoid(flat_logits[:, 0].astype(np.float64))
            class_ids = (flat_logits[:, 0] > 0).astype(np.float64)
            self.accuracy.update((class_ids == y).astype(np.float64), w)   # TF: Accuracy(labels, class_ids)
            self.label_mean.update(y, w)
            self.prediction_mean.update(p, w)
            self.auc.update(y, p, w)
            self.auc_pr.update(y, p, w)
            self.at_half.update(y, class_ids, w)       # precision / recall of class_ids, as TF
        elif isinstance(head, MultiClassHead):
            self.accuracy.update((np.argmax(flat_logits, axis=1) == y).astype(np.float64), w)
        else:
            self.label_mean.update(y, w)
            self.prediction_mean.update(flat_logits.astype(np.float64), w)
        return result.loss

    def add_empty_batch(self):
        """Count a batch none of whose examples were here (a data-parallel rank's empty share)."""
        self.batch_sums.append((0.0, 0.0))

    def _metrics(self):
        return {k: v for k, v in vars(self).items() if isinstance(v, (M.Mean, M.ConfusionCounts, M.AUC))}

    def state(self):
        """Plain arrays: every metric's sums and the per-batch loss sums."""
        return {"metrics": {k: m.state() for k, m in self._metrics().items()},
                "batch_sums": np.array(self.batch_sums, dtype=np.float64).reshape(-1, 2)}

    def merge_state(self, state):
        """Add another evaluator's ``state()`` in: sums add up, batch k's loss becomes that of the
        union of both batches k (sum of w * l over the sum of the denominators; the sum itself
        for loss_reduction 'sum')."""
        metrics = self._metrics()
        if set(state["metrics"]) != set(metrics):
            raise ValueError(f"merge_state: metrics {sorted(state['metrics'])} do not match {sorted(metrics)}")
        for key, metric in metrics.items():
            metric.merge_state(state["metrics"][key])
        mine, other = np.array(self.batch_sums, dtype=np.float64).reshape(-1, 2), np.asarray(state["batch_sums"])
        n = max(len(mine), len(other))
        sums = np.zeros((n, 2))
        sums[:len(mine)] += mine
        sums[:len(other)] += other
        self.batch_sums = [tuple(row) for row in sums]
        if self.head.loss_reduction == "sum":           # no denominator: the loss is the sum
            self.batch_losses = [w for w, _ in sums]
        else:
            self.batch_losses = [w * (1.0 / d) if d > 0 else 0.0 for w, d in sums]

    def result(self):
        out = {"average_loss": self.average_loss.result(),
               "loss": float(np.mean(self.batch_losses)) if self.batch_losses else 0.0}
        head = self.head
        if isinstance(head, BinaryClassHead):
            c = self.at_half
            label_mean = self.label_mean.result()
            out.update({"accuracy": self.accuracy.result(),
                        "accuracy_baseline": max(label_mean, 1.0 - label_mean),
                        "auc": self.auc.result(), "auc_precision_recall": self.auc_pr.result(),
                        "precision": float(M._div(c.tp[0], c.tp[0] + c.fp[0])),
                        "recall": float(M._div(c.tp[0], c.tp[0] + c.fn[0])),
                        "label/mean": label_mean, "prediction/mean": self.prediction_mean.result()})
        elif isinstance(head, MultiClassHead):
            out["accuracy"] = self.accuracy.result()
        else:
            out.update({"label/mean": self.label_mean.result(), "prediction/mean": self.prediction_mean.result()})
        return dict(sorted(out.items()))
