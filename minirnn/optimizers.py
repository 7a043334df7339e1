"""Optimizers: SGD, Momentum, Adagrad, Adam, RMSProp, Ftrl, with learning-rate schedules and clipping.

The update rules are those of TF/Keras (legacy Keras optimizers, which TF's estimators used; TF1's
MomentumOptimizer and ApplyFtrl), written once, element by element, in ``minirnn.kernels.updates``
and run as one compiled loop per tensor (``minirnn.kernels.updates_cpu``; NumPy without Numba).
Defaults are the Keras legacy ones (Adagrad lr 0.001 with initial accumulator 0.1 and epsilon 1e-7;
Adam lr 0.001, 0.9, 0.999, 1e-7; ...). TF's estimators replace the learning rate of an optimizer
given by name with 0.05 and clip each gradient tensor's norm at 5.0: :func:`get` does the same for
names (``clipnorm=5.0``); TF1's ``gradient_clipping_norm`` is ``global_clipnorm`` (clip by the
global norm of all gradients).

Clipping, applied before the update:

- ``clipnorm``: each gradient tensor separately, ``g * c / max(||g||, c)`` (tf.clip_by_norm);
- ``global_clipnorm``: all together, ``g * c / max(global_norm, c)`` (tf.clip_by_global_norm).

State: ``iterations`` (the step count, TF's global_step binding) and per-parameter slots. Slots are
created at the first ``apply`` for the parameters given, in order; ``state()`` / ``load_state()``
round-trip everything a checkpoint needs.

Example
-------
>>> opt = get("Adam", learning_rate=0.01)
>>> opt.apply(params, grads)     # params updated in place
"""

import math

import numpy as np

from . import kernels
from .kernels import updates
from .sparse import SparseRows

__all__ = ["SparseRows", "Optimizer", "SGD", "Momentum", "Adagrad", "Adam", "RMSProp", "Ftrl", "get",
           "ExponentialDecay", "clip_by_norm", "clip_by_global_norm"]


def _sum_squares(g):
    values = np.asarray(g.values if isinstance(g, SparseRows) else g)
    if values.dtype.char in "fd" and values.dtype.isnative:   # what apply() passes: one compiled call
        return float(kernels.load_update("sum_squares")(values.ravel()))
    return float(updates.sum_squares(values))


