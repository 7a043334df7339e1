"""Training and inference on a CUDA GPU: the model's weights, activations and optimizer state stay
on the device.

Four pieces, built on the CUDA kernels in ``minirnn.kernels.*_cuda`` (Numba's CUDA target):

- :func:`select_device` turns ``'cpu' | 'cuda' | 'auto'`` into ``'cpu'`` or ``'cuda'``;
- :class:`DeviceModel` holds an :class:`~minirnn.model.RNNModel`'s weights and gradients as device
  arrays and runs its forward and backward there (host arrays in: the batch; host arrays out: the
  logits and, for embedding columns, the input gradient);
- :class:`DeviceTrainer` adds the optimizer (slots on the device, updates and gradient clipping in
  device kernels): the device of :func:`minirnn.step.train_step` for a :class:`~minirnn.network.Network`. Weights go
  back to the host only when asked (:meth:`DeviceTrainer.pull`, before a checkpoint);
- :class:`DeviceNetwork` is a network for evaluation and prediction whose recurrent model runs on
  the device: the forward alone, with no gradient buffers, no dropout and no backward launch
  (``evaluate``, ``predict`` and :func:`minirnn.export.load_exported` with a device).

Per step the host sends the batch (x, mask, dropout masks drawn from the model's own generator, the
logits gradient) and receives the logits; nothing else crosses. The feature layers (embedding
lookups and their sparse updates) stay on the host, as does the loss (the head).

Results equal CPU training within float32 rounding, and checkpoints are the same whatever the
device: weights are pulled into the host model before saving, dropout masks come from the same
generator in the same order, so a model trained on the GPU resumes or predicts on the CPU.

The CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, for tests on machines without a GPU) counts as a
device only when asked for explicitly (``'cuda'``): ``'auto'`` never picks it, it is far too slow.

Example
-------
>>> from minirnn.cuda import select_device
>>> select_device("auto")            # 'cuda' on a machine with a GPU, else 'cpu' (one log line)
'cpu'
"""

import logging
import math

import numpy as np

from .config import DEVICES
from .errors import install_hint
from .model import stack_backward, stack_forward, tile_context

__all__ = ["DEVICES", "select_device", "gpu_available", "trainer_for", "predictor_for", "DeviceModel",
           "DeviceTrainer", "DeviceNetwork"]

logger = logging.getLogger(__name__)



def _numba_cuda():
    """(numba.cuda, simulated) or raise ImportError with the install hint."""
    try:
        from numba import config, cuda
    except ImportError as exc:                          # pragma: no cover - numba is a dependency
        raise ImportError(f"the CUDA path needs numba-cuda: {install_hint('cuda', 'numba-cuda[cu12]')}") from exc
    return cuda, bool(config.ENABLE_CUDASIM)


def gpu_available():
    """(available, reason): whether Numba sees a real CUDA GPU; the simulator does not count."""
    try:
        cuda, simulated = _numba_cuda()
    except ImportError as exc:
        return False, str(exc)
    if simulated:
        return False, "NUMBA_ENABLE_CUDASIM=1 (the CUDA simulator is not a GPU)"
    try:
        if cuda.is_available():
            return True, ""
    except Exception as exc:                            # a broken driver: report, do not crash
        return False, f"numba.cuda failed: {exc}"
    return False, "numba.cuda.is_available() is False (no CUDA driver or GPU)"


def select_device(name, purpose="training"):
    """``'cpu'`` or ``'cuda'`` for a ``RunConfig(device=...)`` value.

    - ``'cpu'``: the CPU.
    - ``'cuda'``: the GPU; a RuntimeError when Numba sees none. Under the CUDA simulator
      (``NUMBA_ENABLE_CUDASIM=1``) the simulated device is used (tests without a GPU).
    - ``'auto'``: the GPU when Numba sees a real one, else the CPU with one INFO log line that says
      what runs there (``purpose``). The simulator never counts for ``'auto'``.
    """
    if not isinstance(name, str) or name.lower() not in DEVICES:
        raise ValueError(f"device: expected one of {DEVICES}, got {name!r}")
    name = name.lower()
    if name == "cpu":
        return "cpu"
    available, reason = gpu_available()
    if name == "cuda":
        if available:
            return "cuda"
        try:
            _, simulated = _numba_cuda()
        except ImportError:
            simulated = False
        if simulated:
            return "cuda"
        raise RuntimeError(f"device='cuda' but no CUDA GPU is usable: {reason}. On a machine with an NVIDIA GPU "
                           f"and driver, install the cuda extra ({install_hint('cuda', 'numba-cuda[cu12]')}), "
                           "or use device='cpu' or 'auto'")
    if available:
        return "cuda"
    logger.info("device='auto': no CUDA GPU (%s); %s on the CPU", reason, purpose)
    return "cpu"


