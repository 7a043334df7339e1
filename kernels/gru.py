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

from ._jit import (add_column_sums, add_rows, batch_major, check_gradient_buffers, copy_rows, copy_time_major,
                   input_product, kernel_jit, sigmoid, step_product, tanh)
from ._threads import small_products_in_blas
from .workspace import scratch


# Gate blocks of a row, in Keras order: update z, reset r, candidate hh
Z, R, N = 0, 1, 2


@kernel_jit
def _carry_masked_row(y, hs, b, t, zero_output_for_mask):
    """A masked step: keep the state, repeat the previous output (or zero)."""
    for j in range(hs.shape[2]):
        hs[t + 1, b, j] = hs[t, b, j]
        y[b, t, j] = 0.0 if zero_output_for_mask or t == 0 else y[b, t - 1, j]


# The loops index arrays through [.., 3, H] reshapes instead of taking views per row (each view
# costs reference counting, which dominated small steps; see lstm.py).

# --------------------------------------------------------------------------------------------
# reset_after=True (TF2 default)
# --------------------------------------------------------------------------------------------

@kernel_jit
def _forward_reset_after(x, mask, h0, W, U, bias, zero_output_for_mask, blas_steps, x_tm, gates, rec_h, hs):
    B, T, D = x.shape
    one = x.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
    H = U.shape[0]
    copy_time_major(x, x_tm)
    input_product(x_tm.reshape(T * B, D), W, gates.reshape(T * B, 3 * H), blas_steps)  # x W: z, r, hh
    copy_rows(hs[0], h0)                           # rec_h = h_{t-1} U_h + b_rh, saved for backward
    y = np.empty((B, T, H), dtype=x.dtype)
    rec = np.empty((B, 3 * H), dtype=x.dtype)
    UT = np.ascontiguousarray(U.T)
    a, rc, b3 = gates.reshape(T, B, 3, H), rec.reshape(B, 3, H), bias.reshape(2, 3, H)
    for t in range(T):
        step_product(hs[t], U, UT, rec, blas_steps)  # h_{t-1} U
        for b in range(B):
            if not mask[b, t]:
                _carry_masked_row(y, hs, b, t, zero_output_for_mask)
                continue
            for j in range(H):                     # z, r
                a[t, b, Z, j] = sigmoid(a[t, b, Z, j] + b3[0, Z, j] + rc[b, Z, j] + b3[1, Z, j])
            for j in range(H):
                a[t, b, R, j] = sigmoid(a[t, b, R, j] + b3[0, R, j] + rc[b, R, j] + b3[1, R, j])
            for j in range(H):                     # rec_h = h_{t-1} U_h + b_rh
                rec_h[t, b, j] = rc[b, N, j] + b3[1, N, j]
            for j in range(H):                     # hh, the candidate
                a[t, b, N, j] = tanh(a[t, b, N, j] + b3[0, N, j] + a[t, b, R, j] * rec_h[t, b, j])
            for j in range(H):                     # h = z h_{t-1} + (1 - z) hh
                h = a[t, b, Z, j] * hs[t, b, j] + (one - a[t, b, Z, j]) * a[t, b, N, j]
                hs[t + 1, b, j] = h
                y[b, t, j] = h
    return y


