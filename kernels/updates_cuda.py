"""Optimizer update rules on CUDA: the rules of ``updates.py``, one fused elementwise kernel each.

Every kernel updates a flat parameter ``w`` [n] in place from its gradient ``g`` [n] and slots,
one thread per element, with the same expressions (and order of operations) as ``updates.py``::

    sgd       w -= lr * g
    momentum  accum = m * accum + g;  w -= lr * accum  (Nesterov: lr * (g + m * accum))
    adagrad   accum += g^2;  w -= lr * g / (sqrt(accum) + eps)
    adam      m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  w -= lr_t m / (sqrt(v) + eps)
    rmsprop   ms = rho ms + (1-rho) g^2 (centered: mg, ms - mg^2); with momentum TF's form
    ftrl      TF's ApplyFtrl (see updates.ftrl)

Clipping happens on the device too, with no host round trip: :func:`sum_squares` adds each
gradient's sum of squares (in float64) into a small device vector, :func:`clip_scales` turns it into
one factor per tensor (``clipnorm``: c / max(||g||, c)) or one for all (``global_clipnorm``:
c / max(global norm, c)), and every update kernel multiplies its gradient by ``scales[k]`` first.
Hyper-parameters arrive as scalars of the parameter's dtype, as in ``updates.py``; the update
kernels compute in the parameter's dtype. The clipping kernels compute in float64 on purpose (the
sums of squares and the norms, as the host's clipping does); only the final scale is stored in the
parameter's dtype.
"""

import functools
import math

import numpy as np
from numba import cuda

from . import cuda_common as cc

THREADS = 256


def _blocks(n):
    return max(1, (n + THREADS - 1) // THREADS)


@cuda.jit
def _sum_squares(g, out, k):
    # out[k] += sum g^2 (float64), a grid-stride loop and one atomic add per thread
    s = 0.0
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for i in range(start, g.shape[0], stride):
        v = float(g[i])
        s += v * v
    cuda.atomic.add(out, k, s)


def sum_squares(g, out, k):
    """out[k] += sum(g ** 2) in float64, for a flat device array g and a float64 device vector out."""
    if g.size:
        _sum_squares[min(_blocks(g.size), 64), THREADS](g, out, k)


@cuda.jit
def _clip_scales(sumsq, scales, clip, per_tensor):
    k = cuda.grid(1)
    if k >= scales.shape[0]:
        return
    if per_tensor:                                 # tf.clip_by_norm: each tensor on its own
        norm = math.sqrt(sumsq[k])
    else:                                          # tf.clip_by_global_norm: all tensors together
        total = 0.0
        for i in range(sumsq.shape[0]):
            total += sumsq[i]
        norm = math.sqrt(total)
    scales[k] = clip / norm if norm > clip else 1.0


def clip_scales(sumsq, scales, clip, per_tensor):
    """scales[k] = clip / max(norm, clip) per tensor (or over all tensors), on the device."""
    _clip_scales[_blocks(scales.size), THREADS](sumsq, scales, float(clip), bool(per_tensor))


@functools.lru_cache(maxsize=None)
def kernels(dtype):
    """The update kernels for one float dtype (their constants have the parameter's dtype)."""
    one, two, zero = (np.dtype(dtype).type(v) for v in (1.0, 2.0, 0.0))

    @cuda.jit
    def sgd(w, g, scales, k, lr):
        i = cuda.grid(1)
        if i < w.shape[0]:
            gi = g[i] * scales[k]
            w[i] -= lr * gi

    @cuda.jit
    def momentum(w, g, scales, k, accum, lr, mom, nesterov):
        i = cuda.grid(1)
        if i < w.shape[0]:
            gi = g[i] * scales[k]
            a = mom * accum[i] + gi
            accum[i] = a
            if nesterov:
                w[i] -= lr * (gi + mom * a)
            else:
                w[i] -= lr * a

    @cuda.jit
    def adagrad(w, g, scales, k, accum, lr, epsilon):
        i = cuda.grid(1)
        if i < w.shape[0]:
            gi = g[i] * scales[k]
            a = accum[i] + gi * gi
            accum[i] = a
            w[i] -= lr * gi / (math.sqrt(a) + epsilon)

    @cuda.jit
    def adam(w, g, scales, k, m, v, lr_t, beta1, beta2, epsilon):
        i = cuda.grid(1)
        if i < w.shape[0]:
            gi = g[i] * scales[k]
            mi = beta1 * m[i] + (one - beta1) * gi
            vi = beta2 * v[i] + (one - beta2) * gi * gi
            m[i], v[i] = mi, vi
            w[i] -= lr_t * mi / (math.sqrt(vi) + epsilon)

    @cuda.jit
    def rmsprop(w, g, scales, k, ms, mg, mom, lr, rho, momentum_, epsilon, centered):
        i = cuda.grid(1)
        if i < w.shape[0]:
            gi = g[i] * scales[k]
            s = rho * ms[i] + (one - rho) * gi * gi
            ms[i] = s
            denom = s
            if centered:
                mgi = rho * mg[i] + (one - rho) * gi
                mg[i] = mgi
                denom = s - mgi * mgi
            if momentum_ > zero:
                mo = momentum_ * mom[i] + lr * gi / math.sqrt(denom + epsilon)
                mom[i] = mo
                w[i] -= mo
            else:
                w[i] -= lr * gi / (math.sqrt(denom) + epsilon)

    @cuda.jit
    def ftrl(w, g, scales, k, accum, linear, lr, lr_power, l1, l2, beta):
        i = cuda.grid(1)
        if i < w.shape[0]:
            gi = g[i] * scales[k]
            n = accum[i]
            n_new = n + gi * gi
            z = linear[i] + gi - (math.pow(n_new, -lr_power) - math.pow(n, -lr_power)) / lr * w[i]
            linear[i] = z
            q = math.pow(n_new, -lr_power) / lr + two * l2 + beta / lr
            if abs(z) > l1:
                sign = one if z > zero else -one
                w[i] = (sign * l1 - z) / q
            else:
                w[i] = zero
            accum[i] = n_new

    return {"sgd": sgd, "momentum": momentum, "adagrad": adagrad, "adam": adam, "rmsprop": rmsprop,
            "ftrl": ftrl}


def launch(rule, w, g, scales, k, *args):
    """Run update ``rule`` on flat device arrays w, g (and the slots in ``args``)."""
    kernel = kernels(np.dtype(w.dtype).name)[rule]
    if w.size:
        kernel[_blocks(w.size), THREADS](w, g, scales, k, *args)


def launched_kernels(dtype):
    """[(kernel, argument types)] of this module's launches for ``dtype`` (see ``cuda_common``)."""
    t = cc.ArgTypes(dtype)
    k = kernels(np.dtype(dtype).name)
    f, a1, i, b = t.f, t.a1, t.i, t.b
    head = (a1, a1, a1, i)                                     # w, g, scales, k
    return [(_sum_squares, (a1, t.a1_f64, i)),
            (_clip_scales, (t.a1_f64, a1, t.f64, b)),
            (k["sgd"], head + (f,)),
            (k["momentum"], head + (a1, f, f, b)),
            (k["adagrad"], head + (a1, f, f)),
            (k["adam"], head + (a1, a1, f, f, f, f)),
            (k["rmsprop"], head + (a1, a1, a1, f, f, f, f, b)),
            (k["ftrl"], head + (a1, a1, f, f, f, f, f))]
