"""The products and copies the cell kernels call: the machinery, kept out of the cell maths.

Every cell (``simple_rnn.py``, ``lstm.py``, ``gru.py``) runs the same plan, and this module holds its
pieces:

* copies between the batch-major layout of the API ([B, T, ...]) and the time-major layout inside
  ([T, B, ...], so that each step's rows are contiguous): :func:`copy_time_major`,
  :func:`batch_major`, and small row copies and sums;
* the products of every step at once, [steps * B, K] x [K, N]: the input projection ``x W``
  (:func:`input_product`) and, in backward, the input gradient ``dz W^T`` (:func:`input_grad_product`);
* the per-step recurrent products ``h_{t-1} U`` and ``dz U^T`` (:func:`step_product`), small, inside
  the time loop;
* the weight gradients, ``dW += sum_t x_t^T dz_t`` and ``dU += sum_t h_{t-1}^T dz_t``
  (:func:`accumulate_weight_grads`), one call per chunk of steps of the backward pass.

BLAS or compiled loops. OpenBLAS's AVX2 (Haswell) kernels run small matrices at about half their
large-matrix speed, and the per-step products are small ([B, H] x [H, 4H]); so are the pieces of
the weight gradients. Its AVX-512 (SkylakeX and later) kernels do not have that weakness. Each
primitive therefore takes a ``blas`` flag, decided once per process from the core OpenBLAS picked
(``_threads.small_products_in_blas``): with it, ``np.dot`` inside the compiled code (BLAS); without
it, register-blocked loops that LLVM vectorises (:func:`matmul_bt`, :func:`matmul_rows`). The flag
depends on the environment only and the rest of each choice on shapes only, so a run repeats bit
for bit on one machine. ``benchmarks/bench_products.py`` times the loops against BLAS at the
benchmark shapes.

Compile time is part of the user's first step, so the module keeps it down:

* the cells pass ``blas`` as a constant of their loops' closures (each cell's ``loops(blas)``), not
  as an argument: Numba drops the branch a constant rules out before compiling, so a process
  compiles either the BLAS calls or the blocked loops, not both (on AVX-512 machines, where BLAS
  runs the products, a first LSTM prediction compiles in about half the time);
* the functions that only choose between BLAS and a loop (:func:`step_product`,
  :func:`input_product`, :func:`input_grad_product`, :func:`accumulate_weight_grads`) are inlined
  into their callers (``_jit.inline_jit``), so that the blocked loops compile once on their own and
  once into each time loop, not once more per level of calls;
* one blocked dot-product loop, :func:`matmul_bt`, serves the per-step products, the input
  gradients and the weight gradients;
* the small copies and sums (:func:`copy_time_major`, :func:`copy_rows`, :func:`batch_major`, ...)
  are inlined too: compiled on their own as well, each would cost a first call a compile of its
  own (up to a second for the time-major copy) for a few lines of loop;
* copies are loops: an array-to-array slice assignment (``a[t, b] = x[b, t]``) costs Numba far more
  compile time than the loop it stands for;
* every caller passes C-contiguous arrays, so each function compiles once per dtype, and no call
  between compiled functions passes a literal constant (``0``): Numba would compile the callee once
  more for each literal value, so a constant goes in typed (``np.int64(col0)``).
"""

import numpy as np
from numba.extending import register_jitable

from ._jit import inline_jit, kernel_jit

# ---------------------------------------------------------------------------------------------
# Layout: time-major copies, row copies and sums
# ---------------------------------------------------------------------------------------------


@inline_jit
def copy_time_major(x, x_tm):
    """x_tm[t, b] = x[b, t]: a time-major copy of x [B, T, D] into x_tm [T, B, D], so that each step's
    rows are contiguous."""
    B, T, D = x.shape
    for b in range(B):
        for t in range(T):
            for d in range(D):
                x_tm[t, b, d] = x[b, t, d]


