"""Estimators: ``RNNClassifier`` and ``RNNEstimator`` with TF 2.x's interface (train / evaluate /
predict / export_saved_model, model_dir checkpoints), and the machinery they share with
:class:`minirnn.contrib.DynamicRnnEstimator`.

What they do better than TF (validation at construction, the model kept in memory between calls,
deterministic training, atomic checkpoints): docs/estimators.md.
"""

import functools
from collections import namedtuple
import json
import logging
import os

import numpy as np

from . import checkpoint as ckpt
from . import export as ex
from . import optimizers
from .config import RunConfig, WarmStartSettings
from .distributed import runner_for               # light: mpi4py is imported only when distributing
from .errors import NotFittedError
from .heads import BinaryClassHead, MultiClassHead, _Head
from .hooks import EarlyStoppingHook, LoggingHook, SessionRunHook, StopAtStepHook, check_hooks
from .layers import GRU, LSTM, SimpleRNN
from .loop import Local, Session

__all__ = ["RNNClassifier", "RNNEstimator", "RunConfig", "WarmStartSettings", "EstimatorSpec", "SessionRunHook",
           "StopAtStepHook", "LoggingHook", "EarlyStoppingHook", "NotFittedError", "USE_DEFAULT"]

logger = logging.getLogger("minirnn")
logger.addHandler(logging.NullHandler())

_EXPORT_MODES = {"infer": "infer", "predict": "infer", "eval": "eval", "train": "train"}   # TF's ModeKeys values
class _UseDefault(str):
    """TF's sentinel for "the default cell type": the string 'use_default', shown as USE_DEFAULT."""

    def __repr__(self):
        return "USE_DEFAULT"


USE_DEFAULT = _UseDefault("use_default")
_CELL_CLASSES = {SimpleRNN: "simple_rnn", LSTM: "lstm", GRU: "gru"}


def _check_steps(name, value):
    if value is not None and (not isinstance(value, (int, np.integer)) or value <= 0):
        raise ValueError(f"Must specify {name} > 0, given: {value}")


def _check_input_fn(input_fn):
    if not callable(input_fn):
        raise TypeError(f"input_fn must be callable, got {type(input_fn).__name__}")


def _arguments(local_names):
    """A constructor's arguments, from its ``locals()`` taken first thing."""
    return {k: v for k, v in local_names.items() if k not in ("self", "__class__")}


def _same(value, default):
    try:
        return bool(value == default) if not isinstance(value, np.ndarray) else False
    except (TypeError, ValueError):
        return value is default


def _device(device, runner):
    if device == "cpu":
        return None
    from .cuda import trainer_for                # numba.cuda is imported only for a GPU
    return trainer_for(device, data_parallel=runner is not Local)


def _predictor(device, runner):
    if device == "cpu":
        return None
    from .cuda import predictor_for              # numba.cuda is imported only for a GPU
    return predictor_for(device, data_parallel=runner is not Local)


class EstimatorSpec(namedtuple("EstimatorSpec", ["mode", "predictions", "loss", "train_op", "eval_metric_ops"])):
    """What :attr:`_Estimator.model_fn` returns for one batch (TF's EstimatorSpec, values not tensors)."""


class _LossHook(SessionRunHook):
    def __init__(self, losses):
        self.losses = losses

    def after_step(self, step, loss):
        self.losses.append(float(loss))


