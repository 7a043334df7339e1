"""The train / evaluate / predict loops over a model kept in ``model_dir``.

A :class:`Session` holds one model's :class:`~minirnn.state.TrainState` and keeps it in step with
the checkpoints in ``model_dir``: it resumes from the latest one (reading it again only when another
process wrote a newer one), warm-starts a fresh model, saves at the first step, on a schedule and at
the end, and loads any checkpoint for evaluation or prediction. Its loops call
:func:`minirnn.step.train_step` for every step and the hooks (:mod:`minirnn.hooks`) around it.

What differs between one process and several goes through a runner: :class:`Local` here, or the MPI
runner (:class:`minirnn.distributed.Context`), which splits each batch between ranks, reduces the
gradients, broadcasts the state from rank 0 and gathers metrics and predictions. A GPU
(:class:`minirnn.cuda.DeviceTrainer`) is the step's ``device``; evaluation and prediction run their
network's forward there too (:class:`minirnn.cuda.DeviceNetwork`). The estimators
(:mod:`minirnn.estimator`, :mod:`minirnn.contrib`) are facades over a Session.
"""

import copy
import json
import logging
import os
import sys
import time

import numpy as np

from . import checkpoint as ckpt
from . import optimizers as opt
from .errors import NotFittedError
from .hooks import LoggingHook, ProgressBar, check_hooks
from .inputs import batches, with_estimator_seed
from .network import Network
from .predictions import predict_batch, single_examples
from .state import TrainState
from .step import prepare_labels, train_step

__all__ = ["Session", "Local", "evaluate_batch"]

logger = logging.getLogger("minirnn")


def evaluate_batch(network, head, evaluator, features, labels, initial_states=None):
    """Add one batch to ``evaluator`` (a head's metrics); returns the batch's loss."""
    states = None if initial_states is None else initial_states(features)
    logits, mask = network.forward(features, training=False, initial_states=states)
    y = prepare_labels(labels, mask, network.model.return_sequences)
    return evaluator.update(logits, y, head.weights(features), mask if network.model.return_sequences else None)


class Local:
    """The runner of one process: every batch is this process's, nothing is reduced or shared."""

    is_chief = True
    rank, size = 0, 1
    reduce = None                       # train_step's gradient reducer: none

    @staticmethod
    def batches(input_fn, repeat=False, endless=None):
        return batches(input_fn, repeat, endless)

    @staticmethod
    def on_chief(fn, what):
        return fn()

    @staticmethod
    def sync_state(state, chief_fn):
        return chief_fn()

    @staticmethod
    def network_for(state, checkpoint_path, local, new_network):
        return local(checkpoint_path)

    @staticmethod
    def request_stop():
        pass

    @staticmethod
    def evaluate(new_evaluator, input_fn, steps, hooks, evaluate):
        """One pass over the batches (the first ``steps``); hooks see each batch as a step."""
        evaluator = new_evaluator()
        count = 0
        for features, labels in batches(input_fn):
            if steps is not None and count >= steps:
                break
            for hook in hooks:
                hook.before_step(count + 1)
            loss = evaluate(evaluator, features, labels)
            count += 1
            if any([bool(hook.after_step(count, loss)) for hook in hooks]):
                break
        if count == 0:
            raise ValueError("evaluate: input_fn produced no batch")
        return evaluator

    @staticmethod
    def predictions(input_fn, hooks, predict, mask_key, return_sequences):
        for number, (features, _labels) in enumerate(batches(input_fn), 1):
            for hook in hooks:
                hook.before_step(number)
            yield predict(features)