def trainer_for(device, data_parallel=False):
    """For ``RunConfig.device``: None (the training steps run on the CPU), or a function making the
    steps' device, a :class:`DeviceTrainer`, from a :class:`~minirnn.state.TrainState`. A missing
    GPU fails here, before anything is read or written."""
    if device == "cpu" or select_device(device) != "cuda":
        return None
    if data_parallel:
        raise ValueError("RunConfig(device='cuda') with MPI data-parallel training is not supported: use "
                         "device='cpu' under mpiexec")
    return lambda state: DeviceTrainer(state.network, state.optimizer)


def predictor_for(device, data_parallel=False):
    """For ``RunConfig.device`` and ``load_exported(device=...)``: None (evaluation and prediction
    run on the CPU), or :class:`DeviceNetwork`, which makes the device network from a
    :class:`~minirnn.network.Network`. A missing GPU fails here, with the error training gives."""
    if device == "cpu" or select_device(device, "evaluating and predicting") != "cuda":
        return None
    if data_parallel:
        raise ValueError("RunConfig(device='cuda') with MPI data-parallel evaluation and prediction is not "
                         "supported: use device='cpu' under mpiexec")
    return DeviceNetwork


def _kernels():
    from .kernels import cuda_common, gru_cuda, lstm_cuda, simple_rnn_cuda, updates_cuda
    return cuda_common, {"simple_rnn": simple_rnn_cuda, "lstm": lstm_cuda, "gru": gru_cuda}, updates_cuda


