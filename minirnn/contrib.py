"""TF1's ``tf.contrib.learn.DynamicRnnEstimator``: its constructor, enums, prediction keys and state
features, its ``fit / partial_fit / evaluate / predict`` with ``input_fn`` or arrays, and
scikit-learn's ``get_params / set_params`` over the real hyper-parameters.

Where TF1 went wrong, this does better, on purpose:

- Sequences are masked: padded steps never change the state, so ``rnn_cell_state_i`` is the state
  after each example's last real step (TF1 ran the cell over the padding), and feeding it back as
  the initial state continues the sequence exactly as one long sequence would.
- ``fit(x, y)`` works with variable-length sequences (ragged lists); TF1's array path broke.
- ``learning_rate`` and ``gradient_clipping_norm`` accept any positive number (TF1 demanded floats);
  ``optimizer='Momentum'`` without ``momentum`` fails at construction, not at train time.
- Without a ``sequence_length`` feature, ragged inputs still know their lengths; padded arrays use
  every step, as TF1.
- ``fit(x, y)`` without steps, max_steps or a monitor would train for ever, as TF1 did: it raises
  instead, saying what to give. Iterators of examples train until they end.
- ``model_fn`` answers with values for one batch (:class:`ModelFnOps`), and ``export`` /
  ``export_savedmodel`` write minirnn's graph-less bundle: arguments that shape a TF graph are
  validated and documented as without effect, or refused when they would change the result.

String optimizers get TF1's defaults: Adagrad (accumulator 0.1, no epsilon), Adam (epsilon 1e-8),
RMSProp (decay 0.9, epsilon 1e-10), Ftrl, SGD, Momentum; clipping is by global norm.
"""

import itertools
import os
import shutil
from collections import namedtuple

import numpy as np

from . import export as ex
from . import optimizers as opt
from .errors import NotFittedError
from .estimator import _CELL_CLASSES, EstimatorSpec, _Estimator, _LossHook
from .heads import BinaryClassHead, MultiClassHead, RegressionHead
from .inputs import batches, numpy_input_fn
from .layers import GRU, LSTM, SimpleRNN
from .predictions import initial_states_from_features, state_features
from .step import prepare_labels

__all__ = ["DynamicRnnEstimator", "ProblemType", "PredictionType", "RNNKeys", "ModeKeys", "ModelFnOps",
           "GraphRewriteSpec", "LSTMStateTuple", "NotFittedError", "construct_rnn_cell", "state_tuple_to_dict",
           "dict_to_state_tuple"]


class ProblemType:
    UNSPECIFIED, CLASSIFICATION, LINEAR_REGRESSION, LOGISTIC_REGRESSION = 0, 1, 2, 3


class PredictionType:
    SINGLE_VALUE, MULTIPLE_VALUE = 1, 2


class RNNKeys:
    SEQUENCE_LENGTH_KEY = "sequence_length"
    STATE_PREFIX = "rnn_cell_state"
    FINAL_STATE_KEY = "final_state"
    LABELS_KEY = "__labels__"


class ModeKeys:
    """TF1's ``ModeKeys`` values, the ``mode`` of :attr:`DynamicRnnEstimator.model_fn`."""
    TRAIN, EVAL, INFER = "train", "eval", "infer"


class ModelFnOps(EstimatorSpec):
    """What :attr:`DynamicRnnEstimator.model_fn` returns for one batch: TF1 contrib's name for the
    TF2 estimators' :class:`~minirnn.estimator.EstimatorSpec` (the same fields, values not tensors)."""
    __slots__ = ()


GraphRewriteSpec = namedtuple("GraphRewriteSpec", ["tags", "transforms"])
GraphRewriteSpec.__doc__ = "TF1's (tags, transforms) of one exported MetaGraphDef; see export_savedmodel."
LSTMStateTuple = namedtuple("LSTMStateTuple", ["c", "h"])
LSTMStateTuple.__doc__ = "An LSTM layer's state as TF1 orders it: (c, h)."


def construct_rnn_cell(num_units, cell_type="basic_rnn"):
    """TF1's ``rnn_common.construct_rnn_cell``: the minirnn layer (one unit count) or list of layers
    (stacked) that a DynamicRnnEstimator with these arguments builds; give it to
    :func:`dict_to_state_tuple`."""
    classes = {"basic_rnn": SimpleRNN, "lstm": LSTM, "gru": GRU}
    if isinstance(cell_type, type):
        cls = cell_type if cell_type in _CELL_CLASSES else None
    else:
        cls = classes.get(cell_type) if isinstance(cell_type, str) else None
    if cls is None:
        raise ValueError(f"cell_type: expected 'basic_rnn', 'lstm', 'gru' or a minirnn.layers class, got {cell_type!r}")
    units = list(num_units) if isinstance(num_units, (list, tuple)) else [num_units]
    layers = [cls(u) for u in units]
    return layers[0] if len(layers) == 1 else layers


