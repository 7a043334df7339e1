"""GRU cell, both Keras forms, compiled with Numba: forward and backprop-through-time, side by side.

Read ``reference.py``'s ``gru_forward`` / ``gru_backward`` first: the same maths in plain NumPy, one
step at a time. This module computes the same thing (the tests hold it to 1e-10 of the reference in
float64), with the time loop compiled and the large products batched.

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

Backward, per valid step, with dh = dh_t (from t+1) + dy_t::

    da_h = dh * (1 - z) * (1 - hh^2)               da_z = dh * (h_{t-1} - hh) * z(1-z)
    reset_after=True:   da_r = da_h * rec_h * r(1-r)
                        drec = [da_z, da_r, da_h * r];  dh_{t-1} = dh * z + drec U^T
                        dU += h_{t-1}^T drec;  db_r += sum_b drec
    reset_after=False:  drh = da_h U_h^T             (gradient of r * h_{t-1})
                        da_r = drh * h_{t-1} * r(1-r)
                        dh_{t-1} = dh * z + drh * r + [da_z, da_r] U_zr^T
                        dU_zr += h_{t-1}^T [da_z, da_r];  dU_h += (r * h_{t-1})^T da_h
    dW += x_t^T [da_z, da_r, da_h]   and the input bias likewise;   dx_t = [da_z, da_r, da_h] W^T

Masking (Keras semantics, as in the reference): a masked step keeps h and gets zero gradients, so its
input gets no gradient and the state's gradient passes through it unchanged; its output repeats the
previous output (zeros before the row's first valid step), or is zero with ``zero_output_for_mask``,
and in the first case the output gradient it receives is carried back to the step whose output it
repeats (``dy_carry``).

How the work is laid out is the same in all three cells; ``lstm.py``'s docstring describes it, and
the pieces are in :mod:`.linalg`: the input projection of every step in one product, only the
recurrent products per step, and backward in chunks of steps whose weight, bias and input gradients
are a few products each (``accumulate_weight_grads``, ``input_grad_product``). In the
``reset_after=False`` form the recurrent kernel's z, r columns and its candidate columns have
different inputs (h_{t-1} and r * h_{t-1}), so each chunk makes two ``accumulate_weight_grads`` calls,
one per block of columns.
"""

from types import SimpleNamespace

import numpy as np

from ._jit import kernel_jit, once_per_flag
from ._threads import small_products_in_blas
from .activations import sigmoid, tanh
from .linalg import (accumulate_weight_grads, add_column_sums, add_steps, batch_major, check_gradient_buffers,
                     chunk_steps, copy_rows, copy_time_major, input_grad_product, input_product, step_product,
                     transposed_for_step, weight_grad_scratch)
from .workspace import scratch


# Gate blocks of a row, in Keras order: update z, reset r, candidate hh
Z, R, N = 0, 1, 2