class _Estimator:
    """TF's estimator methods over a :class:`minirnn.loop.Session` (the model in model_dir, its
    loops). Subclasses set ``_head``, ``_net_args`` (Network arguments), ``_kind`` and call
    ``_setup``."""

    _kind = "rnn"
    _not_fitted_error = False          # TF1: evaluate/predict before any checkpoint -> NotFittedError

    def _setup(self, sequence_feature_columns, context_feature_columns, model_dir, config, optimizer,
               warm_start_from=None):
        if config is not None and not isinstance(config, RunConfig):
            raise TypeError(f"config: expected a minirnn RunConfig, got {type(config).__name__}")
        config = config or RunConfig()
        if model_dir is not None and config.model_dir is not None and \
                os.path.abspath(model_dir) != os.path.abspath(config.model_dir):
            raise ValueError(f"model_dir {model_dir!r} and config.model_dir {config.model_dir!r} differ; give one")
        model_dir = model_dir if model_dir is not None else config.model_dir
        if model_dir is None and getattr(self, "_model_dir", None):      # rebuilt by set_params: same place
            model_dir = self._model_dir
        if model_dir is None:
            import tempfile
            model_dir = tempfile.mkdtemp(prefix="minirnn_")
            logger.warning("Using temporary folder as model directory: %s", model_dir)
        if os.path.exists(model_dir) and not os.path.isdir(model_dir):
            raise ValueError(f"model_dir {os.fspath(model_dir)!r} is a file; give a folder (it need not exist yet)")
        self._model_dir = os.fspath(model_dir)
        self._config = config.replace(model_dir=self._model_dir)
        self._sequence_columns = list(sequence_feature_columns or [])
        self._context_columns = list(context_feature_columns or [])
        self._session = Session(self._model_dir, self._config, self._head, self._sequence_columns,
                                self._context_columns, self._net_args, optimizer, self._spec, self._kind,
                                warm_start_from, self._initial_states, self._prediction_options(),
                                self._metric_names,        # builds the network: validates columns and cells now
                                runner=functools.partial(runner_for, self._config.distribute),
                                device=functools.partial(_device, self._config.device),
                                predictor=functools.partial(_predictor, self._config.device))

    def _is_chief(self):
        """Whether this process writes model_dir and logs: always on one process, rank 0 under MPI."""
        return self._session.runner().is_chief

    # ---- what subclasses change ----------------------------------------------------------------

    _initial_states = None             # callable(features) -> initial states (TF1's state features)

    def _prediction_options(self):
        return {}

    def _metric_names(self, metrics):
        return metrics

    # ---- properties (TF's) -------------------------------------------------------------------

    @property
    def model_dir(self):
        return self._model_dir

    @property
    def config(self):
        return self._config

    @property
    def params(self):
        return self.get_params() if hasattr(self, "get_params") else {}

    def __repr__(self):
        """The class and the arguments given that differ from their defaults."""
        import inspect
        defaults = {name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()}
        given = {k: v for k, v in self.get_params().items()
                 if k in defaults and not _same(v, defaults[k]) and k != "model_dir"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in given.items())}" + \
            f"{', ' if given else ''}model_dir={self.model_dir!r})"

    def eval_dir(self, name=None):
        return os.path.join(self._model_dir, "eval" if not name else f"eval_{name}")

    def latest_checkpoint(self):
        return ckpt.latest_checkpoint(self._model_dir)

    def get_variable_names(self):
        """Names of the variables of the latest checkpoint (TF's names; slots under ``training/``)."""
        return sorted(self._read_latest()[0])

    def get_variable_value(self, name):
        """The value of variable ``name`` of the latest checkpoint, or a list of values for a list of names."""
        variables = self._read_latest()[0]
        names = [name] if isinstance(name, str) else list(name)
        for n in names:
            if not isinstance(n, str) or n not in variables:
                raise KeyError(f"variable {n!r} not in the latest checkpoint; it has {sorted(variables)}")
        return variables[name] if isinstance(name, str) else [variables[n] for n in names]

    @property
    def model_fn(self):
        """TF's ``model_fn``: ``model_fn(features, labels, mode, config=None)`` -> an
        :class:`EstimatorSpec` for one batch, with this estimator's model and params. Mode 'infer'
        (or 'predict') fills ``predictions``; 'eval' also ``loss`` and ``eval_metric_ops`` (the
        batch's metrics), both with the latest checkpoint; 'train' gives ``train_op``, a callable
        that trains one step on the batch (``train(steps=1)``) and returns its loss."""
        return self._model_fn

    def _model_fn(self, features, labels=None, mode="infer", config=None):
        if mode not in ("train", "eval", "infer", "predict"):
            raise ValueError(f"mode: expected 'train', 'eval' or 'infer' (TF's ModeKeys), got {mode!r}")
        mode = "infer" if mode == "predict" else mode
        if config is not None and config != self.config:
            raise ValueError("config: this estimator's model_fn runs with its own config (estimator.config)")
        if not isinstance(features, dict):
            raise TypeError(f"features: expected a dict of feature name -> values, got {type(features).__name__}")
        if mode != "infer" and labels is None:
            raise ValueError(f"labels: mode {mode!r} needs labels")
        batch = (lambda: (features, labels)) if labels is not None else (lambda: features)
        if mode == "train":
            def train_op():
                losses = []
                self.train(batch, steps=1, hooks=[_LossHook(losses)])
                return losses[-1]
            return EstimatorSpec(mode, None, None, train_op, {})
        predictions = next(self.predict(batch, yield_single_examples=False))
        if mode == "infer":
            return EstimatorSpec(mode, predictions, None, None, {})
        net, step = self._session.network_for(None, self._not_fitted_error)
        metrics = self._session.evaluate(net, batch, 1)
        return EstimatorSpec(mode, predictions, metrics["loss"], None, metrics)

    def _read_latest(self):
        path = self.latest_checkpoint()
        if path is None:
            raise NotFittedError(f"Couldn't find trained model at {self._model_dir}.")
        return ckpt.read(path, ckpt.read_index(self._model_dir)[1])

    def _spec(self):
        """The JSON description stored with checkpoints (resuming checks it) and exports."""
        network = self._session.state.network
        return {"kind": self._kind, "estimator": type(self).__name__, "head": self._head.get_config(),
                "sequence_columns": [c.spec() for c in network.sequence.columns],
                "context_columns": [c.spec() for c in network.context.columns] if network.context else [],
                "network": json.loads(json.dumps(self._net_args)),
                "sequence_mask": self._net_args.get("sequence_mask_key", "sequence_mask"),
                "options": self._prediction_options()}

    # ---- train, evaluate, predict ------------------------------------------------------------

    def train(self, input_fn, hooks=None, steps=None, max_steps=None, saving_listeners=None):
        """Train on the batches of ``input_fn`` (TF's semantics).

        ``steps``: this many more steps; ``max_steps``: up to this global step (skipped when already
        there); neither: until ``input_fn`` is exhausted. Checkpoints are written at the first step,
        every ``save_checkpoints_steps`` / ``save_checkpoints_secs``, and at the end.
        """
        if steps is not None and max_steps is not None:
            raise ValueError("Can not provide both steps and max_steps.")
        _check_steps("steps", steps)
        _check_steps("max_steps", max_steps)
        hooks = check_hooks(hooks)
        _check_input_fn(input_fn)
        self._session.train(input_fn, hooks, steps, max_steps, list(saving_listeners or []), self)
        return self

    def evaluate(self, input_fn, steps=None, hooks=None, checkpoint_path=None, name=None, exact_auc=False):
        """Metrics over the batches of ``input_fn`` (all, or the first ``steps``): TF's keys plus
        ``global_step``; also appended as a JSON line to ``eval_dir(name)/metrics.jsonl``.
        ``exact_auc=True`` computes AUCs exactly instead of with TF's 200 thresholds. With
        ``RunConfig(device='cuda')`` the recurrent model runs on the GPU (docs/cuda.md)."""
        _check_steps("steps", steps)
        hooks = check_hooks(hooks)
        net, step = self._session.network_for(checkpoint_path, self._not_fitted_error)
        for hook in hooks:
            hook.begin(self)
        try:
            metrics = self._session.evaluate(net, input_fn, steps, exact_auc, hooks)
        finally:
            for hook in hooks:
                hook.end(self)
        metrics["global_step"] = np.int64(step)
        self._session.write_metrics(self.eval_dir(name), step, metrics)
        return metrics

    def _evaluate_in_memory(self, input_fn, steps=None):
        return self._session.evaluate(self._session.state.network, input_fn, steps)

    def predict(self, input_fn, predict_keys=None, hooks=None, checkpoint_path=None, yield_single_examples=True,
                trim_sequences=False):
        """Yield predictions: one dict per example (TF's keys), or per batch with
        ``yield_single_examples=False``. With ``return_sequences``, per-step outputs are padded to the
        batch's length plus the mask key, or cut to each example's own length with ``trim_sequences``.
        With ``RunConfig(device='cuda')`` the recurrent model runs on the GPU (docs/cuda.md)."""
        hooks = check_hooks(hooks)
        if isinstance(predict_keys, str):
            predict_keys = [predict_keys]
        _check_input_fn(input_fn)
        net, _ = self._session.network_for(checkpoint_path, self._not_fitted_error)   # fails now, not at next()
        return self._session.predictions(net, input_fn, predict_keys, yield_single_examples, trim_sequences, hooks,
                                         self)

    def predict_proba(self, input_fn, checkpoint_path=None):
        """Class probabilities of every example as one array [N, n_classes] (or [N, T, n] with
        return_sequences, padded to the longest batch). Data-parallel: on rank 0; None on the others."""
        if not isinstance(self._head, (BinaryClassHead, MultiClassHead)):
            raise ValueError("predict_proba: only for classifiers")
        parts = [p["probabilities"] for p in self.predict(input_fn, ["probabilities"], checkpoint_path=checkpoint_path,
                                                           yield_single_examples=False)]
        if not parts and not self._is_chief():
            return None
        if not parts:
            raise ValueError("predict_proba: input_fn produced no batch")
        if parts[0].ndim == 3:
            T = max(p.shape[1] for p in parts)
            parts = [np.pad(p, ((0, 0), (0, T - p.shape[1]), (0, 0))) for p in parts]
        return np.concatenate(parts)

    # ---- export -------------------------------------------------------------------------------

    def export_saved_model(self, export_dir_base, serving_input_receiver_fn=None, assets_extra=None, as_text=False,
                           checkpoint_path=None, experimental_mode="infer"):
        """Write a self-contained inference bundle (see :mod:`minirnn.export`) under
        ``export_dir_base/<unix seconds>`` and return its path (bytes, as TF). Uses the latest
        checkpoint (or ``checkpoint_path``); load it with :func:`minirnn.load_exported`."""
        mode = _EXPORT_MODES.get(experimental_mode)
        if mode is None:
            raise ValueError(f"experimental_mode: expected 'infer', 'eval' or 'train', got {experimental_mode!r}")
        return self._export(export_dir_base, {mode: serving_input_receiver_fn}, assets_extra, as_text, checkpoint_path)

    def export_savedmodel(self, export_dir_base, serving_input_receiver_fn=None, assets_extra=None, as_text=False,
                          checkpoint_path=None, strip_default_attrs=False):
        """TF's older name of :meth:`export_saved_model`. ``strip_default_attrs`` removes
        default-valued attributes from a TF graph's nodes; a minirnn bundle has no graph, so its
        files are the same either way (it must be a bool)."""
        if not isinstance(strip_default_attrs, (bool, np.bool_)):
            raise TypeError(f"strip_default_attrs: expected a bool, got {strip_default_attrs!r}")
        return self.export_saved_model(export_dir_base, serving_input_receiver_fn, assets_extra, as_text,
                                       checkpoint_path)

    def experimental_export_all_saved_models(self, export_dir_base, input_receiver_fn_map, assets_extra=None,
                                             as_text=False, checkpoint_path=None):
        """As TF: one export for the modes of ``input_receiver_fn_map`` ({'infer'|'eval'|'train':
        receiver}); an 'eval' export's model also offers ``evaluate(features, labels)``, a 'train'
        export's ``train(features, labels)`` (it holds the optimizer's state too)."""
        modes = {}
        for mode, fn in dict(input_receiver_fn_map).items():
            key = _EXPORT_MODES.get(mode)
            if key is None:
                raise ValueError(f"input_receiver_fn_map: mode {mode!r} not exported; use 'infer', 'eval' and/or "
                                 "'train'")
            modes[key] = fn
        return self._export(export_dir_base, modes, assets_extra, as_text, checkpoint_path)

    def export_onnx(self, path, opset=None, id_inputs=(), checkpoint_path=None):
        """Write the model of the latest checkpoint (or ``checkpoint_path``) as an ONNX file served
        by onnxruntime; returns ``path``. Needs the ``onnx`` extra. Inputs, outputs and the
        arguments: :func:`minirnn.onnx_export.export_onnx`."""
        from .onnx_export import export_onnx
        return self._session.runner().on_chief(
            lambda: export_onnx(self, path, opset=opset, id_inputs=id_inputs, checkpoint_path=checkpoint_path),
            "exporting ONNX on rank 0")

    def _export(self, export_dir_base, modes, assets_extra, as_text, checkpoint_path):
        # data-parallel: rank 0 reads and writes, every rank gets the path
        return self._session.runner().on_chief(
            lambda: self._export_here(export_dir_base, modes, assets_extra, as_text, checkpoint_path),
            "exporting on rank 0")

    def _inference_parts(self, checkpoint_path=None):
        """(network, head, kind, prediction options, step) of the latest checkpoint or ``checkpoint_path``,
        read by this process: what the exports write."""
        if checkpoint_path is None:
            checkpoint_path = self.latest_checkpoint()
            if checkpoint_path is None:
                raise NotFittedError(f"Couldn't find trained model at {self._model_dir}.")
        net, step = self._session.local_network_for(checkpoint_path)
        return net, self._head, self._kind, self._prediction_options(), step

    def _export_here(self, export_dir_base, modes, assets_extra, as_text, checkpoint_path):
        net, _, _, _, step = self._inference_parts(checkpoint_path)
        training = None
        if "train" in modes:                  # the optimizer's state at that checkpoint goes with the weights
            path = checkpoint_path or self.latest_checkpoint()
            slots, attributes = ckpt.read(path, shapes=self._session.state.slot_shapes())
            optimizers.from_config(attributes["optimizer"]["config"])      # fails now if a file can not hold it
            training = {"variables": slots, "optimizer": attributes["optimizer"], "rng": attributes["rng"]}
        return ex.export_network(export_dir_base, net, self._head, self._kind, self._spec(), step, modes,
                                 self._sequence_columns + self._context_columns, assets_extra, as_text, training)


