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

from ._jit import batch_major, check_gradient_buffers, kernel_jit, sigmoid, tanh, time_major


@kernel_jit
def _carry_masked_row(y, hs, b, t, zero_output_for_mask):
    """A masked step: keep the state, repeat the previous output (or zero)."""
    hs[t + 1, b] = hs[t, b]
    if zero_output_for_mask or t == 0:
        y[b, t] = 0.0
    else:
        y[b, t] = y[b, t - 1]


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
    hs[0] = h0
    y = np.empty((B, T, H), dtype=x.dtype)
    rec = np.empty((B, 3 * H), dtype=x.dtype)
    b_i, b_r = bias[0], bias[1]
    for t in range(T):
        np.dot(hs[t], U, rec)                      # h_{t-1} U
        for b in range(B):
            if not mask[b, t]:
                _carry_masked_row(y, hs, b, t, zero_output_for_mask)
                continue
            g, rc, h_prev, h_new, y_t, rh = gates[t, b], rec[b], hs[t, b], hs[t + 1, b], y[b, t], rec_h[t, b]
            for j in range(H):
                z = sigmoid(g[j] + b_i[j] + rc[j] + b_r[j])
                r = sigmoid(g[H + j] + b_i[H + j] + rc[H + j] + b_r[H + j])
                rh_j = rc[2 * H + j] + b_r[2 * H + j]
                hh = tanh(g[2 * H + j] + b_i[2 * H + j] + r * rh_j)
                h = z * h_prev[j] + (one - z) * hh
                g[j], g[H + j], g[2 * H + j], rh[j] = z, r, hh, rh_j
                h_new[j] = h
                y_t[j] = h
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
                dxw_row[:] = 0.0
                drec_row[:] = 0.0
                if not zero_output_for_mask:
                    carry += dy_t
                continue
            g, rh, h_prev, dh_b = gates[t, b], rec_h[t, b], hs[t, b], dh[b]
            for j in range(H):
                dh_j = dh_b[j] + dy_t[j] + carry[j]
                carry[j] = 0.0
                z, r, hh = g[j], g[H + j], g[2 * H + j]
                da_h = dh_j * (one - z) * (one - hh * hh)    # through (1 - z) * tanh
                da_z = dh_j * (h_prev[j] - hh) * z * (one - z)
                da_r = da_h * rh[j] * r * (one - r)
                dxw_row[j], dxw_row[H + j], dxw_row[2 * H + j] = da_z, da_r, da_h
                drec_row[j], drec_row[H + j], drec_row[2 * H + j] = da_z, da_r, da_h * r
                dh_b[j] = dh_j * z                           # direct path h_{t-1} -> h_t
        np.dot(drec[t], UT, dh_rec)
        for b in range(B):
            if mask[b, t]:
                dh[b] += dh_rec[b]
    dxw2 = dxw.reshape(T * B, G)
    drec2 = drec.reshape(T * B, G)
    dW += np.dot(x_tm.reshape(T * B, D).T, dxw2)
    dU += np.dot(hs.reshape((T + 1) * B, H)[:T * B].T, drec2)
    db[0] += dxw2.sum(axis=0)
    db[1] += drec2.sum(axis=0)
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
    hs[0] = h0
    y = np.empty((B, T, H), dtype=x.dtype)
    rec_zr = np.empty((B, 2 * H), dtype=x.dtype)
    rec_h = np.empty((B, H), dtype=x.dtype)
    for t in range(T):
        np.dot(hs[t], U_zr, rec_zr)                # h_{t-1} [U_z, U_r]
        for b in range(B):
            if not mask[b, t]:
                continue
            g, rc, h_prev, rh = gates[t, b], rec_zr[b], hs[t, b], r_h[t, b]
            for j in range(H):
                z = sigmoid(g[j] + bias[j] + rc[j])
                r = sigmoid(g[H + j] + bias[H + j] + rc[H + j])
                g[j], g[H + j] = z, r
                rh[j] = r * h_prev[j]
        np.dot(r_h[t], U_h, rec_h)                 # (r * h_{t-1}) U_h
        for b in range(B):
            if not mask[b, t]:
                _carry_masked_row(y, hs, b, t, zero_output_for_mask)
                continue
            g, rc, h_prev, h_new, y_t = gates[t, b], rec_h[b], hs[t, b], hs[t + 1, b], y[b, t]
            for j in range(H):
                z = g[j]
                hh = tanh(g[2 * H + j] + bias[2 * H + j] + rc[j])
                h = z * h_prev[j] + (one - z) * hh
                g[2 * H + j] = hh
                h_new[j] = h
                y_t[j] = h
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
                da_zr[t, b] = 0.0
                da_h[t, b] = 0.0
                if not zero_output_for_mask:
                    carry += dy_t
                continue
            g, h_prev, dh_b, dh_tot_b, dzr, dah = gates[t, b], hs[t, b], dh[b], dh_tot[b], da_zr[t, b], da_h[t, b]
            for j in range(H):
                dh_j = dh_b[j] + dy_t[j] + carry[j]
                carry[j] = 0.0
                z, hh = g[j], g[2 * H + j]
                dah[j] = dh_j * (one - z) * (one - hh * hh)
                dzr[j] = dh_j * (h_prev[j] - hh) * z * (one - z)
                dh_tot_b[j] = dh_j
        np.dot(da_h[t], U_hT, drh)                 # gradient of r * h_{t-1}
        for b in range(B):
            if not mask[b, t]:
                continue
            g, h_prev, dh_b, dh_tot_b, dzr, drh_b = gates[t, b], hs[t, b], dh[b], dh_tot[b], da_zr[t, b], drh[b]
            for j in range(H):
                r = g[H + j]
                dzr[H + j] = drh_b[j] * h_prev[j] * r * (one - r)
                dh_b[j] = dh_tot_b[j] * g[j] + drh_b[j] * r   # direct paths to h_{t-1}
        np.dot(da_zr[t], U_zrT, dh_rec)
        for b in range(B):
            if mask[b, t]:
                dh[b] += dh_rec[b]
    dzr2 = da_zr.reshape(T * B, 2 * H)
    dah2 = da_h.reshape(T * B, H)
    x2 = x_tm.reshape(T * B, D)
    dW[:, :2 * H] += np.dot(x2.T, dzr2)
    dW[:, 2 * H:] += np.dot(x2.T, dah2)
    dU[:, :2 * H] += np.dot(hs.reshape((T + 1) * B, H)[:T * B].T, dzr2)
    dU[:, 2 * H:] += np.dot(r_h.reshape(T * B, H).T, dah2)
    db[:2 * H] += dzr2.sum(axis=0)
    db[2 * H:] += dah2.sum(axis=0)
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
