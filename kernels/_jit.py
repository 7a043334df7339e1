"""The one decorator every Numba kernel uses, layout helpers, and the float32 activations.

``kernel_jit`` compiles with ``cache=True`` so the second process starts warm. Numba raises
``RuntimeError`` at decoration time when it finds no writable cache directory (a read-only install
with no writable home); then the kernel is compiled without a cache instead of breaking the import.
Point ``NUMBA_CACHE_DIR`` at a writable folder to keep a cache in that case.

fastmath: contraction (FMA), reassociation, reciprocal and no-signed-zero flags only. Never ``nnan``
or ``ninf``: NaN and inf in the inputs must come out as NaN/inf, not as garbage.

Activations: in float64 the exact ``np.tanh`` and ``1 / (1 + exp(-x))`` (the golden tests need 1e-9).
In float32 a rational approximation of tanh (the minimax form Eigen uses for float): libm's ``tanhf``
is a scalar call LLVM cannot vectorise, and it dominated small steps. Max abs error ~3e-7 over the
whole line; NaN propagates; it saturates to +-1 beyond |x| ~ 7.9.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

FASTMATH = {"contract", "arcp", "nsz", "reassoc"}
OPTIONS = dict(nogil=True, error_model="numpy", fastmath=FASTMATH)


def kernel_jit(fn):
    """``njit`` with the project's options and a guarded on-disk cache."""
    try:
        return njit(cache=True, **OPTIONS)(fn)
    except RuntimeError:  # no writable cache location: compile per process instead
        return njit(cache=False, **OPTIONS)(fn)


# Copies are written as loops: each array-to-array slice assignment (``a[t, b] = x[b, t]``) costs
# Numba about half a second of compile time, and every first run of a kernel pays it.

@kernel_jit
def copy_row(dst, src):
    """dst[:] = src, for two 1-D arrays of the same length."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@kernel_jit
def add_row(dst, src):
    """dst += src, for two 1-D arrays of the same length."""
    for j in range(dst.shape[0]):
        dst[j] += src[j]


@kernel_jit
def zero_row(dst):
    """dst[:] = 0, for a 1-D array."""
    for j in range(dst.shape[0]):
        dst[j] = 0.0


@kernel_jit
def copy_rows(dst, src):
    """dst[:] = src, for two 2-D arrays of the same shape."""
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] = src[i, j]


@kernel_jit
def add_rows(dst, src):
    """dst += src, for two 2-D arrays of the same shape."""
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] += src[i, j]


@kernel_jit
def add_column_sums(dst, a):
    """dst += a.sum(axis=0), for a 2-D ``a`` [N, K] and a 1-D ``dst`` [K] (``sum(axis=0)`` alone
    costs Numba over a second of compile time)."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            dst[j] += a[i, j]


@kernel_jit
def time_major(x):
    """[B, T, D] -> a time-major copy [T, B, D], so that each step's rows are contiguous."""
    B, T, D = x.shape
    x_tm = np.empty((T, B, D), dtype=x.dtype)
    for b in range(B):
        for t in range(T):
            for d in range(D):
                x_tm[t, b, d] = x[b, t, d]
    return x_tm


@kernel_jit
def batch_major(a_tm):
    """[T, B, D] -> a batch-major copy [B, T, D]."""
    T, B, D = a_tm.shape
    a = np.empty((B, T, D), dtype=a_tm.dtype)
    for b in range(B):
        for t in range(T):
            for d in range(D):
                a[b, t, d] = a_tm[t, b, d]
    return a


def check_gradient_buffers(W, U, dW, dU, db, bias_shape):
    """Compiled loops do not check shapes: refuse gradient buffers that do not fit the weights."""
    for name, buf, shape in (("dkernel", dW, W.shape), ("drecurrent_kernel", dU, U.shape),
                             ("dbias", db, bias_shape)):
        if buf.shape != tuple(shape) or buf.dtype != W.dtype:
            raise ValueError(f"{name}: expected a {W.dtype} buffer of shape {tuple(shape)}, "
                             f"got {buf.dtype} {buf.shape}")


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
