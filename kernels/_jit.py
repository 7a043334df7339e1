"""The one decorator every Numba kernel uses, layout helpers, and the float32 activations.

``kernel_jit`` compiles with ``cache=True`` so the second process starts warm. Numba raises
``RuntimeError`` at decoration time when it finds no writable cache directory (a read-only install
with no writable home); then the kernel is compiled without a cache instead of breaking the import.
Point ``NUMBA_CACHE_DIR`` at a writable folder to keep a cache in that case.

fastmath: contraction (FMA), reassociation, reciprocal and no-signed-zero flags only. Never ``nnan``
or ``ninf``: NaN and inf in the inputs must come out as NaN/inf, not as garbage.

Activations: in float64 the exact ``np.tanh`` and ``1 / (1 + exp(-x))`` (the golden tests need 1e-9).
In float32 a rational approximation of tanh (the minimax form Eigen uses for float): libm's ``tanhf``
is a scalar call LLVM cannot vectorise, and it dominated small steps. Max abs error ~3e-7 over the
whole line; NaN propagates; it saturates to +-1 beyond |x| ~ 7.9.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

FASTMATH = {"contract", "arcp", "nsz", "reassoc"}
OPTIONS = dict(nogil=True, error_model="numpy", fastmath=FASTMATH)


def kernel_jit(fn):
    """``njit`` with the project's options and a guarded on-disk cache."""
    try:
        return njit(cache=True, **OPTIONS)(fn)
    except RuntimeError:  # no writable cache location: compile per process instead
        return njit(cache=False, **OPTIONS)(fn)


# Copies are written as loops: each array-to-array slice assignment (``a[t, b] = x[b, t]``) costs
# Numba about half a second of compile time, and every first run of a kernel pays it.

@kernel_jit
def copy_rows(dst, src):
    """dst[:] = src, for two 2-D arrays of the same shape."""
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] = src[i, j]


@kernel_jit
def add_rows(dst, src):
    """dst += src, for two 2-D arrays of the same shape."""
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] += src[i, j]


@kernel_jit
def add_column_sums(dst, a):
    """dst += a.sum(axis=0), for a 2-D ``a`` [N, K] and a 1-D ``dst`` [K] (``sum(axis=0)`` alone
    costs Numba over a second of compile time)."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            dst[j] += a[i, j]


@kernel_jit
def copy_time_major(x, x_tm):
    """x_tm[t, b] = x[b, t]: a time-major copy of x [B, T, D] into x_tm [T, B, D], so that each step's
    rows are contiguous."""
    B, T, D = x.shape
    for b in range(B):
        for t in range(T):
            for d in range(D):
                x_tm[t, b, d] = x[b, t, d]


@kernel_jit
def batch_major(a_tm):
    """[T, B, D] -> a batch-major copy [B, T, D]."""
    T, B, D = a_tm.shape
    a = np.empty((B, T, D), dtype=a_tm.dtype)
    for b in range(B):
        for t in range(T):
            for d in range(D):
                a[b, t, d] = a_tm[t, b, d]
    return a


@kernel_jit
def matmul_bt(a, bt, out):
    """out = a @ bt.T, for C-contiguous a [M, K], bt [N, K] and out [M, N].

    The per-step recurrent products are small (h_{t-1} U is [B, H] x [H, G]), and there OpenBLAS's
    AVX2 (Haswell) kernels run at about half their large-matrix speed. This loop keeps each 4x4 block
    of ``out`` as 16 running sums over k in registers; LLVM vectorises the k loop (16 vector
    reductions, one horizontal sum each at the end). Measured on the project machine with one thread:
    1.5-2.8x OpenBLAS-Haswell from [16, 64] x [64, 256] up to [64, 1024] x [1024, 256], 1.2x at
    [16, 32] x [32, 128], 0.8x at [16, 16] x [16, 64] (``benchmarks/bench_products.py``). OpenBLAS's
    AVX-512 (SkylakeX) small-matrix kernels are 1.5-5x faster than this loop, so the time loops call
    BLAS instead when it reports such a core (see ``_threads.small_products_in_blas``).
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
    batch of one row, B=1 latency, only takes that path). It beats :func:`matmul_bt` when ``out`` is
    wide and K short, as in the forward product of an LSTM or GRU ([B, H] x [H, 4H] or [H, 3H]), while
    ``b`` stays in the L2 cache. One thread, float32 (``benchmarks/bench_products.py``, two runs):
    [16, 64] x [64, 256] 2.9-3.4 us against matmul_bt's 5.1-5.5, [16, 32] x [32, 128] 0.9-1.1 vs
    2.0-2.2, [16, 16] x [16, 64] 0.28-0.37 vs 0.85-0.93, [32, 128] x [128, 512] 20-23 vs 29-31; at
    [64, 256] x [256, 1024] (``b`` is 1 MiB) 191-230 vs 204-233, and no faster when N = K (simple
    RNN: a one-off probe). The 4-row passes made it 1.5-3x faster than the one-row loop alone.
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


