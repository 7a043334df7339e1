"""LSTM cell, compiled with Numba: forward and backprop-through-time, side by side.

Read ``reference.py``'s ``lstm_forward`` / ``lstm_backward`` first: the same maths in plain NumPy,
one step at a time. This module computes the same thing (the tests hold it to 1e-10 of the
reference in float64), with the time loop compiled and the large products batched.

Shapes: B batch, T time, D input features, H units, G = 4H gate columns.
Weights (Keras layout and gate order i, f, c, o): kernel W [D, 4H], recurrent_kernel U [H, 4H],
bias b [4H]. States (h, c), each [B, H].

Forward, for each step t and row with mask[b, t] true::

    z   = x_t W + h_{t-1} U + b                  (split into z_i, z_f, z_c, z_o)
    i   = sigmoid(z_i)    f = sigmoid(z_f)    g = tanh(z_c)    o = sigmoid(z_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)                          (the output y_t)

Backward, per valid step, with dh = dh_t (from t+1) + dy_t and dc = dc_t (from t+1)::

    do = dh * tanh(c_t)
    dc = dc + dh * o * (1 - tanh(c_t)^2)
    dz_i = dc * g * i(1-i)    dz_f = dc * c_{t-1} * f(1-f)    dz_c = dc * i * (1-g^2)
    dz_o = do * o(1-o)
    dh_{t-1} = dz U^T         dc_{t-1} = dc * f
    dW += x_t^T dz    dU += h_{t-1}^T dz    db += sum_b dz    dx_t = dz W^T

Masking (Keras semantics, as in the reference): a masked step keeps (h, c) and gets dz = 0, so its
input gets no gradient and the states' gradients pass through it unchanged; its output repeats the
previous output (zeros before the row's first valid step), or is zero with
``zero_output_for_mask``, and in the first case the output gradient it receives is carried back to
the step whose output it repeats (``dy_carry``).

How the work is laid out (the same plan in all three cells; the pieces are in :mod:`.linalg`):

* inside, arrays are time-major ([T, B, ...]) so that each step's rows are contiguous;
* the input projection x_t W of every step is one product before the time loop
  (``input_product``); only h_{t-1} U (forward) and dz U^T (backward) run per step
  (``step_product``), because each needs the step before;
* backward runs in chunks of steps from the last (``chunk_steps``): it keeps one chunk's dz, and
  after each chunk adds dW, dU (``accumulate_weight_grads``), db and dx (``input_grad_product``)
  with products over the chunk's steps * B rows;
* each product runs in BLAS or in a register-blocked compiled loop, whichever suits the BLAS's
  core (the ``blas`` flag, ``_threads.small_products_in_blas``; see :mod:`.linalg`);
* the whole time loop is one compiled call, with no Python in it; the loops over units index
  [.., 4, H] reshapes of the gate arrays instead of taking a view per row (a view costs reference
  counting, which would cost more than the maths at small H);
* the large arrays (x_tm, gates, hs, cs, and backward's chunk and scratch) are passed in: a layer's
  training steps take them from its workspace (:mod:`.workspace`), so that one step reuses the
  memory of the last instead of faulting fresh pages in.
"""

from types import SimpleNamespace

import numpy as np

from ._jit import kernel_jit, once_per_flag
from ._threads import small_products_in_blas
from .activations import sigmoid, tanh
from .linalg import (accumulate_weight_grads, add_column_sums, batch_major, check_gradient_buffers, chunk_steps,
                     copy_rows, copy_time_major, input_grad_product, input_product, step_product,
                     transposed_for_step, weight_grad_scratch)
from .workspace import scratch


# Gate blocks of a row of the pre-activations / gates, in Keras order
I, F, C, O = 0, 1, 2, 3


