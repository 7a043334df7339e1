"""GRU cell on CUDA (Numba's CUDA target), both Keras forms: forward and BPTT, side by side.

Shapes: B batch, T time, D input features, H units. Keras gate order z (update), r (reset), h.
Weights: kernel W [D, 3H], recurrent_kernel U [H, 3H]; bias [2, 3H] for ``reset_after=True``
(row 0 input bias b_i, row 1 recurrent bias b_r: the TF2 default) or [3H] for ``reset_after=False``
(the TF1 GRUCell form). State h [B, H]. Checked against ``reference.py`` (``gru_forward``).

Forward, for each step t and row with mask[b, t] true (x_t W + b_i split into xz, xr, xh)::

    reset_after=True                               reset_after=False (b added to x_t W)
    rec = h_{t-1} U + b_r                          z  = sigmoid(xz + h_{t-1} U_z)
    z  = sigmoid(xz + rec_z)                       r  = sigmoid(xr + h_{t-1} U_r)
    r  = sigmoid(xr + rec_r)                       rh = r * h_{t-1}
    hh = tanh(xh + r * rec_h)                      hh = tanh(xh + rh U_h)
    h_t = z * h_{t-1} + (1 - z) * hh              (the same; h_t is the output y_t)

Masking: a masked step keeps h; its output repeats the previous output (zeros before the first
valid step), or is zero with ``zero_output_for_mask``; its input gets no gradient. A row with no
valid step returns its initial state. Gaps are allowed.

Backward, per valid step, with dh = dh_t (from t+1) + dy_t::

    da_h = dh * (1 - z) * (1 - hh^2)               da_z = dh * (h_{t-1} - hh) * z(1-z)
    reset_after=True:   da_r = da_h * rec_h * r(1-r)
                        drec = [da_z, da_r, da_h * r];  dh_{t-1} = dh * z + drec U^T
                        dU += h_prev^T drec;  db_r += sum drec
    reset_after=False:  drh = da_h U_h^T             (gradient of r * h_{t-1})
                        da_r = drh * h_{t-1} * r(1-r)
                        dh_{t-1} = dh * z + drh * r + [da_z, da_r] U_zr^T
                        dU_zr += h_prev^T [da_z, da_r];  dU_h += rh^T da_h
    dW += x^T [da_z, da_r, da_h], the input bias likewise;   dx = [da_z, da_r, da_h] W^T

Launches. reset_after=True: the projection, then one fused kernel per step (``h_{t-1} U`` for the
three gates of a unit, gate maths, state, output); backward one fused kernel per step
(``drec_{t+1} U^T`` + the gate gradients of step t) and one for dh_0. reset_after=False needs the
whole row ``r * h_{t-1}`` before ``U_h``, so two launches per step: (z, r, rh) then (hh, h);
backward likewise: (``[da_z, da_r]_{t+1} U_zr^T``, da_z, da_h) then (``da_h U_h^T``, da_r).
The weight gradients, bias gradients and dx are products and column sums over all B * T rows.

Saved by ``forward`` for ``backward`` (device arrays): x, mask, W, U, bias form, the activated gates
(z, r, hh) [B, T, 3H] (written over the projection buffer), h_{t-1} of every step [B, T, H], and
rec_h = h_{t-1} U_h + b_rh [B, T, H] (reset_after=True) or rh = r * h_{t-1} [B, T, H] (False).
"""

import functools
import math

import numpy as np
from numba import cuda, from_dtype

from . import cuda_common as cc

N_GATES = 3


