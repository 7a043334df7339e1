"""GRU cell, both Keras forms: Numba forward and backprop-through-time, side by side.

Shapes: B batch, T time, D input features, H units. Keras gate order z (update), r (reset), h.
Weights: kernel W [D, 3H], recurrent_kernel U [H, 3H]; bias [2, 3H] for ``reset_after=True``
(row 0 input bias b_i, row 1 recurrent bias b_r: the TF2 default) or [3H] for ``reset_after=False``
(the TF1 GRUCell form). State h [B, H].

Forward, for each step t and row with mask[b, t] true (x_t W split into xz, xr, xh)::

    reset_after=True                               reset_after=False
    rec = h_{t-1} U + b_r                          (b added to x_t W)
    z  = sigmoid(xz + b_iz + rec_z)                z  = sigmoid(xz + h_{t-1} U_z)
    r  = sigmoid(xr + b_ir + rec_r)                r  = sigmoid(xr + h_{t-1} U_r)
    hh = tanh(xh + b_ih + r * rec_h)               hh = tanh(xh + (r * h_{t-1}) U_h)
    h_t = z * h_{t-1} + (1 - z) * hh               (the same; h_t is the output y_t)

A masked step keeps h; its output repeats the previous output (zeros before the first valid step),
or is zero with ``zero_output_for_mask``. Its input gets no gradient.

Backward, per valid step, with dh = dh_t (from t+1) + dy_t::

    da_h = dh * (1 - z) * (1 - hh^2)               da_z = dh * (h_{t-1} - hh) * z(1-z)
    reset_after=True:   da_r = da_h * rec_h * r(1-r)
                        drec = [da_z, da_r, da_h * r];  dh_{t-1} = dh * z + drec U^T
                        dU += h_{t-1}^T drec;  db_r += sum drec
    reset_after=False:  drh = da_h U_h^T             (gradient of r * h_{t-1})
                        da_r = drh * h_{t-1} * r(1-r)
                        dh_{t-1} = dh * z + drh * r + [da_z, da_r] U_zr^T
                        dU_zr += h_{t-1}^T [da_z, da_r];  dU_h += (r * h_{t-1})^T da_h
    dW += x_t^T [da_z, da_r, da_h]   and the input bias likewise;   dx_t = [da_z, da_r, da_h] W^T

As in ``lstm.py``: input projection, weight gradients and dx are single large products over all
steps; the per-step products run inside one compiled time loop.
"""

import numpy as np

from ._jit import (add_column_sums, add_row, add_rows, batch_major, check_gradient_buffers, copy_row, copy_rows,
                   kernel_jit, sigmoid, tanh, time_major, zero_row)


@kernel_jit
def _carry_masked_row(y, hs, b, t, zero_output_for_mask):
    """A masked step: keep the state, repeat the previous output (or zero)."""
    copy_row(hs[t + 1, b], hs[t, b])
    if zero_output_for_mask or t == 0:
        zero_row(y[b, t])
    else:
        copy_row(y[b, t], y[b, t - 1])


# --------------------------------------------------------------------------------------------
# reset_after=True (TF2 default)
# --------------------------------------------------------------------------------------------