@inline_jit
def batch_major(a_tm):
    """[T, B, D] -> a batch-major copy [B, T, D]."""
    T, B, D = a_tm.shape
    a = np.empty((B, T, D), dtype=a_tm.dtype)
    for b in range(B):
        for t in range(T):
            for d in range(D):
                a[b, t, d] = a_tm[t, b, d]
    return a


@inline_jit
def copy_rows(dst, src):
    """dst[:] = src, for two 2-D arrays of the same shape."""
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] = src[i, j]


@inline_jit
def add_steps(dst, src):
    """dst += src, for two arrays [steps, B, K] of the same shape."""
    for t in range(dst.shape[0]):
        for b in range(dst.shape[1]):
            for j in range(dst.shape[2]):
                dst[t, b, j] += src[t, b, j]


@inline_jit
def add_column_sums(dst, a):
    """dst += the sum of a [steps, B, K] over its steps and rows, into dst [K]: a bias gradient
    (``a.sum(axis=(0, 1))`` would cost Numba far more compile time than this loop)."""
    for t in range(a.shape[0]):
        for b in range(a.shape[1]):
            for j in range(a.shape[2]):
                dst[j] += a[t, b, j]


@kernel_jit
def transpose_into(src, dst):
    """dst = src.T, for src [M, N] and dst [N, M].

    8 rows of ``src`` at a time, so that each row of ``dst`` gets 8 contiguous values per pass and
    the 8 rows being read stay in L1. Square tiles (16 x 16) are slower here: their 16 reads, a
    power-of-two row length apart, fall into one L1 set."""
    M, N = src.shape
    M8 = M - M % 8
    for i in range(0, M8, 8):
        s0, s1, s2, s3 = src[i], src[i + 1], src[i + 2], src[i + 3]
        s4, s5, s6, s7 = src[i + 4], src[i + 5], src[i + 6], src[i + 7]
        for j in range(N):
            dst[j, i] = s0[j]
            dst[j, i + 1] = s1[j]
            dst[j, i + 2] = s2[j]
            dst[j, i + 3] = s3[j]
            dst[j, i + 4] = s4[j]
            dst[j, i + 5] = s5[j]
            dst[j, i + 6] = s6[j]
            dst[j, i + 7] = s7[j]
    for i in range(M8, M):
        for j in range(N):
            dst[j, i] = src[i, j]


# ---------------------------------------------------------------------------------------------
# Register-blocked products
# ---------------------------------------------------------------------------------------------


