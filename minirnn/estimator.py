"""Estimators: ``RNNClassifier`` and ``RNNEstimator`` with TF 2.x's interface (train / evaluate /
predict / export_saved_model, model_dir checkpoints), and the machinery they share with
:class:`minirnn.contrib.DynamicRnnEstimator`.

What is done better than TF, on purpose:

- Everything is validated at construction (units, cell_type, rnn_cell_fn, optimizer, label
  vocabulary, weight column): TF failed only at train time.
- The model stays in memory between calls; a checkpoint is read again only when another process has
  written a newer one (TF rebuilt its graph and reloaded the checkpoint on every call, ~2 s).
- Training is deterministic under ``RunConfig(random_seed=...)``: with deterministic input,
  ``train(steps=100)`` twice equals ``train(steps=200)`` bit for bit (the dropout RNG and the
  optimizer slots are checkpointed).
- Quiet by default: logging goes to ``logging.getLogger("minirnn")`` (loss and steps/s every
  ``log_step_count_steps``); interactive runs (a terminal on stderr) get a one-line progress bar.
- Checkpoints are small HDF5 files written atomically (:mod:`minirnn.checkpoint`); a training step
  that fails on a bad batch first saves the last good step, so no finished step is lost.
- ``predict`` can trim per-step outputs to each example's length (``trim_sequences=True``) and yield
  whole-batch arrays; ``predict_proba`` returns one probability array.
"""

import copy
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections import namedtuple

import numpy as np

from . import checkpoint as ckpt
from . import distributed as _dist                # light: mpi4py is imported only when distributing
from . import export as ex
from . import optimizers as opt
from .heads import BinaryClassHead, MultiClassHead, RegressionHead, _Head, head_from_config
from .inputs import batches
from .layers import GRU, LSTM, SimpleRNN
from .network import Network

__all__ = ["RNNClassifier", "RNNEstimator", "RunConfig", "WarmStartSettings", "SessionRunHook",
           "StopAtStepHook", "LoggingHook", "EarlyStoppingHook", "NotFittedError", "USE_DEFAULT"]

logger = logging.getLogger("minirnn")
logger.addHandler(logging.NullHandler())

USE_DEFAULT = "use_default"            # TF's sentinel for "the default cell type"
_CELL_CLASSES = {SimpleRNN: "simple_rnn", LSTM: "lstm", GRU: "gru"}
_UNSET = object()


class NotFittedError(ValueError, AttributeError):
    """evaluate/predict/export before any checkpoint exists (TF1 and scikit-learn's name)."""


# ---------------------------------------------------------------------------------------------
# RunConfig and warm start
# ---------------------------------------------------------------------------------------------

class RunConfig:
    """TF's RunConfig, the parts that matter here, with TF's defaults and rules.

    save_checkpoints_secs defaults to 600 when neither it nor save_checkpoints_steps is given;
    giving both is a ValueError. ``random_seed`` (alias ``tf_random_seed``) fixes initialisation
    and dropout. ``keep_checkpoint_max`` None or 0 keeps every checkpoint. ``save_summary_steps``
    (TensorBoard ``loss`` every N steps, :mod:`minirnn.summary`) None or 0 writes no event files.
    ``distribute``: None (data-parallel over MPI when mpiexec started several processes, else one
    process), 'mpi' (require it), False (each process on its own) or a
    :class:`minirnn.distributed.MPIDistribution`; see :mod:`minirnn.distributed`.
    ``device``: where ``train`` runs the recurrent model: 'cpu' (the default), 'cuda' (an NVIDIA
    GPU through Numba; an error when there is none) or 'auto' (the GPU when Numba sees one, else the
    CPU with one log line); see :mod:`minirnn.cuda`. Checkpoints are the same whatever the device.
    """

    def __init__(self, model_dir=None, random_seed=None, save_checkpoints_steps=None, save_checkpoints_secs=_UNSET,
                 keep_checkpoint_max=5, log_step_count_steps=100, tf_random_seed=None, save_summary_steps=100,
                 keep_checkpoint_every_n_hours=10000, distribute=None, device="cpu"):
        distribute = _dist.check_distribute(distribute)
        if random_seed is not None and tf_random_seed is not None and random_seed != tf_random_seed:
            raise ValueError("give random_seed or tf_random_seed, not two different values")
        seed = random_seed if random_seed is not None else tf_random_seed
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"random_seed: expected a non-negative integer, got {seed!r}")
        if save_checkpoints_secs is _UNSET:
            save_checkpoints_secs = None if save_checkpoints_steps is not None else 600
        elif save_checkpoints_steps is not None and save_checkpoints_secs is not None:
            raise ValueError("can not provide both save_checkpoints_secs and save_checkpoints_steps")
        for name, value in (("save_checkpoints_steps", save_checkpoints_steps),
                            ("save_checkpoints_secs", save_checkpoints_secs),
                            ("log_step_count_steps", log_step_count_steps)):
            if value is not None and (not isinstance(value, (int, float, np.number)) or value <= 0):
                raise ValueError(f"{name}: expected a positive number or None, got {value!r}")
        if keep_checkpoint_max is not None and (not isinstance(keep_checkpoint_max, (int, np.integer))
                                                or keep_checkpoint_max < 0):
            raise ValueError(f"keep_checkpoint_max: expected a non-negative integer or None, got {keep_checkpoint_max!r}")
        if device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device: expected 'cpu', 'cuda' or 'auto', got {device!r}")
        if save_summary_steps is not None and (not isinstance(save_summary_steps, (int, np.integer))
                                               or isinstance(save_summary_steps, bool) or save_summary_steps < 0):
            raise ValueError(f"save_summary_steps: expected a non-negative integer or None, got {save_summary_steps!r}")
        self.model_dir = None if model_dir is None else os.fspath(model_dir)
        self.random_seed = self.tf_random_seed = None if seed is None else int(seed)
        self.save_checkpoints_steps, self.save_checkpoints_secs = save_checkpoints_steps, save_checkpoints_secs
        self.keep_checkpoint_max = keep_checkpoint_max
        self.log_step_count_steps = log_step_count_steps
        self.save_summary_steps, self.keep_checkpoint_every_n_hours = save_summary_steps, keep_checkpoint_every_n_hours
        self.distribute = distribute
        self.device = device

    def replace(self, **changes):
        args = {"model_dir": self.model_dir, "random_seed": self.random_seed,
                "save_checkpoints_steps": self.save_checkpoints_steps,
                "save_checkpoints_secs": self.save_checkpoints_secs, "keep_checkpoint_max": self.keep_checkpoint_max,
                "log_step_count_steps": self.log_step_count_steps, "save_summary_steps": self.save_summary_steps,
                "distribute": self.distribute, "device": self.device}
        if "tf_random_seed" in changes:
            changes["random_seed"] = changes.pop("tf_random_seed")
        if "save_checkpoints_steps" in changes and "save_checkpoints_secs" not in changes:
            args["save_checkpoints_secs"] = None
        if "save_checkpoints_secs" in changes and "save_checkpoints_steps" not in changes:
            args["save_checkpoints_steps"] = None
        unknown = set(changes) - set(args)
        if unknown:
            raise ValueError(f"RunConfig.replace: unknown fields {sorted(unknown)}")
        args.update(changes)
        return RunConfig(**args)

    def __repr__(self):
        return (f"RunConfig(model_dir={self.model_dir!r}, random_seed={self.random_seed}, save_checkpoints_steps="
                f"{self.save_checkpoints_steps}, save_checkpoints_secs={self.save_checkpoints_secs}, "
                f"keep_checkpoint_max={self.keep_checkpoint_max}, log_step_count_steps={self.log_step_count_steps})")