@kernel_jit
def _backward_reset_after(dy, dh_T, mask, x_tm, W, U, gates, rec_h, hs, zero_output_for_mask,
                          dW, dU, db, need_dx, blas_steps, dxw, drec):
    T, B, G = gates.shape
    one = gates.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
    H = G // 3
    D = x_tm.shape[2]
    UT = np.ascontiguousarray(U.T)
    # dxw, drec [T, B, G]: the gradients of x W + b_i and of h_{t-1} U + b_r
    dh = dh_T.copy()
    dy_carry = np.zeros((B, H), dtype=gates.dtype)
    dh_rec = np.empty((B, H), dtype=gates.dtype)
    a, da, dr = gates.reshape(T, B, 3, H), dxw.reshape(T, B, 3, H), drec.reshape(T, B, 3, H)
    for t in range(T - 1, -1, -1):
        for b in range(B):
            if not mask[b, t]:
                for k in range(G):
                    dxw[t, b, k] = 0.0
                    drec[t, b, k] = 0.0
                if not zero_output_for_mask:
                    for j in range(H):
                        dy_carry[b, j] += dy[b, t, j]
                continue
            for j in range(H):                     # dh: from step t+1, from the output y_t
                dh[b, j] += dy[b, t, j] + dy_carry[b, j]
                dy_carry[b, j] = 0.0
            for j in range(H):                     # through (1 - z) * tanh
                z, hh = a[t, b, Z, j], a[t, b, N, j]
                da[t, b, N, j] = dh[b, j] * (one - z) * (one - hh * hh)
            for j in range(H):
                z, hh = a[t, b, Z, j], a[t, b, N, j]
                da[t, b, Z, j] = dh[b, j] * (hs[t, b, j] - hh) * z * (one - z)
            for j in range(H):                     # through r * rec_h
                r = a[t, b, R, j]
                da[t, b, R, j] = da[t, b, N, j] * rec_h[t, b, j] * r * (one - r)
            for j in range(H):
                dr[t, b, Z, j] = da[t, b, Z, j]
                dr[t, b, R, j] = da[t, b, R, j]
                dr[t, b, N, j] = da[t, b, N, j] * a[t, b, R, j]
            for j in range(H):                     # direct path h_{t-1} -> h_t
                dh[b, j] *= a[t, b, Z, j]
        step_product(drec[t], UT, U, dh_rec, blas_steps)  # drec U^T
        for b in range(B):
            if mask[b, t]:
                for j in range(H):
                    dh[b, j] += dh_rec[b, j]
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
def _forward_reset_before(x, mask, h0, W, U, bias, zero_output_for_mask, blas_steps, x_tm, gates, r_h, hs):
    B, T, D = x.shape
    one = x.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
    H = U.shape[0]
    copy_time_major(x, x_tm)
    input_product(x_tm.reshape(T * B, D), W, gates.reshape(T * B, 3 * H), blas_steps)  # x W: z, r, hh
    U_zr = np.ascontiguousarray(U[:, :2 * H])
    U_h = np.ascontiguousarray(U[:, 2 * H:])
    U_zrT = np.ascontiguousarray(U_zr.T)
    U_hT = np.ascontiguousarray(U_h.T)
    copy_rows(hs[0], h0)                           # r_h = r * h_{t-1}, saved for backward
    y = np.empty((B, T, H), dtype=x.dtype)
    rec_zr = np.empty((B, 2 * H), dtype=x.dtype)
    rec_h = np.empty((B, H), dtype=x.dtype)
    a, rc, b3 = gates.reshape(T, B, 3, H), rec_zr.reshape(B, 2, H), bias.reshape(3, H)
    for t in range(T):
        step_product(hs[t], U_zr, U_zrT, rec_zr, blas_steps)  # h_{t-1} [U_z, U_r]
        for b in range(B):
            if not mask[b, t]:
                for j in range(H):                 # zero: backward multiplies it by a zero gradient
                    r_h[t, b, j] = 0.0
                continue
            for j in range(H):                     # z, r
                a[t, b, Z, j] = sigmoid(a[t, b, Z, j] + b3[Z, j] + rc[b, Z, j])
            for j in range(H):
                a[t, b, R, j] = sigmoid(a[t, b, R, j] + b3[R, j] + rc[b, R, j])
            for j in range(H):
                r_h[t, b, j] = a[t, b, R, j] * hs[t, b, j]
        step_product(r_h[t], U_h, U_hT, rec_h, blas_steps)  # (r * h_{t-1}) U_h
        for b in range(B):
            if not mask[b, t]:
                _carry_masked_row(y, hs, b, t, zero_output_for_mask)
                continue
            for j in range(H):                     # hh, the candidate
                a[t, b, N, j] = tanh(a[t, b, N, j] + b3[N, j] + rec_h[b, j])
            for j in range(H):                     # h = z h_{t-1} + (1 - z) hh
                h = a[t, b, Z, j] * hs[t, b, j] + (one - a[t, b, Z, j]) * a[t, b, N, j]
                hs[t + 1, b, j] = h
                y[b, t, j] = h
    return y