@functools.lru_cache(maxsize=None)
def _kernels(dtype, TS):
    dt = from_dtype(np.dtype(dtype))
    one, zero = np.dtype(dtype).type(1.0), np.dtype(dtype).type(0.0)
    product3 = cc.step_product(dtype, TS, 3)
    product2 = cc.step_product(dtype, TS, 2)
    product1 = cc.step_product(dtype, TS, 1)

    @cuda.jit(device=True)
    def sigmoid(v):
        return one / (one + math.exp(-v))

    @cuda.jit(device=True)
    def finish_step(t, b, j, h, hprev, h_T, y):
        # h_t into the next step's h_{t-1} (or the final state)
        T = hprev.shape[1]
        if t + 1 < T:
            hprev[b, t + 1, j] = h
        else:
            h_T[b, j] = h

    @cuda.jit(device=True)
    def output_grad(t, b, j, valid, dy, carry, zero_output):
        # gradient of the output y_t, plus the masked outputs that repeated it
        dout = zero
        if zero_output:
            if valid:
                dout = dy[b, t, j]
        elif valid:
            dout = dy[b, t, j] + carry[b, j]
            carry[b, j] = zero
        else:
            carry[b, j] += dy[b, t, j]
        return dout

    # ---- reset_after=True --------------------------------------------------------------------

    @cuda.jit
    def forward_step_ra(t, gates, mask, hprev, h_T, U, b_r, rec_h, y, zero_output):
        B, T, H = hprev.shape
        acc = cuda.local.array(3, dt)
        product3(hprev, t, 0, H, U, 0, 0, H, B, H, acc)            # h_{t-1} U: z, r, h columns of unit j
        j = cuda.blockIdx.x * TS + cuda.threadIdx.x
        b = cuda.blockIdx.y * TS + cuda.threadIdx.y
        if b >= B or j >= H:
            return
        h_prev = hprev[b, t, j]
        if mask[b, t]:
            z = sigmoid(gates[b, t, j] + acc[0] + b_r[j])            # gates holds x_t W + b_i on entry
            r = sigmoid(gates[b, t, H + j] + acc[1] + b_r[H + j])
            rh = acc[2] + b_r[2 * H + j]                             # rec_h = h_{t-1} U_h + b_rh
            hh = math.tanh(gates[b, t, 2 * H + j] + r * rh)
            h = z * h_prev + (one - z) * hh
            gates[b, t, j], gates[b, t, H + j], gates[b, t, 2 * H + j] = z, r, hh
            rec_h[b, t, j] = rh
            y[b, t, j] = h
        else:                                                      # masked: carry the state
            h = h_prev
            y[b, t, j] = zero if (zero_output or t == 0) else y[b, t - 1, j]
        finish_step(t, b, j, h, hprev, h_T, y)

    @cuda.jit
    def backward_step_ra(t, dy, mask, dxw, drec, UT, gates, hprev, rec_h, dh, carry, zero_output):
        B, T, G = dxw.shape
        H = G // 3
        acc = cuda.local.array(1, dt)
        K = G if t + 1 < T else 0
        product1(drec, t + 1, 0, K, UT, 0, 0, 0, B, H, acc)         # drec_{t+1} U^T
        j = cuda.blockIdx.x * TS + cuda.threadIdx.x
        b = cuda.blockIdx.y * TS + cuda.threadIdx.y
        if b >= B or j >= H:
            return
        d_h = dh[b, j]                                             # dh * z of step t+1 (or carried)
        if t + 1 < T and mask[b, t + 1]:
            d_h += acc[0]
        if t < 0:
            dh[b, j] = d_h
            return
        valid = mask[b, t]
        dout = output_grad(t, b, j, valid, dy, carry, zero_output)
        if not valid:
            for g in range(3):
                dxw[b, t, g * H + j] = zero
                drec[b, t, g * H + j] = zero
            dh[b, j] = d_h
            return
        d_h += dout
        z, r, hh = gates[b, t, j], gates[b, t, H + j], gates[b, t, 2 * H + j]
        da_h = d_h * (one - z) * (one - hh * hh)                   # through h = z h_prev + (1-z) hh, tanh
        da_z = d_h * (hprev[b, t, j] - hh) * z * (one - z)
        da_r = da_h * rec_h[b, t, j] * r * (one - r)               # through r * rec_h
        dxw[b, t, j], dxw[b, t, H + j], dxw[b, t, 2 * H + j] = da_z, da_r, da_h
        drec[b, t, j], drec[b, t, H + j], drec[b, t, 2 * H + j] = da_z, da_r, da_h * r
        dh[b, j] = d_h * z                                         # the direct part of dh_{t-1}

    # ---- reset_after=False -------------------------------------------------------------------

    @cuda.jit
    def forward_zr(t, gates, mask, hprev, U, rh):
        B, T, H = hprev.shape
        acc = cuda.local.array(2, dt)
        product2(hprev, t, 0, H, U, 0, 0, H, B, H, acc)            # h_{t-1} U_z, h_{t-1} U_r
        j = cuda.blockIdx.x * TS + cuda.threadIdx.x
        b = cuda.blockIdx.y * TS + cuda.threadIdx.y
        if b >= B or j >= H:
            return
        if mask[b, t]:
            z = sigmoid(gates[b, t, j] + acc[0])                     # gates holds x_t W + b on entry
            r = sigmoid(gates[b, t, H + j] + acc[1])
            gates[b, t, j], gates[b, t, H + j] = z, r
            rh[b, t, j] = r * hprev[b, t, j]
        else:
            rh[b, t, j] = zero

    @cuda.jit
    def forward_h(t, gates, mask, hprev, h_T, U, rh, y, zero_output):
        B, T, H = hprev.shape
        acc = cuda.local.array(1, dt)
        product1(rh, t, 0, H, U, 0, 2 * H, 0, B, H, acc)           # (r * h_{t-1}) U_h
        j = cuda.blockIdx.x * TS + cuda.threadIdx.x
        b = cuda.blockIdx.y * TS + cuda.threadIdx.y
        if b >= B or j >= H:
            return
        h_prev = hprev[b, t, j]
        if mask[b, t]:
            z = gates[b, t, j]
            hh = math.tanh(gates[b, t, 2 * H + j] + acc[0])
            h = z * h_prev + (one - z) * hh
            gates[b, t, 2 * H + j] = hh
            y[b, t, j] = h
        else:
            h = h_prev
            y[b, t, j] = zero if (zero_output or t == 0) else y[b, t - 1, j]
        finish_step(t, b, j, h, hprev, h_T, y)

    @cuda.jit
    def backward_zh(t, dy, mask, dxw, UT, gates, hprev, dh, carry, zero_output):
        B, T, G = dxw.shape
        H = G // 3
        acc = cuda.local.array(1, dt)
        K = 2 * H if t + 1 < T else 0
        product1(dxw, t + 1, 0, K, UT, 0, 0, 0, B, H, acc)          # [da_z, da_r]_{t+1} U_zr^T
        j = cuda.blockIdx.x * TS + cuda.threadIdx.x
        b = cuda.blockIdx.y * TS + cuda.threadIdx.y
        if b >= B or j >= H:
            return
        d_h = dh[b, j]                                             # dh * z + drh * r of step t+1
        if t + 1 < T and mask[b, t + 1]:
            d_h += acc[0]
        if t < 0:
            dh[b, j] = d_h
            return
        valid = mask[b, t]
        dout = output_grad(t, b, j, valid, dy, carry, zero_output)
        if not valid:
            for g in range(3):
                dxw[b, t, g * H + j] = zero
            dh[b, j] = d_h
            return
        d_h += dout
        z, hh = gates[b, t, j], gates[b, t, 2 * H + j]
        dxw[b, t, j] = d_h * (hprev[b, t, j] - hh) * z * (one - z)  # da_z
        dxw[b, t, 2 * H + j] = d_h * (one - z) * (one - hh * hh)     # da_h
        dh[b, j] = d_h * z

    @cuda.jit
    def backward_r(t, mask, dxw, UT, gates, hprev, dh):
        B, T, G = dxw.shape
        H = G // 3
        acc = cuda.local.array(1, dt)
        product1(dxw, t, 2 * H, H, UT, 2 * H, 0, 0, B, H, acc)      # drh = da_h U_h^T
        j = cuda.blockIdx.x * TS + cuda.threadIdx.x
        b = cuda.blockIdx.y * TS + cuda.threadIdx.y
        if b >= B or j >= H or not mask[b, t]:
            return
        r = gates[b, t, H + j]
        dxw[b, t, H + j] = acc[0] * hprev[b, t, j] * r * (one - r)  # da_r
        dh[b, j] += acc[0] * r                                      # through r * h_{t-1}

    return forward_step_ra, backward_step_ra, forward_zr, forward_h, backward_zh, backward_r