# ---------------------------------------------------------------------------------------------
# RNNClassifier / RNNEstimator
# ---------------------------------------------------------------------------------------------

def _cells(units, cell_type, rnn_cell_fn):
    """(units, cell types, cell options) for the Network, validated with messages saying what to change."""
    if rnn_cell_fn is not None:
        if units or cell_type != USE_DEFAULT:
            raise ValueError("units and cell_type must not be specified when using rnn_cell_fn")
        if not callable(rnn_cell_fn):
            raise ValueError(f"rnn_cell_fn: expected a callable returning a layer or a list of layers, got {rnn_cell_fn!r}")
        made = rnn_cell_fn()
        layers = list(made) if isinstance(made, (list, tuple)) else [made]
        if not layers:
            raise ValueError("rnn_cell_fn returned an empty list of layers")
        kinds, options = [], []
        for layer in layers:
            kind = _CELL_CLASSES.get(type(layer))
            if kind is None:
                raise ValueError(f"rnn_cell_fn must return minirnn.layers.SimpleRNN / LSTM / GRU instances, got {layer!r}")
            kinds.append(kind)
            options.append({"unit_forget_bias": layer.unit_forget_bias} if kind == "lstm" else
                           {"reset_after": layer.reset_after} if kind == "gru" else {})
        return [layer.units for layer in layers], kinds, options
    if units is None or (isinstance(units, (list, tuple)) and not units):
        raise ValueError("units: give the number of units per layer, e.g. units=[32, 16] (or pass rnn_cell_fn)")
    if cell_type == USE_DEFAULT:
        if isinstance(units, (int, np.integer)) and not isinstance(units, bool):
            raise ValueError(f"units={units} (an int) needs an explicit cell_type ('simple_rnn', 'lstm' or 'gru'); "
                             f"or pass units=[{units}] for the default simple_rnn cell")
        cell_type = "simple_rnn"                     # TF's default cell
    if isinstance(cell_type, type):
        kind = _CELL_CLASSES.get(cell_type)
        if kind is None:
            raise ValueError(f"cell_type: a class must be minirnn.layers.SimpleRNN, LSTM or GRU, got {cell_type!r}")
        cell_type = kind
    if cell_type not in ("simple_rnn", "lstm", "gru"):
        raise ValueError(f"cell_type should be a class producing a RNN cell, or a string in ['simple_rnn', 'lstm', "
                         f"'gru'], got {cell_type!r}")
    n = 1 if isinstance(units, (int, np.integer)) else len(units)
    if not isinstance(units, (int, np.integer)) and not all(isinstance(u, (int, np.integer)) and u > 0 for u in units):
        raise ValueError(f"units: expected positive integers, got {units!r}")
    if isinstance(units, (int, np.integer)) and (isinstance(units, bool) or units <= 0):
        raise ValueError(f"units: expected a positive integer, got {units!r}")
    return (int(units) if isinstance(units, (int, np.integer)) else [int(u) for u in units]), [cell_type] * n, [{}] * n


