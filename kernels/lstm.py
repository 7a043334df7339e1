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

Design: the input projection x W for every step is one large matrix product; dW and dU are one
product per chunk of steps; h_{t-1} U (forward), dz U^T and dx_t = dz W^T (backward) are per step.
The whole time loop is one compiled call, with no Python in it. Arrays are time-major inside
([T, B, ...]) so each step's rows are contiguous. The per-step products are small, and OpenBLAS's
AVX2 kernels run them at about half speed, so ``_jit.step_product`` runs them as compiled loops
unless OpenBLAS runs its AVX-512 kernels (``_threads.small_products_in_blas``): ``matmul_rows`` for
the forward product, whose result is 4x wider than K (about 2x ``matmul_bt`` at H = 16..64), and
``matmul_bt``, a register-blocked loop, for the backward ones (up to 2.8x OpenBLAS there). The input
projection takes ``matmul_rows`` too (``_jit.input_product``: 1.15-1.9x OpenBLAS-Haswell at the
S1-S3 shapes, even at 64 columns). The weight gradients dW, dU go through ``_jit.matmul_bt_add``
(1.3-3x OpenBLAS-Haswell at the benchmark shapes). It needs both operands K-contiguous: each step's
dz, x_t and h_{t-1} are transposed into dzT [4H, K], xT and hT as the step is made, for the K = 512
(step, row) columns of a chunk of steps (``GRADIENT_CHUNK_COLUMNS``); the chunk's dW, dU products
follow. Chunks keep the transposed copies small: copies of all T * B columns took 72 MiB per row
block at S3, and an S3 training step's memory fell from 391 to 263-271 MiB with chunks
(``bench_kernels.py --worker``, two runs each). On one thread they also stay in the L2 cache (S2
backward 6.8-7.0 -> 6.4-6.6 ms, S3 109 -> 104 ms, a one-off probe), but the two-thread step showed
no change in time through the noise (S2 11.7-12.7 ms either way). The loops over units index
[.., 4, H] reshapes of the gate arrays rather than taking a view per row: a view costs reference
counting, which cost more than the maths at H = 16..64. The large arrays (x_tm, gates, hs, cs and
backward's transposed chunks) are passed in: a layer's training steps take them from its workspace
(:mod:`.workspace`), so that one step reuses the memory of the last instead of faulting fresh pages
in.
"""

import numpy as np

from ._jit import (add_column_sums, batch_major, check_gradient_buffers, copy_rows, copy_time_major, input_product,
                   kernel_jit, matmul_bt_add, sigmoid, step_product, tanh, transpose_into)
from ._threads import small_products_in_blas
from .workspace import scratch


# Gate blocks of a row of the pre-activations / gates, in Keras order
I, F, C, O = 0, 1, 2, 3

# Backward gathers this many (step, row) columns of dz, x and h_{t-1} before each weight-gradient
# product, so the transposed copies stay small (see the module docstring)
GRADIENT_CHUNK_COLUMNS = 512


@kernel_jit
def _forward_loop(x, mask, h0, c0, W, U, bias, zero_output_for_mask, blas_steps, x_tm, gates, hs, cs):
    B, T, D = x.shape
    H = U.shape[0]
    G = 4 * H
    # time-major copy of the input, then the input projection for all steps at once
    copy_time_major(x, x_tm)
    input_product(x_tm.reshape(T * B, D), W, gates.reshape(T * B, G), blas_steps)
    copy_rows(hs[0], h0)                           # hs[t] = h_{t-1}: saved for backward, as cs
    copy_rows(cs[0], c0)
    y = np.empty((B, T, H), dtype=x.dtype)
    z = np.empty((B, G), dtype=x.dtype)
    UT = np.ascontiguousarray(U.T)
    # [.., 4, H] views: gate k of unit j is [.., k, j]. The loops index arrays directly instead of
    # taking a view per row: each view costs reference counting, which dominated small steps
    a = gates.reshape(T, B, 4, H)                  # x_t W, overwritten by the activated gates
    r = z.reshape(B, 4, H)                         # h_{t-1} U
    b4 = bias.reshape(4, H)
    for t in range(T):
        step_product(hs[t], U, UT, z, blas_steps)  # z = h_{t-1} U
        for b in range(B):
            if not mask[b, t]:                     # masked: carry the state, repeat the output
                for j in range(H):
                    hs[t + 1, b, j] = hs[t, b, j]
                    cs[t + 1, b, j] = cs[t, b, j]
                    y[b, t, j] = 0.0 if zero_output_for_mask or t == 0 else y[b, t - 1, j]
                continue
            for j in range(H):                     # z = x_t W + h_{t-1} U + b, then the gates
                a[t, b, I, j] = sigmoid(a[t, b, I, j] + r[b, I, j] + b4[I, j])
            for j in range(H):
                a[t, b, F, j] = sigmoid(a[t, b, F, j] + r[b, F, j] + b4[F, j])
            for j in range(H):
                a[t, b, C, j] = tanh(a[t, b, C, j] + r[b, C, j] + b4[C, j])
            for j in range(H):
                a[t, b, O, j] = sigmoid(a[t, b, O, j] + r[b, O, j] + b4[O, j])
            for j in range(H):                     # c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
                c = a[t, b, F, j] * cs[t, b, j] + a[t, b, I, j] * a[t, b, C, j]
                h = a[t, b, O, j] * tanh(c)
                cs[t + 1, b, j] = c
                hs[t + 1, b, j] = h
                y[b, t, j] = h
    return y


@kernel_jit
def _backward_loop(dy, dh_T, dc_T, mask, x_tm, W, U, gates, hs, cs, zero_output_for_mask,
                   dW, dU, db, need_dx, blas_steps, chunk_steps, dzT_buf, xT_buf, hT_buf, dx_tm):
    T, B, G = gates.shape
    one = gates.dtype.type(1.0)  # a 1 of the array dtype: keeps float32 maths in float32
    H = G // 4
    D = x_tm.shape[2]
    UT = np.ascontiguousarray(U.T)
    WT = np.ascontiguousarray(W.T)
    dz = np.empty((B, G), dtype=gates.dtype)       # this step's gradient of the gate pre-activations
    dh = dh_T.copy()
    dc = dc_T.copy()
    dy_carry = np.zeros((B, H), dtype=gates.dtype)  # output gradient repeated over masked steps
    dh_rec = np.empty((B, H), dtype=gates.dtype)
    a = gates.reshape(T, B, 4, H)                  # the activated gates i, f, g, o
    d = dz.reshape(B, 4, H)
    for last in range(T - 1, -1, -chunk_steps):    # chunks of steps, from the end
        n = min(chunk_steps, last + 1) * B
        # this chunk's dz, x_t and h_{t-1}, transposed: column (last - t) * B + b (flat buffers
        # reshaped, so the arrays stay C-contiguous whatever the chunk's length)
        dzT = dzT_buf[:G * n].reshape(G, n)
        xT = xT_buf[:D * n].reshape(D, n)
        hT = hT_buf[:H * n].reshape(H, n)
        for t in range(last, last - n // B, -1):
            for b in range(B):
                if not mask[b, t]:
                    for k in range(G):
                        dz[b, k] = 0.0             # no gradient into a masked input
                    if not zero_output_for_mask:
                        for j in range(H):
                            dy_carry[b, j] += dy[b, t, j]
                    continue
                for j in range(H):                 # dh: from step t+1 and from the output y_t
                    dh[b, j] += dy[b, t, j] + dy_carry[b, j]
                    dy_carry[b, j] = 0.0
                for j in range(H):                 # through h = o * tanh(c)
                    tc = tanh(cs[t + 1, b, j])
                    o = a[t, b, O, j]
                    d[b, O, j] = dh[b, j] * tc * o * (one - o)
                    dc[b, j] += dh[b, j] * o * (one - tc * tc)
                for j in range(H):                 # through c = f * c_prev + i * g
                    i = a[t, b, I, j]
                    d[b, I, j] = dc[b, j] * a[t, b, C, j] * i * (one - i)
                for j in range(H):
                    f = a[t, b, F, j]
                    d[b, F, j] = dc[b, j] * cs[t, b, j] * f * (one - f)
                for j in range(H):
                    g = a[t, b, C, j]
                    d[b, C, j] = dc[b, j] * a[t, b, I, j] * (one - g * g)
                for j in range(H):                 # dc_{t-1}
                    dc[b, j] *= a[t, b, F, j]
            step_product(dz, UT, U, dh_rec, blas_steps)  # dh_{t-1} = dz U^T
            for b in range(B):
                if mask[b, t]:
                    for j in range(H):
                        dh[b, j] = dh_rec[b, j]
            if need_dx:
                step_product(dz, WT, W, dx_tm[t], blas_steps)  # dx_t = dz W^T
            col = (last - t) * B
            transpose_into(dz, dzT, col)
            transpose_into(x_tm[t], xT, col)
            transpose_into(hs[t], hT, col)
            add_column_sums(db, dz)
        # weight gradients of the chunk: one product each, K = its steps x rows
        matmul_bt_add(xT, dzT, dW)                 # dW += x^T dz
        matmul_bt_add(hT, dzT, dU)                 # dU += h_{t-1}^T dz
    dx = batch_major(dx_tm) if need_dx else np.empty((0, 0, 0), dtype=gates.dtype)
    return dx, dh, dc


def forward(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False, workspace=None):
    """LSTM forward over a whole sequence.

    Parameters
    ----------
    x : [B, T, D] C-contiguous float32 or float64
    mask : [B, T] bool, True on valid steps
    states0 : (h0, c0), each [B, H]
    kernel, recurrent_kernel, bias : [D, 4H], [H, 4H], [4H] in x's dtype (Keras layout)
    workspace : a :class:`~minirnn.kernels.workspace.Workspace` whose buffers this call and its
        backward reuse (training), or None for fresh arrays (inference, or calls from several threads)

    Returns
    -------
    y : [B, T, H] outputs; ``y[:, -1]`` is each row's last valid output
    states : (h_T, c_T), each [B, H]
    saved : what :func:`backward` needs (time-major input, every h and c, activated gates)
    """
    h0, c0 = states0
    B, T, D = x.shape
    H = h0.shape[1]
    x_tm, gates, hs, cs = scratch(workspace, "forward", x.dtype, (T, B, D), (T, B, 4 * H), (T + 1, B, H),
                                  (T + 1, B, H))
    y = _forward_loop(x, mask, h0, c0, kernel, recurrent_kernel, bias, zero_output_for_mask,
                      small_products_in_blas(), x_tm, gates, hs, cs)
    saved = (mask, x_tm, kernel, recurrent_kernel, gates, hs, cs, zero_output_for_mask, workspace)
    return y, (hs[T].copy(), cs[T].copy()), saved


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
    chunk_steps = max(1, min(T, GRADIENT_CHUNK_COLUMNS // max(B, 1)))
    n = chunk_steps * B
    dzT, xT, hT, dx_tm = scratch(workspace, "backward", x_tm.dtype, (4 * H * n,), (D * n,), (H * n,),
                                 (T if need_dx else 0, B, D))
    dx, dh0, dc0 = _backward_loop(dy, dh_T, dc_T, mask, x_tm, W, U, gates, hs, cs, zero_output_for_mask,
                                  dkernel, drecurrent_kernel, dbias, need_dx, small_products_in_blas(),
                                  chunk_steps, dzT, xT, hT, dx_tm)
    return (dx if need_dx else None), (dh0, dc0)
