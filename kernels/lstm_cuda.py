"""LSTM cell on CUDA (Numba's CUDA target): forward and backprop-through-time, side by side.

Shapes: B batch, T time, D input features, H units, G = 4H gate columns.
Weights (Keras layout and gate order i, f, c, o): kernel W [D, 4H], recurrent_kernel U [H, 4H],
bias b [4H]. States (h, c), each [B, H]. Checked against ``reference.py`` (``lstm_forward``).

Forward, for each step t and row with mask[b, t] true::

    z   = x_t W + b + h_{t-1} U                  (split into z_i, z_f, z_c, z_o)
    i   = sigmoid(z_i)    f = sigmoid(z_f)    g = tanh(z_c)    o = sigmoid(z_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)                          (the output y_t)

Masking: a masked step keeps (h, c); its output repeats the previous output (zeros before the
first valid step), or is zero with ``zero_output_for_mask``; its input gets no gradient. A row with
no valid step returns its initial states. Gaps are allowed.

Backward, per valid step, with dh = dh_t (from t+1) + dy_t and dc = dc_t (from t+1)::

    do = dh * tanh(c_t)                          c_t recomputed as f * c_{t-1} + i * g
    dc = dc + dh * o * (1 - tanh(c_t)^2)
    dz_i = dc * g * i(1-i)    dz_f = dc * c_{t-1} * f(1-f)    dz_c = dc * i * (1-g^2)
    dz_o = do * o(1-o)
    dh_{t-1} = dz U^T         dc_{t-1} = dc * f
    dW += x^T dz    dU += h_prev^T dz    db += sum dz    dx = dz W^T     (over all B * T rows)

Launches. Forward: one tiled product for ``x W + b`` over all B * T rows, then one kernel per step
that computes ``h_{t-1} U`` for a TS x TS tile of (row, unit) -- each thread all four gates of its
unit, so the gate maths, the state update, masking and the output are fused into the same launch.
Backward: one kernel per step that computes ``dz_{t+1} U^T`` (the recurrent gradient into h_t) and
fuses it with the gate gradients of step t, one more for dh_0, then three products and a column sum
over all B * T rows for dW, dU, db and dx. So T + 1 launches forward, T + 5 backward.

Saved by ``forward`` for ``backward`` (device arrays, batch-major): x, mask, W, U, the activated
gates [B, T, 4H] (written over the projection buffer), h_{t-1} and c_{t-1} of every step
[B, T, H] each. tanh(c_t) is recomputed, not stored.
"""

import functools
import math

import numpy as np
from numba import cuda, from_dtype

from . import cuda_common as cc

N_GATES = 4