class RNNEstimator(_Estimator):
    """An RNN over sequence feature columns with any head (TF's ``RNNEstimator``).

    Parameters
    ----------
    head : BinaryClassHead, MultiClassHead or RegressionHead (every head handles
        ``return_sequences``; TF needed a special sequential head)
    sequence_feature_columns : sequence_* columns (numeric, embedding, indicator)
    context_feature_columns : per-example columns, tiled over time, optional
    units : list of ints (stacked layers) or one int with an explicit ``cell_type``
    cell_type : 'simple_rnn' (TF's default), 'lstm', 'gru' or one of minirnn.layers' classes
    rnn_cell_fn : zero-argument callable returning a minirnn layer or a list of them (instead of
        units and cell_type)
    return_sequences : one prediction per step (logits [B, T, k]); labels [B, T] or ragged lists
    model_dir, config : where checkpoints go (a temporary folder when neither gives one) and RunConfig
    optimizer : 'Adagrad' (default), 'Adam', 'Ftrl', 'RMSProp', 'SGD', 'Momentum' (TF's preset:
        learning rate 0.05 and per-tensor clipnorm 5), or a minirnn.optimizers.Optimizer (used as is)
    sequence_mask : feature name of a [B, T] bool mask for padded inputs (and the prediction key)
    warm_start_from : a checkpoint, model_dir, export dir or WarmStartSettings (not in TF's RNN estimators)
    dropout_keep_probabilities : len(units) + 1 keep probabilities (TF1's; training only)

    Example
    -------
    >>> import minirnn
    >>> from minirnn import feature_column as fc
    >>> tokens = fc.embedding_column(fc.sequence_categorical_column_with_identity("tokens", 100), 8)
    >>> est = minirnn.RNNEstimator(minirnn.heads.RegressionHead(), [tokens], units=[16], cell_type="gru")
    """

    def __init__(self, head, sequence_feature_columns, context_feature_columns=None, units=None,
                 cell_type=USE_DEFAULT, rnn_cell_fn=None, return_sequences=False, model_dir=None, optimizer="Adagrad",
                 config=None, sequence_mask="sequence_mask", warm_start_from=None, dropout_keep_probabilities=None):
        arguments = _arguments(locals())               # get_params(): exactly what was given
        if not isinstance(head, _Head):
            raise TypeError(f"head: expected a minirnn head (BinaryClassHead, MultiClassHead, RegressionHead), got {head!r}")
        self._init(head, sequence_feature_columns, context_feature_columns, units, cell_type, rnn_cell_fn,
                   return_sequences, model_dir, optimizer, config, sequence_mask, warm_start_from,
                   dropout_keep_probabilities)
        self._ctor = arguments

    def _init(self, head, sequence_feature_columns, context_feature_columns, units, cell_type, rnn_cell_fn,
              return_sequences, model_dir, optimizer, config, sequence_mask, warm_start_from, dropout):
        if return_sequences:
            if not isinstance(sequence_mask, str):
                raise TypeError("`sequence_mask` column must be a string (the feature name of the [batch, time] mask).")
            if head.weight_column is not None and not isinstance(head.weight_column, str):
                raise TypeError("weight_column must be a feature name (str) when return_sequences=True: the "
                                "weights are per example [B] or per step [B, T]")
        units, kinds, options = _cells(units, cell_type, rnn_cell_fn)
        self._head = head
        self._net_args = {"units": units, "cell_type": kinds if len(set(kinds)) > 1 else kinds[0],
                          "cell_options": options, "logits_dimension": head.logits_dimension,
                          "return_sequences": bool(return_sequences), "dropout_keep_probabilities": dropout,
                          "sequence_mask_key": sequence_mask if isinstance(sequence_mask, str) else "sequence_mask"}
        self._setup(sequence_feature_columns, context_feature_columns, model_dir, config, optimizer, warm_start_from)

    def get_params(self, deep=True):
        return dict(self._ctor)