@kernel_jit
def matmul_bt(a, bt, out):
    """out = a @ bt.T, for C-contiguous a [M, K], bt [N, K] and out [M, N]: dot products along K.

    Each 4x4 block of ``out`` is 16 running sums over k, kept in registers; LLVM vectorises the k
    loop (16 vector reductions, one horizontal sum each at the end). Both operands are read along
    their rows, so neither needs a transposed copy. It suits products whose K is long next to N:
    the backward's per-step ``dz U^T``, the input gradients ``dz W^T`` and the weight gradients,
    whose K is a chunk's (step, row) columns (:func:`accumulate_weight_grads`, which also bounds
    how much of bt one call sweeps). The last M % 4 rows go in 1 x 4 blocks (a batch of one row,
    B=1 latency, only takes that path).
    """
    M, K = a.shape
    N = bt.shape[0]
    M4, N4 = M - M % 4, N - N % 4
    zero = a.dtype.type(0.0)
    for i in range(0, M4, 4):
        for j in range(0, N4, 4):
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
            for k in range(K):
                a0, a1, a2, a3 = a[i, k], a[i + 1, k], a[i + 2, k], a[i + 3, k]
                b0, b1, b2, b3 = bt[j, k], bt[j + 1, k], bt[j + 2, k], bt[j + 3, k]
                s00 += a0 * b0
                s01 += a0 * b1
                s02 += a0 * b2
                s03 += a0 * b3
                s10 += a1 * b0
                s11 += a1 * b1
                s12 += a1 * b2
                s13 += a1 * b3
                s20 += a2 * b0
                s21 += a2 * b1
                s22 += a2 * b2
                s23 += a2 * b3
                s30 += a3 * b0
                s31 += a3 * b1
                s32 += a3 * b2
                s33 += a3 * b3
            out[i, j], out[i, j + 1], out[i, j + 2], out[i, j + 3] = s00, s01, s02, s03
            out[i + 1, j], out[i + 1, j + 1], out[i + 1, j + 2], out[i + 1, j + 3] = s10, s11, s12, s13
            out[i + 2, j], out[i + 2, j + 1], out[i + 2, j + 2], out[i + 2, j + 3] = s20, s21, s22, s23
            out[i + 3, j], out[i + 3, j + 1], out[i + 3, j + 2], out[i + 3, j + 3] = s30, s31, s32, s33
        for j in range(N4, N):                     # the last N % 4 columns
            for ii in range(i, i + 4):
                s0 = zero
                for k in range(K):
                    s0 += a[ii, k] * bt[j, k]
                out[ii, j] = s0
    for i in range(M4, M):                         # the last M % 4 rows: 1 x 4, then 1 x 1 blocks
        for j in range(0, N4, 4):
            s0 = s1 = s2 = s3 = zero
            for k in range(K):
                a0 = a[i, k]
                s0 += a0 * bt[j, k]
                s1 += a0 * bt[j + 1, k]
                s2 += a0 * bt[j + 2, k]
                s3 += a0 * bt[j + 3, k]
            out[i, j], out[i, j + 1], out[i, j + 2], out[i, j + 3] = s0, s1, s2, s3
        for j in range(N4, N):
            s0 = zero
            for k in range(K):
                s0 += a[i, k] * bt[j, k]
            out[i, j] = s0


@kernel_jit
def matmul_rows(a, b, out):
    """out = a @ b, for C-contiguous a [M, K], b [K, N] and out [M, N], by rows of ``out``: each row
    accumulates rows of ``b`` scaled by that row of ``a``.

    Four rows of ``out`` at a time, four rows of ``b`` per pass: each vector of ``b`` loaded serves 16
    multiply-adds, and the loop over a row of ``out`` is contiguous, so LLVM vectorises it with no
    horizontal sums at the end. The last M % 4 rows go one at a time, eight rows of ``b`` per pass (a
    batch of one row, B=1 latency, only takes that path). It suits products whose ``out`` is wide and
    K short, as the LSTM and GRU forward products ([B, H] x [H, 4H] or [H, 3H]) and input
    projections, as long as ``b`` stays in cache (see ``ROWS_MAX_BYTES``).
    """
    M, K = a.shape
    N = b.shape[1]
    M4, K4, K8 = M - M % 4, K - K % 4, K - K % 8
    for i in range(0, M4, 4):
        for r in range(i, i + 4):
            for n in range(N):
                out[r, n] = 0.0
        for k in range(0, K4, 4):
            a00, a01, a02, a03 = a[i, k], a[i, k + 1], a[i, k + 2], a[i, k + 3]
            a10, a11, a12, a13 = a[i + 1, k], a[i + 1, k + 1], a[i + 1, k + 2], a[i + 1, k + 3]
            a20, a21, a22, a23 = a[i + 2, k], a[i + 2, k + 1], a[i + 2, k + 2], a[i + 2, k + 3]
            a30, a31, a32, a33 = a[i + 3, k], a[i + 3, k + 1], a[i + 3, k + 2], a[i + 3, k + 3]
            for n in range(N):
                b0, b1, b2, b3 = b[k, n], b[k + 1, n], b[k + 2, n], b[k + 3, n]
                out[i, n] += (a00 * b0 + a01 * b1) + (a02 * b2 + a03 * b3)
                out[i + 1, n] += (a10 * b0 + a11 * b1) + (a12 * b2 + a13 * b3)
                out[i + 2, n] += (a20 * b0 + a21 * b1) + (a22 * b2 + a23 * b3)
                out[i + 3, n] += (a30 * b0 + a31 * b1) + (a32 * b2 + a33 * b3)
        for k in range(K4, K):                     # the last K % 4 rows of b
            a0, a1, a2, a3 = a[i, k], a[i + 1, k], a[i + 2, k], a[i + 3, k]
            for n in range(N):
                bk = b[k, n]
                out[i, n] += a0 * bk
                out[i + 1, n] += a1 * bk
                out[i + 2, n] += a2 * bk
                out[i + 3, n] += a3 * bk
    for i in range(M4, M):                         # the last M % 4 rows of out, one at a time
        for n in range(N):
            out[i, n] = 0.0
        for k in range(0, K8, 8):
            a0, a1, a2, a3 = a[i, k], a[i, k + 1], a[i, k + 2], a[i, k + 3]
            a4, a5, a6, a7 = a[i, k + 4], a[i, k + 5], a[i, k + 6], a[i, k + 7]
            for n in range(N):
                out[i, n] += ((a0 * b[k, n] + a1 * b[k + 1, n]) + (a2 * b[k + 2, n] + a3 * b[k + 3, n])) + \
                             ((a4 * b[k + 4, n] + a5 * b[k + 5, n]) + (a6 * b[k + 6, n] + a7 * b[k + 7, n]))
        for k in range(K8, K):
            a0 = a[i, k]
            for n in range(N):
                out[i, n] += a0 * b[k, n]