@kernel_jit
def _forward_reset_after(x, mask, h0, W, U, bias, zero_output_for_mask):
    B, T, D = x.shape
    one = x.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
    H = U.shape[0]
    x_tm = time_major(x)
    gates = np.dot(x_tm.reshape(T * B, D), W).reshape(T, B, 3 * H)  # x W; becomes z, r, hh
    rec_h = np.empty((T, B, H), dtype=x.dtype)     # h_{t-1} U_h + b_rh, saved for backward
    hs = np.empty((T + 1, B, H), dtype=x.dtype)
    copy_rows(hs[0], h0)
    y = np.empty((B, T, H), dtype=x.dtype)
    rec = np.empty((B, 3 * H), dtype=x.dtype)
    # inner loops index 0-based views (an offset index stops LLVM from vectorising, see lstm.py)
    b_i_zr, b_i_h, b_r_zr, b_r_h = bias[0, :2 * H], bias[0, 2 * H:], bias[1, :2 * H], bias[1, 2 * H:]
    for t in range(T):
        np.dot(hs[t], U, rec)                      # h_{t-1} U
        for b in range(B):
            if not mask[b, t]:
                _carry_masked_row(y, hs, b, t, zero_output_for_mask)
                continue
            g, rc, h_prev, h_new, rh = gates[t, b], rec[b], hs[t, b], hs[t + 1, b], rec_h[t, b]
            g_zr, g_z, g_r, g_h, rc_zr, rc_h = g[:2 * H], g[:H], g[H:2 * H], g[2 * H:], rc[:2 * H], rc[2 * H:]
            for j in range(2 * H):                 # z, r
                g_zr[j] = sigmoid(g_zr[j] + b_i_zr[j] + rc_zr[j] + b_r_zr[j])
            for j in range(H):                     # rec_h = h_{t-1} U_h + b_rh
                rh[j] = rc_h[j] + b_r_h[j]
            for j in range(H):                     # hh, the candidate
                g_h[j] = tanh(g_h[j] + b_i_h[j] + g_r[j] * rh[j])
            for j in range(H):                     # h = z h_{t-1} + (1 - z) hh
                h_new[j] = g_z[j] * h_prev[j] + (one - g_z[j]) * g_h[j]
            copy_row(y[b, t], h_new)
    return y, hs, gates, rec_h, x_tm


@kernel_jit
def _backward_reset_after(dy, dh_T, mask, x_tm, W, U, gates, rec_h, hs, zero_output_for_mask,
                          dW, dU, db, need_dx):
    T, B, G = gates.shape
    one = gates.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
    H = G // 3
    D = x_tm.shape[2]
    UT = np.ascontiguousarray(U.T)
    dxw = np.empty((T, B, G), dtype=gates.dtype)   # gradient of x W + b_i
    drec = np.empty((T, B, G), dtype=gates.dtype)  # gradient of h_{t-1} U + b_r
    dh = dh_T.copy()
    dy_carry = np.zeros((B, H), dtype=gates.dtype)
    dh_rec = np.empty((B, H), dtype=gates.dtype)
    for t in range(T - 1, -1, -1):
        for b in range(B):
            dxw_row, drec_row, dy_t, carry = dxw[t, b], drec[t, b], dy[b, t], dy_carry[b]
            if not mask[b, t]:
                zero_row(dxw_row)
                zero_row(drec_row)
                if not zero_output_for_mask:
                    add_row(carry, dy_t)
                continue
            g, rh, h_prev, dh_b = gates[t, b], rec_h[t, b], hs[t, b], dh[b]
            g_z, g_r, g_h = g[:H], g[H:2 * H], g[2 * H:]
            da_z, da_r, da_h = dxw_row[:H], dxw_row[H:2 * H], dxw_row[2 * H:]
            for j in range(H):                     # dh: from step t+1, from the output y_t
                dh_b[j] += dy_t[j] + carry[j]
                carry[j] = 0.0
            for j in range(H):                     # through (1 - z) * tanh
                da_h[j] = dh_b[j] * (one - g_z[j]) * (one - g_h[j] * g_h[j])
            for j in range(H):
                da_z[j] = dh_b[j] * (h_prev[j] - g_h[j]) * g_z[j] * (one - g_z[j])
            for j in range(H):                     # through r * rec_h
                da_r[j] = da_h[j] * rh[j] * g_r[j] * (one - g_r[j])
            copy_row(drec_row[:2 * H], dxw_row[:2 * H])
            drec_h = drec_row[2 * H:]
            for j in range(H):
                drec_h[j] = da_h[j] * g_r[j]
            for j in range(H):                     # direct path h_{t-1} -> h_t
                dh_b[j] *= g_z[j]
        np.dot(drec[t], UT, dh_rec)
        for b in range(B):
            if mask[b, t]:
                add_row(dh[b], dh_rec[b])
    dxw2 = dxw.reshape(T * B, G)
    drec2 = drec.reshape(T * B, G)
    add_rows(dW, np.dot(x_tm.reshape(T * B, D).T, dxw2))
    add_rows(dU, np.dot(hs.reshape((T + 1) * B, H)[:T * B].T, drec2))
    add_column_sums(db[0], dxw2)
    add_column_sums(db[1], drec2)
    if need_dx:
        dx = batch_major(np.dot(dxw2, np.ascontiguousarray(W.T)).reshape(T, B, D))
    else:
        dx = np.empty((0, 0, 0), dtype=gates.dtype)
    return dx, dh