def _bias_shape(reset_after):
    return (lambda H: (2, N_GATES * H)) if reset_after else (lambda H: (N_GATES * H,))


# ---------------------------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------------------------

def forward_device(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False,
                   reset_after=True):
    """GRU forward on device arrays (see :func:`forward`); returns device arrays."""
    reset_after = bool(reset_after)
    x, mask, (h0,), W, U, bias = cc.prepare_forward(x, mask, states0, kernel, recurrent_kernel, bias,
                                                    N_GATES, 1, _bias_shape(reset_after))
    dtype = np.dtype(x.dtype)
    B, T, D = x.shape
    H = U.shape[0]
    G = N_GATES * H
    gates = cuda.device_array((B, T, G), dtype=dtype)
    b_in = bias[0] if reset_after else bias
    cc.matmul(x.reshape(B * T, D), W, gates.reshape(B * T, G), bias=b_in)   # x W + b_i, every step
    hprev = cuda.device_array((B, T, H), dtype=dtype)       # hprev[:, t] = h_{t-1}
    cc.set_step(hprev, 0, h0)
    extra = cuda.device_array((B, T, H), dtype=dtype)       # rec_h (reset_after) or r * h_{t-1}
    y = cuda.device_array((B, T, H), dtype=dtype)
    h_T = cuda.device_array((B, H), dtype=dtype)
    step_ra, _, step_zr, step_h, _, _ = _kernels(dtype.name, cc.STEP_TILE)
    grid, block = cc.step_grid(B, H)
    zero_output = bool(zero_output_for_mask)
    for t in range(T):
        if reset_after:
            step_ra[grid, block](t, gates, mask, hprev, h_T, U, bias[1], extra, y, zero_output)
        else:
            step_zr[grid, block](t, gates, mask, hprev, U, extra)
            step_h[grid, block](t, gates, mask, hprev, h_T, U, extra, y, zero_output)
    saved = (x, mask, W, U, reset_after, gates, hprev, extra, zero_output)
    return y, (h_T,), saved