@once_per_flag
def loops(blas):
    """The cell's compiled time loops, ``forward_reset_after`` / ``backward_reset_after`` and
    ``forward_reset_before`` / ``backward_reset_before``, with their products in BLAS (``blas`` True)
    or in :mod:`.linalg`'s blocked loops (False).

    The loops index arrays through [.., 3, H] reshapes instead of taking views per row (each view
    costs reference counting; see lstm.py).

    Why ``blas`` is a constant of the closures rather than an argument: see
    :func:`minirnn.kernels.lstm.loops`.
    """

    # ----------------------------------------------------------------------------------------
    # reset_after=True (TF2 default)
    # ----------------------------------------------------------------------------------------

    @kernel_jit
    def forward_reset_after(x, mask, h0, W, U, bias, zero_output_for_mask, x_tm, gates, rec_h, hs, y):
        B, T, D = x.shape
        one = x.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
        H = U.shape[0]
        keep = hs.shape[0] == T + 1                    # training: every state, for backward (see lstm.py)
        every = y.shape[1] == T                        # every output, or only the last (y [B, 1, H])
        copy_time_major(x, x_tm)
        input_product(x_tm, W, gates, blas)            # x_t W for every step at once: z, r, hh
        copy_rows(hs[0], h0)                           # hs[t] = h_{t-1}; with rec_h, saved for backward
        rec = np.empty((B, 3 * H), dtype=x.dtype)
        UT = transposed_for_step(U, B, blas)
        a, rc, b3 = gates.reshape(T, B, 3, H), rec.reshape(B, 3, H), bias.reshape(2, 3, H)
        for t in range(T):
            p = t if keep else t & 1                   # hs[p] = h_{t-1}, hs[n] = h_t
            n = p + 1 if keep else p ^ 1
            e = t if keep else 0                       # rec_h[e]: step t's
            s = t if every else 0                      # y[:, s] = y_t
            step_product(hs[p], U, UT, rec, blas)      # h_{t-1} U
            for b in range(B):
                if not mask[b, t]:                     # masked: carry the state, repeat the output
                    for j in range(H):
                        hs[n, b, j] = hs[p, b, j]
                        y[b, s, j] = 0.0 if zero_output_for_mask or t == 0 else y[b, s - 1 if every else 0, j]
                    continue
                for j in range(H):                     # z = sigmoid(xz + b_iz + rec_z)
                    a[t, b, Z, j] = sigmoid(a[t, b, Z, j] + b3[0, Z, j] + rc[b, Z, j] + b3[1, Z, j])
                for j in range(H):                     # r = sigmoid(xr + b_ir + rec_r)
                    a[t, b, R, j] = sigmoid(a[t, b, R, j] + b3[0, R, j] + rc[b, R, j] + b3[1, R, j])
                for j in range(H):                     # rec_h = h_{t-1} U_h + b_rh
                    rec_h[e, b, j] = rc[b, N, j] + b3[1, N, j]
                for j in range(H):                     # hh = tanh(xh + b_ih + r rec_h)
                    a[t, b, N, j] = tanh(a[t, b, N, j] + b3[0, N, j] + a[t, b, R, j] * rec_h[e, b, j])
                for j in range(H):                     # h_t = z h_{t-1} + (1 - z) hh
                    h = a[t, b, Z, j] * hs[p, b, j] + (one - a[t, b, Z, j]) * a[t, b, N, j]
                    hs[n, b, j] = h
                    y[b, s, j] = h

    @kernel_jit
    def backward_reset_after(dy, dh_T, mask, x_tm, W, U, gates, rec_h, hs, zero_output_for_mask,
                              dW, dU, db, need_dx, dxw, drec, wg, dx_tm):
        T, B, G = gates.shape
        H = G // 3
        one = gates.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
        # dxw, drec [chunk, B, G]: the chunk's gradients of x W + b_i and of h_{t-1} U + b_r
        chunk = dxw.shape[0]
        UT = np.ascontiguousarray(U.T)
        WT = np.ascontiguousarray(W.T)
        dh = dh_T.copy()                               # the gradient reaching h_t from step t+1
        dy_carry = np.zeros((B, H), dtype=gates.dtype)  # output gradient repeated over masked steps
        dh_rec = np.empty((B, H), dtype=gates.dtype)
        a, da, dr = gates.reshape(T, B, 3, H), dxw.reshape(chunk, B, 3, H), drec.reshape(chunk, B, 3, H)
        for t1 in range(T, 0, -chunk):                 # chunks of steps t0 <= t < t1, from the last
            t0 = max(t1 - chunk, 0)
            for t in range(t1 - 1, t0 - 1, -1):
                s = t - t0                             # step t's rows in the chunk
                for b in range(B):
                    if not mask[b, t]:
                        for k in range(G):             # no gradient into a masked step
                            dxw[s, b, k] = 0.0
                            drec[s, b, k] = 0.0
                        if not zero_output_for_mask:
                            for j in range(H):
                                dy_carry[b, j] += dy[b, t, j]
                        continue
                    for j in range(H):                 # dh = dh_t + dy_t
                        dh[b, j] += dy[b, t, j] + dy_carry[b, j]
                        dy_carry[b, j] = 0.0
                    for j in range(H):                 # da_h = dh (1 - z) (1 - hh^2)
                        z, hh = a[t, b, Z, j], a[t, b, N, j]
                        da[s, b, N, j] = dh[b, j] * (one - z) * (one - hh * hh)
                    for j in range(H):                 # da_z = dh (h_{t-1} - hh) z(1-z)
                        z, hh = a[t, b, Z, j], a[t, b, N, j]
                        da[s, b, Z, j] = dh[b, j] * (hs[t, b, j] - hh) * z * (one - z)
                    for j in range(H):                 # da_r = da_h rec_h r(1-r)
                        r = a[t, b, R, j]
                        da[s, b, R, j] = da[s, b, N, j] * rec_h[t, b, j] * r * (one - r)
                    for j in range(H):                 # drec = [da_z, da_r, da_h r]
                        dr[s, b, Z, j] = da[s, b, Z, j]
                        dr[s, b, R, j] = da[s, b, R, j]
                        dr[s, b, N, j] = da[s, b, N, j] * a[t, b, R, j]
                    for j in range(H):                 # dh_{t-1} = dh z + ... (the direct path)
                        dh[b, j] *= a[t, b, Z, j]
                step_product(drec[s], UT, U, dh_rec, blas)  # ... + drec U^T
                for b in range(B):
                    if mask[b, t]:
                        for j in range(H):
                            dh[b, j] += dh_rec[b, j]
            n = t1 - t0                                # the chunk's sums over its steps and rows:
            accumulate_weight_grads(x_tm[t0:t1], dxw[:n], dW, hs[t0:t1], drec[:n], dU, 0, blas, wg)  # dW, dU
            add_column_sums(db[0], dxw[:n])            # db_i += sum dxw
            add_column_sums(db[1], drec[:n])           # db_r += sum drec
            if need_dx:
                input_grad_product(dxw[:n], WT, W, dx_tm[t0:t1], blas)  # dx_t = dxw W^T
        dx = batch_major(dx_tm) if need_dx else np.empty((0, 0, 0), dtype=gates.dtype)
        return dx, dh

    # ----------------------------------------------------------------------------------------
    # reset_after=False (TF1 GRUCell form)
    # ----------------------------------------------------------------------------------------

    @kernel_jit
    def forward_reset_before(x, mask, h0, W, U, bias, zero_output_for_mask, x_tm, gates, r_h, hs, y):
        B, T, D = x.shape
        one = x.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
        H = U.shape[0]
        keep = hs.shape[0] == T + 1                    # training: every state, for backward (see lstm.py)
        every = y.shape[1] == T                        # every output, or only the last (y [B, 1, H])
        copy_time_major(x, x_tm)
        input_product(x_tm, W, gates, blas)            # x_t W for every step at once: z, r, hh
        U_zr = np.ascontiguousarray(U[:, :2 * H])
        U_h = np.ascontiguousarray(U[:, 2 * H:])
        U_zrT = transposed_for_step(U_zr, B, blas)
        U_hT = transposed_for_step(U_h, B, blas)
        copy_rows(hs[0], h0)                           # hs[t] = h_{t-1}; with r_h, saved for backward
        rec_zr = np.empty((B, 2 * H), dtype=x.dtype)
        rec_h = np.empty((B, H), dtype=x.dtype)
        a, rc, b3 = gates.reshape(T, B, 3, H), rec_zr.reshape(B, 2, H), bias.reshape(3, H)
        for t in range(T):
            p = t if keep else t & 1                   # hs[p] = h_{t-1}, hs[n] = h_t
            n = p + 1 if keep else p ^ 1
            e = t if keep else 0                       # r_h[e]: step t's
            s = t if every else 0                      # y[:, s] = y_t
            step_product(hs[p], U_zr, U_zrT, rec_zr, blas)  # h_{t-1} [U_z, U_r]: z, r first
            for b in range(B):
                if not mask[b, t]:
                    for j in range(H):                 # zero: backward multiplies it by a zero gradient
                        r_h[e, b, j] = 0.0
                    continue
                for j in range(H):                     # z = sigmoid(xz + h_{t-1} U_z)  (b in xz)
                    a[t, b, Z, j] = sigmoid(a[t, b, Z, j] + b3[Z, j] + rc[b, Z, j])
                for j in range(H):                     # r = sigmoid(xr + h_{t-1} U_r)
                    a[t, b, R, j] = sigmoid(a[t, b, R, j] + b3[R, j] + rc[b, R, j])
                for j in range(H):                     # r * h_{t-1}
                    r_h[e, b, j] = a[t, b, R, j] * hs[p, b, j]
            step_product(r_h[e], U_h, U_hT, rec_h, blas)  # (r * h_{t-1}) U_h: then the candidate
            for b in range(B):
                if not mask[b, t]:                     # masked: carry the state, repeat the output
                    for j in range(H):
                        hs[n, b, j] = hs[p, b, j]
                        y[b, s, j] = 0.0 if zero_output_for_mask or t == 0 else y[b, s - 1 if every else 0, j]
                    continue
                for j in range(H):                     # hh = tanh(xh + (r * h_{t-1}) U_h)
                    a[t, b, N, j] = tanh(a[t, b, N, j] + b3[N, j] + rec_h[b, j])
                for j in range(H):                     # h_t = z h_{t-1} + (1 - z) hh
                    h = a[t, b, Z, j] * hs[p, b, j] + (one - a[t, b, Z, j]) * a[t, b, N, j]
                    hs[n, b, j] = h
                    y[b, s, j] = h

    @kernel_jit
    def backward_reset_before(dy, dh_T, mask, x_tm, W, U, gates, r_h, hs, zero_output_for_mask,
                               dW, dU, db, need_dx, dzr, dah, wg, dx_tm, dx_h):
        T, B, G = gates.shape
        H = G // 3
        one = gates.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
        # dzr [chunk, B, 2H], dah [chunk, B, H]: the chunk's gradients of the z, r pre-activations and
        # of the candidate's; dx_h [chunk, B, D]: the candidate's part of dx
        chunk = dzr.shape[0]
        U_zr = np.ascontiguousarray(U[:, :2 * H])
        U_h = np.ascontiguousarray(U[:, 2 * H:])
        U_zrT = np.ascontiguousarray(U_zr.T)
        U_hT = np.ascontiguousarray(U_h.T)
        W_zr = np.ascontiguousarray(W[:, :2 * H])
        W_h = np.ascontiguousarray(W[:, 2 * H:])
        W_zrT = np.ascontiguousarray(W_zr.T)
        W_hT = np.ascontiguousarray(W_h.T)
        dh = dh_T.copy()                               # the gradient reaching h_t from step t+1
        dh_tot = np.zeros((B, H), dtype=gates.dtype)
        dy_carry = np.zeros((B, H), dtype=gates.dtype)  # output gradient repeated over masked steps
        drh = np.empty((B, H), dtype=gates.dtype)
        dh_rec = np.empty((B, H), dtype=gates.dtype)
        a, d = gates.reshape(T, B, 3, H), dzr.reshape(chunk, B, 2, H)
        for t1 in range(T, 0, -chunk):                 # chunks of steps t0 <= t < t1, from the last
            t0 = max(t1 - chunk, 0)
            for t in range(t1 - 1, t0 - 1, -1):
                s = t - t0                             # step t's rows in the chunk
                for b in range(B):
                    if not mask[b, t]:
                        for j in range(H):             # no gradient into a masked step
                            d[s, b, Z, j] = 0.0
                            d[s, b, R, j] = 0.0
                            dah[s, b, j] = 0.0
                            if not zero_output_for_mask:
                                dy_carry[b, j] += dy[b, t, j]
                        continue
                    for j in range(H):                 # dh = dh_t + dy_t
                        dh_tot[b, j] = dh[b, j] + dy[b, t, j] + dy_carry[b, j]
                        dy_carry[b, j] = 0.0
                    for j in range(H):                 # da_h = dh (1 - z) (1 - hh^2)
                        z, hh = a[t, b, Z, j], a[t, b, N, j]
                        dah[s, b, j] = dh_tot[b, j] * (one - z) * (one - hh * hh)
                    for j in range(H):                 # da_z = dh (h_{t-1} - hh) z(1-z)
                        z, hh = a[t, b, Z, j], a[t, b, N, j]
                        d[s, b, Z, j] = dh_tot[b, j] * (hs[t, b, j] - hh) * z * (one - z)
                step_product(dah[s], U_hT, U_h, drh, blas)  # drh = da_h U_h^T, the gradient of r * h_{t-1}
                for b in range(B):
                    if not mask[b, t]:
                        continue
                    for j in range(H):                 # da_r = drh h_{t-1} r(1-r)
                        r = a[t, b, R, j]
                        d[s, b, R, j] = drh[b, j] * hs[t, b, j] * r * (one - r)
                    for j in range(H):                 # dh_{t-1} = dh z + drh r + ... (the direct paths)
                        dh[b, j] = dh_tot[b, j] * a[t, b, Z, j] + drh[b, j] * a[t, b, R, j]
                step_product(dzr[s], U_zrT, U_zr, dh_rec, blas)  # ... + [da_z, da_r] U_zr^T
                for b in range(B):
                    if mask[b, t]:
                        for j in range(H):
                            dh[b, j] += dh_rec[b, j]
            n = t1 - t0                                # the chunk's sums over its steps and rows:
            accumulate_weight_grads(x_tm[t0:t1], dzr[:n], dW, hs[t0:t1], dzr[:n], dU, 0, blas, wg)  # z, r columns
            accumulate_weight_grads(x_tm[t0:t1], dah[:n], dW, r_h[t0:t1], dah[:n], dU, 2 * H, blas, wg)  # candidate
            add_column_sums(db[:2 * H], dzr[:n])       # db += sum [da_z, da_r, da_h]
            add_column_sums(db[2 * H:], dah[:n])
            if need_dx:                                # dx_t = [da_z, da_r] W_zr^T + da_h W_h^T
                input_grad_product(dzr[:n], W_zrT, W_zr, dx_tm[t0:t1], blas)
                input_grad_product(dah[:n], W_hT, W_h, dx_h[:n], blas)
                add_steps(dx_tm[t0:t1], dx_h[:n])
        dx = batch_major(dx_tm) if need_dx else np.empty((0, 0, 0), dtype=gates.dtype)
        return dx, dh

    return SimpleNamespace(forward_reset_after=forward_reset_after, backward_reset_after=backward_reset_after,
                           forward_reset_before=forward_reset_before, backward_reset_before=backward_reset_before)