def _flatten(state):
    if isinstance(state, (list, tuple)):
        return [s for part in state for s in _flatten(part)]
    return [state]


def state_tuple_to_dict(state):
    """TF1's ``state_tuple_to_dict``: a state (an array, an LSTMStateTuple, or nested tuples / lists
    of them, one per layer) -> {'rnn_cell_state_i': array}, i over the depth-first flattening."""
    return {f"{RNNKeys.STATE_PREFIX}_{i}": s for i, s in enumerate(_flatten(state))}


def _layers_of(cell):
    if isinstance(cell, DynamicRnnEstimator):
        layers = list(cell._session.state.network.model.layers)
        return layers, len(layers) > 1
    if isinstance(cell, (list, tuple)) and cell and all(type(c) in _CELL_CLASSES for c in cell):
        return list(cell), True
    if type(cell) in _CELL_CLASSES:
        return [cell], False
    raise TypeError(f"cell: expected a DynamicRnnEstimator, a minirnn layer or a list of them (construct_rnn_cell), "
                    f"got {cell!r}")


def dict_to_state_tuple(input_dict, cell):
    """TF1's ``dict_to_state_tuple``: the state features {'rnn_cell_state_i': [batch, size]} of
    ``cell`` (see :func:`construct_rnn_cell`, or a DynamicRnnEstimator) -> its state structure: one
    layer's state (an array, or an LSTMStateTuple(c, h)), or a tuple of them for stacked layers.
    None when the dict holds no state; ValueError when it holds some but not all, or a wrong shape."""
    if not isinstance(input_dict, dict):
        raise TypeError(f"input_dict: expected a dict of features, got {type(input_dict).__name__}")
    layers, stacked = _layers_of(cell)
    flat = state_features(layers, input_dict)
    if flat is None:
        return None
    per_layer, k = [], 0
    for layer in layers:
        per_layer.append(LSTMStateTuple(flat[k], flat[k + 1]) if layer.n_states == 2 else flat[k])
        k += layer.n_states
    return tuple(per_layer) if stacked else per_layer[0]


_CELLS = {"basic_rnn": "simple_rnn", "lstm": "lstm", "gru": "gru"}
_TF1_OPTIMIZERS = ("Adagrad", "Adam", "Ftrl", "Momentum", "RMSProp", "SGD")
_PARAMS = ("problem_type", "prediction_type", "sequence_feature_columns", "context_feature_columns", "num_classes",
           "num_units", "cell_type", "optimizer", "learning_rate", "predict_probabilities", "momentum",
           "gradient_clipping_norm", "dropout_keep_probabilities", "model_dir", "feature_engineering_fn", "config")


