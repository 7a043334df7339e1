"""sigmoid and tanh of one number, for the compiled cell loops.

In float64 the exact forms, ``1 / (1 + exp(-x))`` and ``np.tanh`` (the golden tests compare to 1e-9).

In float32 a rational approximation of tanh, the minimax form Eigen uses for float, and
``sigmoid(x) = 0.5 * tanh(x / 2) + 0.5``. Why: libm's ``tanhf`` and ``expf`` are scalar calls that
LLVM cannot vectorise, and the activations run on every gate of every unit of every step; a
polynomial ratio is a few multiply-adds and a division, which vectorise across the units. Max abs
error about 3e-7 over the whole line; NaN propagates; the result saturates to +-1 beyond |x| ~ 7.9.

The choice between the two forms is made at compile time, from the argument's type
(``numba.extending.overload``), so a float64 kernel contains no float32 code and the reverse.
"""

import numpy as np
from numba import types
from numba.extending import overload

from ._jit import OPTIONS


def tanh(x):
    """tanh of a scalar: exact in float64, a vectorisable rational approximation in float32."""
    return np.tanh(x)


def sigmoid(x):
    """Logistic sigmoid of a scalar, 1 / (1 + exp(-x)); float32 uses 0.5 * tanh(x / 2) + 0.5."""
    return 1.0 / (1.0 + np.exp(-x))


def _tanh_f32(x):
    # clamp (written so that NaN passes through unchanged), then x * P(x^2) / Q(x^2)
    clamp = np.float32(7.90531110763549805)
    if x > clamp:
        x = clamp
    if x < -clamp:
        x = -clamp
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * p / q


def _sigmoid_f32(x):
    return np.float32(0.5) * tanh(np.float32(0.5) * x) + np.float32(0.5)


def _sigmoid_exact(x):
    return 1.0 / (1.0 + np.exp(-x))


def _tanh_exact(x):
    return np.tanh(x)


@overload(tanh, jit_options=OPTIONS)
def _tanh_overload(x):
    return _tanh_f32 if x == types.float32 else _tanh_exact


@overload(sigmoid, jit_options=OPTIONS)
def _sigmoid_overload(x):
    return _sigmoid_f32 if x == types.float32 else _sigmoid_exact