# ---------------------------------------------------------------------------------------------
# Per-step products: h_{t-1} U forward, dz U^T backward
# ---------------------------------------------------------------------------------------------

ROWS_MAX_BYTES = 262144       # for matmul_rows to win, b must stay in L2 (shared with the rest of
FEW_ROWS_MAX_BYTES = 32768    # the step), and in L1 when fewer than 4 rows of out share it


@register_jitable
def _by_rows(M, b):
    """Whether :func:`step_product` runs [M, K] x b [K, N] with :func:`matmul_rows`."""
    K, N = b.shape
    return N >= 3 * K and K * N * b.itemsize <= (ROWS_MAX_BYTES if M >= 4 else FEW_ROWS_MAX_BYTES)


@inline_jit
def step_product(a, b, bt, out, blas):
    """out = a @ b for a per-step product: BLAS's ``np.dot`` when ``blas``; else :func:`matmul_rows`
    when ``out`` is at least 3x wider than K (the LSTM and GRU forward products) and ``b`` fits its
    cache bound (``ROWS_MAX_BYTES`` for 4 rows or more, ``FEW_ROWS_MAX_BYTES`` below), else
    :func:`matmul_bt` (``bt`` is b.T, C-contiguous: the caller makes it once per call, not per step,
    with :func:`transposed_for_step`)."""
    if blas:
        np.dot(a, b, out)
    elif _by_rows(a.shape[0], b):
        matmul_rows(a, b, out)
    else:
        matmul_bt(a, bt, out)


@inline_jit
def transposed_for_step(b, M, blas):
    """The ``bt`` argument of :func:`step_product` for products [M, K] x b: a C-contiguous copy of
    b.T when the product runs in :func:`matmul_bt`, else b itself (unread; no copy)."""
    if blas or _by_rows(M, b):
        return b
    return np.ascontiguousarray(b.T)


# ---------------------------------------------------------------------------------------------
# Products of every step at once: x W forward, dz W^T backward
# ---------------------------------------------------------------------------------------------

INPUT_ROWS_MIN_COLUMNS = 64   # input projections narrower than this stay in BLAS


@inline_jit
def input_product(x, W, out, blas):
    """out[t] = x[t] @ W for every step at once, x [steps, B, D], W [D, G], out [steps, B, G]: the
    forward's input projection, one [steps * B, D] x [D, G] product.

    BLAS's ``np.dot`` when ``blas`` (the switch of :func:`step_product`), or when ``out`` has fewer
    than ``INPUT_ROWS_MIN_COLUMNS`` columns (narrower, BLAS keeps up with the loop or beats it), or
    when ``W`` outgrows ``ROWS_MAX_BYTES``; else :func:`matmul_rows`, whose wide, short rows suit
    this shape."""
    steps, B, D = x.shape
    G = W.shape[1]
    x2, out2 = x.reshape(steps * B, D), out.reshape(steps * B, G)
    if blas or G < INPUT_ROWS_MIN_COLUMNS or D * G * W.itemsize > ROWS_MAX_BYTES:
        np.dot(x2, W, out2)
    else:
        matmul_rows(x2, W, out2)