def forward(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False,
            reset_after=True, workspace=None, training=True, all_outputs=True):
    """GRU forward: x [B, T, D], mask [B, T] bool, states0 (h0,) -> (y [B, T, H], (h_T,), saved).

    bias is [2, 3H] when ``reset_after`` (TF2 default), else [3H]. ``workspace``, ``training`` (False:
    ``saved`` is None) and ``all_outputs`` (False: y [B, 1, H]): see :func:`minirnn.kernels.lstm.forward`.
    """
    (h0,) = states0
    B, T, D = x.shape
    H = h0.shape[1]
    # extra: rec_h (reset_after) or r_h (reset_before), every step's [T, B, H] or the current step's
    x_tm, gates, extra, hs = scratch(workspace, "forward" if training else "inference", x.dtype, (T, B, D),
                                     (T, B, 3 * H), (T if training else 1, B, H), (T + 1 if training else 2, B, H))
    y = np.empty((B, T if all_outputs else 1, H), dtype=x.dtype)
    compiled = loops(small_products_in_blas())
    loop = compiled.forward_reset_after if reset_after else compiled.forward_reset_before
    loop(x, mask, h0, kernel, recurrent_kernel, bias, zero_output_for_mask, x_tm, gates, extra, hs, y)
    states = (hs[T if training else T & 1].copy(),)
    if not training:
        return y, states, None
    return y, states, (reset_after, mask, x_tm, kernel, recurrent_kernel, gates, extra, hs, zero_output_for_mask,
                       workspace)


