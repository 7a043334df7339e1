"""Simple RNN cell on CUDA (Numba's CUDA target): forward and backprop-through-time, side by side.

Shapes: B batch, T time, D input features, H units. Weights (Keras layout): kernel W [D, H],
recurrent_kernel U [H, H], bias b [H]. State h [B, H]. Checked against ``reference.py``.

Forward, for each step t and row with mask[b, t] true::

    h_t = tanh(x_t W + b + h_{t-1} U)            (the output y_t)

Masking: a masked step keeps h; its output repeats the previous output (zeros before the first
valid step), or is zero with ``zero_output_for_mask``; its input gets no gradient. A row with no
valid step returns its initial state. Gaps are allowed.

Backward, per valid step, with dh = dh_t (from t+1) + dy_t::

    da = dh * (1 - h_t^2)                        (through tanh; h_t is y_t at a valid step)
    dh_{t-1} = da U^T
    dW += x^T da    dU += h_prev^T da    db += sum da    dx = da W^T     (over all B * T rows)

Launches: one tiled product ``x W + b`` for every step, one fused kernel per step (``h_{t-1} U``,
tanh, masking, output). Backward: one kernel per step fusing ``da_{t+1} U^T`` with the tanh
gradient of step t, one for dh_0, then the products for dW, dU, dx and a column sum for db.

Saved by ``forward`` for ``backward`` (device arrays): x, mask, W, U, h_{t-1} of every step
[B, T, H] and the outputs y [B, T, H] (equal to h_t at valid steps).
"""

import functools
import math

import numpy as np
from numba import cuda, from_dtype

from . import cuda_common as cc


@functools.lru_cache(maxsize=None)
def _kernels(dtype, TS):
    dt = from_dtype(np.dtype(dtype))
    one, zero = np.dtype(dtype).type(1.0), np.dtype(dtype).type(0.0)
    product = cc.step_product(dtype, TS, 1)

    @cuda.jit
    def forward_step(t, xw, mask, hprev, h_T, U, y, zero_output):
        B, T, H = hprev.shape
        acc = cuda.local.array(1, dt)
        product(hprev, t, 0, H, U, 0, 0, 0, B, H, acc)             # h_{t-1} U
        j = cuda.blockIdx.x * TS + cuda.threadIdx.x
        b = cuda.blockIdx.y * TS + cuda.threadIdx.y
        if b >= B or j >= H:
            return
        if mask[b, t]:
            h = math.tanh(xw[b, t, j] + acc[0])                      # h_t = tanh(x_t W + b + h_{t-1} U)
            y[b, t, j] = h
        else:                                                      # masked: carry the state
            h = hprev[b, t, j]
            y[b, t, j] = zero if (zero_output or t == 0) else y[b, t - 1, j]
        if t + 1 < T:
            hprev[b, t + 1, j] = h
        else:
            h_T[b, j] = h

    @cuda.jit
    def backward_step(t, dy, mask, da, UT, y, dh, carry, zero_output):
        # t = -1 only finishes dh_0 = da_0 U^T
        B, T, H = da.shape
        acc = cuda.local.array(1, dt)
        K = H if t + 1 < T else 0
        product(da, t + 1, 0, K, UT, 0, 0, 0, B, H, acc)            # da_{t+1} U^T: gradient into h_t
        j = cuda.blockIdx.x * TS + cuda.threadIdx.x
        b = cuda.blockIdx.y * TS + cuda.threadIdx.y
        if b >= B or j >= H:
            return
        d_h = dh[b, j]
        if t + 1 < T and mask[b, t + 1]:
            d_h += acc[0]
        if t < 0:
            dh[b, j] = d_h
            return
        valid = mask[b, t]
        dout = zero
        if zero_output:
            if valid:
                dout = dy[b, t, j]
        elif valid:                                                # plus the outputs that repeated it
            dout = dy[b, t, j] + carry[b, j]
            carry[b, j] = zero
        else:
            carry[b, j] += dy[b, t, j]
        if not valid:                                              # masked: no gradient into x_t
            da[b, t, j] = zero
            dh[b, j] = d_h
            return
        h = y[b, t, j]
        da[b, t, j] = (d_h + dout) * (one - h * h)                 # backprop through tanh
        dh[b, j] = zero

    return forward_step, backward_step