# --------------------------------------------------------------------------------------------
# reset_after=False (TF1 GRUCell form)
# --------------------------------------------------------------------------------------------

@kernel_jit
def _forward_reset_before(x, mask, h0, W, U, bias, zero_output_for_mask):
    B, T, D = x.shape
    one = x.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
    H = U.shape[0]
    x_tm = time_major(x)
    gates = np.dot(x_tm.reshape(T * B, D), W).reshape(T, B, 3 * H)  # x W; becomes z, r, hh
    U_zr = np.ascontiguousarray(U[:, :2 * H])
    U_h = np.ascontiguousarray(U[:, 2 * H:])
    r_h = np.zeros((T, B, H), dtype=x.dtype)       # r * h_{t-1}, saved for backward
    hs = np.empty((T + 1, B, H), dtype=x.dtype)
    copy_rows(hs[0], h0)
    y = np.empty((B, T, H), dtype=x.dtype)
    rec_zr = np.empty((B, 2 * H), dtype=x.dtype)
    rec_h = np.empty((B, H), dtype=x.dtype)
    b_zr, b_h = bias[:2 * H], bias[2 * H:]
    for t in range(T):
        np.dot(hs[t], U_zr, rec_zr)                # h_{t-1} [U_z, U_r]
        for b in range(B):
            if not mask[b, t]:
                continue
            g_zr, g_r, rc, h_prev, rh = gates[t, b, :2 * H], gates[t, b, H:2 * H], rec_zr[b], hs[t, b], r_h[t, b]
            for j in range(2 * H):                 # z, r
                g_zr[j] = sigmoid(g_zr[j] + b_zr[j] + rc[j])
            for j in range(H):
                rh[j] = g_r[j] * h_prev[j]
        np.dot(r_h[t], U_h, rec_h)                 # (r * h_{t-1}) U_h
        for b in range(B):
            if not mask[b, t]:
                _carry_masked_row(y, hs, b, t, zero_output_for_mask)
                continue
            g_z, g_h, rc, h_prev, h_new = gates[t, b, :H], gates[t, b, 2 * H:], rec_h[b], hs[t, b], hs[t + 1, b]
            for j in range(H):                     # hh, the candidate
                g_h[j] = tanh(g_h[j] + b_h[j] + rc[j])
            for j in range(H):                     # h = z h_{t-1} + (1 - z) hh
                h_new[j] = g_z[j] * h_prev[j] + (one - g_z[j]) * g_h[j]
            copy_row(y[b, t], h_new)
    return y, hs, gates, r_h, x_tm


