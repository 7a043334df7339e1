"""Simple (Elman) RNN cell with tanh, compiled with Numba: forward and backprop-through-time, side by side.

Read ``reference.py``'s ``simple_rnn_forward`` / ``simple_rnn_backward`` first: the same maths in
plain NumPy, one step at a time. This module computes the same thing (the tests hold it to 1e-10 of
the reference in float64), with the time loop compiled and the large products batched.

Shapes: B batch, T time, D input features, H units.
Weights (Keras layout): kernel W [D, H], recurrent_kernel U [H, H], bias b [H]. State h [B, H].

Forward, for each step t and row with mask[b, t] true::

    h_t = tanh(x_t W + h_{t-1} U + b)            (the output y_t)

Backward, per valid step, with dh = dh_t (from t+1) + dy_t::

    da = dh * (1 - h_t^2)                        (through tanh)
    dh_{t-1} = da U^T
    dW += x_t^T da    dU += h_{t-1}^T da    db += sum_b da    dx_t = da W^T

Masking (Keras semantics, as in the reference): a masked step keeps h and gets da = 0, so its input
gets no gradient and the state's gradient passes through it unchanged; its output repeats the
previous output (zeros before the row's first valid step), or is zero with ``zero_output_for_mask``,
and in the first case the output gradient it receives is carried back to the step whose output it
repeats (``dy_carry``).

How the work is laid out is the same in all three cells; ``lstm.py``'s docstring describes it, and
the pieces are in :mod:`.linalg`: the input projection of every step in one product, only h_{t-1} U
and da U^T per step, and backward in chunks of steps whose weight, bias and input gradients are a few
products each (``accumulate_weight_grads``, ``input_grad_product``).
"""

from types import SimpleNamespace

import numpy as np

from ._jit import kernel_jit, once_per_flag
from ._threads import small_products_in_blas
from .activations import tanh
from .linalg import (accumulate_weight_grads, add_column_sums, batch_major, check_gradient_buffers, chunk_steps,
                     copy_rows, copy_time_major, input_grad_product, input_product, step_product,
                     transposed_for_step, weight_grad_scratch)
from .workspace import scratch


@once_per_flag
def loops(blas):
    """The cell's compiled time loops, ``forward`` and ``backward``, with their products in BLAS
    (``blas`` True) or in :mod:`.linalg`'s blocked loops (False).

    Why ``blas`` is a constant of the closures rather than an argument: see
    :func:`minirnn.kernels.lstm.loops`.
    """

    @kernel_jit
    def forward_loop(x, mask, h0, W, U, bias, zero_output_for_mask, x_tm, xw, hs, y):
        B, T, D = x.shape
        H = U.shape[0]
        keep = hs.shape[0] == T + 1                    # training: every state, for backward (see lstm.py)
        every = y.shape[1] == T                        # every output, or only the last (y [B, 1, H])
        copy_time_major(x, x_tm)
        input_product(x_tm, W, xw, blas)               # x_t W for every step at once
        copy_rows(hs[0], h0)                           # hs[t] = h_{t-1}: saved for backward
        zr = np.empty((B, H), dtype=x.dtype)
        UT = transposed_for_step(U, B, blas)
        for t in range(T):
            p = t if keep else t & 1                   # hs[p] = h_{t-1}, hs[n] = h_t
            n = p + 1 if keep else p ^ 1
            s = t if every else 0                      # y[:, s] = y_t
            step_product(hs[p], U, UT, zr, blas)       # h_{t-1} U
            for b in range(B):
                if not mask[b, t]:                     # masked: carry the state, repeat the output
                    for j in range(H):
                        hs[n, b, j] = hs[p, b, j]
                        y[b, s, j] = 0.0 if zero_output_for_mask or t == 0 else y[b, s - 1 if every else 0, j]
                    continue
                for j in range(H):                     # h_t = tanh(x_t W + h_{t-1} U + b)
                    h = tanh(xw[t, b, j] + zr[b, j] + bias[j])
                    hs[n, b, j] = h
                    y[b, s, j] = h

    @kernel_jit
    def backward_loop(dy, dh_T, mask, x_tm, W, U, hs, zero_output_for_mask, dW, dU, db, need_dx,
                       da, wg, dx_tm):
        T, B, D = x_tm.shape
        H = U.shape[0]
        one = x_tm.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
        chunk = da.shape[0]                            # da [chunk, B, H]: the chunk's pre-activation gradients
        UT = np.ascontiguousarray(U.T)
        WT = np.ascontiguousarray(W.T)
        dh = dh_T.copy()                               # the gradient reaching h_t from step t+1
        dy_carry = np.zeros((B, H), dtype=hs.dtype)    # output gradient repeated over masked steps
        dh_rec = np.empty((B, H), dtype=hs.dtype)
        for t1 in range(T, 0, -chunk):                 # chunks of steps t0 <= t < t1, from the last
            t0 = max(t1 - chunk, 0)
            for t in range(t1 - 1, t0 - 1, -1):
                s = t - t0                             # step t's rows in the chunk
                for b in range(B):
                    if not mask[b, t]:
                        for j in range(H):
                            da[s, b, j] = 0.0          # no gradient into a masked step
                            if not zero_output_for_mask:
                                dy_carry[b, j] += dy[b, t, j]
                        continue
                    for j in range(H):                 # da = (dh_t + dy_t) (1 - h_t^2)
                        dh_j = dh[b, j] + dy[b, t, j] + dy_carry[b, j]
                        dy_carry[b, j] = 0.0
                        da[s, b, j] = dh_j * (one - hs[t + 1, b, j] * hs[t + 1, b, j])
                step_product(da[s], UT, U, dh_rec, blas)   # dh_{t-1} = da U^T
                for b in range(B):
                    if mask[b, t]:
                        for j in range(H):
                            dh[b, j] = dh_rec[b, j]
            n = t1 - t0                                # the chunk's sums over its steps and rows:
            accumulate_weight_grads(x_tm[t0:t1], da[:n], dW, hs[t0:t1], da[:n], dU, 0, blas, wg)  # dW, dU
            add_column_sums(db, da[:n])                # db += sum da
            if need_dx:
                input_grad_product(da[:n], WT, W, dx_tm[t0:t1], blas)  # dx_t = da W^T
        dx = batch_major(dx_tm) if need_dx else np.empty((0, 0, 0), dtype=hs.dtype)
        return dx, dh

    return SimpleNamespace(forward=forward_loop, backward=backward_loop)


