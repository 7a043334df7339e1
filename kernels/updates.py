"""Optimizer update rules, one function per rule, on flat (1-D) parameter, gradient and slot arrays.

Written as NumPy array expressions that update in place: run as plain NumPy they are the readable
reference; compiled by Numba (:func:`compiled`) each expression becomes one fused loop (rmsprop and
ftrl keep one or two temporaries). Hyper-parameters arrive as scalars of the parameter's dtype.

Notation: w parameter, g gradient, lr the learning rate of this step.
"""

import numpy as np


def sgd(w, g, lr):
    """w -= lr * g"""
    w -= lr * g


def momentum(w, g, accum, lr, momentum, nesterov):
    """TF's MomentumOptimizer: accum = m * accum + g;  w -= lr * accum  (Nesterov: lr * (g + m * accum))."""
    accum[:] = momentum * accum + g
    if nesterov:
        w -= lr * (g + momentum * accum)
    else:
        w -= lr * accum


def adagrad(w, g, accum, lr, epsilon):
    """accum += g^2;  w -= lr * g / (sqrt(accum) + epsilon)"""
    accum += g * g
    w -= lr * g / (np.sqrt(accum) + epsilon)


def adam(w, g, m, v, lr_t, beta1, beta2, epsilon):
    """m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  w -= lr_t m / (sqrt(v) + eps), lr_t bias-corrected."""
    m[:] = beta1 * m + (1.0 - beta1) * g
    v[:] = beta2 * v + (1.0 - beta2) * g * g
    w -= lr_t * m / (np.sqrt(v) + epsilon)


def rmsprop(w, g, ms, mg, mom, lr, rho, momentum, epsilon, centered):
    """ms = rho ms + (1-rho) g^2;  denom = ms (centered: ms - mg^2, mg = rho mg + (1-rho) g).
    Without momentum (Keras): w -= lr g / (sqrt(denom) + eps).
    With momentum (TF's ApplyRMSProp kernel, epsilon inside the root):
    mom = momentum mom + lr g / sqrt(denom + eps);  w -= mom."""
    ms[:] = rho * ms + (1.0 - rho) * g * g
    if centered:
        mg[:] = rho * mg + (1.0 - rho) * g
        denom = ms - mg * mg
    else:
        denom = ms
    if momentum > 0.0:
        mom[:] = momentum * mom + lr * g / np.sqrt(denom + epsilon)
        w -= mom
    else:
        w -= lr * g / (np.sqrt(denom) + epsilon)


def ftrl(w, g, accum, linear, lr, lr_power, l1, l2, beta):
    """FTRL-proximal (TF's ApplyFtrl), per coordinate:
    n' = n + g^2;  z += g - (n'^-p - n^-p) / lr * w;  q = n'^-p / lr + 2 l2 + beta / lr;
    w = (sign(z) l1 - z) / q  if |z| > l1 else 0;  n = n'.   (p = lr_power, default -0.5)"""
    new_accum = accum + g * g
    linear += g - (new_accum ** -lr_power - accum ** -lr_power) / lr * w
    quadratic = new_accum ** -lr_power / lr + 2.0 * l2 + beta / lr
    w[:] = np.where(np.abs(linear) > l1, (np.sign(linear) * l1 - linear) / quadratic, 0.0)
    accum[:] = new_accum


def sum_squares(g):
    """sum(g^2), accumulated in float64: the norm that gradient clipping compares. Compiled, it is one
    call per tensor (NumPy's ``np.sum(np.square(g, dtype=float64))`` cost about 4x as much per
    tensor in a one-off probe at the estimator's sizes, where call overhead dominates)."""
    return np.sum(np.square(g.astype(np.float64)))


RULES = {"sgd": sgd, "momentum": momentum, "adagrad": adagrad, "adam": adam, "rmsprop": rmsprop,
         "ftrl": ftrl}
_FUNCTIONS = {**RULES, "sum_squares": sum_squares}
_compiled = {}


def compiled(name):
    """The Numba-compiled rule (or ``sum_squares``), cached; the NumPy one when Numba is unavailable
    or disabled."""
    if name not in _compiled:
        from . import _numba_usable
        if _numba_usable():
            from ._jit import kernel_jit
            _compiled[name] = kernel_jit(_FUNCTIONS[name])
        else:
            _compiled[name] = _FUNCTIONS[name]
    return _compiled[name]