def backward(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """GRU BPTT: adds into dkernel, drecurrent_kernel, dbias; returns (dx or None, (dh0,))."""
    reset_after, mask, x_tm, W, U, gates, extra, hs, zero_output_for_mask, workspace = saved
    bias_shape = (2, W.shape[1]) if reset_after else (W.shape[1],)
    check_gradient_buffers(W, U, dkernel, drecurrent_kernel, dbias, bias_shape)
    (dh_T,) = dstates_T
    T, B, G = gates.shape
    D, H = x_tm.shape[2], G // 3
    chunk = chunk_steps(T, B)
    dx_rows = T if need_dx else 0
    if reset_after:   # the chunk's gradients of x W + b_i and of h_{t-1} U + b_r
        grads = scratch(workspace, "backward", gates.dtype, (chunk, B, G), (chunk, B, G),
                        weight_grad_scratch(chunk * B, max(D, H), G), (dx_rows, B, D))
        loop = loops(small_products_in_blas()).backward_reset_after
    else:             # of the z and r pre-activations, of the candidate's, and the candidate's part of dx
        grads = scratch(workspace, "backward", gates.dtype, (chunk, B, 2 * H), (chunk, B, H),
                        weight_grad_scratch(chunk * B, max(D, H), 2 * H), (dx_rows, B, D),
                        (chunk if need_dx else 0, B, D))
        loop = loops(small_products_in_blas()).backward_reset_before
    dx, dh0 = loop(dy, dh_T, mask, x_tm, W, U, gates, extra, hs, zero_output_for_mask,
                   dkernel, drecurrent_kernel, dbias, need_dx, *grads)
    return (dx if need_dx else None), (dh0,)