def _positive(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    opt._check_positive(name, value)
    return float(value)


class DynamicRnnEstimator(_Estimator):
    """TF1's dynamic RNN estimator (see the module docstring for what differs, and why).

    Parameters
    ----------
    problem_type : ProblemType.CLASSIFICATION or ProblemType.LINEAR_REGRESSION
    prediction_type : PredictionType.SINGLE_VALUE (one output per sequence, at its last step) or
        MULTIPLE_VALUE (one per step; labels [B, T] or ragged lists)
    sequence_feature_columns, context_feature_columns : minirnn feature columns
    num_classes : classes for CLASSIFICATION (2 = one logit and a sigmoid)
    num_units : int or list of ints (stacked layers)
    cell_type : 'basic_rnn' (default), 'lstm', 'gru', or minirnn.layers.SimpleRNN / LSTM / GRU
    optimizer : 'SGD' (default), 'Adagrad', 'Adam', 'Ftrl', 'Momentum', 'RMSProp', an Optimizer
        instance, an Optimizer class (built with learning_rate) or a callable(learning_rate)
    learning_rate : 0.1; momentum : for 'Momentum'
    predict_probabilities : add ``probabilities`` to classification predictions
    gradient_clipping_norm : global-norm clipping (5.0; None disables)
    dropout_keep_probabilities : len(num_units) + 1 keep probabilities, training only
    feature_engineering_fn : callable(features, labels) -> (features, labels), applied to every batch

    Example
    -------
    >>> from minirnn import feature_column as fc
    >>> from minirnn.contrib import DynamicRnnEstimator, ProblemType, PredictionType
    >>> est = DynamicRnnEstimator(ProblemType.CLASSIFICATION, PredictionType.SINGLE_VALUE,
    ...                           [fc.sequence_numeric_column("x")], num_classes=2, num_units=[8])
    >>> est = est.fit(x={"x": [[0.1, 0.5, 0.9], [0.3, 0.2]]}, y=[1, 0], steps=3)
    """

    _kind = "dynamic_rnn"
    _not_fitted_error = True

    def __init__(self, problem_type, prediction_type, sequence_feature_columns, context_feature_columns=None,
                 num_classes=None, num_units=None, cell_type="basic_rnn", optimizer="SGD", learning_rate=0.1,
                 predict_probabilities=False, momentum=None, gradient_clipping_norm=5.0,
                 dropout_keep_probabilities=None, model_dir=None, feature_engineering_fn=None, config=None):
        self.problem_type, self.prediction_type = problem_type, prediction_type
        self.sequence_feature_columns, self.context_feature_columns = sequence_feature_columns, context_feature_columns
        self.num_classes, self.num_units, self.cell_type = num_classes, num_units, cell_type
        self.optimizer, self.learning_rate, self.predict_probabilities = optimizer, learning_rate, predict_probabilities
        self.momentum, self.gradient_clipping_norm = momentum, gradient_clipping_norm
        self.dropout_keep_probabilities, self.model_dir_arg = dropout_keep_probabilities, model_dir
        self.feature_engineering_fn, self.config_arg = feature_engineering_fn, config
        self._build()

    # ---- construction -------------------------------------------------------------------------

    def _build(self):
        if self.problem_type not in (ProblemType.CLASSIFICATION, ProblemType.LINEAR_REGRESSION):
            raise ValueError("problem_type must be either ProblemType.LINEAR_REGRESSION or "
                             f"ProblemType.CLASSIFICATION; got {self.problem_type}")
        if self.prediction_type not in (PredictionType.SINGLE_VALUE, PredictionType.MULTIPLE_VALUE):
            raise ValueError("prediction_type must be one of PredictionType.SINGLE_VALUE or "
                             f"PredictionType.MULTIPLE_VALUE; got {self.prediction_type}")
        classification = self.problem_type == ProblemType.CLASSIFICATION
        if classification:
            if self.num_classes is None:
                raise ValueError("For CLASSIFICATION problem_type, num_classes must be specified.")
            if not isinstance(self.num_classes, (int, np.integer)) or self.num_classes < 2:
                raise ValueError(f"n_classes must be > 1 for classification; got num_classes={self.num_classes!r}.")
        elif self.predict_probabilities:
            raise ValueError("predict_probabilities can only be set to True for problem_type "
                             f"ProblemType.CLASSIFICATION; got {self.problem_type}.")
        units = self.num_units
        if units is None or isinstance(units, bool) or (isinstance(units, (list, tuple)) and not units):
            raise ValueError("num_units: give the number of units, an int or a list of ints (one per layer)")
        units = [units] if isinstance(units, (int, np.integer)) else list(units)
        cell = self.cell_type
        if isinstance(cell, type):
            cell = {"simple_rnn": "basic_rnn"}.get(_CELL_CLASSES.get(cell), _CELL_CLASSES.get(cell))
        if cell not in _CELLS:
            raise ValueError(f"cell_type: expected 'basic_rnn', 'lstm', 'gru' or a minirnn.layers class, got "
                             f"{self.cell_type!r}")
        if self.dropout_keep_probabilities is not None and len(self.dropout_keep_probabilities) != len(units) + 1:
            raise ValueError("The number of dropout probabilities must be one greater than the number of cells: "
                             f"{len(units)} cells, {len(self.dropout_keep_probabilities)} probabilities.")
        if self.feature_engineering_fn is not None and not callable(self.feature_engineering_fn):
            raise TypeError("feature_engineering_fn must be callable(features, labels) -> (features, labels)")
        if classification:
            head = (BinaryClassHead(loss_reduction="sum_over_batch_size") if self.num_classes == 2
                    else MultiClassHead(int(self.num_classes), loss_reduction="sum_over_batch_size"))
        else:
            head = RegressionHead(1, loss_reduction="sum_over_batch_size")
        self._head = head
        self._net_args = {"units": [int(u) for u in units], "cell_type": _CELLS[cell], "cell_options": [{}] * len(units),
                          "logits_dimension": head.logits_dimension,
                          "return_sequences": self.prediction_type == PredictionType.MULTIPLE_VALUE,
                          "dropout_keep_probabilities": self.dropout_keep_probabilities,
                          "sequence_mask_key": "sequence_mask", "sparse_length": "dense_shape"}
        self._setup(self.sequence_feature_columns, self.context_feature_columns, self.model_dir_arg, self.config_arg,
                    self._make_optimizer())

    def _make_optimizer(self):
        lr = _positive("learning_rate", self.learning_rate)
        clip = _positive("gradient_clipping_norm", self.gradient_clipping_norm, allow_none=True)
        o = self.optimizer
        if isinstance(o, str):
            if o not in _TF1_OPTIMIZERS:
                raise ValueError(f"optimizer: expected one of {_TF1_OPTIMIZERS}, got {o!r}")
            if o == "Momentum":
                if self.momentum is None:
                    raise ValueError("optimizer='Momentum' needs momentum=<a number in [0, 1)>")
                return opt.Momentum(lr, momentum=float(self.momentum), global_clipnorm=clip)
            tf1_defaults = {"Adagrad": {"initial_accumulator_value": 0.1, "epsilon": 0.0},
                            "Adam": {"epsilon": 1e-8}, "RMSProp": {"rho": 0.9, "epsilon": 1e-10}}.get(o, {})
            return opt.NAMES[o](learning_rate=lr, global_clipnorm=clip, **tf1_defaults)
        if isinstance(o, opt.Optimizer):
            return o
        if isinstance(o, type) and issubclass(o, opt.Optimizer):
            return o(learning_rate=lr, global_clipnorm=clip)
        if callable(o):
            made = o(lr)
            if isinstance(made, opt.Optimizer):
                return made
        raise ValueError(f"optimizer: expected a name in {_TF1_OPTIMIZERS}, an Optimizer, an Optimizer class or a "
                         f"callable(learning_rate) returning one; got {o!r}")

    # ---- scikit-learn parameters --------------------------------------------------------------

    def get_params(self, deep=True):
        out = {name: getattr(self, name) for name in _PARAMS if name not in ("model_dir", "config")}
        out.update(model_dir=self.model_dir_arg, config=self.config_arg)
        return out

    def set_params(self, **params):
        """Set hyper-parameters (validated at once). Changing the model's shape makes the model_dir's
        checkpoints incompatible: resuming then raises, naming the difference."""
        for name in params:
            if name not in _PARAMS:
                raise ValueError(f"Invalid parameter {name} for estimator DynamicRnnEstimator. "
                                 f"Valid parameters are: {sorted(_PARAMS)}")
        old = self.get_params()
        for name, value in params.items():
            setattr(self, "model_dir_arg" if name == "model_dir" else "config_arg" if name == "config" else name, value)
        try:
            self._build()
        except Exception:
            for name, value in old.items():
                setattr(self, "model_dir_arg" if name == "model_dir" else "config_arg" if name == "config" else name,
                        value)
            self._build()
            raise
        return self

    # ---- hooks into the shared estimator ------------------------------------------------------

    def _initial_states(self, features):
        return initial_states_from_features(self._session.state.network.model, features)

    def _prediction_options(self):
        return {"predict_probabilities": bool(self.predict_probabilities)}

    def _metric_names(self, metrics):
        keep = ("accuracy", "loss") if self.problem_type == ProblemType.CLASSIFICATION else ("loss",)
        return {k: metrics[k] for k in keep}

    # ---- inputs: input_fn, arrays or iterators ------------------------------------------------

    def _engineer(self, features, labels):
        if self.feature_engineering_fn is None:
            return features, labels
        return self.feature_engineering_fn(features, labels)

    def _engineered(self, input_fn):
        if self.feature_engineering_fn is None:
            return input_fn
        def engineered():
            for features, labels in batches(input_fn):
                yield self._engineer(features, labels)
        return engineered

    def _input_fn(self, x, y, input_fn, batch_size, mode):
        """The raw batches (before feature_engineering_fn) of ``input_fn``, of arrays (TF1: one batch
        of every example unless ``batch_size``; training repeats them, shuffled) or of iterators of
        examples (TF1: batches of 1 for training and evaluation, all at once for prediction)."""
        if input_fn is not None:
            return input_fn
        if _is_iterator(x) or _is_iterator(y):
            if not _is_iterator(x) or (y is not None and not _is_iterator(y)):
                raise ValueError("Both x and y should be iterators for streaming learning to work.")
            return self._stream_input_fn(x, y, batch_size or (None if mode == ModeKeys.INFER else 1))
        x = self._features_dict(x)
        if y is not None and self.prediction_type == PredictionType.MULTIPLE_VALUE and not isinstance(y, np.ndarray):
            y = _ragged(y)                                 # per-example label sequences of any length
        n = len(next(iter(x.values()), ()))
        training = mode == ModeKeys.TRAIN
        fn = numpy_input_fn(x, y, batch_size=batch_size or max(n, 1), num_epochs=None if training else 1,
                            shuffle=training, seed=self._config.random_seed)
        if y is not None and isinstance(y, np.ndarray) and y.dtype == object:
            def listed():
                for features, labels in fn():
                    yield features, list(labels)
            return listed
        return fn

    def _features_dict(self, x):
        if isinstance(x, dict):
            return x
        network = self._session.state.network
        keys = sorted({c.key for c in network.sequence.columns})
        if len(keys) != 1 or network.context:
            raise ValueError(f"x: give a dict of features; an array is accepted only for a model with one "
                             f"sequence feature, this one reads {keys}")
        return {keys[0]: x}

    def _stream_input_fn(self, x, y, batch_size):
        """Batches of ``batch_size`` examples (None: all) from iterators: x yields one example's
        features (a dict, or its one sequence feature), y its label (a label sequence per step for
        MULTIPLE_VALUE)."""
        def stream():
            while True:
                rows = list(itertools.islice(x, batch_size))
                if not rows:
                    return
                labels = None
                if y is not None:
                    labels = list(itertools.islice(y, len(rows)))
                    if len(labels) != len(rows):
                        raise ValueError(f"y ended before x: {len(labels)} labels for the {len(rows)} examples")
                    labels = ([np.asarray(r) for r in labels]
                              if self.prediction_type == PredictionType.MULTIPLE_VALUE else np.asarray(labels))
                yield self._stacked(rows), labels
        return stream

    def _stacked(self, rows):
        """Per-example features -> a batch's: sequences as ragged lists, the rest as arrays."""
        if not all(isinstance(r, dict) for r in rows):
            return self._features_dict(list(rows))
        keys = set(rows[0])
        if any(set(r) != keys for r in rows):
            raise ValueError(f"x: every example must have the same features; the first has {sorted(keys)}")
        sequences = {c.key for c in self._session.state.network.sequence.columns}
        return {k: [r[k] for r in rows] if k in sequences else np.asarray([r[k] for r in rows]) for k in keys}

    # ---- TF1's methods ------------------------------------------------------------------------

    def fit(self, x=None, y=None, input_fn=None, steps=None, batch_size=None, monitors=None, max_steps=None):
        """Train with ``input_fn``, arrays ``x`` (a features dict, or the one sequence feature as a
        ragged list / padded array) and ``y``, or iterators of examples. Arrays are read epoch after
        epoch (batch_size defaults to all the examples): give ``steps``, ``max_steps`` or a monitor
        that stops; iterators end training when they end."""
        if steps is not None and max_steps is not None:
            raise ValueError("Can not provide both steps and max_steps.")
        _check_input_args(x, y, input_fn, None, batch_size)
        if x is not None and not _is_iterator(x) and steps is None and max_steps is None and not monitors:
            raise ValueError("fit: x and y are read epoch after epoch (TF1 trains on them for ever) and neither "
                             "steps, max_steps nor a monitor would end training: give steps or max_steps")
        fn = self._engineered(self._input_fn(x, y, input_fn, batch_size, ModeKeys.TRAIN))
        self.train(fn, hooks=monitors, steps=steps, max_steps=max_steps)
        return self

    def partial_fit(self, x=None, y=None, input_fn=None, steps=1, batch_size=None, monitors=None):
        """As ``fit`` with one step by default; the model stays in memory between calls."""
        return self.fit(x, y, input_fn, steps=steps, batch_size=batch_size, monitors=monitors)

    def evaluate(self, x=None, y=None, input_fn=None, feed_fn=None, batch_size=None, steps=None, metrics=None,
                 name=None, checkpoint_path=None, hooks=None, log_progress=True):
        """TF1's metrics: classification ``accuracy`` and ``loss``, regression ``loss``; plus
        ``global_step``. ``metrics``: extra {name: callable(labels, predictions dict) -> float},
        averaged over batches weighted by batch size. ``feed_fn`` (with ``input_fn``): called before
        each evaluation step; the dict it returns replaces those features of the step's batch.
        ``log_progress`` has no effect (minirnn logs no per-step evaluation progress)."""
        _check_input_args(x, y, input_fn, feed_fn, batch_size)
        _check_metrics(metrics)
        if feed_fn is not None and not callable(feed_fn):
            raise TypeError(f"feed_fn: expected a callable returning a dict of features, got {feed_fn!r}")
        custom = _CustomMetrics(self, metrics, checkpoint_path) if metrics else None
        raw = self._input_fn(x, y, input_fn, batch_size, ModeKeys.EVAL)
        result = super().evaluate(self._evaluation_batches(raw, feed_fn, steps, custom), steps=steps, hooks=hooks,
                                  checkpoint_path=checkpoint_path, name=name)
        if custom is not None:
            result.update(custom.result())
        return result

    def _evaluation_batches(self, raw, feed_fn, steps, custom):
        """The first ``steps`` batches of ``raw``, fed by ``feed_fn``, engineered, seen by ``custom``."""
        def evaluation():
            for k, (features, labels) in enumerate(batches(raw)):
                if steps is not None and k >= steps:
                    return
                if feed_fn is not None:
                    features = _fed(features, feed_fn())
                features, labels = self._engineer(features, labels)
                if custom is not None:
                    custom.add(features, labels)
                yield features, labels
        return evaluation

    def predict(self, x=None, input_fn=None, batch_size=None, outputs=None, as_iterable=True, iterate_batches=False):
        """Predictions: per example (``as_iterable``), per batch (``iterate_batches``) or, with
        ``as_iterable=False``, one dict of arrays over every example. Keys: ``classes`` (+
        ``probabilities``) or ``scores``, and ``rnn_cell_state_i``. MULTIPLE_VALUE outputs have the
        batch's ``padded_length`` steps: its largest sequence_length (``as_iterable=False`` pads the
        batches to the longest). Under mpiexec the predictions come out on rank 0 (the other ranks get
        nothing, or None)."""
        _check_input_args(x, None, input_fn, None, batch_size)
        raw = self._input_fn(x, None, input_fn, batch_size, ModeKeys.INFER)
        fn = self._prediction_batches(raw)
        if as_iterable or iterate_batches:
            return super().predict(fn, predict_keys=outputs, yield_single_examples=not iterate_batches)
        parts = list(super().predict(fn, predict_keys=outputs, yield_single_examples=False))
        if not parts and not self._is_chief():          # under mpiexec: rank 0 has the predictions
            return None
        if not parts:
            raise ValueError("predict: the input produced no batch")
        out = {}
        for key in parts[0]:
            arrays = [p[key] for p in parts]
            if arrays[0].ndim >= 2 and self._net_args["return_sequences"] and not key.startswith("rnn_cell_state"):
                T = max(a.shape[1] for a in arrays)
                arrays = [np.pad(a, [(0, 0), (0, T - a.shape[1])] + [(0, 0)] * (a.ndim - 2)) for a in arrays]
            out[key] = np.concatenate(arrays)
        return out

    def _prediction_batches(self, raw):
        def prediction():
            for features, labels in batches(raw):
                features, _ = self._engineer(features, labels)
                yield features
        return prediction

    # ---- model_fn -----------------------------------------------------------------------------

    @property
    def model_fn(self):
        """TF1's ``model_fn`` bound to this estimator's params: ``model_fn(features, labels, mode,
        params=None, config=None, metrics=None)`` -> :class:`ModelFnOps` for that one batch (after
        feature_engineering_fn), computed with the latest checkpoint. ``mode`` is a :class:`ModeKeys`
        value: 'infer' fills ``predictions``; 'eval' also ``loss`` and ``eval_metric_ops`` (the
        batch's metrics, plus ``metrics`` as in :meth:`evaluate`); 'train' also ``loss`` (dropout
        off) and ``train_op``, a callable that trains one step on the batch, as
        ``fit(input_fn=lambda: (features, labels), steps=1)``, and returns that step's loss.
        ``params`` and ``config`` may only be this estimator's own (``params``, ``config``)."""
        return self._tf1_model_fn

    def _tf1_model_fn(self, features, labels, mode, params=None, config=None, metrics=None):
        if mode not in (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.INFER):
            raise ValueError(f"mode: expected 'train', 'eval' or 'infer' (ModeKeys), got {mode!r}")
        if params is not None and params != self.params:
            raise ValueError("params: this model_fn is bound to the estimator's params (estimator.params); "
                             "change them with set_params")
        if config is not None and config != self.config:
            raise ValueError("config: this estimator's model_fn runs with its own config (estimator.config)")
        _check_metrics(metrics)
        if not isinstance(features, dict):
            raise TypeError(f"features: expected a dict of feature name -> values, got {type(features).__name__}")
        if mode != ModeKeys.INFER and labels is None:
            raise ValueError(f"labels: mode {mode!r} needs the batch's labels")
        given = (features, labels)
        features, labels = self._engineer(features, labels)
        net, _ = self._session.network_for(None, mode != ModeKeys.TRAIN)   # train: the weights it starts from
        predictions, _ = self._session.predict_batch(net, features)
        if mode == ModeKeys.INFER:
            return ModelFnOps(mode, predictions, None, None, {})
        values = self._session.evaluate(net, lambda: (features, labels), 1)
        if mode == ModeKeys.EVAL:
            if metrics:
                custom = _CustomMetrics(self, metrics, None)
                custom.add(features, labels)
                values.update(custom.result())
            return ModelFnOps(mode, predictions, values["loss"], None, values)

        def train_op():
            losses = []
            self.fit(input_fn=lambda: given, steps=1, monitors=[_LossHook(losses)])
            return losses[-1]
        return ModelFnOps(mode, predictions, values["loss"], train_op, {})

    # ---- export -------------------------------------------------------------------------------

    def export_savedmodel(self, export_dir_base, serving_input_fn=None, default_output_alternative_key=None,
                          assets_extra=None, as_text=False, checkpoint_path=None,
                          graph_rewrite_specs=(GraphRewriteSpec(("serve",), ()),), strip_default_attrs=False):
        """TF1's export: minirnn's bundle (:meth:`export_saved_model`) of the latest checkpoint (or
        ``checkpoint_path``); returns its path.

        ``default_output_alternative_key``: the signature served by default; SINGLE_VALUE models have
        one output alternative, 'dynamic_rnn_output' (the default anyway), MULTIPLE_VALUE models none
        (give None). ``graph_rewrite_specs``: each GraphRewriteSpec(tags, transforms) would be one TF
        MetaGraphDef; the bundle has no graph, serves under any tags, and so takes specs whose
        ``transforms`` are empty. ``strip_default_attrs`` (a bool) removes default attributes of TF
        graph nodes: the bundle is the same either way."""
        self._check_output_alternative(default_output_alternative_key, serving_input_fn)
        _check_graph_rewrite_specs(graph_rewrite_specs)
        if not isinstance(strip_default_attrs, (bool, np.bool_)):
            raise TypeError(f"strip_default_attrs: expected a bool, got {strip_default_attrs!r}")
        return self.export_saved_model(export_dir_base, serving_input_fn, assets_extra, as_text, checkpoint_path)

    def _check_output_alternative(self, key, serving_input_fn):
        if key is None:
            return
        valid = ["dynamic_rnn_output"] if self.prediction_type == PredictionType.SINGLE_VALUE else []
        if key not in valid:
            raise ValueError(f"default_output_alternative_key {key!r}: this model's output alternatives are {valid}"
                             + ("" if valid else " (MULTIPLE_VALUE models have none: give None)"))
        if ex.receiver_description(serving_input_fn)["receiver"] == "raw":
            raise ValueError("default_output_alternative_key: a raw serving input receiver exports only the "
                             "'predict' signature; use a parsing receiver (or None) to serve 'dynamic_rnn_output'")

    def export(self, export_dir, input_fn=None, input_feature_key=None, use_deprecated_input_fn=True,
               signature_fn=None, prediction_key=None, default_batch_size=1, exports_to_keep=None,
               checkpoint_path=None):
        """TF1's deprecated export, writing the bundle of :meth:`export_savedmodel` under
        ``export_dir/<unix seconds>``; returns its path (str).

        ``use_deprecated_input_fn=True`` (TF1's default) with ``input_fn=None`` (TF1's default
        tf.Example parser): the bundle reads tf.Example-like inputs (per-example dicts).
        ``use_deprecated_input_fn=False``: ``input_fn()`` returns (features, labels); with
        ``input_feature_key`` (the features' key of the raw examples) the bundle reads tf.Example-like
        inputs of the other features, without it it takes those features raw (the 'predict'
        signature). ``exports_to_keep``: the newest bundles in ``export_dir`` kept, older ones deleted.
        ``default_batch_size`` has no effect (a bundle takes batches of any size). ``signature_fn``,
        a custom tf.Example parser and ``prediction_key`` build or filter TF graph signatures, which
        the bundle's fixed signatures cannot honour: they raise ValueError."""
        receiver = _export_receiver(input_fn, input_feature_key, use_deprecated_input_fn)
        if signature_fn is not None:
            raise ValueError("signature_fn builds TF graph signatures; a minirnn bundle's signatures are fixed "
                             "(dynamic_rnn_output / predict / serving_default): pass signature_fn=None")
        if prediction_key is not None:
            raise ValueError(f"prediction_key {prediction_key!r}: a minirnn bundle's signatures serve every "
                             "prediction key (select one from the result): pass prediction_key=None")
        if default_batch_size is not None and (not isinstance(default_batch_size, (int, np.integer))
                                               or isinstance(default_batch_size, bool) or default_batch_size < 1):
            raise ValueError(f"default_batch_size: expected a positive integer or None, got {default_batch_size!r}")
        if exports_to_keep is not None and (not isinstance(exports_to_keep, (int, np.integer))
                                            or isinstance(exports_to_keep, bool) or exports_to_keep < 1):
            raise ValueError(f"exports_to_keep: expected a positive integer or None, got {exports_to_keep!r}")
        path = os.fsdecode(self.export_savedmodel(export_dir, receiver, checkpoint_path=checkpoint_path))
        if exports_to_keep is not None and self._is_chief():
            _keep_newest_exports(export_dir, int(exports_to_keep))
        return path


# ---- helpers ----------------------------------------------------------------------------------

def _is_iterator(value):
    return hasattr(value, "__next__")


def _check_input_args(x, y, input_fn, feed_fn, batch_size):
    """TF1's rules for x, y, input_fn, feed_fn and batch_size together."""
    if input_fn is None:
        if x is None:
            raise ValueError("Either x or input_fn must be provided.")
        if feed_fn is not None:
            raise ValueError("Can not provide both feed_fn and x or y.")
        return
    if x is not None or y is not None:
        raise ValueError("Can not provide both input_fn and x or y.")
    if batch_size is not None:
        raise ValueError("Can not provide both input_fn and batch_size.")


def _check_metrics(metrics):
    if metrics is not None and not isinstance(metrics, dict):
        raise ValueError(f"Metrics argument should be None or dict. Got {metrics!r}.")
    for key, metric in (metrics or {}).items():
        if not callable(metric):
            raise TypeError(f"metrics[{key!r}]: expected callable(labels, predictions), got {metric!r}")


def _fed(features, fed):
    if not isinstance(fed, dict) or not all(isinstance(k, str) for k in fed):
        raise TypeError(f"feed_fn must return a dict of feature name -> values, got {fed!r}")
    return {**features, **fed}


class _CustomMetrics:
    """evaluate(metrics=...): {name: callable(labels, predictions dict)} over the batches, averaged
    weighted by their numbers of examples."""

    def __init__(self, estimator, metrics, checkpoint_path):
        self.session, self.metrics = estimator._session, metrics
        self.net, _ = self.session.network_for(checkpoint_path, estimator._not_fitted_error)
        self.totals, self.count = {k: 0.0 for k in metrics}, 0

    def add(self, features, labels):
        preds, mask = self.session.predict_batch(self.net, features)
        y = prepare_labels(labels, mask, self.net.model.return_sequences)
        n = mask.shape[0]
        for key, metric in self.metrics.items():
            self.totals[key] += float(metric(y, preds)) * n
        self.count += n

    def result(self):
        return {k: np.float32(v / max(self.count, 1)) for k, v in self.totals.items()}


def _check_graph_rewrite_specs(specs):
    try:
        specs = list(specs)
    except TypeError:
        raise TypeError(f"graph_rewrite_specs: expected an iterable of GraphRewriteSpec, got {specs!r}") from None
    if not specs:
        raise ValueError("graph_rewrite_specs: give at least one GraphRewriteSpec(tags, transforms)")
    for spec in specs:
        if not isinstance(spec, tuple) or len(spec) != 2 or isinstance(spec[0], str) or \
                not all(isinstance(tag, str) for tag in spec[0]):
            raise TypeError(f"graph_rewrite_specs: expected GraphRewriteSpec(tags, transforms) with a tuple of tag "
                            f"strings, got {spec!r}")
        if tuple(spec[1]):
            raise ValueError(f"graph_rewrite_specs: transforms {tuple(spec[1])} rewrite a TF graph; a minirnn bundle "
                             "has no graph to rewrite: give GraphRewriteSpec(tags, ())")


def _export_receiver(input_fn, input_feature_key, use_deprecated_input_fn):
    """export()'s input arguments -> the serving input receiver of the bundle."""
    if not isinstance(use_deprecated_input_fn, (bool, np.bool_)):
        raise TypeError(f"use_deprecated_input_fn: expected a bool, got {use_deprecated_input_fn!r}")
    if input_feature_key is not None and not isinstance(input_feature_key, str):
        raise TypeError(f"input_feature_key: expected a feature name or None, got {input_feature_key!r}")
    if use_deprecated_input_fn:
        if input_fn is not None:
            raise ValueError("input_fn(estimator, examples) parses tf.Example strings into TF tensors; a minirnn "
                             "bundle parses its inputs itself: pass input_fn=None, or use_deprecated_input_fn=False "
                             "with input_fn() -> (features, labels)")
        return None
    if input_fn is None:
        raise ValueError("input_fn must be defined.")
    first = next(iter(batches(input_fn)), None)
    if first is None:
        raise ValueError("export: input_fn produced no batch")
    features = first[0]
    if input_feature_key is None:
        return ex.build_raw_serving_input_receiver_fn(features)
    if input_feature_key not in features:
        raise ValueError(f"input_feature_key {input_feature_key!r} is not a feature of input_fn's; it has "
                         f"{sorted(features)}")
    return ex.build_parsing_serving_input_receiver_fn([k for k in features if k != input_feature_key])


def _keep_newest_exports(export_dir, keep):
    """Delete all but the ``keep`` newest bundles (numbered folders holding spec.json) of ``export_dir``."""
    versions = sorted(int(name) for name in os.listdir(export_dir)
                      if name.isdigit() and os.path.isfile(os.path.join(export_dir, name, "spec.json")))
    for version in versions[:-keep]:
        shutil.rmtree(os.path.join(export_dir, str(version)))


def _ragged(y):
    out = np.empty(len(y), dtype=object)
    for i, row in enumerate(y):
        out[i] = np.asarray(row)
    return out