@inline_jit
def input_grad_product(dz, WT, W, dx, blas):
    """dx[t] = dz[t] @ W^T for every step of a chunk at once, dz [steps, B, G], W [D, G] (WT its
    C-contiguous transpose), dx [steps, B, D]: the backward's gradient into the inputs.

    BLAS's ``np.dot`` when ``blas``; else :func:`matmul_bt`, dot products along G between the rows of
    dz and of W, both contiguous there (the product is long in G and narrow in D, the shape it
    suits)."""
    steps, B, G = dz.shape
    D = W.shape[0]
    dz2, dx2 = dz.reshape(steps * B, G), dx.reshape(steps * B, D)
    if blas:
        np.dot(dz2, WT, dx2)
    else:
        matmul_bt(dz2, W, dx2)


# ---------------------------------------------------------------------------------------------
# Weight gradients: the one design the three cells share
# ---------------------------------------------------------------------------------------------

GRADIENT_CHUNK_COLUMNS = 512  # (step, row) columns per chunk of the backward pass
_ALIGN_ITEMS = 16             # scratch views start on 64-byte lines (16 float32, 2 lines of float64)


def chunk_steps(T, B):
    """Steps per chunk of a backward pass over T steps of B rows: ``GRADIENT_CHUNK_COLUMNS`` (step,
    row) columns, at least one step, at most all T.

    Every cell's backward walks its steps from the last in chunks of this many, keeps the gradients
    of one chunk's pre-activations only ([steps, B, G], reused from chunk to chunk), and after each
    chunk adds its weight, bias and input gradients with a few large products
    (:func:`accumulate_weight_grads`, :func:`input_grad_product`). Why chunks: one product per step
    would be small (the weakness of BLAS and of register blocks alike), and one product over all T
    steps would need every step's gradients kept, and their transposed copies, growing with T."""
    return max(1, min(T, GRADIENT_CHUNK_COLUMNS // max(B, 1)))


@register_jitable
def _aligned(n):
    """n items rounded up to whole 64-byte lines."""
    return -(-n // _ALIGN_ITEMS) * _ALIGN_ITEMS


def weight_grad_scratch(n, K, N):
    """The shape of the scratch :func:`accumulate_weight_grads` needs for chunks of n (step, row)
    columns, inputs up to K wide (D and H) and pre-activation gradients up to N wide: room for the
    transposed copies and a block's product on the loop path, or for the product of the BLAS path."""
    return (max(_aligned(N * n) + _aligned(K * n) + K * GRADIENT_BLOCK_ROWS, K * N),)


@inline_jit
def _add_block(out, p, col0):
    """out[:, col0:col0 + N] += p [M, N]."""
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            out[i, col0 + j] += p[i, j]


GRADIENT_BLOCK_ROWS = 64      # rows of a chunk's transposed gradient per matmul_bt call


@inline_jit
def _bt_blocks_add(aT, dzT, out, col0, buf):
    """out[:, col0:col0 + N] += aT @ dzT.T, by blocks of ``GRADIENT_BLOCK_ROWS`` rows of dzT [N, n]:
    matmul_bt sweeps its whole bt for every 4 rows of its a, so one call per block keeps the block
    in L2 while all of aT passes it; each block's product goes to ``buf`` [M * block], then into out."""
    M = aT.shape[0]
    N = dzT.shape[0]
    for j0 in range(0, N, GRADIENT_BLOCK_ROWS):
        j1 = min(j0 + GRADIENT_BLOCK_ROWS, N)
        p = buf[:M * (j1 - j0)].reshape(M, j1 - j0)
        matmul_bt(aT, dzT[j0:j1], p)
        _add_block(out, p, col0 + j0)


@inline_jit
def accumulate_weight_grads(x, dz_x, dW, h, dz_h, dU, col0, blas, scratch):
    """dW += sum_t x_t^T dz_t and dU += sum_t h_{t-1}^T dz_t over the steps t of one chunk, into the
    columns from ``col0`` on: the weight gradients of a pre-activation ``x_t W + h_{t-1} U + b`` whose
    gradient is dz (passed as both dz_x and dz_h; the GRU passes two arrays where the input and
    recurrent parts get different gradients).

    x [steps, B, D] and h [steps, B, H] are the chunk's inputs and previous states (slices of the
    time-major arrays that forward saved), dz_x and dz_h [steps, B, N]; dW [D, >= col0 + N] and
    dU [H, >= col0 + N] are added into. Each product sums over the chunk's steps * B (step, row)
    columns. ``scratch`` is a 1-D buffer of :func:`weight_grad_scratch`'s shape.

    BLAS path (``blas``): ``np.dot(x^T, dz)`` into scratch, then added into dW; BLAS reads the
    transposed operand in place. Loop path: :func:`matmul_bt` takes both operands contiguous along
    the columns it sums over, so each is first transposed into scratch (:func:`transpose_into`):
    dz [steps * B, N] -> [N, steps * B], x -> [D, steps * B], and h likewise (dz_h only when it is
    not dz_x itself); then the product goes block by block of dz's columns into scratch and is added
    into dW (:func:`_bt_blocks_add`). A chunk keeps those copies small and in cache.

    Why two paths behind one call: these products are long and thin ([D or H, steps * B] x
    [steps * B, N]). OpenBLAS's AVX2 kernels run them no faster than the register-blocked loop, and
    slower at small shapes; its AVX-512 kernels run them faster (``benchmarks/bench_products.py``,
    "weight_grads" lines, with and without ``OPENBLAS_CORETYPE=Haswell``). So the same ``blas``
    switch as for the per-step products picks the faster path for the machine, for every cell.
    """
    steps, B, D = x.shape
    H = h.shape[2]
    N = dz_x.shape[2]
    n = steps * B
    x2, h2 = x.reshape(n, D), h.reshape(n, H)
    dzx2, dzh2 = dz_x.reshape(n, N), dz_h.reshape(n, N)
    c0 = np.int64(col0)
    if blas:
        p = scratch[:D * N].reshape(D, N)
        np.dot(x2.T, dzx2, p)
        _add_block(dW, p, c0)
        p = scratch[:H * N].reshape(H, N)
        np.dot(h2.T, dzh2, p)
        _add_block(dU, p, c0)
    else:
        dzT = scratch[:N * n].reshape(N, n)
        at = _aligned(N * n)
        pt = at + _aligned(max(D, H) * n)
        xT = scratch[at:at + D * n].reshape(D, n)
        transpose_into(dzx2, dzT)
        transpose_into(x2, xT)
        _bt_blocks_add(xT, dzT, dW, c0, scratch[pt:])
        if dz_h is not dz_x:
            transpose_into(dzh2, dzT)
        hT = scratch[at:at + H * n].reshape(H, n)
        transpose_into(h2, hT)
        _bt_blocks_add(hT, dzT, dU, c0, scratch[pt:])


def check_gradient_buffers(W, U, dW, dU, db, bias_shape):
    """Compiled loops do not check shapes: refuse gradient buffers that do not fit the weights."""
    for name, buf, shape in (("dkernel", dW, W.shape), ("drecurrent_kernel", dU, U.shape),
                             ("dbias", db, bias_shape)):
        if buf.shape != tuple(shape) or buf.dtype != W.dtype:
            raise ValueError(f"{name}: expected a {W.dtype} buffer of shape {tuple(shape)}, "
                             f"got {buf.dtype} {buf.shape}")