def forward(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False, reset_after=True):
    """GRU forward on the GPU; the same contract as ``gru.forward``.

    x [B, T, D], mask [B, T], states0 (h0,) [B, H], kernel [D, 3H], recurrent_kernel [H, 3H],
    bias [2, 3H] (reset_after=True) or [3H] (host or device arrays). Returns host y [B, T, H],
    host (h_T,), and the device ``saved`` for :func:`backward`.
    """
    y, states, saved = forward_device(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask,
                                      reset_after)
    return y.copy_to_host(), tuple(s.copy_to_host() for s in states), saved


# ---------------------------------------------------------------------------------------------
# backward
# ---------------------------------------------------------------------------------------------

def backward_device(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """GRU BPTT on device arrays: adds into the device gradient buffers; returns
    (dx device array or None, (dh0,))."""
    x, mask, W, U, reset_after, gates, hprev, extra, zero_output = saved
    dtype = np.dtype(x.dtype)
    B, T, D = x.shape
    H = U.shape[0]
    G = N_GATES * H
    dy, (dh,) = cc.prepare_backward(dy, dstates_T, (B, T, H), 1, dtype)
    carry = cc.zeros((B, H), dtype)
    dxw = cuda.device_array((B, T, G), dtype=dtype)  # [da_z, da_r, da_h]: gradient of x_t W + b_i
    UT = cc.transpose(U)                             # [3H, H]
    _, back_ra, _, _, back_zh, back_r = _kernels(dtype.name, cc.STEP_TILE)
    grid, block = cc.step_grid(B, H)
    x2, h2, dxw2 = x.reshape(B * T, D), hprev.reshape(B * T, H), dxw.reshape(B * T, G)
    if reset_after:
        drec = cuda.device_array((B, T, G), dtype=dtype)  # [da_z, da_r, da_h * r]
        for t in range(T - 1, -2, -1):
            back_ra[grid, block](t, dy, mask, dxw, drec, UT, gates, hprev, extra, dh, carry, zero_output)
        drec2 = drec.reshape(B * T, G)
        cc.matmul(h2, drec2, drecurrent_kernel, trans_a=True, accumulate=True)
        cc.col_sum(drec2, dbias[1])
        cc.col_sum(dxw2, dbias[0])
    else:
        for t in range(T - 1, -1, -1):
            back_zh[grid, block](t, dy, mask, dxw, UT, gates, hprev, dh, carry, zero_output)
            back_r[grid, block](t, mask, dxw, UT, gates, hprev, dh)
        back_zh[grid, block](-1, dy, mask, dxw, UT, gates, hprev, dh, carry, zero_output)
        cc.matmul(h2, dxw2[:, :2 * H], drecurrent_kernel[:, :2 * H], trans_a=True, accumulate=True)
        cc.matmul(extra.reshape(B * T, H), dxw2[:, 2 * H:], drecurrent_kernel[:, 2 * H:], trans_a=True,
                  accumulate=True)
        cc.col_sum(dxw2, dbias)
    cc.matmul(x2, dxw2, dkernel, trans_a=True, accumulate=True)
    dx = None
    if need_dx:
        dx = cuda.device_array((B, T, D), dtype=dtype)
        cc.matmul(dxw2, W, dx.reshape(B * T, D), trans_b=True)
    return dx, (dh,)


def backward(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """GRU BPTT on the GPU; the same contract as ``gru.backward`` (adds into the gradient buffers,
    host or device; returns host (dx or None, (dh0,)))."""
    x, _, W, U, reset_after, *_ = saved
    bias_like = np.empty(_bias_shape(reset_after)(U.shape[0]), dtype=W.dtype)
    cc.check_host_grads(W, U, bias_like, dkernel, drecurrent_kernel, dbias)
    dtype = np.dtype(x.dtype)
    grads = [cc.zeros(tuple(a.shape), dtype) for a in (dkernel, drecurrent_kernel, dbias)]
    dx, states = backward_device(dy, dstates_T, saved, *grads, need_dx=need_dx)
    for buf, g in zip((dkernel, drecurrent_kernel, dbias), grads):
        cc.add_grads_to(buf, g)
    return (None if dx is None else dx.copy_to_host()), tuple(s.copy_to_host() for s in states)

def launched_kernels(dtype):
    """[(kernel, argument types)] of this module's launches for ``dtype`` (see ``cuda_common``)."""
    t = cc.ArgTypes(dtype)
    step_ra, back_ra, step_zr, step_h, back_zh, back_r = _kernels(np.dtype(dtype).name, cc.STEP_TILE)
    return [(step_ra, (t.i, t.a3, t.mask, t.a3, t.a2, t.a2, t.a1, t.a3, t.a3, t.b)),
            (back_ra, (t.i, t.a3, t.mask, t.a3, t.a3, t.a2, t.a3, t.a3, t.a3, t.a2, t.a2, t.b)),
            (step_zr, (t.i, t.a3, t.mask, t.a3, t.a2, t.a3)),
            (step_h, (t.i, t.a3, t.mask, t.a3, t.a2, t.a2, t.a3, t.a3, t.b)),
            (back_zh, (t.i, t.a3, t.mask, t.a3, t.a2, t.a3, t.a3, t.a2, t.a2, t.b)),
            (back_r, (t.i, t.mask, t.a3, t.a2, t.a3, t.a3, t.a2))]