class ExponentialDecay:
    """lr(step) = initial * decay_rate ** (step / decay_steps), floored with ``staircase``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        if decay_steps <= 0:
            raise ValueError(f"decay_steps: expected a positive number, got {decay_steps}")
        if not initial_learning_rate > 0 or not decay_rate > 0:
            raise ValueError(f"initial_learning_rate and decay_rate must be positive, got "
                             f"{initial_learning_rate!r} and {decay_rate!r}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps, self.decay_rate, self.staircase = decay_steps, float(decay_rate), staircase

    def __call__(self, step):
        p = step / self.decay_steps
        return self.initial_learning_rate * self.decay_rate ** (math.floor(p) if self.staircase else p)

    def get_config(self):
        return {"class": "ExponentialDecay", "initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate, "staircase": self.staircase}


def clip_by_norm(grads, clip_norm):
    """Each tensor scaled to norm <= clip_norm (tf.clip_by_norm)."""
    out = []
    for g in grads:
        norm = math.sqrt(_sum_squares(g))
        if not math.isfinite(norm):
            raise ValueError("clip_by_norm: a gradient contains NaN or inf")
        scale = clip_norm / norm if norm > clip_norm else None
        out.append(g if scale is None else (g.scaled(scale) if isinstance(g, SparseRows) else g * scale))
    return out


def clip_by_global_norm(grads, clip_norm):
    """All tensors scaled by clip_norm / max(global_norm, clip_norm) (tf.clip_by_global_norm)."""
    norm = math.sqrt(sum(_sum_squares(g) for g in grads))
    if not math.isfinite(norm):
        raise ValueError("clip_by_global_norm: the gradients contain NaN or inf")
    if norm > clip_norm:
        scale = clip_norm / norm
        return [g.scaled(scale) if isinstance(g, SparseRows) else g * scale for g in grads]
    return list(grads)


def _check_positive(name, value, allow_zero=False):
    if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool) \
            or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name}: expected a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")


class Optimizer:
    """Base class: learning rate (a number, a schedule, or a callable of the step) and clipping."""

    slots = ()          # names of the per-parameter slot arrays
    name = "Optimizer"

    def __init__(self, learning_rate, clipnorm=None, global_clipnorm=None):
        if not callable(learning_rate):
            _check_positive("learning_rate", learning_rate)
        for key, value in (("clipnorm", clipnorm), ("global_clipnorm", global_clipnorm)):
            if value is not None:
                _check_positive(key, value)
        if clipnorm is not None and global_clipnorm is not None:
            raise ValueError("give at most one of clipnorm (per tensor) and global_clipnorm (all tensors)")
        self.learning_rate = learning_rate
        self.clipnorm, self.global_clipnorm = clipnorm, global_clipnorm
        self.iterations = 0
        self._slots = None

    def current_learning_rate(self, step=None):
        """The learning rate for ``step`` (default: the next update's step)."""
        step = self.iterations if step is None else step
        lr = self.learning_rate(step) if callable(self.learning_rate) else self.learning_rate
        if isinstance(lr, complex) or not np.isscalar(lr) or not math.isfinite(float(lr)) or float(lr) <= 0:
            raise ValueError(f"learning rate at step {step}: expected a positive finite number, got {lr!r}")
        return float(lr)

    def _init_slot(self, name, param):
        return np.zeros_like(param)

    def apply(self, params, grads):
        """Clip ``grads``, then update every array of ``params`` in place; ``iterations`` += 1."""
        if len(params) != len(grads):
            raise ValueError(f"apply: {len(params)} parameters but {len(grads)} gradients")
        for k, (p, g) in enumerate(zip(params, grads)):
            if not isinstance(p, np.ndarray) or not p.flags.c_contiguous or p.dtype.kind != "f":
                raise TypeError(f"apply: parameter {k} must be a C-contiguous float array, got "
                                f"{type(p).__name__} {getattr(p, 'dtype', '')}")
            g_shape = g.shape if isinstance(g, SparseRows) else np.shape(g)
            if g_shape != p.shape:
                raise ValueError(f"apply: gradient {k} has shape {g_shape}, its parameter {p.shape}")
        if self._slots is None:
            self._slots = [{s: self._init_slot(s, p) for s in self.slots} for p in params]
        elif len(self._slots) != len(params) or any(
                v.shape != p.shape or v.dtype != p.dtype for sl, p in zip(self._slots, params) for v in sl.values()):
            raise ValueError("apply: these parameters (or restored slots) do not match the ones this optimizer "
                             "was first applied to")
        grads = [(g if g.values.dtype == p.dtype else SparseRows(g.rows, g.values.astype(p.dtype), g.shape))
                 if isinstance(g, SparseRows) else np.asarray(g, dtype=p.dtype) for g, p in zip(grads, params)]
        if self.clipnorm is not None:
            grads = clip_by_norm(grads, self.clipnorm)
        if self.global_clipnorm is not None:
            grads = clip_by_global_norm(grads, self.global_clipnorm)
        lr = self.current_learning_rate()
        self.iterations += 1
        for p, g, slots in zip(params, grads, self._slots):
            self._apply_one(p, g, slots, lr)

    def _apply_one(self, p, g, slots, lr):
        """Update one parameter (in place) from its gradient, dense or SparseRows, and its slots."""
        if isinstance(g, SparseRows):                   # update only the rows that have a gradient
            rows = g.rows
            w = np.ascontiguousarray(p[rows])
            sl = {k: np.ascontiguousarray(v[rows]) for k, v in slots.items()}
            self._update(w.reshape(-1), np.ascontiguousarray(g.values).reshape(-1),
                         {k: v.reshape(-1) for k, v in sl.items()}, lr, p.dtype.type)
            p[rows] = w
            for k, v in sl.items():
                slots[k][rows] = v
        else:
            self._update(p.reshape(-1), np.ascontiguousarray(g).reshape(-1),
                         {k: v.reshape(-1) for k, v in slots.items()}, lr, p.dtype.type)

    def _update(self, w, g, slots, lr, cast):
        raise NotImplementedError

    # ---- state for checkpoints -------------------------------------------------------------

    def get_config(self):
        lr = self.learning_rate
        config = {"class": type(self).__name__, "clipnorm": self.clipnorm,
                  "global_clipnorm": self.global_clipnorm,
                  "learning_rate": lr.get_config() if hasattr(lr, "get_config") else
                  (None if callable(lr) else float(lr))}
        config.update(self._hyper())
        return config

    def _hyper(self):
        return {}

    def state(self):
        """``{"iterations": int, "slots": [{slot name: array}, ...]}`` (copies)."""
        slots = [] if self._slots is None else [{k: v.copy() for k, v in s.items()} for s in self._slots]
        return {"iterations": self.iterations, "slots": slots}

    def load_state(self, state):
        """Restore what :meth:`state` returned."""
        slots = state["slots"]
        for k, s in enumerate(slots):
            if set(s) != set(self.slots):
                raise ValueError(f"load_state: parameter {k} has slots {sorted(s)}, "
                                 f"{type(self).__name__} uses {sorted(self.slots)}")
        self.iterations = int(state["iterations"])
        self._slots = [{k: np.array(v, order="C") for k, v in s.items()} for s in slots] if slots else None


class SGD(Optimizer):
    """Plain gradient descent: w -= lr * g. Keras legacy default lr 0.01."""

    name = "SGD"

    def __init__(self, learning_rate=0.01, **kwargs):
        super().__init__(learning_rate, **kwargs)

    def _update(self, w, g, slots, lr, cast):
        kernels.load_update("sgd")(w, g, cast(lr))


class Momentum(Optimizer):
    """TF's MomentumOptimizer: accum = momentum * accum + g; w -= lr * accum (or Nesterov)."""

    slots = ("momentum",)
    name = "Momentum"

    def __init__(self, learning_rate=0.01, momentum=0.9, use_nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        _check_positive("momentum", momentum, allow_zero=True)
        self.momentum, self.use_nesterov = float(momentum), bool(use_nesterov)

    def _hyper(self):
        return {"momentum": self.momentum, "use_nesterov": self.use_nesterov}

    def _update(self, w, g, slots, lr, cast):
        kernels.load_update("momentum")(w, g, slots["momentum"], cast(lr), cast(self.momentum), self.use_nesterov)


class Adagrad(Optimizer):
    """Adagrad: accum += g^2; w -= lr * g / (sqrt(accum) + epsilon). Accumulator starts at 0.1."""

    slots = ("accumulator",)
    name = "Adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        _check_positive("initial_accumulator_value", initial_accumulator_value, allow_zero=True)
        _check_positive("epsilon", epsilon, allow_zero=True)
        self.initial_accumulator_value, self.epsilon = float(initial_accumulator_value), float(epsilon)

    def _hyper(self):
        return {"initial_accumulator_value": self.initial_accumulator_value, "epsilon": self.epsilon}

    def _init_slot(self, name, param):
        return np.full_like(param, self.initial_accumulator_value)

    def _update(self, w, g, slots, lr, cast):
        kernels.load_update("adagrad")(w, g, slots["accumulator"], cast(lr), cast(self.epsilon))


class Adam(Optimizer):
    """Adam with Keras's epsilon-hat form: lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)."""

    slots = ("m", "v")
    name = "Adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        for key, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{key}: expected a number in [0, 1), got {value!r}")
        _check_positive("epsilon", epsilon, allow_zero=True)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _hyper(self):
        return {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}

    def _update(self, w, g, slots, lr, cast):
        t = self.iterations       # already incremented: this update's step, from 1
        lr_t = lr * math.sqrt(1.0 - self.beta_2 ** t) / (1.0 - self.beta_1 ** t)
        kernels.load_update("adam")(w, g, slots["m"], slots["v"], cast(lr_t), cast(self.beta_1),
                                 cast(self.beta_2), cast(self.epsilon))


class RMSProp(Optimizer):
    """RMSProp as Keras legacy: ms = rho ms + (1-rho) g^2; w -= lr g / (sqrt(ms) + eps);
    optional momentum and centered (ms - mg^2) forms."""

    slots = ("rms", "mg", "momentum")
    name = "RMSProp"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho: expected a number in [0, 1), got {rho!r}")
        _check_positive("momentum", momentum, allow_zero=True)
        _check_positive("epsilon", epsilon, allow_zero=True)
        self.rho, self.momentum, self.epsilon, self.centered = float(rho), float(momentum), float(epsilon), bool(centered)

    def _hyper(self):
        return {"rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon, "centered": self.centered}

    def _update(self, w, g, slots, lr, cast):
        kernels.load_update("rmsprop")(w, g, slots["rms"], slots["mg"], slots["momentum"], cast(lr),
                                    cast(self.rho), cast(self.momentum), cast(self.epsilon), self.centered)


class Ftrl(Optimizer):
    """FTRL-proximal (TF's ApplyFtrl) with l1, l2 and beta; accumulator starts at 0.1.

    FTRL computes the weights from its accumulators, so with TF's initial accumulator 0.1 the first
    step shrinks dense initial weights (an RNN's) almost to zero, as TF's does; for recurrent nets
    pass a small ``initial_accumulator_value`` (1e-4 learns every task in the tests)."""

    slots = ("accumulator", "linear")
    name = "Ftrl"

    def __init__(self, learning_rate=0.001, learning_rate_power=-0.5, initial_accumulator_value=0.1,
                 l1_regularization_strength=0.0, l2_regularization_strength=0.0, beta=0.0, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if learning_rate_power > 0:
            raise ValueError(f"learning_rate_power: expected <= 0, got {learning_rate_power!r}")
        _check_positive("initial_accumulator_value", initial_accumulator_value,
                        allow_zero=learning_rate_power == 0)
        for key, value in (("l1_regularization_strength", l1_regularization_strength),
                           ("l2_regularization_strength", l2_regularization_strength), ("beta", beta)):
            _check_positive(key, value, allow_zero=True)
        self.learning_rate_power = float(learning_rate_power)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.l1, self.l2, self.beta = float(l1_regularization_strength), float(l2_regularization_strength), float(beta)

    def _hyper(self):
        return {"learning_rate_power": self.learning_rate_power,
                "initial_accumulator_value": self.initial_accumulator_value,
                "l1_regularization_strength": self.l1, "l2_regularization_strength": self.l2, "beta": self.beta}

    def _init_slot(self, name, param):
        value = self.initial_accumulator_value if name == "accumulator" else 0.0
        return np.full_like(param, value)

    def _update(self, w, g, slots, lr, cast):
        kernels.load_update("ftrl")(w, g, slots["accumulator"], slots["linear"], cast(lr),
                                 cast(self.learning_rate_power), cast(self.l1), cast(self.l2), cast(self.beta))


NAMES = {"SGD": SGD, "Momentum": Momentum, "Adagrad": Adagrad, "Adam": Adam, "RMSProp": RMSProp, "Ftrl": Ftrl}


def from_config(config):
    """The optimizer that ``get_config()`` described (ValueError for one it can not describe: a
    subclass, or a learning rate given as a plain callable)."""
    config = dict(config)
    kind, lr = config.pop("class", None), config.pop("learning_rate", None)
    if kind not in NAMES:
        raise ValueError(f"optimizer class {kind!r}: expected one of {tuple(NAMES)}")
    if isinstance(lr, dict):
        lr = dict(lr)
        if lr.pop("class", None) != "ExponentialDecay":
            raise ValueError(f"learning rate schedule {lr!r}: only ExponentialDecay is known")
        lr = ExponentialDecay(**lr)
    elif lr is None:
        raise ValueError(f"{kind}: its learning rate is a Python callable, which a file can not hold")
    return NAMES[kind](learning_rate=lr, **config)


def get(optimizer, learning_rate=0.05, clipnorm=5.0):
    """An optimizer from TF's string names, or an :class:`Optimizer` instance (used as is).

    Names ('SGD', 'Momentum', 'Adagrad', 'Adam', 'RMSProp', 'Ftrl'; case-sensitive as in TF) get TF's
    estimator treatment: ``learning_rate`` (0.05) and per-tensor ``clipnorm`` (5.0). A zero-argument
    callable returning an Optimizer is called. Anything else is a ValueError naming what is accepted.
    """
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        if optimizer not in NAMES:
            raise ValueError(f"Unsupported optimizer name: {optimizer}. Supported names are: {tuple(NAMES)}")
        return NAMES[optimizer](learning_rate=learning_rate, clipnorm=clipnorm)
    if callable(optimizer):
        made = optimizer()
        if isinstance(made, Optimizer):
            return made
    raise ValueError(f"optimizer: expected one of {tuple(NAMES)} or a minirnn.optimizers.Optimizer, "
                     f"got {optimizer!r}")