class DeviceModel:
    """An :class:`~minirnn.model.RNNModel`'s weights and gradients on the GPU, with its forward and
    backward run there.

    Parameters
    ----------
    model : a built RNNModel. Its host arrays are copied to the device now; :meth:`pull` copies the
        device weights back into them, :meth:`push` copies them to the device again.
    gradients : False for evaluation and prediction: no gradient buffers are allocated, and
        ``forward(training=True)`` and ``backward`` refuse.

    ``params`` (a list) and ``grads()`` are device arrays aligned with ``model.params()``. ``backward`` replaces
    the gradients (it does not accumulate across calls).
    """

    def __init__(self, model, gradients=True):
        cc, modules, _ = _kernels()
        model._require_built()
        self._cc, self._modules = cc, modules
        self.model = model
        self.dtype = np.dtype(model.dtype)
        self.params = [self._cc.to_device("param", np.ascontiguousarray(p)) for p in model.params()]
        self._grads = [cc.zeros(tuple(p.shape), self.dtype) for p in self.params] if gradients else None
        self._cache = None
        self._final_states = None

    # ---- weights ------------------------------------------------------------------------------

    def push(self):
        """Copy the host model's weights to the device (after they changed on the host)."""
        for d, p in zip(self.params, self.model.params()):
            d.copy_to_device(np.ascontiguousarray(p))

    def pull(self):
        """Copy the device weights into the host model's arrays (in place)."""
        for d, p in zip(self.params, self.model.params()):
            p[...] = d.copy_to_host()

    def final_states(self):
        """Per layer, the final states ([h] or LSTM [h, c]) of the last forward, as host arrays."""
        if self._final_states is None:
            return None
        return [[s.copy_to_host() for s in states] for states in self._final_states]

    @property
    def return_sequences(self):
        return self.model.return_sequences

    def zero_grads(self):
        """Nothing to do: :meth:`backward` replaces the gradients."""

    def grads(self):
        """The device gradient arrays, aligned with ``params``."""
        self._require_gradients("grads")
        return self._grads

    def _require_gradients(self, what):
        if self._grads is None:
            raise RuntimeError(f"{what}: this DeviceModel is for inference (gradients=False)")

    # ---- forward / backward -------------------------------------------------------------------

    def _scaled(self, x, scale):
        """``x * scale`` on the device (inverted dropout with a device scale array)."""
        out = self._cc.empty(tuple(x.shape), self.dtype)
        self._cc.scale_into(out, x, scale)
        return out

    def forward(self, sequence, mask, context=None, training=False, initial_states=None):
        """Logits (a host array) for a batch, as :meth:`RNNModel.forward`: the same stack runner
        (:func:`minirnn.model.stack_forward`) on device arrays, the same dropout masks (drawn on the
        host from the model's generator, in the same order).

        sequence [B, T, Ds] and context [B, Dc] (optional) in the model's dtype; mask [B, T] bool
        (None: every step valid); initial_states: None or per layer a list of [B, units] arrays.
        """
        cc, model = self._cc, self.model
        if training:
            self._require_gradients("forward(training=True)")
        sequence, context, (B, T, Ds, Dc) = model.checked_inputs(sequence, mask, context, initial_states)
        if B == 0 or T == 0:
            raise ValueError(f"sequence input: empty batch or sequence (shape {sequence.shape})")
        if mask is None:
            mask = np.ones((B, T), dtype=bool)
        x = cc.to_device("sequence input", np.ascontiguousarray(tile_context(sequence, context)))
        mask_d = cc.mask_to_device(mask, B, T)
        scales = [None if s is None else cc.to_device("dropout", s)
                  for s in model.dropout_scales(B, T, Ds + Dc, training)]

        def cell(k, layer, x):
            if initial_states is None:
                states0 = [cc.zeros((B, layer.units), self.dtype) for _ in range(layer.n_states)]
            else:
                states0 = list(initial_states[k])
                if len(states0) != layer.n_states:
                    raise ValueError(f"initial_states[{k}]: {type(layer).__name__} has {layer.n_states} state(s), "
                                     f"got {len(states0)}")
            W, U, b = self.params[3 * k:3 * k + 3]
            options = {"reset_after": layer.reset_after} if layer.cell == "gru" else {}
            y, states, saved = self._modules[layer.cell].forward_device(x, mask_d, states0, W, U, b,
                                                                        layer.zero_output_for_mask, **options)
            return y, list(states), saved

        x, self._final_states, saved = stack_forward(model.layers, x, scales,
                                                     lambda x, k: self._scaled(x, scales[k]), cell)
        H = x.shape[2]
        h = x if model.return_sequences else cc.copy_step(x, T - 1)   # each row's last valid output
        if scales[-1] is not None:
            h = self._scaled(h, scales[-1])
        K, bias = self.params[-2], self.params[-1]
        k_out = model.logits_dimension
        h2 = h.reshape(B * T if model.return_sequences else B, H)
        logits = cc.empty((h2.shape[0], k_out), self.dtype)
        cc.matmul(h2, K, logits, bias=bias)                        # dense logits layer
        self._cache = (h2, scales, saved, (B, T, Ds, Dc)) if training else None
        out = logits.copy_to_host()
        return out.reshape(B, T, k_out) if model.return_sequences else out

    def backward(self, d_logits, need_input_grad=False):
        """Backprop ``d_logits`` (host [B, k] or [B, T, k]) through the last training forward
        (:func:`minirnn.model.stack_backward` on device arrays).

        The device gradients ``grads()`` are replaced. Returns host (d_sequence, d_context) when
        ``need_input_grad``, else (None, None).
        """
        self._require_gradients("backward")
        if self._cache is None:
            raise RuntimeError("backward needs a preceding forward(..., training=True)")
        cc, model = self._cc, self.model
        h2, scales, saved, (B, T, Ds, Dc) = self._cache
        k_out = model.logits_dimension
        expected = (B, T, k_out) if model.return_sequences else (B, k_out)
        if np.shape(d_logits) != expected:
            raise ValueError(f"d_logits: expected shape {expected}, got {np.shape(d_logits)}")
        for g in self._grads:
            cc.fill(g, 0.0)
        d2 = cc.to_device("d_logits", np.ascontiguousarray(np.asarray(d_logits, dtype=self.dtype).reshape(-1, k_out)))
        dK, db = self._grads[-2], self._grads[-1]
        cc.matmul(h2, d2, dK, trans_a=True, accumulate=True)      # logits layer gradients
        cc.col_sum(d2, db)
        H = h2.shape[1]
        d_h = cc.empty((h2.shape[0], H), self.dtype)
        cc.matmul(d2, self.params[-2], d_h, trans_b=True)          # d_h = d_logits K^T
        if scales[-1] is not None:
            cc.scale_into(d_h, d_h, scales[-1].reshape(h2.shape[0], H))
        if model.return_sequences:
            dy = d_h.reshape(B, T, H)
        else:                                                      # the last layer returned y[:, -1]
            dy = cc.zeros((B, T, H), self.dtype)
            cc.set_step(dy, T - 1, d_h)

        def cell(k, layer, dy, need_dx):
            zeros = [cc.zeros((B, layer.units), self.dtype) for _ in range(layer.n_states)]
            dW, dU, dbias = self._grads[3 * k:3 * k + 3]
            return self._modules[layer.cell].backward_device(dy, zeros, saved[k], dW, dU, dbias, need_dx=need_dx)[0]

        def dropout(dx, k):
            cc.scale_into(dx, dx, scales[k])
            return dx

        dy = stack_backward(model.layers, dy, scales, dropout, cell, need_input_grad)
        if not need_input_grad:
            return None, None
        d_x = dy.copy_to_host()
        d_context = d_x[:, :, Ds:].sum(axis=1) if Dc else None
        return d_x[:, :, :Ds], d_context


