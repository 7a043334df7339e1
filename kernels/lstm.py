"""LSTM cell: Numba forward and backprop-through-time, side by side.

Shapes: B batch, T time, D input features, H units, G = 4H gate columns.
Weights (Keras layout and gate order i, f, c, o): kernel W [D, 4H], recurrent_kernel U [H, 4H],
bias b [4H]. States (h, c), each [B, H].

Forward, for each step t and row with mask[b, t] true::

    z   = x_t W + h_{t-1} U + b                  (split into z_i, z_f, z_c, z_o)
    i   = sigmoid(z_i)    f = sigmoid(z_f)    g = tanh(z_c)    o = sigmoid(z_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)                          (the output y_t)

A masked step keeps (h, c); its output repeats the previous output (zeros before the first valid
step), or is zero with ``zero_output_for_mask``. Its input gets no gradient.

Backward, per valid step, with dh = dh_t (from t+1) + dy_t and dc = dc_t (from t+1)::

    do = dh * tanh(c_t)
    dc = dc + dh * o * (1 - tanh(c_t)^2)
    dz_i = dc * g * i(1-i)    dz_f = dc * c_{t-1} * f(1-f)    dz_c = dc * i * (1-g^2)
    dz_o = do * o(1-o)
    dh_{t-1} = dz U^T         dc_{t-1} = dc * f
    dW += x_t^T dz    dU += h_{t-1}^T dz    db += sum_b dz    dx_t = dz W^T

Design: the input projection x W for every step is one large matrix product, and so are dW, dU
and dx after the loop; only h_{t-1} U (forward) and dz U^T (backward) are per step. The whole
time loop is one compiled call: Numba's ``np.dot`` goes straight to BLAS, with no Python in the
loop. Arrays are time-major inside ([T, B, ...]) so each step's rows are contiguous.
"""

import numpy as np

from ._jit import (add_column_sums, add_row, add_rows, batch_major, check_gradient_buffers, copy_row, copy_rows, kernel_jit,
                   sigmoid, tanh, time_major, zero_row)


@kernel_jit
def _cell_update(i, f, g, o, c_prev, c_new, h_new):
    """c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t), for one row of activated gates."""
    for j in range(c_prev.shape[0]):
        c_new[j] = f[j] * c_prev[j] + i[j] * g[j]
    for j in range(c_prev.shape[0]):
        h_new[j] = o[j] * tanh(c_new[j])


@kernel_jit
def _forward_loop(x, mask, h0, c0, W, U, bias, zero_output_for_mask):
    B, T, D = x.shape
    H = U.shape[0]
    G = 4 * H
    # time-major copy of the input, then the input projection for all steps at once
    x_tm = time_major(x)
    gates = np.dot(x_tm.reshape(T * B, D), W).reshape(T, B, G)
    hs = np.empty((T + 1, B, H), dtype=x.dtype)    # hs[t] = h_{t-1}: saved for backward
    cs = np.empty((T + 1, B, H), dtype=x.dtype)
    copy_rows(hs[0], h0)
    copy_rows(cs[0], c0)
    y = np.empty((B, T, H), dtype=x.dtype)
    z = np.empty((B, G), dtype=x.dtype)
    for t in range(T):
        np.dot(hs[t], U, z)                        # h_{t-1} U
        for b in range(B):
            if not mask[b, t]:                     # masked: carry the state, repeat the output
                copy_row(hs[t + 1, b], hs[t, b])
                copy_row(cs[t + 1, b], cs[t, b])
                if zero_output_for_mask or t == 0:
                    zero_row(y[b, t])
                else:
                    copy_row(y[b, t], y[b, t - 1])
                continue
            z_b, g_b = z[b], gates[t, b]          # g_b holds x_t W; it becomes the activated gates
            for j in range(G):                     # z = x_t W + h_{t-1} U + b
                g_b[j] += z_b[j] + bias[j]
            # inner loops index 0-based views: an offset index (j + 2H) makes Numba check for
            # negative indices, which stops LLVM from vectorising the loop
            g_if, g_i, g_f, g_c, g_o = g_b[:2 * H], g_b[:H], g_b[H:2 * H], g_b[2 * H:3 * H], g_b[3 * H:]
            for j in range(2 * H):                 # i, f
                g_if[j] = sigmoid(g_if[j])
            for j in range(H):                     # g (candidate)
                g_c[j] = tanh(g_c[j])
            for j in range(H):                     # o
                g_o[j] = sigmoid(g_o[j])
            _cell_update(g_i, g_f, g_c, g_o, cs[t, b], cs[t + 1, b], hs[t + 1, b])
            copy_row(y[b, t], hs[t + 1, b])
    return y, hs, cs, gates, x_tm