def forward_device(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False):
    """Simple-RNN forward on device arrays (see :func:`forward`); returns device arrays."""
    x, mask, (h0,), W, U, b = cc.prepare_forward(x, mask, states0, kernel, recurrent_kernel, bias,
                                                 1, 1, lambda H: (H,))
    dtype = np.dtype(x.dtype)
    B, T, D = x.shape
    H = U.shape[0]
    xw = cuda.device_array((B, T, H), dtype=dtype)
    cc.matmul(x.reshape(B * T, D), W, xw.reshape(B * T, H), bias=b)   # x W + b, every step at once
    hprev = cuda.device_array((B, T, H), dtype=dtype)       # hprev[:, t] = h_{t-1}
    cc.set_step(hprev, 0, h0)
    y = cuda.device_array((B, T, H), dtype=dtype)
    h_T = cuda.device_array((B, H), dtype=dtype)
    step, _ = _kernels(dtype.name, cc.STEP_TILE)
    grid, block = cc.step_grid(B, H)
    zero_output = bool(zero_output_for_mask)
    for t in range(T):
        step[grid, block](t, xw, mask, hprev, h_T, U, y, zero_output)
    saved = (x, mask, W, U, hprev, y, zero_output)
    return y, (h_T,), saved


def forward(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False):
    """Simple-RNN forward on the GPU; the same contract as ``simple_rnn.forward``.

    x [B, T, D], mask [B, T], states0 (h0,) [B, H], kernel [D, H], recurrent_kernel [H, H], bias [H]
    (host or device arrays). Returns host y [B, T, H], host (h_T,), and the device ``saved``.
    """
    y, states, saved = forward_device(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask)
    return y.copy_to_host(), tuple(s.copy_to_host() for s in states), saved


def backward_device(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """Simple-RNN BPTT on device arrays: adds into the device gradient buffers; returns
    (dx device array or None, (dh0,))."""
    x, mask, W, U, hprev, y, zero_output = saved
    dtype = np.dtype(x.dtype)
    B, T, D = x.shape
    H = U.shape[0]
    dy, (dh,) = cc.prepare_backward(dy, dstates_T, (B, T, H), 1, dtype)
    carry = cc.zeros((B, H), dtype)
    da = cuda.device_array((B, T, H), dtype=dtype)  # gradient of the pre-activation
    UT = cc.transpose(U)
    _, step = _kernels(dtype.name, cc.STEP_TILE)
    grid, block = cc.step_grid(B, H)
    for t in range(T - 1, -2, -1):
        step[grid, block](t, dy, mask, da, UT, y, dh, carry, zero_output)
    da2 = da.reshape(B * T, H)
    cc.matmul(x.reshape(B * T, D), da2, dkernel, trans_a=True, accumulate=True)
    cc.matmul(hprev.reshape(B * T, H), da2, drecurrent_kernel, trans_a=True, accumulate=True)
    cc.col_sum(da2, dbias)
    dx = None
    if need_dx:
        dx = cuda.device_array((B, T, D), dtype=dtype)
        cc.matmul(da2, W, dx.reshape(B * T, D), trans_b=True)
    return dx, (dh,)


def backward(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """Simple-RNN BPTT on the GPU; the same contract as ``simple_rnn.backward`` (adds into the
    gradient buffers, host or device; returns host (dx or None, (dh0,)))."""
    x, _, W, U, *_ = saved
    cc.check_host_grads(W, U, np.empty((W.shape[1],), W.dtype), dkernel, drecurrent_kernel, dbias)
    dtype = np.dtype(x.dtype)
    grads = [cc.zeros(tuple(a.shape), dtype) for a in (dkernel, drecurrent_kernel, dbias)]
    dx, states = backward_device(dy, dstates_T, saved, *grads, need_dx=need_dx)
    for buf, g in zip((dkernel, drecurrent_kernel, dbias), grads):
        cc.add_grads_to(buf, g)
    return (None if dx is None else dx.copy_to_host()), tuple(s.copy_to_host() for s in states)

def launched_kernels(dtype):
    """[(kernel, argument types)] of this module's launches for ``dtype`` (see ``cuda_common``)."""
    t = cc.ArgTypes(dtype)
    forward_step, backward_step = _kernels(np.dtype(dtype).name, cc.STEP_TILE)
    return [(forward_step, (t.i, t.a3, t.mask, t.a3, t.a2, t.a2, t.a3, t.b)),
            (backward_step, (t.i, t.a3, t.mask, t.a3, t.a2, t.a3, t.a2, t.a2, t.b))]
