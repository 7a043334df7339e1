"""Optimizer update rules on CPU: each rule of :mod:`.updates` applied element by element in one
compiled loop over flat arrays, writing the parameter and its slots in place.

The rules are the functions of ``updates.py`` themselves, compiled for single numbers and inlined
into the loop, so there is one definition of each rule. A loop makes no temporary arrays and LLVM
vectorises it, where a Numba array expression of the same rule allocates a temporary per operation.
In float32, a rule's terms with a Python float constant (Adam's ``1.0 - beta1``) are computed in
float64 here and rounded when stored; NumPy keeps them in float32 (tests allow 2e-5 between them).
"""

import numpy as np
from numba.extending import register_jitable

from . import updates
from ._jit import kernel_jit

_sgd = register_jitable(updates.sgd)
_momentum = register_jitable(updates.momentum)
_adagrad = register_jitable(updates.adagrad)
_adam = register_jitable(updates.adam)
_rmsprop = register_jitable(updates.rmsprop)
_ftrl = register_jitable(updates.ftrl)


@kernel_jit
def sgd(w, g, lr):
    for i in range(w.shape[0]):
        w[i], = _sgd(w[i], g[i], lr)


@kernel_jit
def momentum(w, g, accum, lr, momentum, nesterov):
    for i in range(w.shape[0]):
        w[i], accum[i] = _momentum(w[i], g[i], accum[i], lr, momentum, nesterov)


@kernel_jit
def adagrad(w, g, accum, lr, epsilon):
    for i in range(w.shape[0]):
        w[i], accum[i] = _adagrad(w[i], g[i], accum[i], lr, epsilon)


@kernel_jit
def adam(w, g, m, v, lr_t, beta1, beta2, epsilon):
    for i in range(w.shape[0]):
        w[i], m[i], v[i] = _adam(w[i], g[i], m[i], v[i], lr_t, beta1, beta2, epsilon)


@kernel_jit
def rmsprop(w, g, ms, mg, mom, lr, rho, momentum, epsilon, centered):
    for i in range(w.shape[0]):
        w[i], ms[i], mg[i], mom[i] = _rmsprop(w[i], g[i], ms[i], mg[i], mom[i], lr, rho, momentum, epsilon,
                                              centered)


@kernel_jit
def ftrl(w, g, accum, linear, lr, lr_power, l1, l2, beta):
    for i in range(w.shape[0]):
        w[i], accum[i], linear[i] = _ftrl(w[i], g[i], accum[i], linear[i], lr, lr_power, l1, l2, beta)


@kernel_jit
def sum_squares(g):
    """sum(g^2), accumulated in float64, in one pass (no float64 copy of g)."""
    s = 0.0
    for i in range(g.shape[0]):
        v = np.float64(g[i])
        s += v * v
    return s


LOOPS = {"sgd": sgd, "momentum": momentum, "adagrad": adagrad, "adam": adam, "rmsprop": rmsprop,
         "ftrl": ftrl, "sum_squares": sum_squares}