@kernel_jit
def _backward_loop(dy, dh_T, dc_T, mask, x_tm, W, U, gates, hs, cs, zero_output_for_mask,
                   dW, dU, db, need_dx):
    T, B, G = gates.shape
    one = gates.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
    H = G // 4
    D = x_tm.shape[2]
    UT = np.ascontiguousarray(U.T)
    dz = np.empty((T, B, G), dtype=gates.dtype)    # gradient of the gate pre-activations
    dh = dh_T.copy()
    dc = dc_T.copy()
    dy_carry = np.zeros((B, H), dtype=gates.dtype)  # output gradient repeated over masked steps
    dh_rec = np.empty((B, H), dtype=gates.dtype)
    for t in range(T - 1, -1, -1):
        for b in range(B):
            dz_row = dz[t, b]
            dy_t, carry = dy[b, t], dy_carry[b]
            if not mask[b, t]:
                zero_row(dz_row)                   # no gradient into a masked input
                if not zero_output_for_mask:
                    add_row(carry, dy_t)
                continue
            g_row = gates[t, b]
            i_, f_, g_, o_ = g_row[:H], g_row[H:2 * H], g_row[2 * H:3 * H], g_row[3 * H:]
            dz_i, dz_f, dz_c, dz_o = dz_row[:H], dz_row[H:2 * H], dz_row[2 * H:3 * H], dz_row[3 * H:]
            c_prev, c_t, dh_b, dc_b = cs[t, b], cs[t + 1, b], dh[b], dc[b]
            for j in range(H):                     # dh: from step t+1, from the output y_t
                dh_b[j] += dy_t[j] + carry[j]
                carry[j] = 0.0
            for j in range(H):                     # through h = o * tanh(c)
                tc = tanh(c_t[j])
                dz_o[j] = dh_b[j] * tc * o_[j] * (one - o_[j])
                dc_b[j] += dh_b[j] * o_[j] * (one - tc * tc)
            for j in range(H):                     # through c = f * c_prev + i * g
                dz_i[j] = dc_b[j] * g_[j] * i_[j] * (one - i_[j])
            for j in range(H):
                dz_f[j] = dc_b[j] * c_prev[j] * f_[j] * (one - f_[j])
            for j in range(H):
                dz_c[j] = dc_b[j] * i_[j] * (one - g_[j] * g_[j])
            for j in range(H):                     # dc_{t-1}
                dc_b[j] *= f_[j]
        np.dot(dz[t], UT, dh_rec)                                # dh_{t-1} = dz U^T
        for b in range(B):
            if mask[b, t]:
                copy_row(dh[b], dh_rec[b])
    # parameter gradients (and dx): one large product each over all steps
    dz2 = dz.reshape(T * B, G)
    add_rows(dW, np.dot(x_tm.reshape(T * B, D).T, dz2))
    add_rows(dU, np.dot(hs.reshape((T + 1) * B, H)[:T * B].T, dz2))
    add_column_sums(db, dz2)
    if need_dx:
        dx = batch_major(np.dot(dz2, np.ascontiguousarray(W.T)).reshape(T, B, D))
    else:
        dx = np.empty((0, 0, 0), dtype=gates.dtype)
    return dx, dh, dc


def forward(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False):
    """LSTM forward over a whole sequence.

    Parameters
    ----------
    x : [B, T, D] C-contiguous float32 or float64
    mask : [B, T] bool, True on valid steps
    states0 : (h0, c0), each [B, H]
    kernel, recurrent_kernel, bias : [D, 4H], [H, 4H], [4H] in x's dtype (Keras layout)

    Returns
    -------
    y : [B, T, H] outputs; ``y[:, -1]`` is each row's last valid output
    states : (h_T, c_T), each [B, H]
    saved : what :func:`backward` needs (time-major input, every h and c, activated gates)
    """
    h0, c0 = states0
    y, hs, cs, gates, x_tm = _forward_loop(x, mask, h0, c0, kernel, recurrent_kernel, bias,
                                           zero_output_for_mask)
    T = x.shape[1]
    saved = (mask, x_tm, kernel, recurrent_kernel, gates, hs, cs, zero_output_for_mask)
    return y, (hs[T].copy(), cs[T].copy()), saved


def backward(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """LSTM backprop through time.

    dy [B, T, H] and dstates_T (dh_T, dc_T) are the upstream gradients; ``saved`` comes from
    :func:`forward`. Adds into dkernel, drecurrent_kernel, dbias; returns (dx or None, (dh0, dc0)).
    """
    mask, x_tm, W, U, gates, hs, cs, zero_output_for_mask = saved
    check_gradient_buffers(W, U, dkernel, drecurrent_kernel, dbias, (W.shape[1],))
    dh_T, dc_T = dstates_T
    dx, dh0, dc0 = _backward_loop(dy, dh_T, dc_T, mask, x_tm, W, U, gates, hs, cs, zero_output_for_mask,
                                  dkernel, drecurrent_kernel, dbias, need_dx)
    return (dx if need_dx else None), (dh0, dc0)