@kernel_jit
def _backward_reset_before(dy, dh_T, mask, x_tm, W, U, gates, r_h, hs, zero_output_for_mask,
                           dW, dU, db, need_dx, blas_steps, da_zr, da_h):
    T, B, G = gates.shape
    one = gates.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
    H = G // 3
    D = x_tm.shape[2]
    U_zr = np.ascontiguousarray(U[:, :2 * H])
    U_h = np.ascontiguousarray(U[:, 2 * H:])
    U_zrT = np.ascontiguousarray(U_zr.T)
    U_hT = np.ascontiguousarray(U_h.T)
    # da_zr [T, B, 2H], da_h [T, B, H]: the gradients of the z, r and candidate pre-activations
    dh = dh_T.copy()
    dh_tot = np.zeros((B, H), dtype=gates.dtype)
    dy_carry = np.zeros((B, H), dtype=gates.dtype)
    drh = np.empty((B, H), dtype=gates.dtype)
    dh_rec = np.empty((B, H), dtype=gates.dtype)
    a, dzr = gates.reshape(T, B, 3, H), da_zr.reshape(T, B, 2, H)
    for t in range(T - 1, -1, -1):
        for b in range(B):
            if not mask[b, t]:
                for j in range(H):
                    dzr[t, b, Z, j] = 0.0
                    dzr[t, b, R, j] = 0.0
                    da_h[t, b, j] = 0.0
                    if not zero_output_for_mask:
                        dy_carry[b, j] += dy[b, t, j]
                continue
            for j in range(H):                     # dh: from step t+1, from the output y_t
                dh_tot[b, j] = dh[b, j] + dy[b, t, j] + dy_carry[b, j]
                dy_carry[b, j] = 0.0
            for j in range(H):                     # through (1 - z) * tanh
                z, hh = a[t, b, Z, j], a[t, b, N, j]
                da_h[t, b, j] = dh_tot[b, j] * (one - z) * (one - hh * hh)
            for j in range(H):
                z, hh = a[t, b, Z, j], a[t, b, N, j]
                dzr[t, b, Z, j] = dh_tot[b, j] * (hs[t, b, j] - hh) * z * (one - z)
        step_product(da_h[t], U_hT, U_h, drh, blas_steps)  # gradient of r * h_{t-1}
        for b in range(B):
            if not mask[b, t]:
                continue
            for j in range(H):                     # through r * h_{t-1}
                r = a[t, b, R, j]
                dzr[t, b, R, j] = drh[b, j] * hs[t, b, j] * r * (one - r)
            for j in range(H):                     # direct paths to h_{t-1}
                dh[b, j] = dh_tot[b, j] * a[t, b, Z, j] + drh[b, j] * a[t, b, R, j]
        step_product(da_zr[t], U_zrT, U_zr, dh_rec, blas_steps)  # [da_z, da_r] U_zr^T
        for b in range(B):
            if mask[b, t]:
                for j in range(H):
                    dh[b, j] += dh_rec[b, j]
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
            reset_after=True, workspace=None):
    """GRU forward: x [B, T, D], mask [B, T] bool, states0 (h0,) -> (y [B, T, H], (h_T,), saved).

    bias is [2, 3H] when ``reset_after`` (TF2 default), else [3H]. ``workspace``: see
    :func:`minirnn.kernels.lstm.forward`.
    """
    (h0,) = states0
    B, T, D = x.shape
    H = h0.shape[1]
    # extra: rec_h (reset_after) or r_h (reset_before), [T, B, H]
    x_tm, gates, extra, hs = scratch(workspace, "forward", x.dtype, (T, B, D), (T, B, 3 * H), (T, B, H),
                                     (T + 1, B, H))
    loop = _forward_reset_after if reset_after else _forward_reset_before
    y = loop(x, mask, h0, kernel, recurrent_kernel, bias, zero_output_for_mask, small_products_in_blas(),
             x_tm, gates, extra, hs)
    saved = (reset_after, mask, x_tm, kernel, recurrent_kernel, gates, extra, hs,
             zero_output_for_mask, workspace)
    return y, (hs[x.shape[1]].copy(),), saved


def backward(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """GRU BPTT: adds into dkernel, drecurrent_kernel, dbias; returns (dx or None, (dh0,))."""
    reset_after, mask, x_tm, W, U, gates, extra, hs, zero_output_for_mask, workspace = saved
    bias_shape = (2, W.shape[1]) if reset_after else (W.shape[1],)
    check_gradient_buffers(W, U, dkernel, drecurrent_kernel, dbias, bias_shape)
    (dh_T,) = dstates_T
    T, B, G = gates.shape
    if reset_after:   # gradients of x W + b_i and of h_{t-1} U + b_r
        grads = scratch(workspace, "backward", gates.dtype, (T, B, G), (T, B, G))
    else:             # of the z and r pre-activations, and of the candidate's
        grads = scratch(workspace, "backward", gates.dtype, (T, B, 2 * G // 3), (T, B, G // 3))
    loop = _backward_reset_after if reset_after else _backward_reset_before
    dx, dh0 = loop(dy, dh_T, mask, x_tm, W, U, gates, extra, hs, zero_output_for_mask,
                   dkernel, drecurrent_kernel, dbias, need_dx, small_products_in_blas(), *grads)
    return (dx if need_dx else None), (dh0,)