WarmStartSettings = namedtuple("WarmStartSettings", ["ckpt_to_initialize_from", "vars_to_warm_start",
                                                     "var_name_to_prev_var_name"])
WarmStartSettings.__new__.__defaults__ = (".*", None)
WarmStartSettings.__doc__ = ("Warm start from a checkpoint file, a model_dir or an export dir: the variables "
                             "matching the regular expression ``vars_to_warm_start`` (optimizer slots are never "
                             "copied), renamed by ``var_name_to_prev_var_name``.")


# ---------------------------------------------------------------------------------------------
# hooks
# ---------------------------------------------------------------------------------------------

class SessionRunHook:
    """Called by ``train``: ``begin(estimator)``, ``before_step(step)`` and ``after_step(step, loss)``
    around each step (``step`` = global step after the step; return True to stop training), and
    ``end(estimator)``. ``evaluate`` and ``predict`` call them too, with one step per batch (numbered
    from 1; predict passes loss None); returning True stops after that batch."""

    def begin(self, estimator):
        pass

    def before_step(self, step):
        pass

    def after_step(self, step, loss):
        return False

    def end(self, estimator):
        pass


class StopAtStepHook(SessionRunHook):
    """Stop after ``num_steps`` more steps, or at global step ``last_step``."""

    def __init__(self, num_steps=None, last_step=None):
        if (num_steps is None) == (last_step is None):
            raise ValueError("exactly one of num_steps and last_step must be given")
        self.num_steps, self.last_step = num_steps, last_step

    def begin(self, estimator):
        if self.num_steps is not None:
            self.last_step = estimator._global_step + self.num_steps

    def after_step(self, step, loss):
        return step >= self.last_step


class LoggingHook(SessionRunHook):
    """Log ``loss = .., step = .. (.. steps/s)`` at INFO on the "minirnn" logger every ``every_n_steps``."""

    def __init__(self, every_n_steps=100):
        if not isinstance(every_n_steps, (int, np.integer)) or every_n_steps < 1:
            raise ValueError(f"every_n_steps: expected a positive integer, got {every_n_steps!r}")
        self.every_n_steps = int(every_n_steps)

    def begin(self, estimator):
        self._t, self._n = time.perf_counter(), 0

    def after_step(self, step, loss):
        self._n += 1
        if step % self.every_n_steps == 0:
            now = time.perf_counter()
            logger.info("loss = %.6g, step = %d (%.1f steps/s)", loss, step, self._n / max(now - self._t, 1e-9))
            self._t, self._n = now, 0
        return False