class RNNClassifier(RNNEstimator):
    """A sequence classifier (TF's ``RNNClassifier``): ``n_classes=2`` uses a binary head (one
    logit), more classes a softmax head. Labels are ints in [0, n_classes) (binary: floats in
    [0, 1]), or strings from ``label_vocabulary``. Other arguments as :class:`RNNEstimator`.

    Example
    -------
    >>> import minirnn
    >>> from minirnn import feature_column as fc
    >>> tokens = fc.embedding_column(fc.sequence_categorical_column_with_identity("tokens", 100), 8)
    >>> clf = minirnn.RNNClassifier([tokens], units=[32, 16], cell_type="lstm")
    >>> def train_input():
    ...     return {"tokens": [[1, 7, 3], [4, 5]]}, [1, 0]
    >>> clf = clf.train(train_input, steps=2)
    >>> sorted(next(clf.predict(train_input)))[:3]
    ['all_class_ids', 'all_classes', 'class_ids']
    """

    def __init__(self, sequence_feature_columns, context_feature_columns=None, units=None, cell_type=USE_DEFAULT,
                 rnn_cell_fn=None, return_sequences=False, model_dir=None, n_classes=2, weight_column=None,
                 label_vocabulary=None, optimizer="Adagrad", loss_reduction="sum_over_batch_size",
                 sequence_mask="sequence_mask", config=None, warm_start_from=None, dropout_keep_probabilities=None):
        arguments = _arguments(locals())
        if not isinstance(n_classes, (int, np.integer)) or isinstance(n_classes, bool) or n_classes < 2:
            raise ValueError(f"n_classes must be > 1: {n_classes!r}.")
        if label_vocabulary is not None and not isinstance(label_vocabulary, (list, tuple)):
            raise ValueError(f"label_vocabulary should be a list or a tuple. Given type: {type(label_vocabulary)}")
        if loss_reduction == "none" or loss_reduction not in ("sum_over_batch_size", "sum", "auto"):
            raise ValueError(f"Invalid loss_reduction: {loss_reduction}. Expected 'sum_over_batch_size', 'sum' or 'auto'.")
        head = (BinaryClassHead(weight_column, label_vocabulary, loss_reduction) if n_classes == 2 else
                MultiClassHead(n_classes, weight_column, label_vocabulary, loss_reduction))
        self._init(head, sequence_feature_columns, context_feature_columns, units, cell_type, rnn_cell_fn,
                   return_sequences, model_dir, optimizer, config, sequence_mask, warm_start_from,
                   dropout_keep_probabilities)
        self._ctor = arguments