class Session:
    """A model in ``model_dir``: its TrainState, its checkpoints, its loops.

    Parameters
    ----------
    model_dir : where checkpoints go
    config : the :class:`~minirnn.config.RunConfig` (its model_dir is ``model_dir``)
    head : the loss, metrics and predictions
    sequence_columns, context_columns, net_args : the :class:`~minirnn.network.Network`
    optimizer : the optimizer argument (:func:`minirnn.optimizers.get` makes a private copy)
    spec : callable() -> the JSON description stored with checkpoints and exports
    kind : 'rnn' (TF2's estimators) or 'dynamic_rnn' (TF1's: states in and out as features)
    warm_start_from : a checkpoint, model_dir, export or WarmStartSettings for a fresh model
    initial_states : None or callable(features) -> per-layer initial states
    prediction_options, metric_names : the facade's prediction options and metric selection
    runner : callable() -> the runner (:class:`Local`, or the MPI runner when this process is one of
        several data-parallel ranks); Local by default
    device : callable(runner) -> None (the training steps run on the CPU), or a callable(state) making
        their device model (a GPU runner's DeviceTrainer); it fails for a missing GPU
    predictor : callable(runner) -> None (evaluation and prediction run on the CPU), or a
        callable(network) making a network whose forward runs on a device, with ``push()`` to copy
        changed weights there (a GPU runner's DeviceNetwork); it fails for a missing GPU
    """

    def __init__(self, model_dir, config, head, sequence_columns, context_columns, net_args, optimizer, spec,
                 kind="rnn", warm_start_from=None, initial_states=None, prediction_options=None,
                 metric_names=None, runner=None, device=None, predictor=None):
        self.model_dir, self.config, self.head = model_dir, config, head
        self.sequence_columns, self.context_columns = list(sequence_columns), list(context_columns)
        self.net_args, self.kind, self.spec = net_args, kind, spec
        self.warm_start_from, self.initial_states = warm_start_from, initial_states
        self.prediction_options = dict(prediction_options or {})
        self.metric_names = metric_names or (lambda metrics: metrics)
        self._optimizer_arg = optimizer
        self.runner = runner or (lambda: Local)
        self._device_for = device or (lambda runner: None)
        self._predictor_for = predictor or (lambda runner: None)
        self._predictor = None        # the predictor's result, once asked (False: the CPU)
        self._on_device = None        # (network, weights version, its device network): the last one made
        self.state = TrainState(self.new_network(), copy.deepcopy(opt.get(optimizer)))   # validates now
        self.source = None            # ckpt.identity() of the checkpoint the state holds
        self.device = None            # the device model while train() runs on a GPU

    def new_network(self):
        return Network(self.sequence_columns, self.context_columns or None, seed=self.config.random_seed,
                       **self.net_args)

    @property
    def mask_key(self):
        return self.net_args.get("sequence_mask_key", "sequence_mask")

    def latest_checkpoint(self):
        return ckpt.latest_checkpoint(self.model_dir)

    # ---- checkpoints ---------------------------------------------------------------------------

    def save(self, runner, listeners=()):
        """Write the state as a checkpoint (rank 0 alone under MPI)."""
        if self.device is not None:                   # training on the GPU: its weights into the state
            self.device.pull()
        if not runner.is_chief:
            self.state.fresh = False
            return None
        step = self.state.global_step
        for listener in listeners:
            listener.before_save(step) if hasattr(listener, "before_save") else None
        path = ckpt.save(self.model_dir, self.state, self.spec(), self.config.keep_checkpoint_max)
        self.source = ckpt.identity(path)
        self.state.fresh = False
        for listener in listeners:
            listener.after_save(step) if hasattr(listener, "after_save") else None
        return path

    def load_into(self, network, path, state=None):
        """Load the checkpoint at ``path`` into ``network`` (and the rest into ``state``); -> its step."""
        shapes = {name: p.shape for name, p in zip(network.param_names(), network.params())}
        if state is not None:
            shapes.update(state.slot_shapes())
        variables, attributes = ckpt.load(path, self.model_dir, self.spec(), shapes)
        ckpt.load_weights(network, variables, path)
        if state is not None:
            state.restore(variables, attributes)
        return int(attributes["global_step"])

    def sync(self):
        """Make the state the latest checkpoint's, reading it only if it changed on disk; False when
        model_dir has no checkpoint."""
        path = self.latest_checkpoint()
        if path is None:
            if not self.state.fresh:                  # model_dir emptied under us: start over
                state = self.state                    # (the same object: runners and hooks hold it)
                state.network, state.optimizer = self.new_network(), copy.deepcopy(opt.get(self._optimizer_arg))
                state.global_step, state.fresh = 0, True
            self.source = None
            return False
        for attempt in range(3):               # a concurrent trainer may delete it (rotation) as we read
            try:
                identity = ckpt.identity(path)
                if identity != self.source:
                    self.load_into(self.state.network, path, self.state)
                    self.source = identity
                return True
            except (FileNotFoundError, ckpt.CheckpointError):
                newer = self.latest_checkpoint()
                if attempt == 2 or newer is None or newer == path or os.path.isfile(path):
                    raise
                path = newer
        return True

    def sync_for_training(self):
        """Resume from model_dir's latest checkpoint, or warm-start a fresh model."""
        if not self.sync() and self.state.fresh and self.warm_start_from is not None:
            copied, source = ckpt.warm_start(self.state.network, self.warm_start_from)
            logger.info("warm-started %d variables from %s", copied, source)

    def network_for(self, checkpoint_path, not_fitted_error=False):
        """(network, step): the state's network, or a separate one loaded from ``checkpoint_path``;
        under MPI rank 0 reads and every rank gets the weights."""
        return self.runner().network_for(self.state, checkpoint_path,
                                         lambda path: self.local_network_for(path, not_fitted_error),
                                         self.new_network)

    def local_network_for(self, checkpoint_path, not_fitted_error=False):
        if checkpoint_path is not None:
            net = self.new_network()
            return net, self.load_into(net, os.fspath(checkpoint_path))
        if not self.sync():
            if not_fitted_error:
                raise NotFittedError(f"Couldn't find trained model at {self.model_dir}.")
            logger.warning("no checkpoint in %s: using freshly initialised weights", self.model_dir)
        return self.state.network, self.state.global_step

    # ---- train ---------------------------------------------------------------------------------

    def seeded(self, input_fn):
        """``input_fn`` whose unseeded shuffles take ``RunConfig.random_seed`` (TF's graph-level seed)."""
        return with_estimator_seed(input_fn, self.config.random_seed)

    def train(self, input_fn, hooks, steps, max_steps, listeners, facade):
        """TF's train: ``steps`` more, up to ``max_steps``, or until the input ends (see the estimators)."""
        runner = self.runner()
        make_device = self._device_for(runner)       # before anything is written: a missing GPU fails here
        lock = ckpt.TrainingLock(self.model_dir)     # one trainer per model_dir (rank 0's, under MPI)

        def chief():
            lock.acquire()
            ckpt.remove_stale(self.model_dir)
            self.sync_for_training()
        try:
            runner.sync_state(self.state, chief)      # rank 0 reads model_dir, every rank gets it
            self._train(runner, make_device, self.seeded(input_fn), hooks, steps, max_steps, listeners, facade)
        finally:
            lock.release()

    def _train(self, runner, make_device, input_fn, hooks, steps, max_steps, listeners, facade):
        state, config = self.state, self.config
        if max_steps is not None and state.global_step >= max_steps:
            logger.info("Skipping training since max_steps has already saved.")
            return
        target = state.global_step + steps if steps is not None else max_steps
        device = None if make_device is None else make_device(state)
        hooks = list(hooks)
        endless = None if target is not None or hooks else ValueError(
            "train: input_fn returns one (features, labels) batch, which training repeats at every step (as TF "
            "does), and neither steps, max_steps nor a hook would end it: give steps or max_steps")
        if config.log_step_count_steps:
            hooks.append(LoggingHook(int(config.log_step_count_steps)))
        if config.save_summary_steps and runner.is_chief:   # TensorBoard events in model_dir
            from .summary import SummarySaverHook
            hooks.append(SummarySaverHook(self.model_dir, int(config.save_summary_steps),
                                          int(config.log_step_count_steps) if config.log_step_count_steps else None))
        if sys.stderr.isatty() and os.environ.get("MINIRNN_PROGRESS", "1") != "0" and runner.is_chief:
            hooks.append(ProgressBar(target))
        for hook in hooks:
            hook.begin(facade)
        if self.source is None or ckpt.step_of(self.source[0]) != state.global_step:
            self.save(runner, listeners)              # TF writes a checkpoint when training starts
        last_save_step, last_save_time = state.global_step, time.monotonic()
        saved_at = state.global_step
        ok = False
        self.device = device
        try:
            for features, labels in runner.batches(input_fn, repeat=True, endless=endless):
                if target is not None and state.global_step >= target:
                    break
                for hook in hooks:
                    hook.before_step(state.global_step + 1)
                try:
                    loss = train_step(state, self.head, features, labels, initial_states=self.initial_states,
                                      reduce=runner.reduce, device=device)
                except (ValueError, TypeError, KeyError, FloatingPointError):
                    if state.global_step != saved_at:  # keep every finished step, then report the batch
                        try:
                            self.save(runner, listeners)
                        except FloatingPointError:     # diverged: the weights are not finite, keep the last
                            pass                       # finite checkpoint as the latest
                    raise
                if loss is None:                      # data-parallel: every rank's input ended, or a stop
                    break
                step = state.global_step
                stop = False
                for hook in hooks:
                    stop = bool(hook.after_step(step, loss)) or stop
                if stop and runner is not Local:      # the next step tells every rank, then all stop
                    runner.request_stop()
                    stop = False
                every_steps, every_secs = config.save_checkpoints_steps, config.save_checkpoints_secs
                if (every_steps and step - last_save_step >= every_steps) or \
                        (every_secs and time.monotonic() - last_save_time >= every_secs):
                    self.save(runner, listeners)
                    last_save_step, last_save_time, saved_at = step, time.monotonic(), step
                if stop or (target is not None and step >= target):
                    break
            if state.global_step != saved_at or self.source is None:
                self.save(runner, listeners)
            ok = True
        finally:
            if not ok and state.global_step != saved_at and self.source is not None and \
                    ckpt.step_of(self.source[0]) != state.global_step:
                self.source = None                    # unsaved steps: reload the checkpoint next time
            try:
                if self.device is not None:           # the host model is the trained one again
                    device, self.device = self.device, None
                    device.pull()
            finally:
                for hook in hooks:
                    hook.end(facade)

    # ---- the network evaluation and prediction run ---------------------------------------------

    def inference_network(self, network):
        """``network``, or with a predictor (``RunConfig(device='cuda')``) the same network with its
        forward on the device.

        While train() runs on a GPU, the state's network is served from the trainer's device weights
        (the host ones are those of the last checkpoint). Otherwise the device copy of the weights is
        kept from batch to batch and call to call while they cannot have changed (the same network
        and, for the state's, the same global step and checkpoint), and copied again when they may
        have (after training, after a newer checkpoint was read, for weights no checkpoint holds).
        """
        if network is self.state.network and self.device is not None:
            return self.device.inference_network()
        if self._predictor is None:
            self._predictor = self._predictor_for(self.runner()) or False
        if not self._predictor:
            return network
        if network is not self.state.network:
            version = None                            # loaded from a checkpoint for this call: never changed
        elif self.source is not None:
            version = (self.state.global_step, self.source)
        else:
            version = object()                        # fresh, warm-started or unsaved weights: always copy
        if self._on_device is not None and self._on_device[0] is network:
            on_device = self._on_device[2]
            if self._on_device[1] != version:
                on_device.push()
        else:
            on_device = self._predictor(network)
        self._on_device = (network, version, on_device)
        return on_device

    # ---- evaluate ------------------------------------------------------------------------------

    def evaluate(self, network, input_fn, steps, exact_auc=False, hooks=()):
        """Metrics over the batches (float32 values); hooks see each batch as a step and may stop."""
        self.inference_network(network)               # a missing GPU fails before any batch is read

        def evaluate(evaluator, features, labels):
            return evaluate_batch(self.inference_network(network), self.head, evaluator, features, labels,
                                  self.initial_states)
        evaluator = self.runner().evaluate(lambda: self.head.metrics(exact_auc), self.seeded(input_fn), steps, hooks,
                                           evaluate)
        return {k: np.float32(v) for k, v in self.metric_names(evaluator.result()).items()}

    def write_metrics(self, out_dir, step, metrics):
        """Append ``metrics`` to ``out_dir/metrics.jsonl`` and TensorBoard events (rank 0 alone)."""
        if not self.runner().is_chief:
            return
        try:
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, "metrics.jsonl"), "a", encoding="utf-8") as f:
                f.write(json.dumps({k: (int(v) if k == "global_step" else float(v)) for k, v in metrics.items()})
                        + "\n")
            if self.config.save_summary_steps:
                from .summary import write_scalars
                write_scalars(out_dir, step, {k: v for k, v in metrics.items() if k != "global_step"})
        except OSError as error:                      # a read-only model_dir: the metrics are still returned
            logger.warning("could not record the evaluation in %s (%s); the metrics are returned", out_dir, error)
        logger.info("evaluation at step %d: %s", step,
                    ", ".join(f"{k} = {float(v):.4g}" for k, v in metrics.items() if k != "global_step"))

    # ---- predict -------------------------------------------------------------------------------

    def predict_batch(self, network, features):
        return predict_batch(self.kind, self.head, self.inference_network(network), features, self.mask_key,
                             self.prediction_options)

    def predictions(self, network, input_fn, predict_keys, yield_single_examples, trim_sequences, hooks, facade):
        """Prediction dicts per example or per batch; hooks see each batch as a step (loss None).
        A missing GPU fails here, before the first batch is asked for."""
        check_hooks(hooks)
        self.inference_network(network)
        return self._predictions(network, input_fn, predict_keys, yield_single_examples, trim_sequences, hooks,
                                 facade)

    def _predictions(self, network, input_fn, predict_keys, yield_single_examples, trim_sequences, hooks, facade):
        for hook in hooks:
            hook.begin(facade)
        try:
            return_sequences = network.model.return_sequences
            stream = self.runner().predictions(self.seeded(input_fn), hooks, lambda f: self.predict_batch(network, f),
                                               self.mask_key, return_sequences)
            for number, (preds, mask) in enumerate(stream, 1):
                if predict_keys is not None:
                    unknown = [k for k in predict_keys if k not in preds]
                    if unknown:
                        raise ValueError(f"predict_keys: {unknown} are not predictions; available: {sorted(preds)}")
                    preds = {k: preds[k] for k in predict_keys}
                if yield_single_examples:
                    yield from single_examples(preds, mask, return_sequences, trim_sequences)
                else:
                    yield preds
                if any([bool(hook.after_step(number, None)) for hook in hooks]):
                    return
        finally:
            for hook in hooks:
                hook.end(facade)