@kernel_jit
def _backward_reset_before(dy, dh_T, mask, x_tm, W, U, gates, r_h, hs, zero_output_for_mask,
                           dW, dU, db, need_dx):
    T, B, G = gates.shape
    one = gates.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
    H = G // 3
    D = x_tm.shape[2]
    U_zrT = np.ascontiguousarray(U[:, :2 * H].T)
    U_hT = np.ascontiguousarray(U[:, 2 * H:].T)
    da_zr = np.empty((T, B, 2 * H), dtype=gates.dtype)
    da_h = np.empty((T, B, H), dtype=gates.dtype)
    dh = dh_T.copy()
    dh_tot = np.zeros((B, H), dtype=gates.dtype)
    dy_carry = np.zeros((B, H), dtype=gates.dtype)
    drh = np.empty((B, H), dtype=gates.dtype)
    dh_rec = np.empty((B, H), dtype=gates.dtype)
    for t in range(T - 1, -1, -1):
        for b in range(B):
            dy_t, carry = dy[b, t], dy_carry[b]
            if not mask[b, t]:
                zero_row(da_zr[t, b])
                zero_row(da_h[t, b])
                if not zero_output_for_mask:
                    add_row(carry, dy_t)
                continue
            g_z, g_h, h_prev, dh_b, dh_tot_b = gates[t, b, :H], gates[t, b, 2 * H:], hs[t, b], dh[b], dh_tot[b]
            da_z, dah = da_zr[t, b, :H], da_h[t, b]
            for j in range(H):                     # dh: from step t+1, from the output y_t
                dh_tot_b[j] = dh_b[j] + dy_t[j] + carry[j]
                carry[j] = 0.0
            for j in range(H):                     # through (1 - z) * tanh
                dah[j] = dh_tot_b[j] * (one - g_z[j]) * (one - g_h[j] * g_h[j])
            for j in range(H):
                da_z[j] = dh_tot_b[j] * (h_prev[j] - g_h[j]) * g_z[j] * (one - g_z[j])
        np.dot(da_h[t], U_hT, drh)                 # gradient of r * h_{t-1}
        for b in range(B):
            if not mask[b, t]:
                continue
            g_z, g_r, h_prev, dh_b, dh_tot_b, drh_b = (gates[t, b, :H], gates[t, b, H:2 * H], hs[t, b], dh[b],
                                                         dh_tot[b], drh[b])
            da_r = da_zr[t, b, H:]
            for j in range(H):                     # through r * h_{t-1}
                da_r[j] = drh_b[j] * h_prev[j] * g_r[j] * (one - g_r[j])
            for j in range(H):                     # direct paths to h_{t-1}
                dh_b[j] = dh_tot_b[j] * g_z[j] + drh_b[j] * g_r[j]
        np.dot(da_zr[t], U_zrT, dh_rec)
        for b in range(B):
            if mask[b, t]:
                add_row(dh[b], dh_rec[b])
    dzr2 = da_zr.reshape(T * B, 2 * H)
    dah2 = da_h.reshape(T * B, H)
    x2 = x_tm.reshape(T * B, D)
    add_rows(dW[:, :2 * H], np.dot(x2.T, dzr2))
    add_rows(dW[:, 2 * H:], np.dot(x2.T, dah2))
    add_rows(dU[:, :2 * H], np.dot(hs.reshape((T + 1) * B, H)[:T * B].T, dzr2))
    add_rows(dU[:, 2 * H:], np.dot(r_h.reshape(T * B, H).T, dah2))
    add_column_sums(db[:2 * H], dzr2)
    add_column_sums(db[2 * H:], dah2)
    if need_dx:
        dx_tm = (np.dot(dzr2, np.ascontiguousarray(W[:, :2 * H].T))
                 + np.dot(dah2, np.ascontiguousarray(W[:, 2 * H:].T)))
        dx = batch_major(dx_tm.reshape(T, B, D))
    else:
        dx = np.empty((0, 0, 0), dtype=gates.dtype)
    return dx, dh


def forward(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False,
            reset_after=True):
    """GRU forward: x [B, T, D], mask [B, T] bool, states0 (h0,) -> (y [B, T, H], (h_T,), saved).

    bias is [2, 3H] when ``reset_after`` (TF2 default), else [3H].
    """
    (h0,) = states0
    loop = _forward_reset_after if reset_after else _forward_reset_before
    y, hs, gates, extra, x_tm = loop(x, mask, h0, kernel, recurrent_kernel, bias,
                                     zero_output_for_mask)
    saved = (reset_after, mask, x_tm, kernel, recurrent_kernel, gates, extra, hs,
             zero_output_for_mask)
    return y, (hs[x.shape[1]].copy(),), saved


def backward(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """GRU BPTT: adds into dkernel, drecurrent_kernel, dbias; returns (dx or None, (dh0,))."""
    reset_after, mask, x_tm, W, U, gates, extra, hs, zero_output_for_mask = saved
    bias_shape = (2, W.shape[1]) if reset_after else (W.shape[1],)
    check_gradient_buffers(W, U, dkernel, drecurrent_kernel, dbias, bias_shape)
    (dh_T,) = dstates_T
    loop = _backward_reset_after if reset_after else _backward_reset_before
    dx, dh0 = loop(dy, dh_T, mask, x_tm, W, U, gates, extra, hs, zero_output_for_mask,
                   dkernel, drecurrent_kernel, dbias, need_dx)
    return (dx if need_dx else None), (dh0,)