ROWS_MAX_BYTES = 262144       # for matmul_rows to win, b must stay in L2 (2 MiB here, shared with the
FEW_ROWS_MAX_BYTES = 32768    # rest of the step), and in L1 (48 KiB) when fewer than 4 rows of out share it


@kernel_jit
def step_product(a, b, bt, out, blas):
    """out = a @ b for a per-step product: BLAS's ``np.dot`` when ``blas``; else :func:`matmul_rows`
    when ``out`` is at least 3x wider than K (the LSTM and GRU forward products) and ``b`` fits its
    cache bound (``ROWS_MAX_BYTES`` for 4 rows or more, ``FEW_ROWS_MAX_BYTES`` below), else
    :func:`matmul_bt` (``bt`` is b.T, C-contiguous). The caller decides ``blas`` once per call
    (``_threads.small_products_in_blas``); the rest depends on shapes only, so a run repeats bit for
    bit."""
    K, N = b.shape
    if blas:
        np.dot(a, b, out)
    elif N >= 3 * K and K * N * b.itemsize <= (ROWS_MAX_BYTES if a.shape[0] >= 4 else FEW_ROWS_MAX_BYTES):
        matmul_rows(a, b, out)
    else:
        matmul_bt(a, bt, out)


INPUT_ROWS_MIN_COLUMNS = 64   # input projections narrower than this stay in BLAS


@kernel_jit
def input_product(a, b, out, blas):
    """out = a @ b for the input projection of every step at once, [T * B, D] x [D, G]: BLAS's
    ``np.dot`` when ``blas`` (the same switch as :func:`step_product`), or when ``out`` has fewer than
    ``INPUT_ROWS_MIN_COLUMNS`` columns or ``b`` outgrows ``ROWS_MAX_BYTES``; else :func:`matmul_rows`.
    One thread, float32, against OpenBLAS-Haswell (``benchmarks/bench_products.py``, two runs):
    [800, 16] x [16, 256] 34-40 vs 61-65 us, [3200, 64] x [64, 512] 1.27-1.33 vs 1.72-1.86 ms,
    [6400, 128] x [128, 1024] 11.7-12.7 vs 13.5-16.5 ms; in a one-off probe [800, 8] x [8, 128] 13
    vs 18 us, about even at [800, 32] x [32, 64] and [800, 16] x [16, 64], and BLAS ahead below 64
    columns ([800, 128] x [128, 32]: 73 vs 57 us)."""
    N = b.shape[1]
    if blas or N < INPUT_ROWS_MIN_COLUMNS or b.shape[0] * N * b.itemsize > ROWS_MAX_BYTES:
        np.dot(a, b, out)
    else:
        matmul_rows(a, b, out)


KC = 1024                     # matmul_bt_add's K chunk: 8 rows' chunks (32 KiB of float32) stay in L1
MC = 64                       # and its row block of ``a``, reused across all of bt's 4-row blocks


@kernel_jit
def matmul_bt_add(a, bt, out):
    """out += a @ bt.T, for C-contiguous a [M, K], bt [N, K] and out [M, N]: the weight gradients
    summed over all steps (x^T dz, h^T dz: K = T * B).

    :func:`matmul_bt`'s 4 x 4 register blocks, over chunks of ``KC`` along K so that the 8 row chunks
    an inner loop reads stay in L1 however long K is. The chunks are row views: LLVM vectorises a loop
    over a view from 0, not one over ``range(k0, k1)`` of the whole row. One thread, float32
    (``benchmarks/bench_products.py``): 140-200 GFLOP/s at the S1-S3 weight-gradient shapes against
    OpenBLAS-Haswell's 60-115 (1.3-3x). It is no faster at the input projections ([T * B, D] x
    [D, 4H]: 1.1-1.2x at D = 128, 0.8x at D = 64, 0.3x at D = 16), which :func:`input_product` runs.
    The kernels call it whatever the BLAS core: OpenBLAS's AVX-512 kernels (about 200 GFLOP/s on
    one thread) would gain little, and a BLAS branch costs ~0.7 s more cold compile.
    ``out`` [M, N] is added into, never cleared.
    """
    M, K = a.shape
    N = bt.shape[0]
    M4, N4 = M - M % 4, N - N % 4
    zero = a.dtype.type(0.0)
    for k0 in range(0, K, KC):
        k1 = min(k0 + KC, K)
        n = k1 - k0
        for i0 in range(0, M4, MC):
            for j in range(0, N4, 4):
                b0, b1, b2, b3 = bt[j, k0:k1], bt[j + 1, k0:k1], bt[j + 2, k0:k1], bt[j + 3, k0:k1]
                for i in range(i0, min(i0 + MC, M4), 4):
                    a0, a1, a2, a3 = a[i, k0:k1], a[i + 1, k0:k1], a[i + 2, k0:k1], a[i + 3, k0:k1]
                    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
                    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
                    for k in range(n):
                        s00 += a0[k] * b0[k]
                        s01 += a0[k] * b1[k]
                        s02 += a0[k] * b2[k]
                        s03 += a0[k] * b3[k]
                        s10 += a1[k] * b0[k]
                        s11 += a1[k] * b1[k]
                        s12 += a1[k] * b2[k]
                        s13 += a1[k] * b3[k]
                        s20 += a2[k] * b0[k]
                        s21 += a2[k] * b1[k]
                        s22 += a2[k] * b2[k]
                        s23 += a2[k] * b3[k]
                        s30 += a3[k] * b0[k]
                        s31 += a3[k] * b1[k]
                        s32 += a3[k] * b2[k]
                        s33 += a3[k] * b3[k]
                    out[i, j] += s00
                    out[i, j + 1] += s01
                    out[i, j + 2] += s02
                    out[i, j + 3] += s03
                    out[i + 1, j] += s10
                    out[i + 1, j + 1] += s11
                    out[i + 1, j + 2] += s12
                    out[i + 1, j + 3] += s13
                    out[i + 2, j] += s20
                    out[i + 2, j + 1] += s21
                    out[i + 2, j + 2] += s22
                    out[i + 2, j + 3] += s23
                    out[i + 3, j] += s30
                    out[i + 3, j + 1] += s31
                    out[i + 3, j + 2] += s32
                    out[i + 3, j + 3] += s33
        for i in range(M):                         # the last N % 4 columns, and the last M % 4 rows
            ai = a[i, k0:k1]
            for j in range(N4 if i < M4 else 0, N):
                bj = bt[j, k0:k1]
                s = zero
                for k in range(n):
                    s += ai[k] * bj[k]
                out[i, j] += s


