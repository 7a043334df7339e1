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

from ._jit import (add_column_sums, add_row, add_rows, batch_major, check_gradient_buffers, copy_row, copy_rows,
                   kernel_jit, tanh, time_major, zero_row)


@kernel_jit
def _forward_loop(x, mask, h0, W, U, bias, zero_output_for_mask):
    B, T, D = x.shape
    H = U.shape[0]
    x_tm = time_major(x)
    xw = np.dot(x_tm.reshape(T * B, D), W).reshape(T, B, H)   # input projection, all steps
    hs = np.empty((T + 1, B, H), dtype=x.dtype)    # hs[t] = h_{t-1}; hs[t+1] = h_t
    copy_rows(hs[0], h0)
    y = np.empty((B, T, H), dtype=x.dtype)
    zr = np.empty((B, H), dtype=x.dtype)
    for t in range(T):
        np.dot(hs[t], U, zr)                       # h_{t-1} U
        for b in range(B):
            h_new, y_t = hs[t + 1, b], y[b, t]
            if not mask[b, t]:                     # masked: carry the state, repeat the output
                copy_row(h_new, hs[t, b])
                if zero_output_for_mask or t == 0:
                    zero_row(y_t)
                else:
                    copy_row(y_t, y[b, t - 1])
                continue
            a_row, z_row = xw[t, b], zr[b]
            for j in range(H):
                h = tanh(a_row[j] + z_row[j] + bias[j])
                h_new[j] = h
                y_t[j] = h
    return y, hs, x_tm


@kernel_jit
def _backward_loop(dy, dh_T, mask, x_tm, W, U, hs, zero_output_for_mask, dW, dU, db, need_dx):
    T, B, D = x_tm.shape
    one = x_tm.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
    H = U.shape[0]
    UT = np.ascontiguousarray(U.T)
    da = np.empty((T, B, H), dtype=hs.dtype)       # gradient of the pre-activation
    dh = dh_T.copy()
    dy_carry = np.zeros((B, H), dtype=hs.dtype)    # output gradient repeated over masked steps
    dh_rec = np.empty((B, H), dtype=hs.dtype)
    for t in range(T - 1, -1, -1):
        for b in range(B):
            da_row, dy_t, carry = da[t, b], dy[b, t], dy_carry[b]
            if not mask[b, t]:
                zero_row(da_row)
                if not zero_output_for_mask:
                    add_row(carry, dy_t)
                continue
            h_t, dh_b = hs[t + 1, b], dh[b]
            for j in range(H):
                dh_j = dh_b[j] + dy_t[j] + carry[j]
                carry[j] = 0.0
                da_row[j] = dh_j * (one - h_t[j] * h_t[j])       # through tanh
        np.dot(da[t], UT, dh_rec)                                # dh_{t-1} = da U^T
        for b in range(B):
            if mask[b, t]:
                copy_row(dh[b], dh_rec[b])
    da2 = da.reshape(T * B, H)
    add_rows(dW, np.dot(x_tm.reshape(T * B, D).T, da2))
    add_rows(dU, np.dot(hs.reshape((T + 1) * B, H)[:T * B].T, da2))
    add_column_sums(db, da2)
    if need_dx:
        dx = batch_major(np.dot(da2, np.ascontiguousarray(W.T)).reshape(T, B, D))
    else:
        dx = np.empty((0, 0, 0), dtype=hs.dtype)
    return dx, dh


def forward(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False):
    """Simple RNN forward: x [B, T, D], mask [B, T] bool, states0 (h0,) -> (y [B, T, H], (h_T,), saved)."""
    (h0,) = states0
    y, hs, x_tm = _forward_loop(x, mask, h0, kernel, recurrent_kernel, bias, zero_output_for_mask)
    saved = (mask, x_tm, kernel, recurrent_kernel, hs, zero_output_for_mask)
    return y, (hs[x.shape[1]].copy(),), saved


def backward(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """Simple RNN BPTT: adds into dkernel, drecurrent_kernel, dbias; returns (dx or None, (dh0,))."""
    mask, x_tm, W, U, hs, zero_output_for_mask = saved
    check_gradient_buffers(W, U, dkernel, drecurrent_kernel, dbias, (W.shape[1],))
    (dh_T,) = dstates_T
    dx, dh0 = _backward_loop(dy, dh_T, mask, x_tm, W, U, hs, zero_output_for_mask,
                             dkernel, drecurrent_kernel, dbias, need_dx)
    return (dx if need_dx else None), (dh0,)
