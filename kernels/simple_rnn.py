"""Simple (Elman) RNN cell with tanh: Numba forward and backprop-through-time, side by side.

Shapes: B batch, T time, D input features, H units.
Weights (Keras layout): kernel W [D, H], recurrent_kernel U [H, H], bias b [H]. State h [B, H].

Forward, for each step t and row with mask[b, t] true::

    h_t = tanh(x_t W + h_{t-1} U + b)            (the output y_t)

A masked step keeps h; its output repeats the previous output (zeros before the first valid step),
or is zero with ``zero_output_for_mask``. Its input gets no gradient.

Backward, per valid step, with dh = dh_t (from t+1) + dy_t::

    da = dh * (1 - h_t^2)                        (through tanh)
    dh_{t-1} = da U^T
    dW += x_t^T da    dU += h_{t-1}^T da    db += sum_b da    dx_t = da W^T

The input projection, dW, dU and dx are single large products over all steps; only h_{t-1} U and
da U^T run per step, inside one compiled loop (see ``lstm.py`` for the design notes).
"""

import numpy as np

from ._jit import (add_column_sums, add_rows, batch_major, check_gradient_buffers, copy_rows, copy_time_major,
                   input_product, kernel_jit, step_product, tanh)
from ._threads import small_products_in_blas
from .workspace import scratch


@kernel_jit
def _forward_loop(x, mask, h0, W, U, bias, zero_output_for_mask, blas_steps, x_tm, xw, hs):
    B, T, D = x.shape
    H = U.shape[0]
    copy_time_major(x, x_tm)
    input_product(x_tm.reshape(T * B, D), W, xw.reshape(T * B, H), blas_steps)  # all steps at once
    copy_rows(hs[0], h0)                           # hs[t] = h_{t-1}; hs[t+1] = h_t
    y = np.empty((B, T, H), dtype=x.dtype)
    zr = np.empty((B, H), dtype=x.dtype)
    UT = np.ascontiguousarray(U.T)
    for t in range(T):
        step_product(hs[t], U, UT, zr, blas_steps)  # h_{t-1} U
        for b in range(B):
            if not mask[b, t]:                     # masked: carry the state, repeat the output
                for j in range(H):
                    hs[t + 1, b, j] = hs[t, b, j]
                    y[b, t, j] = 0.0 if zero_output_for_mask or t == 0 else y[b, t - 1, j]
                continue
            for j in range(H):                     # (indices, not per-row views: see lstm.py)
                h = tanh(xw[t, b, j] + zr[b, j] + bias[j])
                hs[t + 1, b, j] = h
                y[b, t, j] = h
    return y


@kernel_jit
def _backward_loop(dy, dh_T, mask, x_tm, W, U, hs, zero_output_for_mask, dW, dU, db, need_dx, blas_steps,
                   da):
    T, B, D = x_tm.shape
    one = x_tm.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
    H = U.shape[0]
    UT = np.ascontiguousarray(U.T)
    # da [T, B, H]: the gradient of the pre-activation
    dh = dh_T.copy()
    dy_carry = np.zeros((B, H), dtype=hs.dtype)    # output gradient repeated over masked steps
    dh_rec = np.empty((B, H), dtype=hs.dtype)
    for t in range(T - 1, -1, -1):
        for b in range(B):
            if not mask[b, t]:
                for j in range(H):
                    da[t, b, j] = 0.0
                    if not zero_output_for_mask:
                        dy_carry[b, j] += dy[b, t, j]
                continue
            for j in range(H):
                dh_j = dh[b, j] + dy[b, t, j] + dy_carry[b, j]
                dy_carry[b, j] = 0.0
                da[t, b, j] = dh_j * (one - hs[t + 1, b, j] * hs[t + 1, b, j])   # through tanh
        step_product(da[t], UT, U, dh_rec, blas_steps)           # dh_{t-1} = da U^T
        for b in range(B):
            if mask[b, t]:
                for j in range(H):
                    dh[b, j] = dh_rec[b, j]
    da2 = da.reshape(T * B, H)
    add_rows(dW, np.dot(x_tm.reshape(T * B, D).T, da2))
    add_rows(dU, np.dot(hs.reshape((T + 1) * B, H)[:T * B].T, da2))
    add_column_sums(db, da2)
    if need_dx:
        dx = batch_major(np.dot(da2, np.ascontiguousarray(W.T)).reshape(T, B, D))
    else:
        dx = np.empty((0, 0, 0), dtype=hs.dtype)
    return dx, dh


def forward(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False, workspace=None):
    """Simple RNN forward: x [B, T, D], mask [B, T] bool, states0 (h0,) -> (y [B, T, H], (h_T,), saved).

    ``workspace``: see :func:`minirnn.kernels.lstm.forward`."""
    (h0,) = states0
    B, T, D = x.shape
    H = h0.shape[1]
    x_tm, xw, hs = scratch(workspace, "forward", x.dtype, (T, B, D), (T, B, H), (T + 1, B, H))
    y = _forward_loop(x, mask, h0, kernel, recurrent_kernel, bias, zero_output_for_mask,
                      small_products_in_blas(), x_tm, xw, hs)
    saved = (mask, x_tm, kernel, recurrent_kernel, hs, zero_output_for_mask, workspace)
    return y, (hs[x.shape[1]].copy(),), saved


def backward(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """Simple RNN BPTT: adds into dkernel, drecurrent_kernel, dbias; returns (dx or None, (dh0,))."""
    mask, x_tm, W, U, hs, zero_output_for_mask, workspace = saved
    check_gradient_buffers(W, U, dkernel, drecurrent_kernel, dbias, (W.shape[1],))
    (dh_T,) = dstates_T
    (da,) = scratch(workspace, "backward", hs.dtype, hs[1:].shape)
    dx, dh0 = _backward_loop(dy, dh_T, mask, x_tm, W, U, hs, zero_output_for_mask,
                             dkernel, drecurrent_kernel, dbias, need_dx, small_products_in_blas(), da)
    return (dx if need_dx else None), (dh0,)