class EarlyStoppingHook(SessionRunHook):
    """Every ``every_n_steps``, evaluate on ``eval_input_fn`` (the in-memory model) and stop when
    ``metric`` has not improved by ``min_delta`` for ``max_steps_without_improvement`` steps.
    ``best`` holds the best value and ``best_step`` its step."""

    def __init__(self, eval_input_fn, metric="loss", max_steps_without_improvement=1000, every_n_steps=100,
                 higher_is_better=False, min_delta=0.0, eval_steps=None):
        if not callable(eval_input_fn):
            raise TypeError("eval_input_fn must be callable")
        self.eval_input_fn, self.metric = eval_input_fn, metric
        self.patience, self.every_n_steps = max_steps_without_improvement, every_n_steps
        self.higher_is_better, self.min_delta, self.eval_steps = higher_is_better, min_delta, eval_steps
        self.best = self.best_step = None

    def begin(self, estimator):
        self._estimator = estimator

    def after_step(self, step, loss):
        if step % self.every_n_steps:
            return False
        metrics = self._estimator._evaluate_in_memory(self.eval_input_fn, self.eval_steps)
        if self.metric not in metrics:
            raise KeyError(f"EarlyStoppingHook: metric {self.metric!r} not among {sorted(metrics)}")
        value = float(metrics[self.metric])
        better = self.best is None or (value > self.best + self.min_delta if self.higher_is_better
                                       else value < self.best - self.min_delta)
        if better:
            self.best, self.best_step = value, step
        elif step - self.best_step >= self.patience:
            logger.info("early stopping at step %d: %s has not improved on %.6g (step %d)",
                        step, self.metric, self.best, self.best_step)
            return True
        return False


class _ProgressBar(SessionRunHook):
    """One line on a terminal's stderr, redrawn at most 10 times a second."""

    def __init__(self, target):
        self.target, self._last = target, 0.0

    def begin(self, estimator):
        self._start, self._first = time.perf_counter(), estimator._global_step

    def after_step(self, step, loss):
        now = time.perf_counter()
        if now - self._last > 0.1:
            self._last = now
            rate = (step - self._first) / max(now - self._start, 1e-9)
            total = f"/{self.target}" if self.target else ""
            sys.stderr.write(f"\rstep {step}{total}  loss {loss:.4f}  {rate:.0f} steps/s ")
            sys.stderr.flush()
        return False

    def end(self, estimator):
        sys.stderr.write("\n")
        sys.stderr.flush()


def _check_hooks(hooks):
    hooks = list(hooks or [])
    for h in hooks:
        if not isinstance(h, SessionRunHook):
            raise TypeError(f"hooks: expected SessionRunHook instances, got {h!r}")
    return hooks


# ---------------------------------------------------------------------------------------------
# the shared estimator
# ---------------------------------------------------------------------------------------------

def _diff(a, b, path=""):
    """The first difference between two JSON values, as text, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}{key}: present in only one of them"
            d = _diff(a[key], b[key], f"{path}{key}.")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for k, (x, y) in enumerate(zip(a, b)):
            d = _diff(x, y, f"{path}{k}.")
            if d:
                return d
        return None
    return None if a == b else f"{path.rstrip('.')}: the checkpoint has {a!r}, this estimator {b!r}"


def _row_lengths(mask):
    """Each row's length: its last valid step + 1 (0 for a row with none)."""
    T = mask.shape[1]
    return np.where(mask.any(axis=1), T - np.argmax(mask[:, ::-1], axis=1), 0)