def forward(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False, workspace=None,
            training=True, all_outputs=True):
    """Simple RNN forward: x [B, T, D], mask [B, T] bool, states0 (h0,) -> (y [B, T, H], (h_T,), saved).

    ``workspace``, ``training`` (False: ``saved`` is None) and ``all_outputs`` (False: y [B, 1, H]):
    see :func:`minirnn.kernels.lstm.forward`."""
    (h0,) = states0
    B, T, D = x.shape
    H = h0.shape[1]
    x_tm, xw, hs = scratch(workspace, "forward" if training else "inference", x.dtype, (T, B, D), (T, B, H),
                           (T + 1 if training else 2, B, H))
    y = np.empty((B, T if all_outputs else 1, H), dtype=x.dtype)
    loops(small_products_in_blas()).forward(x, mask, h0, kernel, recurrent_kernel, bias, zero_output_for_mask,
                                            x_tm, xw, hs, y)
    states = (hs[T if training else T & 1].copy(),)
    if not training:
        return y, states, None
    return y, states, (mask, x_tm, kernel, recurrent_kernel, hs, zero_output_for_mask, workspace)


def backward(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """Simple RNN BPTT: adds into dkernel, drecurrent_kernel, dbias; returns (dx or None, (dh0,))."""
    mask, x_tm, W, U, hs, zero_output_for_mask, workspace = saved
    check_gradient_buffers(W, U, dkernel, drecurrent_kernel, dbias, (W.shape[1],))
    (dh_T,) = dstates_T
    T, B, D = x_tm.shape
    H = U.shape[0]
    chunk = chunk_steps(T, B)
    da, wg, dx_tm = scratch(workspace, "backward", x_tm.dtype, (chunk, B, H),
                            weight_grad_scratch(chunk * B, max(D, H), H), (T if need_dx else 0, B, D))
    backward_loop = loops(small_products_in_blas()).backward
    dx, dh0 = backward_loop(dy, dh_T, mask, x_tm, W, U, hs, zero_output_for_mask, dkernel, drecurrent_kernel, dbias,
                            need_dx, da, wg, dx_tm)
    return (dx if need_dx else None), (dh0,)
