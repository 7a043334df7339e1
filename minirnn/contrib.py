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

String optimizers get TF1's defaults: Adagrad (accumulator 0.1, no epsilon), Adam (epsilon 1e-8),
RMSProp (decay 0.9, epsilon 1e-10), Ftrl, SGD, Momentum; clipping is by global norm.
"""

import numpy as np

from . import optimizers as opt
from .errors import NotFittedError
from .estimator import _CELL_CLASSES, _Estimator
from .heads import BinaryClassHead, MultiClassHead, RegressionHead
from .inputs import batches, numpy_input_fn
from .predictions import initial_states_from_features
from .step import prepare_labels

__all__ = ["DynamicRnnEstimator", "ProblemType", "PredictionType", "RNNKeys", "NotFittedError",
           "state_tuple_to_dict"]


class ProblemType:
    UNSPECIFIED, CLASSIFICATION, LINEAR_REGRESSION, LOGISTIC_REGRESSION = 0, 1, 2, 3


class PredictionType:
    SINGLE_VALUE, MULTIPLE_VALUE = 1, 2


class RNNKeys:
    SEQUENCE_LENGTH_KEY = "sequence_length"
    STATE_PREFIX = "rnn_cell_state"
    FINAL_STATE_KEY = "final_state"
    LABELS_KEY = "__labels__"


def state_tuple_to_dict(states):
    """A flat list of state arrays -> {'rnn_cell_state_i': array}."""
    return {f"{RNNKeys.STATE_PREFIX}_{i}": s for i, s in enumerate(states)}


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

    def _engineered(self, input_fn):
        if self.feature_engineering_fn is None:
            return input_fn
        def engineered():
            for features, labels in batches(input_fn):
                yield self.feature_engineering_fn(features, labels)
        return engineered

    def _input_fn(self, x, y, input_fn, batch_size, shuffle, repeat):
        if (x is None) == (input_fn is None):
            raise ValueError("give either x (and y) or input_fn")
        if input_fn is not None:
            if y is not None or batch_size is not None:
                raise ValueError("y and batch_size go with x, not with input_fn")
            return self._engineered(input_fn)
        if not isinstance(x, dict):
            network = self._session.state.network
            keys = sorted({c.key for c in network.sequence.columns})
            if len(keys) != 1 or network.context:
                raise ValueError(f"x: give a dict of features; an array is accepted only for a model with one "
                                 f"sequence feature, this one reads {keys}")
            x = {keys[0]: x}
        if y is not None and self.prediction_type == PredictionType.MULTIPLE_VALUE and not isinstance(y, np.ndarray):
            y = _ragged(y)                                 # per-example label sequences of any length
        fn = numpy_input_fn(x, y, batch_size=batch_size or 32, num_epochs=None if repeat else 1, shuffle=shuffle,
                            seed=self._config.random_seed)
        if y is not None and isinstance(y, np.ndarray) and y.dtype == object:
            def listed():
                for features, labels in fn():
                    yield features, list(labels)
            return self._engineered(listed)
        return self._engineered(fn)

    # ---- TF1's methods ------------------------------------------------------------------------

    def fit(self, x=None, y=None, input_fn=None, steps=None, batch_size=None, monitors=None, max_steps=None):
        """Train with ``input_fn`` or arrays ``x`` (a features dict, or the one sequence feature as a
        ragged list / padded array) and ``y``. Arrays without steps/max_steps train one epoch."""
        repeat = steps is not None or max_steps is not None
        self.train(self._input_fn(x, y, input_fn, batch_size, shuffle=x is not None, repeat=repeat),
                   hooks=monitors, steps=steps, max_steps=max_steps)
        return self

    def partial_fit(self, x=None, y=None, input_fn=None, steps=1, batch_size=None, monitors=None):
        """As ``fit`` with one step by default; the model stays in memory between calls."""
        return self.fit(x, y, input_fn, steps=steps, batch_size=batch_size, monitors=monitors)

    def evaluate(self, x=None, y=None, input_fn=None, feed_fn=None, batch_size=None, steps=None, metrics=None,
                 name=None, checkpoint_path=None, hooks=None, log_progress=True):
        """TF1's metrics: classification ``accuracy`` and ``loss``, regression ``loss``; plus
        ``global_step``. ``metrics``: extra {name: callable(labels, predictions dict) -> float},
        averaged over batches weighted by batch size."""
        if feed_fn is not None:
            raise ValueError("feed_fn feeds a TF1 graph and has no meaning here: pass input_fn or x, y")
        fn = self._input_fn(x, y, input_fn, batch_size, shuffle=False, repeat=False)
        result = super().evaluate(fn, steps=steps, hooks=hooks, checkpoint_path=checkpoint_path, name=name)
        if metrics:
            for key, metric in metrics.items():
                if not callable(metric):
                    raise TypeError(f"metrics[{key!r}]: expected callable(labels, predictions), got {metric!r}")
            net, _ = self._session.network_for(checkpoint_path, self._not_fitted_error)
            totals, count = {k: 0.0 for k in metrics}, 0
            for k, (features, labels) in enumerate(batches(fn)):
                if steps is not None and k >= steps:
                    break
                preds, mask = self._session.predict_batch(net, features)
                n = mask.shape[0]
                for key, metric in metrics.items():
                    totals[key] += float(metric(prepare_labels(labels, mask, net.model.return_sequences), preds)) * n
                count += n
            result.update({k: np.float32(v / count) for k, v in totals.items()})
        return result

    def predict(self, x=None, input_fn=None, batch_size=None, outputs=None, as_iterable=True, iterate_batches=False):
        """Predictions: per example (``as_iterable``), per batch (``iterate_batches``) or, with
        ``as_iterable=False``, one dict of arrays over every example (per-step arrays padded to the
        longest sequence). Keys: ``classes`` (+ ``probabilities``) or ``scores``, and ``rnn_cell_state_i``.
        Under mpiexec the predictions come out on rank 0 (the other ranks get nothing, or None)."""
        fn = self._input_fn(x, None, input_fn, batch_size, shuffle=False, repeat=False)
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

    def export_savedmodel(self, export_dir_base, serving_input_fn=None, **kwargs):
        """TF1's spelling of :meth:`export_saved_model`."""
        return self.export_saved_model(export_dir_base, serving_input_fn, **kwargs)


def _ragged(y):
    out = np.empty(len(y), dtype=object)
    for i, row in enumerate(y):
        out[i] = np.asarray(row)
    return out

