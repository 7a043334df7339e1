"""Optimizer update rules, one function per rule, written element by element.

Each rule takes a parameter ``w``, its gradient ``g``, its slots and the hyper-parameters, and
returns the new ``(w, *slots)``. It uses only arithmetic, ``np.sqrt``, ``np.sign`` and ``np.where``,
so the same function works on whole NumPy arrays (the readable reference, and the fallback without
Numba: :func:`in_place`) and on single numbers inside a compiled loop (:mod:`.updates_cpu`: one pass
over the elements, no temporary arrays). Hyper-parameters arrive as scalars of the parameter's dtype.

Notation: w parameter, g gradient, lr the learning rate of this step.
"""

import numpy as np


def sgd(w, g, lr):
    """w -= lr * g"""
    return (w - lr * g,)


def momentum(w, g, accum, lr, momentum, nesterov):
    """TF's MomentumOptimizer: accum = m * accum + g;  w -= lr * accum  (Nesterov: lr * (g + m * accum))."""
    accum = momentum * accum + g
    step = lr * (g + momentum * accum) if nesterov else lr * accum
    return w - step, accum


def adagrad(w, g, accum, lr, epsilon):
    """accum += g^2;  w -= lr * g / (sqrt(accum) + epsilon)"""
    accum = accum + g * g
    return w - lr * g / (np.sqrt(accum) + epsilon), accum


def adam(w, g, m, v, lr_t, beta1, beta2, epsilon):
    """m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  w -= lr_t m / (sqrt(v) + eps), lr_t bias-corrected."""
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g * g
    return w - lr_t * m / (np.sqrt(v) + epsilon), m, v


def rmsprop(w, g, ms, mg, mom, lr, rho, momentum, epsilon, centered):
    """ms = rho ms + (1-rho) g^2;  denom = ms (centered: ms - mg^2, mg = rho mg + (1-rho) g).
    Without momentum (Keras): w -= lr g / (sqrt(denom) + eps).
    With momentum (TF's ApplyRMSProp kernel, epsilon inside the root):
    mom = momentum mom + lr g / sqrt(denom + eps);  w -= mom."""
    ms = rho * ms + (1.0 - rho) * g * g
    denom = ms
    if centered:
        mg = rho * mg + (1.0 - rho) * g
        denom = ms - mg * mg
    if momentum > 0.0:
        mom = momentum * mom + lr * g / np.sqrt(denom + epsilon)
        return w - mom, ms, mg, mom
    return w - lr * g / (np.sqrt(denom) + epsilon), ms, mg, mom


def ftrl(w, g, accum, linear, lr, lr_power, l1, l2, beta):
    """FTRL-proximal (TF's ApplyFtrl), per coordinate:
    n' = n + g^2;  z += g - (n'^-p - n^-p) / lr * w;  q = n'^-p / lr + 2 l2 + beta / lr;
    w = (sign(z) l1 - z) / q  if |z| > l1 else 0;  n = n'.   (p = lr_power, default -0.5)"""
    new_accum = accum + g * g
    linear = linear + g - (new_accum ** -lr_power - accum ** -lr_power) / lr * w
    quadratic = new_accum ** -lr_power / lr + 2.0 * l2 + beta / lr
    w = np.where(np.abs(linear) > l1, (np.sign(linear) * l1 - linear) / quadratic, 0.0)
    return w, new_accum, linear


def sum_squares(g):
    """sum(g^2), accumulated in float64: the norm that gradient clipping compares."""
    return np.sum(np.square(g, dtype=np.float64))


RULES = {"sgd": sgd, "momentum": momentum, "adagrad": adagrad, "adam": adam, "rmsprop": rmsprop,
         "ftrl": ftrl}
SLOTS = {"sgd": 0, "momentum": 1, "adagrad": 1, "adam": 2, "rmsprop": 3, "ftrl": 2}


def in_place(name):
    """Rule ``name`` as a NumPy function that updates ``(w, g, *slots, *hyper)`` in place."""
    rule, n_slots = RULES[name], SLOTS[name]

    def update(w, g, *args):
        slots = args[:n_slots]
        for array, value in zip((w,) + slots, rule(w, g, *args)):
            array[...] = value
    update.__name__ = update.__qualname__ = name
    return update