class DeviceNetwork:
    """A :class:`~minirnn.network.Network` for evaluation and prediction, its recurrent model run on
    the GPU: what ``evaluate``, ``predict`` and an exported model with a device use in place of the
    network.

    The feature layers run on the host; per batch the host sends the model's input (and mask, and
    initial states when given) and receives the logits and the final states. Only forward kernels
    are launched: no dropout, no gradient buffers, nothing saved for a backward.

    Parameters
    ----------
    network : a minirnn.network.Network (built). Its recurrent model's weights are copied to the
        device when it is made; after they change on the host, :meth:`push` copies them again.
    model : None, or a :class:`DeviceModel` of ``network.model`` to share (a
        :class:`DeviceTrainer`'s, whose weights are the current ones while it trains).

    ``model`` is the host model, as a Network's: its ``final_states`` are those of the last forward
    (copied from the device), so the predictions that read them (TF1's ``rnn_cell_state_i``) work.

    Example
    -------
    >>> logits, mask = DeviceNetwork(network).forward(features)     # as network.forward(features)
    """

    def __init__(self, network, model=None):
        self.network = network
        self.device_model = DeviceModel(network.model, gradients=False) if model is None else model
        if self.device_model.model is not network.model:
            raise ValueError("DeviceNetwork: model must be a DeviceModel of network.model")

    @property
    def model(self):
        """The host :class:`~minirnn.model.RNNModel` (layers, dtype, return_sequences, final_states)."""
        return self.network.model

    def push(self):
        """Copy the host model's weights to the device (after they changed on the host)."""
        self.device_model.push()

    def forward(self, features, training=False, initial_states=None):
        """(logits, mask) as :meth:`minirnn.network.Network.forward` with ``training=False``."""
        if training:
            raise ValueError("DeviceNetwork runs inference only (training=False); train with a DeviceTrainer")
        logits, mask = self.network.forward(features, training=False, initial_states=initial_states,
                                            model=self.device_model)
        self.network.model.final_states = self.device_model.final_states()
        return logits, mask


# ---------------------------------------------------------------------------------------------
# Optimizer on the device
# ---------------------------------------------------------------------------------------------

def _rule_args(optimizer, slots, lr, cast):
    """(rule name, slot arrays and hyper-parameters) for updates_cuda, as the host optimizer's
    ``_update`` passes them to ``kernels.updates``."""
    from . import optimizers as opt
    kind = type(optimizer)
    if kind is opt.SGD:
        return "sgd", (cast(lr),)
    if kind is opt.Momentum:
        return "momentum", (slots["momentum"], cast(lr), cast(optimizer.momentum), optimizer.use_nesterov)
    if kind is opt.Adagrad:
        return "adagrad", (slots["accumulator"], cast(lr), cast(optimizer.epsilon))
    if kind is opt.Adam:
        t = optimizer.iterations                  # already incremented: this update's step, from 1
        lr_t = lr * math.sqrt(1.0 - optimizer.beta_2 ** t) / (1.0 - optimizer.beta_1 ** t)
        return "adam", (slots["m"], slots["v"], cast(lr_t), cast(optimizer.beta_1), cast(optimizer.beta_2),
                        cast(optimizer.epsilon))
    if kind is opt.RMSProp:
        return "rmsprop", (slots["rms"], slots["mg"], slots["momentum"], cast(lr), cast(optimizer.rho),
                           cast(optimizer.momentum), cast(optimizer.epsilon), optimizer.centered)
    if kind is opt.Ftrl:
        return "ftrl", (slots["accumulator"], slots["linear"], cast(lr), cast(optimizer.learning_rate_power),
                        cast(optimizer.l1), cast(optimizer.l2), cast(optimizer.beta))
    raise ValueError(f"device='cuda' supports the optimizers SGD, Momentum, Adagrad, Adam, RMSProp and Ftrl of "
                     f"minirnn.optimizers, got {kind.__name__}")