@once_per_flag
def loops(blas):
    """The cell's compiled time loops, ``forward`` and ``backward``, with their products in BLAS
    (``blas`` True) or in :mod:`.linalg`'s blocked loops (False).

    ``blas`` is a constant of these closures: Numba compiles only the branch of each product that
    the variant takes, and caches each variant apart (it keys a closure's cache on the closure's
    values). A first call compiles about half as much code as loops taking ``blas`` as an argument.
    :func:`forward` and :func:`backward` take the variant ``_threads.small_products_in_blas()``
    names (one per process, chosen from the environment).
    """

    @kernel_jit
    def forward_loop(x, mask, h0, c0, W, U, bias, zero_output_for_mask, x_tm, gates, hs, cs, y):
        B, T, D = x.shape
        H = U.shape[0]
        G = 4 * H
        keep = hs.shape[0] == T + 1                    # training: every state, for backward; else two, alternating
        every = y.shape[1] == T                        # every output, or only the last (y [B, 1, H])
        copy_time_major(x, x_tm)
        input_product(x_tm, W, gates, blas)            # x_t W for every step at once
        copy_rows(hs[0], h0)                           # hs[t] = h_{t-1}, cs[t] = c_{t-1}: saved for backward
        copy_rows(cs[0], c0)
        z = np.empty((B, G), dtype=x.dtype)
        UT = transposed_for_step(U, B, blas)
        a = gates.reshape(T, B, 4, H)                  # x_t W, overwritten by the activated gates
        r = z.reshape(B, 4, H)                         # h_{t-1} U
        b4 = bias.reshape(4, H)
        for t in range(T):
            p = t if keep else t & 1                   # hs[p] = h_{t-1}, hs[n] = h_t
            n = p + 1 if keep else p ^ 1
            s = t if every else 0                      # y[:, s] = y_t
            step_product(hs[p], U, UT, z, blas)        # h_{t-1} U
            for b in range(B):
                if not mask[b, t]:                     # masked: carry the states, repeat the output
                    for j in range(H):
                        hs[n, b, j] = hs[p, b, j]
                        cs[n, b, j] = cs[p, b, j]
                        y[b, s, j] = 0.0 if zero_output_for_mask or t == 0 else y[b, s - 1 if every else 0, j]
                    continue
                for j in range(H):                     # i = sigmoid(z_i), z = x_t W + h_{t-1} U + b
                    a[t, b, I, j] = sigmoid(a[t, b, I, j] + r[b, I, j] + b4[I, j])
                for j in range(H):                     # f = sigmoid(z_f)
                    a[t, b, F, j] = sigmoid(a[t, b, F, j] + r[b, F, j] + b4[F, j])
                for j in range(H):                     # g = tanh(z_c)
                    a[t, b, C, j] = tanh(a[t, b, C, j] + r[b, C, j] + b4[C, j])
                for j in range(H):                     # o = sigmoid(z_o)
                    a[t, b, O, j] = sigmoid(a[t, b, O, j] + r[b, O, j] + b4[O, j])
                for j in range(H):                     # c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
                    c = a[t, b, F, j] * cs[p, b, j] + a[t, b, I, j] * a[t, b, C, j]
                    h = a[t, b, O, j] * tanh(c)
                    cs[n, b, j] = c
                    hs[n, b, j] = h
                    y[b, s, j] = h

    @kernel_jit
    def backward_loop(dy, dh_T, dc_T, mask, x_tm, W, U, gates, hs, cs, zero_output_for_mask,
                       dW, dU, db, need_dx, dz, wg, dx_tm):
        T, B, G = gates.shape
        H = G // 4
        one = gates.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
        chunk = dz.shape[0]                            # dz [chunk, B, G]: the chunk's gate gradients
        UT = np.ascontiguousarray(U.T)
        WT = np.ascontiguousarray(W.T)
        dh = dh_T.copy()                               # the gradient reaching h_t, c_t from step t+1
        dc = dc_T.copy()
        dy_carry = np.zeros((B, H), dtype=gates.dtype)  # output gradient repeated over masked steps
        dh_rec = np.empty((B, H), dtype=gates.dtype)
        a = gates.reshape(T, B, 4, H)                  # the activated gates i, f, g, o
        d = dz.reshape(chunk, B, 4, H)
        for t1 in range(T, 0, -chunk):                 # chunks of steps t0 <= t < t1, from the last
            t0 = max(t1 - chunk, 0)
            for t in range(t1 - 1, t0 - 1, -1):
                s = t - t0                             # step t's rows in the chunk
                for b in range(B):
                    if not mask[b, t]:
                        for k in range(G):
                            dz[s, b, k] = 0.0          # no gradient into a masked step
                        if not zero_output_for_mask:
                            for j in range(H):
                                dy_carry[b, j] += dy[b, t, j]
                        continue
                    for j in range(H):                 # dh = dh_t + dy_t
                        dh[b, j] += dy[b, t, j] + dy_carry[b, j]
                        dy_carry[b, j] = 0.0
                    for j in range(H):                 # dz_o = dh tanh(c_t) o(1-o);  dc += dh o (1 - tanh(c_t)^2)
                        tc = tanh(cs[t + 1, b, j])
                        o = a[t, b, O, j]
                        d[s, b, O, j] = dh[b, j] * tc * o * (one - o)
                        dc[b, j] += dh[b, j] * o * (one - tc * tc)
                    for j in range(H):                 # dz_i = dc g i(1-i)
                        i = a[t, b, I, j]
                        d[s, b, I, j] = dc[b, j] * a[t, b, C, j] * i * (one - i)
                    for j in range(H):                 # dz_f = dc c_{t-1} f(1-f)
                        f = a[t, b, F, j]
                        d[s, b, F, j] = dc[b, j] * cs[t, b, j] * f * (one - f)
                    for j in range(H):                 # dz_c = dc i (1-g^2)
                        g = a[t, b, C, j]
                        d[s, b, C, j] = dc[b, j] * a[t, b, I, j] * (one - g * g)
                    for j in range(H):                 # dc_{t-1} = dc f
                        dc[b, j] *= a[t, b, F, j]
                step_product(dz[s], UT, U, dh_rec, blas)   # dh_{t-1} = dz U^T
                for b in range(B):
                    if mask[b, t]:
                        for j in range(H):
                            dh[b, j] = dh_rec[b, j]
            n = t1 - t0                                # the chunk's sums over its steps and rows:
            accumulate_weight_grads(x_tm[t0:t1], dz[:n], dW, hs[t0:t1], dz[:n], dU, 0, blas, wg)  # dW, dU
            add_column_sums(db, dz[:n])                # db += sum dz
            if need_dx:
                input_grad_product(dz[:n], WT, W, dx_tm[t0:t1], blas)  # dx_t = dz W^T
        dx = batch_major(dx_tm) if need_dx else np.empty((0, 0, 0), dtype=gates.dtype)
        return dx, dh, dc

    return SimpleNamespace(forward=forward_loop, backward=backward_loop)