def _comparable(spec):
    """The parts of a spec that must match to resume: not prediction options, not file locations."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("options", "file")}
        if isinstance(value, (list, tuple)):
            return [strip(v) for v in value]
        return value
    return strip(json.loads(json.dumps(spec)))


class _Estimator:
    """Training loop, checkpoints, evaluation, prediction and export over a :class:`Network` and a
    head. Subclasses set ``_head``, ``_net_args`` (Network arguments), ``_kind`` and call
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
            model_dir = tempfile.mkdtemp(prefix="minirnn_")
            logger.warning("Using temporary folder as model directory: %s", model_dir)
        self._model_dir = os.fspath(model_dir)
        self._config = config.replace(model_dir=self._model_dir)
        self._sequence_columns = list(sequence_feature_columns or [])
        self._context_columns = list(context_feature_columns or [])
        self._optimizer_arg = optimizer
        self._optimizer = copy.deepcopy(opt.get(optimizer))      # the estimator's own, even for an instance
        self._warm_start = warm_start_from
        self._network = self._new_network()             # validates the columns and the cells now
        self._global_step = 0
        self._source = None                             # (path, mtime, size) of the checkpoint in memory
        self._trainer = None                            # a minirnn.cuda.DeviceTrainer during train() on a GPU
        self._fresh = True                              # weights are the initial ones, not from a checkpoint

    def _new_network(self):
        return Network(self._sequence_columns, self._context_columns or None, seed=self._config.random_seed,
                       **self._net_args)

    def _distribution(self):
        """The MPI context when this process is one of several data-parallel ranks, else None."""
        return _dist.context(self._config.distribute)

    def _is_chief(self):
        """Whether this process writes model_dir and logs: always on one process, rank 0 under MPI."""
        ctx = self._distribution()
        return ctx is None or ctx.is_chief

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

    def eval_dir(self, name=None):
        return os.path.join(self._model_dir, "eval" if not name else f"eval_{name}")

    def latest_checkpoint(self):
        return ckpt.latest_checkpoint(self._model_dir)

    def get_variable_names(self):
        """Names of the variables of the latest checkpoint (TF's names; slots under ``training/``)."""
        return sorted(self._read_latest()[0])

    def get_variable_value(self, name):
        variables = self._read_latest()[0]
        if name not in variables:
            raise KeyError(f"variable {name!r} not in the latest checkpoint; it has {sorted(variables)}")
        return variables[name]

    def _read_latest(self):
        path = self.latest_checkpoint()
        if path is None:
            raise NotFittedError(f"Couldn't find trained model at {self._model_dir}.")
        return ckpt.read(path, ckpt.read_index(self._model_dir)[1])

    # ---- the spec stored with checkpoints and exports ----------------------------------------

    def _spec(self):
        return {"kind": self._kind, "estimator": type(self).__name__, "head": self._head.get_config(),
                "sequence_columns": [c.spec() for c in self._network.sequence.columns],
                "context_columns": [c.spec() for c in self._network.context.columns]
                if self._network.context else [],
                "network": json.loads(json.dumps(self._net_args)),
                "sequence_mask": self._net_args.get("sequence_mask_key", "sequence_mask"),
                "options": self._prediction_options()}

    def _prediction_options(self):
        return {}

    # ---- checkpoints --------------------------------------------------------------------------

    def _trainable_names(self, network):
        return [n for n, k in zip(network.param_names(), network.trainable()) if k]

    def _variables(self):
        names, params = self._network.param_names(), self._network.params()
        out = dict(zip(names, params))
        out["global_step"] = np.int64(self._global_step)
        state = self._optimizer.state()                  # slots follow the trainable parameters
        for name, slots in zip(self._trainable_names(self._network), state["slots"]):
            for slot, value in slots.items():
                out[f"training/{self._optimizer.name}/{name}/{slot}"] = value
        return out

    def _save(self, listeners=()):
        if self._trainer is not None:                   # training on the GPU: its weights into the host model
            self._trainer.pull()
        if not self._is_chief():                        # data-parallel: rank 0 alone writes model_dir
            self._fresh = False
            return None
        for listener in listeners:
            listener.before_save(self._global_step) if hasattr(listener, "before_save") else None
        os.makedirs(self._model_dir, exist_ok=True)
        path = ckpt.checkpoint_path(self._model_dir, self._global_step)
        attributes = {"global_step": self._global_step, "spec": self._spec(),
                      "optimizer": {"config": self._optimizer.get_config(), "iterations": self._optimizer.iterations},
                      "rng": self._network.model.rng.bit_generator.state}
        ckpt.write(path, self._variables(), attributes)
        _, kept = ckpt.read_index(self._model_dir)
        kept = [p for p in kept if os.path.abspath(p) != os.path.abspath(path)] + [path]
        keep = self._config.keep_checkpoint_max
        if keep:
            while len(kept) > keep:
                old = kept.pop(0)
                ckpt.write_index(self._model_dir, path, kept)
                if os.path.exists(old):
                    os.remove(old)
        ckpt.write_index(self._model_dir, path, kept)
        self._source = self._identity(path)
        self._fresh = False
        for listener in listeners:
            listener.after_save(self._global_step) if hasattr(listener, "after_save") else None
        return path

    @staticmethod
    def _identity(path):
        st = os.stat(path)
        return (os.path.abspath(path), st.st_mtime_ns, st.st_size)

    def _load_into(self, network, path, with_training_state):
        _, kept = ckpt.read_index(self._model_dir)
        variables, attributes = ckpt.read(path, kept)
        difference = _diff(_comparable(attributes.get("spec")), _comparable(self._spec()))
        if difference:
            raise ValueError(f"checkpoint {path!r} was written by a different model ({difference}); use another "
                             "model_dir, or warm_start_from to copy the matching weights")
        for name, param in zip(network.param_names(), network.params()):
            if name not in variables or variables[name].shape != param.shape:
                raise ckpt.CheckpointError(f"checkpoint {path!r}: variable {name!r} missing or of the wrong shape")
            param[...] = variables[name]
        if with_training_state:
            names = self._trainable_names(network)
            slots = []
            prefix = f"training/{self._optimizer.name}/"
            if any(k.startswith(prefix) for k in variables):
                for name in names:
                    slots.append({s: variables[f"{prefix}{name}/{s}"] for s in self._optimizer.slots})
            self._optimizer.load_state({"iterations": attributes["optimizer"]["iterations"],
                                        "slots": slots if self._optimizer.slots else
                                        ([{} for _ in names] if attributes["optimizer"]["iterations"] else [])})
            network.model.rng.bit_generator.state = attributes["rng"]
            self._global_step = int(attributes["global_step"])
        return int(attributes["global_step"])

    def _sync(self):
        """Make the in-memory model the latest checkpoint's, reading it only if it changed on disk."""
        path = self.latest_checkpoint()
        if path is None:
            if not self._fresh:                          # model_dir emptied under us: start over
                self._network, self._global_step, self._fresh = self._new_network(), 0, True
                self._optimizer = copy.deepcopy(opt.get(self._optimizer_arg))
            self._source = None
            return False
        identity = self._identity(path)
        if identity != self._source:
            self._load_into(self._network, path, with_training_state=True)
            self._source, self._fresh = identity, False
        return True

    def _warm_start_now(self):
        spec = self._warm_start
        if spec is None:
            return
        if not isinstance(spec, WarmStartSettings):
            spec = WarmStartSettings(spec)
        source = os.fspath(spec.ckpt_to_initialize_from)
        if os.path.isdir(source):
            if os.path.isfile(os.path.join(source, "model.h5")):         # an export
                import h5py
                with h5py.File(os.path.join(source, "model.h5"), "r") as f:
                    variables = {}
                    f["variables"].visititems(lambda n, o: variables.__setitem__(n, o[()]) if hasattr(o, "shape") else None)
            else:
                path = ckpt.latest_checkpoint(source)
                if path is None:
                    raise ValueError(f"warm_start_from: no checkpoint in {source!r}")
                variables = ckpt.read(path)[0]
        else:
            variables = ckpt.read(source)[0]
        pattern = re.compile(spec.vars_to_warm_start or ".*")
        renames = spec.var_name_to_prev_var_name or {}
        copied = 0
        for name, param in zip(self._network.param_names(), self._network.params()):
            if not pattern.match(name):
                continue
            old = renames.get(name, name)
            if old not in variables:
                continue
            if variables[old].shape != param.shape:
                raise ValueError(f"warm_start_from: {old!r} has shape {variables[old].shape}, {name!r} needs {param.shape}")
            param[...] = variables[old]
            copied += 1
        if copied == 0:
            raise ValueError(f"warm_start_from: no variable of {source!r} matches {spec.vars_to_warm_start!r}")
        logger.info("warm-started %d variables from %s", copied, source)

    # ---- one training step --------------------------------------------------------------------

    def _labels(self, labels, mask):
        if labels is None:
            raise ValueError("labels: the input_fn returned no labels; training and evaluation need (features, labels)")
        if isinstance(labels, dict):
            if len(labels) != 1:
                raise ValueError(f"labels: a dict of labels must have one entry, got keys {sorted(labels)}")
            labels = next(iter(labels.values()))
        if self._network.model.return_sequences and isinstance(labels, (list, tuple)) and \
                any(np.ndim(row) == 1 for row in labels):
            B, T = mask.shape
            if len(labels) != B:
                raise ValueError(f"labels: {len(labels)} label sequences for {B} examples")
            lengths = _row_lengths(mask)
            rows = [np.asarray(r) for r in labels]
            dtype = object if any(r.dtype.kind in "USO" for r in rows) else np.result_type(*[r.dtype for r in rows])
            padded = np.zeros((B, T), dtype=dtype) if dtype != object else np.full((B, T), "", dtype=object)
            for b, r in enumerate(rows):
                if r.shape == (T,):                       # already padded to the batch length
                    padded[b] = r
                    continue
                if r.shape != (lengths[b],):
                    raise ValueError(f"labels: example {b} has {r.shape[0] if r.ndim else 'a scalar'} labels but "
                                     f"its sequence has {lengths[b]} steps")
                padded[b, :lengths[b]] = r
            return padded
        return labels

    def _loss(self, logits, mask, features, labels):
        y = self._labels(labels, mask)
        w = self._head.weights(features)
        return self._head.loss(logits, y, w, mask if self._network.model.return_sequences else None)

    def _checked_loss(self, logits, mask, features, labels):
        result = self._loss(logits, mask, features, labels)
        if not np.isfinite(result.loss):
            raise FloatingPointError(f"loss is {result.loss} at step {self._global_step + 1}: training diverged "
                                     "(lower the learning rate or clip gradients); the weights were not updated")
        return result

    def _train_step(self, features, labels):
        ctx = self._distribution()
        if ctx is not None:                  # data-parallel: `features` is this rank's share (_dist._Batch)
            return ctx.train_step(self, features)
        if self._trainer is not None:        # on the GPU: weights and optimizer slots stay there
            loss = self._trainer.train_step(
                features, lambda logits, mask: self._checked_loss(logits, mask, features, labels),
                initial_states=self._initial_states(features))
            self._global_step += 1
            return loss
        net = self._network
        logits, mask = net.forward(features, training=True, initial_states=self._initial_states(features))
        result = self._checked_loss(logits, mask, features, labels)
        grads = net.backward(result.d_logits)
        keep = net.trainable()
        params = [p for p, k in zip(net.params(), keep) if k]
        self._optimizer.apply(params, [g for g, k in zip(grads, keep) if k])
        self._global_step += 1
        return result.loss

    def _initial_states(self, features):
        return None

    def _sync_for_training(self):
        """Resume from model_dir's latest checkpoint, or warm-start a fresh model."""
        if not self._sync() and self._fresh:
            self._warm_start_now()

    # ---- train --------------------------------------------------------------------------------

    def train(self, input_fn, hooks=None, steps=None, max_steps=None, saving_listeners=None):
        """Train on the batches of ``input_fn`` (TF's semantics).

        ``steps``: this many more steps; ``max_steps``: up to this global step (skipped when already
        there); neither: until ``input_fn`` is exhausted. Checkpoints are written at the first step,
        every ``save_checkpoints_steps`` / ``save_checkpoints_secs``, and at the end.
        """
        if steps is not None and max_steps is not None:
            raise ValueError("Can not provide both steps and max_steps.")
        if steps is not None and (not isinstance(steps, (int, np.integer)) or steps <= 0):
            raise ValueError(f"Must specify steps > 0, given: {steps}")
        if max_steps is not None and (not isinstance(max_steps, (int, np.integer)) or max_steps <= 0):
            raise ValueError(f"Must specify max_steps > 0, given: {max_steps}")
        hooks = _check_hooks(hooks)
        listeners = list(saving_listeners or [])
        if not callable(input_fn):
            raise TypeError(f"input_fn must be callable, got {type(input_fn).__name__}")
        ctx = self._distribution()
        if ctx is None:
            self._sync_for_training()
        else:                                            # rank 0 reads model_dir, every rank gets its model
            ctx.sync_estimator(self, self._sync_for_training)
        if max_steps is not None and self._global_step >= max_steps:
            logger.info("Skipping training since max_steps has already saved.")
            return self
        target = self._global_step + steps if steps is not None else max_steps
        trainer = self._device_trainer(ctx)              # before anything is written: a missing GPU fails here
        config = self._config
        if config.log_step_count_steps:
            hooks.append(LoggingHook(int(config.log_step_count_steps)))
        if config.save_summary_steps and self._is_chief():   # TensorBoard events in model_dir (minirnn.summary)
            from .summary import SummarySaverHook
            hooks.append(SummarySaverHook(self._model_dir, int(config.save_summary_steps),
                                          int(config.log_step_count_steps) if config.log_step_count_steps else None))
        if sys.stderr.isatty() and os.environ.get("MINIRNN_PROGRESS", "1") != "0" and self._is_chief():
            hooks.append(_ProgressBar(target))
        for hook in hooks:
            hook.begin(self)
        if self._source is None or ckpt.step_of(self._source[0]) != self._global_step:
            self._save(listeners)                        # TF writes a checkpoint when training starts
        last_save_step, last_save_time = self._global_step, time.monotonic()
        saved_at = self._global_step
        ok = False
        self._trainer = trainer
        try:
            # data-parallel: this rank's share of each step, for as long as any rank has input
            for features, labels in (batches(input_fn) if ctx is None else ctx.local_batches(input_fn)):
                if target is not None and self._global_step >= target:
                    break
                for hook in hooks:
                    hook.before_step(self._global_step + 1)
                try:
                    loss = self._train_step(features, labels)
                except (ValueError, TypeError, KeyError, FloatingPointError):
                    if self._global_step != saved_at:   # keep every finished step, then report the batch
                        self._save(listeners)
                    raise
                if loss is None:                         # data-parallel: every rank's input ended, or a stop
                    break
                step = self._global_step
                stop = False
                for hook in hooks:
                    stop = bool(hook.after_step(step, loss)) or stop
                if stop and ctx is not None:             # the next step tells every rank, then all stop
                    ctx.request_stop()
                    stop = False
                every_steps, every_secs = config.save_checkpoints_steps, config.save_checkpoints_secs
                if (every_steps and step - last_save_step >= every_steps) or \
                        (every_secs and time.monotonic() - last_save_time >= every_secs):
                    self._save(listeners)
                    last_save_step, last_save_time, saved_at = step, time.monotonic(), step
                if stop or (target is not None and step >= target):
                    break
            if self._global_step != saved_at or self._source is None:
                self._save(listeners)
            ok = True
        finally:
            if not ok and self._global_step != saved_at and self._source is not None and \
                    ckpt.step_of(self._source[0]) != self._global_step:
                self._source = None                      # unsaved steps: reload the checkpoint next time
            try:
                if self._trainer is not None:            # the host model is the trained one again
                    trainer, self._trainer = self._trainer, None
                    trainer.pull()
            finally:
                for hook in hooks:
                    hook.end(self)
        return self

    def _device_trainer(self, ctx):
        """A :class:`minirnn.cuda.DeviceTrainer` when ``RunConfig.device`` picks the GPU, else None."""
        if self._config.device == "cpu":
            return None
        from . import cuda
        if cuda.select_device(self._config.device) != "cuda":
            return None
        if ctx is not None:
            raise ValueError("RunConfig(device='cuda') with MPI data-parallel training is not supported: use "
                             "device='cpu' under mpiexec")
        return cuda.DeviceTrainer(self._network, self._optimizer)

    # ---- evaluate -----------------------------------------------------------------------------

    def _network_for(self, checkpoint_path):
        """The in-memory network, or a separate one loaded from ``checkpoint_path``."""
        ctx = self._distribution()
        if ctx is not None:                             # data-parallel: rank 0 reads, every rank gets it
            return ctx.network_for(self, checkpoint_path, self._local_network_for)
        return self._local_network_for(checkpoint_path)

    def _local_network_for(self, checkpoint_path):
        if checkpoint_path is not None:
            net = self._new_network()
            step = self._load_into(net, os.fspath(checkpoint_path), with_training_state=False)
            return net, step
        if not self._sync():
            if self._not_fitted_error:
                raise NotFittedError(f"Couldn't find trained model at {self._model_dir}.")
            logger.warning("no checkpoint in %s: using freshly initialised weights", self._model_dir)
        return self._network, self._global_step

    def evaluate(self, input_fn, steps=None, hooks=None, checkpoint_path=None, name=None, exact_auc=False):
        """Metrics over the batches of ``input_fn`` (all, or the first ``steps``): TF's keys plus
        ``global_step``; also appended as a JSON line to ``eval_dir(name)/metrics.jsonl``.
        ``exact_auc=True`` computes AUCs exactly instead of with TF's 200 thresholds."""
        if steps is not None and (not isinstance(steps, (int, np.integer)) or steps <= 0):
            raise ValueError(f"Must specify steps > 0, given: {steps}")
        hooks = _check_hooks(hooks)
        net, step = self._network_for(checkpoint_path)
        for hook in hooks:
            hook.begin(self)
        try:
            metrics = self._evaluate(net, input_fn, steps, exact_auc, hooks)
        finally:
            for hook in hooks:
                hook.end(self)
        metrics["global_step"] = np.int64(step)
        out_dir = self.eval_dir(name)
        if not self._is_chief():                        # data-parallel: rank 0 alone writes model_dir
            return metrics
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps({k: (int(v) if k == "global_step" else float(v)) for k, v in metrics.items()}) + "\n")
        if self._config.save_summary_steps:             # TensorBoard events in eval_dir (minirnn.summary)
            from .summary import write_scalars
            write_scalars(out_dir, step, {k: v for k, v in metrics.items() if k != "global_step"})
        logger.info("evaluation at step %d: %s", step,
                    ", ".join(f"{k} = {float(v):.4g}" for k, v in metrics.items() if k != "global_step"))
        return metrics

    def _evaluate_in_memory(self, input_fn, steps=None):
        return self._evaluate(self._network, input_fn, steps)

    def _evaluate(self, net, input_fn, steps, exact_auc=False, hooks=()):
        """Metrics over the batches; hooks see each batch as a step (its number, its loss) and may stop."""
        ctx = self._distribution()
        if ctx is not None:             # data-parallel: each rank its share, the evaluators merged
            merged = ctx.evaluate(self, net, input_fn, steps, exact_auc, hooks)
            return {k: np.float32(v) for k, v in self._metric_names(merged.result()).items()}
        evaluator = self._head.metrics(exact_auc)
        count = 0
        for features, labels in batches(input_fn):
            if steps is not None and count >= steps:
                break
            for hook in hooks:
                hook.before_step(count + 1)
            logits, mask = net.forward(features, training=False, initial_states=self._initial_states(features))
            y = self._labels(labels, mask)
            loss = evaluator.update(logits, y, self._head.weights(features),
                                    mask if net.model.return_sequences else None)
            count += 1
            if any([bool(hook.after_step(count, loss)) for hook in hooks]):
                break
        if count == 0:
            raise ValueError("evaluate: input_fn produced no batch")
        return {k: np.float32(v) for k, v in self._metric_names(evaluator.result()).items()}

    def _metric_names(self, metrics):
        return metrics

    # ---- predict ------------------------------------------------------------------------------

    def predict(self, input_fn, predict_keys=None, hooks=None, checkpoint_path=None, yield_single_examples=True,
                trim_sequences=False):
        """Yield predictions: one dict per example (TF's keys), or per batch with
        ``yield_single_examples=False``. With ``return_sequences``, per-step outputs are padded to the
        batch's length plus the mask key, or cut to each example's own length with ``trim_sequences``."""
        hooks = _check_hooks(hooks)
        if isinstance(predict_keys, str):
            predict_keys = [predict_keys]
        if not callable(input_fn):
            raise TypeError(f"input_fn must be callable, got {type(input_fn).__name__}")
        net, _ = self._network_for(checkpoint_path)      # fails now, not at the first next()
        return self._predictions(net, input_fn, predict_keys, yield_single_examples, trim_sequences, hooks)

    def _predictions(self, net, input_fn, predict_keys, yield_single_examples, trim_sequences, hooks=()):
        """Hooks see each batch as a step (loss None) and may stop the predictions."""
        for hook in hooks:
            hook.begin(self)
        try:
            yield from self._prediction_batches(net, input_fn, predict_keys, yield_single_examples, trim_sequences,
                                                hooks)
        finally:
            for hook in hooks:
                hook.end(self)

    def _prediction_batches(self, net, input_fn, predict_keys, yield_single_examples, trim_sequences, hooks):
        mask_key = self._net_args.get("sequence_mask_key", "sequence_mask")

        def predict(features):
            return ex.predict_batch(self._kind, self._head, net, features, mask_key, self._prediction_options())
        ctx = self._distribution()
        if ctx is not None:     # data-parallel: each rank its share, gathered in order on rank 0 (others: none)
            stream = ctx.predictions(self, net, input_fn, mask_key, hooks, predict)
        else:
            stream = self._local_predictions(input_fn, hooks, predict)
        for number, (preds, mask) in enumerate(stream, 1):
            if predict_keys is not None:
                unknown = [k for k in predict_keys if k not in preds]
                if unknown:
                    raise ValueError(f"predict_keys: {unknown} are not predictions; available: {sorted(preds)}")
                preds = {k: preds[k] for k in predict_keys}
            if not yield_single_examples:
                yield preds
            else:
                B, T = mask.shape
                per_step = {k for k, v in preds.items() if net.model.return_sequences and v.ndim >= 2 and
                            v.shape[:2] == (B, T) and not k.startswith("all_")}
                lengths = _row_lengths(mask)
                for b in range(B):
                    yield {k: (v[b, :lengths[b]] if trim_sequences and k in per_step else v[b])
                           for k, v in preds.items()}
            if any([bool(hook.after_step(number, None)) for hook in hooks]):
                return

    @staticmethod
    def _local_predictions(input_fn, hooks, predict):
        for number, (features, _labels) in enumerate(batches(input_fn), 1):
            for hook in hooks:
                hook.before_step(number)
            yield predict(features)

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
        mode = {"infer": "infer", "predict": "infer", "eval": "eval"}.get(experimental_mode)
        if mode is None:
            raise ValueError(f"experimental_mode: expected 'infer' or 'eval', got {experimental_mode!r} (training "
                             "continues from model_dir checkpoints or warm_start_from, not from an export)")
        return self._export(export_dir_base, {mode: serving_input_receiver_fn}, assets_extra, as_text, checkpoint_path)

    def experimental_export_all_saved_models(self, export_dir_base, input_receiver_fn_map, assets_extra=None,
                                             as_text=False, checkpoint_path=None):
        """As TF: one export for the modes of ``input_receiver_fn_map`` ({'infer'|'eval': receiver});
        an 'eval' export's model also offers ``evaluate(features, labels)``."""
        modes = {}
        for mode, fn in dict(input_receiver_fn_map).items():
            key = {"infer": "infer", "predict": "infer", "eval": "eval"}.get(mode)
            if key is None:
                raise ValueError(f"input_receiver_fn_map: mode {mode!r} not exported; use 'infer' and/or 'eval'")
            modes[key] = fn
        return self._export(export_dir_base, modes, assets_extra, as_text, checkpoint_path)

    def export_onnx(self, path, opset=None, id_inputs=(), checkpoint_path=None):
        """Write the model of the latest checkpoint (or ``checkpoint_path``) as an ONNX file served
        by onnxruntime; returns ``path``. Needs the ``onnx`` extra. Inputs, outputs and the
        arguments: :func:`minirnn.onnx_export.export_onnx`."""
        from .onnx_export import export_onnx

        def write():
            return export_onnx(self, path, opset=opset, id_inputs=id_inputs, checkpoint_path=checkpoint_path)
        ctx = self._distribution()
        return write() if ctx is None else ctx.on_chief(write, "exporting ONNX on rank 0")

    def _export(self, export_dir_base, modes, assets_extra, as_text, checkpoint_path):
        ctx = self._distribution()
        if ctx is not None:                       # data-parallel: rank 0 reads and writes, every rank gets the path
            return ctx.on_chief(lambda: self._export_here(export_dir_base, modes, assets_extra, as_text,
                                                          checkpoint_path), "exporting on rank 0")
        return self._export_here(export_dir_base, modes, assets_extra, as_text, checkpoint_path)

    def _export_here(self, export_dir_base, modes, assets_extra, as_text, checkpoint_path):
        if checkpoint_path is None:
            checkpoint_path = self.latest_checkpoint()
            if checkpoint_path is None:
                raise NotFittedError(f"Couldn't find trained model at {self._model_dir}.")
        net, step = self._local_network_for(checkpoint_path)
        receiver = ex.receiver_description(modes.get("infer", modes.get("eval")))
        spec = self._spec()
        spec.update({"format": ex.FORMAT, "global_step": step, "modes": sorted(modes),
                     "receiver": receiver, "signatures": ex.signatures_for(
                         self._kind, self._head, receiver["receiver"], not net.model.return_sequences)})
        spec["network"].pop("backend", None)
        assets = [c.file for c in self._all_columns() if getattr(c, "file", None)]
        return ex.write_bundle(export_dir_base, spec, dict(zip(net.param_names(), net.params())), assets,
                               assets_extra, as_text)

    def _all_columns(self):
        out = []
        for col in self._sequence_columns + self._context_columns:
            while col is not None:
                out.append(col)
                col = getattr(col, "categorical", None) or getattr(col, "source", None)
        return out


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
        if not isinstance(head, _Head):
            raise TypeError(f"head: expected a minirnn head (BinaryClassHead, MultiClassHead, RegressionHead), got {head!r}")
        self._init(head, sequence_feature_columns, context_feature_columns, units, cell_type, rnn_cell_fn,
                   return_sequences, model_dir, optimizer, config, sequence_mask, warm_start_from,
                   dropout_keep_probabilities)
        self._ctor = dict(head=head, sequence_feature_columns=sequence_feature_columns,
                          context_feature_columns=context_feature_columns, units=units, cell_type=cell_type,
                          rnn_cell_fn=rnn_cell_fn, return_sequences=return_sequences, model_dir=model_dir,
                          optimizer=optimizer, config=config, sequence_mask=sequence_mask,
                          warm_start_from=warm_start_from, dropout_keep_probabilities=dropout_keep_probabilities)

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
        self._ctor = dict(sequence_feature_columns=sequence_feature_columns,
                          context_feature_columns=context_feature_columns, units=units, cell_type=cell_type,
                          rnn_cell_fn=rnn_cell_fn, return_sequences=return_sequences, model_dir=model_dir,
                          n_classes=n_classes, weight_column=weight_column, label_vocabulary=label_vocabulary,
                          optimizer=optimizer, loss_reduction=loss_reduction, sequence_mask=sequence_mask,
                          config=config, warm_start_from=warm_start_from,
                          dropout_keep_probabilities=dropout_keep_probabilities)