@kernel_jit
def transpose_into(src, dst, col0):
    """dst[:, col0:col0 + M] = src.T, for src [M, N] and dst [N, >= col0 + M].

    8 rows of ``src`` at a time, so that each row of ``dst`` gets 8 contiguous values per pass:
    0.2-0.45 ns a value at the LSTM dz shapes (``benchmarks/bench_products.py``). 16 x 16 tiles took
    0.8-1.2 ns in a one-off probe: their 16 reads 4 KiB apart fall into one L1 set."""
    M, N = src.shape
    M8 = M - M % 8
    for i in range(0, M8, 8):
        s0, s1, s2, s3 = src[i], src[i + 1], src[i + 2], src[i + 3]
        s4, s5, s6, s7 = src[i + 4], src[i + 5], src[i + 6], src[i + 7]
        c = col0 + i
        for j in range(N):
            dst[j, c] = s0[j]
            dst[j, c + 1] = s1[j]
            dst[j, c + 2] = s2[j]
            dst[j, c + 3] = s3[j]
            dst[j, c + 4] = s4[j]
            dst[j, c + 5] = s5[j]
            dst[j, c + 6] = s6[j]
            dst[j, c + 7] = s7[j]
    for i in range(M8, M):
        for j in range(N):
            dst[j, col0 + i] = src[i, j]


def check_gradient_buffers(W, U, dW, dU, db, bias_shape):
    """Compiled loops do not check shapes: refuse gradient buffers that do not fit the weights."""
    for name, buf, shape in (("dkernel", dW, W.shape), ("drecurrent_kernel", dU, U.shape),
                             ("dbias", db, bias_shape)):
        if buf.shape != tuple(shape) or buf.dtype != W.dtype:
            raise ValueError(f"{name}: expected a {W.dtype} buffer of shape {tuple(shape)}, "
                             f"got {buf.dtype} {buf.shape}")


def tanh(x):
    """tanh of a scalar: exact in float64, a vectorisable rational approximation in float32."""
    return np.tanh(x)


def sigmoid(x):
    """Logistic sigmoid of a scalar, 1 / (1 + exp(-x)); float32 uses 0.5 * tanh(x / 2) + 0.5."""
    return 1.0 / (1.0 + np.exp(-x))


def _tanh_f32(x):
    # clamp (written so that NaN passes through unchanged), then x * P(x^2) / Q(x^2)
    clamp = np.float32(7.90531110763549805)
    if x > clamp:
        x = clamp
    if x < -clamp:
        x = -clamp
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * p / q


def _sigmoid_f32(x):
    return np.float32(0.5) * tanh(np.float32(0.5) * x) + np.float32(0.5)


def _sigmoid_exact(x):
    return 1.0 / (1.0 + np.exp(-x))


def _tanh_exact(x):
    return np.tanh(x)


@overload(tanh, jit_options=OPTIONS)
def _tanh_overload(x):
    return _tanh_f32 if x == types.float32 else _tanh_exact


@overload(sigmoid, jit_options=OPTIONS)
def _sigmoid_overload(x):
    return _sigmoid_f32 if x == types.float32 else _sigmoid_exact