def check_optimizer(optimizer):
    """Raise ValueError unless ``optimizer`` has a device implementation (the exact classes SGD,
    Momentum, Adagrad, Adam, RMSProp, Ftrl: a subclass may change the rule)."""
    from . import optimizers as opt
    if type(optimizer) not in (opt.SGD, opt.Momentum, opt.Adagrad, opt.Adam, opt.RMSProp, opt.Ftrl):
        raise ValueError(f"device='cuda' supports the optimizers SGD, Momentum, Adagrad, Adam, RMSProp and "
                         f"Ftrl of minirnn.optimizers, got {type(optimizer).__name__}")


class DeviceTrainer:
    """Train a :class:`~minirnn.network.Network` with ``optimizer`` on the GPU.

    The model's weights, gradients and optimizer slots live on the device from construction until
    the trainer is dropped; the feature layers (embedding tables, sparse updates) stay on the host.
    The optimizer object is the host one: its hyper-parameters, learning-rate schedule,
    ``iterations`` and clipping settings are used as is, and :meth:`pull` writes the device slots
    back into it, so ``optimizer.state()`` is then what the CPU would hold.

    Parameters
    ----------
    network : a minirnn.network.Network (built)
    optimizer : a minirnn.optimizers.Optimizer (SGD, Momentum, Adagrad, Adam, RMSProp or Ftrl)

    Example
    -------
    >>> trainer = DeviceTrainer(network, optimizer)
    >>> loss = trainer.train_step(features, lambda logits, mask: head.loss(logits, labels))
    >>> trainer.pull()                       # weights and slots into the host objects (checkpoints)
    """

    def __init__(self, network, optimizer):
        check_optimizer(optimizer)
        cc, _, updates = _kernels()
        self._cc, self._updates = cc, updates
        self.network = network
        self.optimizer = optimizer
        self.model = DeviceModel(network.model)
        n_model = len(self.model.params)
        trainable = network.trainable()
        if not all(trainable[-n_model:]):
            raise ValueError("DeviceTrainer: every recurrent-model parameter must be trainable")
        self._host_keep = trainable[:-n_model]
        self._n_host = sum(self._host_keep)          # trainable host parameters, before the model's
        self._slots = None                           # device slots of the model parameters
        if optimizer._slots is not None:
            self._upload_slots()
        dtype = self.model.dtype
        self._scales = cc.to_device("scales", np.ones(n_model, dtype=dtype))
        self._sumsq = cc.zeros((n_model,), np.float64)
        self.steps = 0

    # ---- host <-> device ----------------------------------------------------------------------

    def _upload_slots(self):
        slots = self.optimizer._slots
        expected = self._n_host + len(self.model.params)
        if len(slots) != expected:
            raise ValueError(f"the optimizer holds slots for {len(slots)} parameters, this network has {expected}")
        self._slots = [{k: self._cc.to_device(f"slot {k}", np.ascontiguousarray(v, dtype=self.model.dtype))
                        for k, v in s.items()} for s in slots[self._n_host:]]

    def push(self):
        """Copy the host weights and optimizer slots to the device (after a checkpoint restore)."""
        self.model.push()
        self._slots = None
        if self.optimizer._slots is not None:
            self._upload_slots()

    def pull(self):
        """Copy the device weights into the host model and the device slots into the host optimizer,
        in place: afterwards ``network.params()`` and ``optimizer.state()`` are current."""
        self.model.pull()
        if self._slots is not None:
            for host, dev in zip(self.optimizer._slots[self._n_host:], self._slots):
                for k, d in dev.items():
                    host[k][...] = d.copy_to_host()

    def inference_network(self):
        """A :class:`DeviceNetwork` on this trainer's device weights (evaluation during training)."""
        return DeviceNetwork(self.network, self.model)

    # ---- the step's device model (minirnn.step.train_step(..., device=trainer)) ---------------

    def forward(self, features, training=False, initial_states=None):
        """The network's forward with the recurrent model on the device: -> host (logits, mask)."""
        return self.network.forward(features, training=training, initial_states=initial_states, model=self.model)

    def backward(self, d_logits):
        """Gradients aligned with the network's params(): host arrays (SparseRows) for the feature
        layers, the device gradient arrays for the recurrent model."""
        return self.network.backward(d_logits, model=self.model)

    def trainable(self):
        return self.network.trainable()

    def apply(self, grads):
        """One optimizer update, ``grads`` aligned with the network's trainable parameters (as
        :meth:`backward` and :func:`minirnn.step.gradients` give them): the trainable host parameters
        (embedding tables) are updated on the host, the model's on the device (from ``model.grads()``),
        with the optimizer's clipping over both; ``optimizer.iterations`` += 1; ``steps`` += 1."""
        from . import optimizers as opt_module
        cc, updates, optimizer = self._cc, self._updates, self.optimizer
        n_all = len(self._host_keep)
        host_params = [p for p, keep in zip(self.network.params()[:n_all], self._host_keep) if keep]
        host_grads = list(grads[:self._n_host])
        if len(grads) != self._n_host + len(self.model.params):
            raise ValueError(f"apply: expected {self._n_host + len(self.model.params)} gradients, got {len(grads)}")
        dev_params, dev_grads = self.model.params, self.model.grads()
        dtype = self.model.dtype
        if optimizer._slots is None:                 # first update: slots for every trainable parameter
            host_model = self.network.model.params()
            optimizer._slots = [{s: optimizer._init_slot(s, p) for s in optimizer.slots}
                                for p in list(host_params) + list(host_model)]
            self._upload_slots()
        host_grads = [opt_module.SparseRows(g.rows, np.asarray(g.values, dtype=p.dtype), g.shape)
                      if isinstance(g, opt_module.SparseRows) else np.asarray(g, dtype=p.dtype)
                      for g, p in zip(host_grads, host_params)]
        # clipping: scales[k] multiplies model gradient k inside its update kernel
        if optimizer.clipnorm is not None:
            host_grads = opt_module.clip_by_norm(host_grads, optimizer.clipnorm)
            cc.fill(self._sumsq, 0.0)
            for k, g in enumerate(dev_grads):
                updates.sum_squares(g.reshape(g.size), self._sumsq, k)
            updates.clip_scales(self._sumsq, self._scales, optimizer.clipnorm, per_tensor=True)
        elif optimizer.global_clipnorm is not None:
            cc.fill(self._sumsq, 0.0)
            for k, g in enumerate(dev_grads):
                updates.sum_squares(g.reshape(g.size), self._sumsq, k)
            if host_grads:                           # the norm spans host and device: one small copy
                total = float(self._sumsq.copy_to_host().sum()) + sum(opt_module._sum_squares(g) for g in host_grads)
                norm = math.sqrt(total)
                if not math.isfinite(norm):
                    raise ValueError("clip_by_global_norm: the gradients contain NaN or inf")
                scale = optimizer.global_clipnorm / norm if norm > optimizer.global_clipnorm else 1.0
                if scale != 1.0:
                    host_grads = [g.scaled(scale) if isinstance(g, opt_module.SparseRows) else g * scale
                                  for g in host_grads]
                cc.fill(self._scales, scale)
            else:
                updates.clip_scales(self._sumsq, self._scales, optimizer.global_clipnorm, per_tensor=False)
        lr = optimizer.current_learning_rate()
        optimizer.iterations += 1
        host_slots = optimizer._slots[:self._n_host]
        for p, g, slots in zip(host_params, host_grads, host_slots):    # embedding tables, on the host
            optimizer._apply_one(p, g, slots, lr)
        cast = dtype.type
        for k, (p, g, slots) in enumerate(zip(dev_params, dev_grads, self._slots)):   # the model, on the device
            flat_slots = {name: v.reshape(v.size) for name, v in slots.items()}
            rule, args = _rule_args(optimizer, flat_slots, lr, cast)
            updates.launch(rule, p.reshape(p.size), g.reshape(g.size), self._scales, k, *args)
        self.steps += 1