@functools.lru_cache(maxsize=None)
def _kernels(dtype, TS):
    dt = from_dtype(np.dtype(dtype))
    one, zero = np.dtype(dtype).type(1.0), np.dtype(dtype).type(0.0)
    product4 = cc.step_product(dtype, TS, N_GATES)
    product1 = cc.step_product(dtype, TS, 1)

    @cuda.jit(device=True)
    def sigmoid(v):
        return one / (one + math.exp(-v))

    @cuda.jit
    def forward_step(t, gates, mask, hprev, cprev, h_T, c_T, U, y, zero_output):
        B, T, H = hprev.shape
        acc = cuda.local.array(N_GATES, dt)
        product4(hprev, t, 0, H, U, 0, 0, H, B, H, acc)            # h_{t-1} U: 4 gate columns of unit j
        j = cuda.blockIdx.x * TS + cuda.threadIdx.x
        b = cuda.blockIdx.y * TS + cuda.threadIdx.y
        if b >= B or j >= H:
            return
        h_prev, c_prev = hprev[b, t, j], cprev[b, t, j]
        if mask[b, t]:
            i = sigmoid(gates[b, t, j] + acc[0])                    # gates holds x_t W + b on entry
            f = sigmoid(gates[b, t, H + j] + acc[1])
            g = math.tanh(gates[b, t, 2 * H + j] + acc[2])
            o = sigmoid(gates[b, t, 3 * H + j] + acc[3])
            c = f * c_prev + i * g                                  # c_t = f * c_{t-1} + i * g
            h = o * math.tanh(c)                                    # h_t = o * tanh(c_t)
            gates[b, t, j], gates[b, t, H + j] = i, f               # keep the activations for backward
            gates[b, t, 2 * H + j], gates[b, t, 3 * H + j] = g, o
            y[b, t, j] = h
        else:                                                       # masked: carry the state
            h, c = h_prev, c_prev
            y[b, t, j] = zero if (zero_output or t == 0) else y[b, t - 1, j]
        if t + 1 < T:
            hprev[b, t + 1, j], cprev[b, t + 1, j] = h, c
        else:
            h_T[b, j], c_T[b, j] = h, c

    @cuda.jit
    def backward_step(t, dy, mask, dz, UT, gates, cprev, dh, dc, carry, zero_output):
        # t = -1 only finishes dh_0 = dz_0 U^T (for rows valid at step 0)
        B, T, G = dz.shape
        H = G // N_GATES
        acc = cuda.local.array(1, dt)
        K = G if t + 1 < T else 0
        product1(dz, t + 1, 0, K, UT, 0, 0, 0, B, H, acc)           # dz_{t+1} U^T: gradient into h_t
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
        dout = zero                                                 # gradient of the output y_t
        if zero_output:
            if valid:
                dout = dy[b, t, j]
        elif valid:                                                 # plus the outputs that repeated it
            dout = dy[b, t, j] + carry[b, j]
            carry[b, j] = zero
        else:
            carry[b, j] += dy[b, t, j]
        if not valid:                                               # masked: no gradient into x_t
            for g in range(N_GATES):
                dz[b, t, g * H + j] = zero
            dh[b, j] = d_h
            return
        d_h += dout
        i, f = gates[b, t, j], gates[b, t, H + j]
        g, o = gates[b, t, 2 * H + j], gates[b, t, 3 * H + j]
        c_prev = cprev[b, t, j]
        tc = math.tanh(f * c_prev + i * g)                          # tanh(c_t), recomputed
        d_c = dc[b, j] + d_h * o * (one - tc * tc)                  # through h = o * tanh(c)
        dz[b, t, j] = d_c * g * i * (one - i)                       # through c = f * c_prev + i * g
        dz[b, t, H + j] = d_c * c_prev * f * (one - f)
        dz[b, t, 2 * H + j] = d_c * i * (one - g * g)
        dz[b, t, 3 * H + j] = d_h * tc * o * (one - o)
        dc[b, j] = d_c * f                                          # dc_{t-1}
        dh[b, j] = zero                                             # dh_{t-1} comes from the next launch

    return forward_step, backward_step


# ---------------------------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------------------------

def forward_device(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False):
    """LSTM forward on device arrays (see :func:`forward`); returns device arrays."""
    x, mask, (h0, c0), W, U, b = cc.prepare_forward(x, mask, states0, kernel, recurrent_kernel, bias,
                                                    N_GATES, 2, lambda H: (N_GATES * H,))
    dtype = np.dtype(x.dtype)
    B, T, D = x.shape
    H = U.shape[0]
    G = N_GATES * H
    gates = cuda.device_array((B, T, G), dtype=dtype)
    cc.matmul(x.reshape(B * T, D), W, gates.reshape(B * T, G), bias=b)   # x W + b, every step at once
    hprev = cuda.device_array((B, T, H), dtype=dtype)         # hprev[:, t] = h_{t-1}
    cprev = cuda.device_array((B, T, H), dtype=dtype)
    cc.set_step(hprev, 0, h0)
    cc.set_step(cprev, 0, c0)
    y = cuda.device_array((B, T, H), dtype=dtype)
    h_T = cuda.device_array((B, H), dtype=dtype)
    c_T = cuda.device_array((B, H), dtype=dtype)
    step, _ = _kernels(dtype.name, cc.STEP_TILE)
    grid, block = cc.step_grid(B, H)
    zero_output = bool(zero_output_for_mask)
    for t in range(T):
        step[grid, block](t, gates, mask, hprev, cprev, h_T, c_T, U, y, zero_output)
    saved = (x, mask, W, U, gates, hprev, cprev, zero_output)
    return y, (h_T, c_T), saved