def forward(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False, workspace=None,
            training=True, all_outputs=True):
    """LSTM forward over a whole sequence.

    Parameters
    ----------
    x : [B, T, D] C-contiguous float32 or float64
    mask : [B, T] bool, True on valid steps
    states0 : (h0, c0), each [B, H]
    kernel, recurrent_kernel, bias : [D, 4H], [H, 4H], [4H] in x's dtype (Keras layout)
    workspace : a :class:`~minirnn.kernels.workspace.Workspace` whose buffers this call and its
        backward reuse (training), or None for fresh arrays (inference, or calls from several threads)
    training : keep every state and gate for :func:`backward` (False: only the latest state, and
        ``saved`` is None; prediction)
    all_outputs : y holds every step's output (False: only the last step's, y [B, 1, H])

    Returns
    -------
    y : [B, T, H] outputs (or [B, 1, H]); ``y[:, -1]`` is each row's last valid output
    states : (h_T, c_T), each [B, H]
    saved : what :func:`backward` needs (time-major input, every h and c, activated gates), or None
    """
    h0, c0 = states0
    B, T, D = x.shape
    H = h0.shape[1]
    kept = T + 1 if training else 2
    x_tm, gates, hs, cs = scratch(workspace, "forward" if training else "inference", x.dtype, (T, B, D),
                                  (T, B, 4 * H), (kept, B, H), (kept, B, H))
    y = np.empty((B, T if all_outputs else 1, H), dtype=x.dtype)
    loops(small_products_in_blas()).forward(x, mask, h0, c0, kernel, recurrent_kernel, bias, zero_output_for_mask,
                                            x_tm, gates, hs, cs, y)
    last = T if training else T & 1
    states = (hs[last].copy(), cs[last].copy())
    if not training:
        return y, states, None
    return y, states, (mask, x_tm, kernel, recurrent_kernel, gates, hs, cs, zero_output_for_mask, workspace)


def backward(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """LSTM backprop through time.

    dy [B, T, H] and dstates_T (dh_T, dc_T) are the upstream gradients; ``saved`` comes from
    :func:`forward`. Adds into dkernel, drecurrent_kernel, dbias; returns (dx or None, (dh0, dc0)).
    """
    mask, x_tm, W, U, gates, hs, cs, zero_output_for_mask, workspace = saved
    check_gradient_buffers(W, U, dkernel, drecurrent_kernel, dbias, (W.shape[1],))
    dh_T, dc_T = dstates_T
    T, B, D = x_tm.shape
    H = U.shape[0]
    chunk = chunk_steps(T, B)
    dz, wg, dx_tm = scratch(workspace, "backward", x_tm.dtype, (chunk, B, 4 * H),
                            weight_grad_scratch(chunk * B, max(D, H), 4 * H), (T if need_dx else 0, B, D))
    backward_loop = loops(small_products_in_blas()).backward
    dx, dh0, dc0 = backward_loop(dy, dh_T, dc_T, mask, x_tm, W, U, gates, hs, cs, zero_output_for_mask,
                                 dkernel, drecurrent_kernel, dbias, need_dx, dz, wg, dx_tm)
    return (dx if need_dx else None), (dh0, dc0)