def forward(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False):
    """LSTM forward over a whole sequence, on the GPU; the same contract as ``lstm.forward``.

    Parameters
    ----------
    x : [B, T, D] float32 or float64 (host, or a device array)
    mask : [B, T] bool, True on valid steps
    states0 : (h0, c0), each [B, H]
    kernel, recurrent_kernel, bias : [D, 4H], [H, 4H], [4H] in x's dtype (Keras layout)

    Returns
    -------
    y : [B, T, H] host array; ``y[:, -1]`` is each row's last valid output
    states : (h_T, c_T) host arrays [B, H]
    saved : device arrays for :func:`backward`
    """
    y, states, saved = forward_device(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask)
    return y.copy_to_host(), tuple(s.copy_to_host() for s in states), saved


# ---------------------------------------------------------------------------------------------
# backward
# ---------------------------------------------------------------------------------------------

def backward_device(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """LSTM backprop through time on device arrays; adds into the device gradient buffers and
    returns (dx [B, T, D] device array or None, (dh0, dc0) device arrays)."""
    x, mask, W, U, gates, hprev, cprev, zero_output = saved
    dtype = np.dtype(x.dtype)
    B, T, D = x.shape
    H = U.shape[0]
    G = N_GATES * H
    dy, (dh, dc) = cc.prepare_backward(dy, dstates_T, (B, T, H), 2, dtype)
    carry = cc.zeros((B, H), dtype)                # output gradient repeated over masked steps
    dz = cuda.device_array((B, T, G), dtype=dtype)  # gradient of the gate pre-activations
    UT = cc.transpose(U)                           # [4H, H], so the per-step tiles read rows
    _, step = _kernels(dtype.name, cc.STEP_TILE)
    grid, block = cc.step_grid(B, H)
    for t in range(T - 1, -2, -1):
        step[grid, block](t, dy, mask, dz, UT, gates, cprev, dh, dc, carry, zero_output)
    # parameter gradients and dx: one product each over all B * T rows
    dz2 = dz.reshape(B * T, G)
    cc.matmul(x.reshape(B * T, D), dz2, dkernel, trans_a=True, accumulate=True)
    cc.matmul(hprev.reshape(B * T, H), dz2, drecurrent_kernel, trans_a=True, accumulate=True)
    cc.col_sum(dz2, dbias)
    dx = None
    if need_dx:
        dx = cuda.device_array((B, T, D), dtype=dtype)
        cc.matmul(dz2, W, dx.reshape(B * T, D), trans_b=True)
    return dx, (dh, dc)


def backward(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """LSTM backprop through time on the GPU; the same contract as ``lstm.backward``.

    dy [B, T, H] and dstates_T (dh_T, dc_T) are the upstream gradients; ``saved`` comes from
    :func:`forward`. Adds into dkernel, drecurrent_kernel, dbias (host or device arrays); returns
    (dx or None, (dh0, dc0)) as host arrays.
    """
    x, _, W, U, *_ = saved
    cc.check_host_grads(W, U, _bias_like(W), dkernel, drecurrent_kernel, dbias)
    dtype = np.dtype(x.dtype)
    grads = [cc.zeros(tuple(a.shape), dtype) for a in (dkernel, drecurrent_kernel, dbias)]
    dx, states = backward_device(dy, dstates_T, saved, *grads, need_dx=need_dx)
    for buf, g in zip((dkernel, drecurrent_kernel, dbias), grads):
        cc.add_grads_to(buf, g)
    return (None if dx is None else dx.copy_to_host()), tuple(s.copy_to_host() for s in states)


def _bias_like(W):
    return np.empty((W.shape[1],), dtype=W.dtype)

def launched_kernels(dtype):
    """[(kernel, argument types)] of this module's launches for ``dtype`` (see ``cuda_common``)."""
    t = cc.ArgTypes(dtype)
    forward_step, backward_step = _kernels(np.dtype(dtype).name, cc.STEP_TILE)
    return [(forward_step, (t.i, t.a3, t.mask, t.a3, t.a3, t.a2, t.a2, t.a2, t.a3, t.b)),
            (backward_step, (t.i, t.a3, t.mask, t.a3, t.a2, t.a3, t.a3, t.a2, t.a2, t.a2, t.b))]
