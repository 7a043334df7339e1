"""Shared pieces of the CUDA kernels: tiled matrix products, the per-step tile product, reductions.

Used by ``simple_rnn_cuda.py``, ``lstm_cuda.py`` and ``gru_cuda.py`` (and the device training path).
Imports only numpy and numba: never ``minirnn``. CPU modules never import this file.

Layout on the device. Every sequence tensor is batch-major and C-contiguous, ``[B, T, C]``, so that
``a.reshape(B * T, C)`` is a free view: the input projection ``x W`` for all steps, the weight
gradients ``x^T dz`` and ``h_prev^T dz``, and ``dx = dz W^T`` are then each one 2-D product over
``B * T`` rows (:func:`matmul`). Only the recurrence is per step.

Block sizes (module level, read when a kernel is first built for a size; tests shrink them to run
the multi-block paths on tiny shapes):

- ``MATMUL_TILE`` (BM): a block computes a BM x BM tile of the output; ``MATMUL_K`` (BK): the depth
  of one shared-memory stage; ``MATMUL_RB``: each thread computes RB x RB outputs (register blocking),
  so a block has (BM / RB)^2 threads.
- ``STEP_TILE`` (TS): a per-step recurrent kernel runs TS x TS threads, one per (row b, unit j),
  each computing every gate of unit j; the shared stage is TS deep.

Kernels are built by small factories (``functools.lru_cache``) for a dtype and the block sizes,
because shared arrays need their shape and dtype at compile time.

Activations: ``math.exp`` / ``math.tanh`` (``expf`` / ``tanhf`` in float32). fastmath is off: NaN and
inf propagate. Literals and accumulators take the data's dtype (``np.float32(0.0)``, not ``0.0``), so
that a float32 kernel never computes in float64.

Every module with kernels lists them in ``launched_kernels(dtype)``: each kernel the host code
launches, built at the production block sizes, with the Numba types of the arguments it is launched
with. ``tests/test_cuda_ptx.py`` compiles that list to PTX for real GPUs (no GPU needed), and checks
that it names every ``@cuda.jit`` kernel of the package.
"""

import functools

import numpy as np
from numba import cuda, from_dtype, types

MATMUL_TILE = 64
MATMUL_K = 16
MATMUL_RB = 4
STEP_TILE = 16
COLSUM_ROWS = 256          # rows reduced by one block of ``col_sum`` before its atomic add

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def simulated():
    """True when Numba runs CUDA kernels in its CPU simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    from numba import config
    return bool(config.ENABLE_CUDASIM)


def gpu_available():
    """True when a real CUDA GPU is usable (the simulator does not count)."""
    return not simulated() and cuda.is_available()


if simulated():
    class _KernelCuda:
        """The simulator swaps the ``cuda`` global of a device function per call and per thread,
        which races when many threads of a block run one device function defined in another module
        (a thread can find ``cuda`` restored mid-call). Device functions here reach the kernel's
        simulated ``cuda`` module through this proxy instead."""

        def __getattr__(self, name):
            from numba.cuda.simulator.kernel import _get_kernel_context
            return getattr(_get_kernel_context(), name)

    kcuda = _KernelCuda()

    def _patch_simulator_shared_arrays():
        """The simulator finds a block's shared array by the (file, line) that declares it, but
        looks it up and stores it without a lock: two threads arriving together can each create
        their own copy, and the block then computes with two different "shared" arrays. Declare them
        under a lock (and without walking the whole stack, which is slow)."""
        import sys
        import threading

        from numba.cuda.simulator import kernelapi
        from numba.core import types
        from numba.np import numpy_support

        shared = kernelapi.FakeCUDAShared
        if getattr(shared.array, "_minirnn_locked", False):
            return
        unlocked, lock = shared.array, threading.Lock()

        def array(self, shape, dtype):
            if shape == 0:                             # dynamic shared memory: one buffer for all
                return unlocked(self, shape, dtype)
            if isinstance(dtype, types.Type):
                dtype = numpy_support.as_dtype(dtype)
            frame = sys._getframe(1)
            caller = (frame.f_code.co_filename, frame.f_lineno)
            with lock:
                res = self._allocations.get(caller)
                if res is None:
                    res = self._allocations[caller] = np.empty(shape, dtype)
            return res

        array._minirnn_locked = True
        shared.array = array

    _patch_simulator_shared_arrays()
else:
    kcuda = cuda                                   # the real target: plain ``cuda.*`` intrinsics


def _ceil(a, b):
    return (a + b - 1) // b


# ---------------------------------------------------------------------------------------------
# Host <-> device helpers
# ---------------------------------------------------------------------------------------------

if simulated():
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as _DeviceArray
else:
    from numba.cuda.cudadrv.devicearray import DeviceNDArray as _DeviceArray


def is_device_array(a):
    """True for a Numba device array (or the simulator's stand-in), or any object exporting
    ``__cuda_array_interface__`` (CuPy, PyTorch CUDA tensors)."""
    return isinstance(a, _DeviceArray) or hasattr(a, "__cuda_array_interface__")


def to_device(name, a, dtype=None, ndim=None):
    """A device array for ``a`` (a host array is copied; a device array is used as is).

    Checks the dtype (float32/float64, or ``dtype``) and the number of dimensions, so that a
    compiled kernel never sees a wrong layout.
    """
    if not is_device_array(a):
        a = np.asarray(a)
        if a.dtype.kind == "f" and not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        a = cuda.to_device(np.ascontiguousarray(a))
    elif not isinstance(a, _DeviceArray):
        a = cuda.as_cuda_array(a)
    if dtype is not None and np.dtype(a.dtype) != np.dtype(dtype):
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype).name}, got {np.dtype(a.dtype).name}")
    if dtype is None and np.dtype(a.dtype) not in FLOATS:
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {np.dtype(a.dtype).name}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(a.shape)}")
    return a


def mask_to_device(mask, B, T):
    """mask [B, T] (bool or 0/1) -> a uint8 device array; refuses other shapes."""
    if is_device_array(mask):
        m = mask if isinstance(mask, _DeviceArray) else cuda.as_cuda_array(mask)
        if tuple(m.shape) != (B, T) or np.dtype(m.dtype) != np.uint8:
            raise ValueError(f"mask: expected a uint8 device array of shape {(B, T)}, got "
                             f"{np.dtype(m.dtype).name} {tuple(m.shape)}")
        return m
    m = np.asarray(mask)
    if m.shape != (B, T):
        raise ValueError(f"mask: expected shape [batch, time] = {(B, T)}, got {m.shape}")
    if m.dtype != bool and not (np.issubdtype(m.dtype, np.number) and np.all((m == 0) | (m == 1))):
        raise ValueError(f"mask: expected booleans (or 0/1), got dtype {m.dtype}")
    return cuda.to_device(np.ascontiguousarray(m, dtype=np.uint8))


def check_shape(name, a, shape):
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(a.shape)}")


def prepare_forward(x, mask, states0, kernel, recurrent_kernel, bias, n_gates, n_states, bias_shape):
    """Check a cell's forward arguments (host or device arrays) and return them on the device.

    x [B, T, D] float32/float64; mask [B, T] bool or 0/1; ``n_states`` states [B, H]; kernel
    [D, n_gates * H], recurrent_kernel [H, n_gates * H], bias ``bias_shape(H)``, all in x's dtype.
    """
    x = to_device("x", x, ndim=3)
    dtype = np.dtype(x.dtype)
    B, T, D = x.shape
    if B == 0 or T == 0:
        raise ValueError(f"x: empty batch or sequence (shape {tuple(x.shape)})")
    U = to_device("recurrent_kernel", recurrent_kernel, dtype, ndim=2)
    H = U.shape[0]
    check_shape("recurrent_kernel", U, (H, n_gates * H))
    W = to_device("kernel", kernel, dtype, ndim=2)
    check_shape("kernel", W, (D, n_gates * H))
    b = to_device("bias", bias, dtype)
    check_shape("bias", b, bias_shape(H))
    if len(states0) != n_states:
        raise ValueError(f"states0: expected {n_states} initial state(s), got {len(states0)}")
    states = []
    for k, s in enumerate(states0):
        s = to_device(f"states0[{k}]", s, dtype, ndim=2)
        check_shape(f"states0[{k}]", s, (B, H))
        states.append(s)
    return x, mask_to_device(mask, B, T), states, W, U, b


def prepare_backward(dy, dstates_T, y_shape, n_states, dtype):
    """Check a cell's upstream gradients; return device copies (they are overwritten)."""
    dy = to_device("dy", dy, dtype, ndim=3)
    check_shape("dy", dy, y_shape)
    if len(dstates_T) != n_states:
        raise ValueError(f"dstates_T: expected {n_states} array(s), got {len(dstates_T)}")
    out = []
    for k, d in enumerate(dstates_T):
        was_device = is_device_array(d)
        d = to_device(f"dstates_T[{k}]", d, dtype, ndim=2)
        check_shape(f"dstates_T[{k}]", d, (y_shape[0], y_shape[2]))
        out.append(copy(d) if was_device else d)
    return dy, out


def check_host_grads(W, U, bias, dW, dU, db):
    """backward adds into host buffers: they must fit the weights."""
    for name, buf, ref in (("dkernel", dW, W), ("drecurrent_kernel", dU, U), ("dbias", db, bias)):
        if not isinstance(buf, np.ndarray) and not is_device_array(buf):
            raise TypeError(f"{name}: expected an array, got {type(buf).__name__}")
        if tuple(buf.shape) != tuple(ref.shape) or np.dtype(buf.dtype) != np.dtype(ref.dtype):
            raise ValueError(f"{name}: expected a {np.dtype(ref.dtype).name} buffer of shape "
                             f"{tuple(ref.shape)}, got {np.dtype(buf.dtype).name} {tuple(buf.shape)}")


def add_grads_to(host_or_device, grad):
    """``buf += grad`` for a host buffer (copies grad back) or a device buffer (a device add)."""
    if is_device_array(host_or_device):
        axpy(host_or_device, grad, 1.0)
    else:
        host_or_device += grad.copy_to_host()


def empty(shape, dtype):
    """An uninitialised device array."""
    return cuda.device_array(shape, dtype=dtype)


def zeros(shape, dtype):
    """A zero-filled device array."""
    out = cuda.device_array(shape, dtype=dtype)
    fill(out, 0.0)
    return out


# ---------------------------------------------------------------------------------------------
# Elementwise kernels (flat views of contiguous arrays)
# ---------------------------------------------------------------------------------------------

_THREADS = 256


@cuda.jit
def _fill(a, value):
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] = value


@cuda.jit
def _scale_into(out, a, s):
    # out = a * s, elementwise (dropout with inverted scaling: s holds 0 or 1/keep)
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] * s[i]


@cuda.jit
def _transpose(a, out):
    # out[j, i] = a[i, j]
    i, j = cuda.grid(2)
    if i < a.shape[0] and j < a.shape[1]:
        out[j, i] = a[i, j]


@cuda.jit
def _copy_step(a, t, out):
    # out[b, :] = a[b, t, :]  (the last step's output of a [B, T, H] sequence)
    b, j = cuda.grid(2)
    if b < out.shape[0] and j < out.shape[1]:
        out[b, j] = a[b, t, j]


@cuda.jit
def _axpy(y, x, alpha):
    i = cuda.grid(1)
    if i < y.shape[0]:
        y[i] += alpha * x[i]


def axpy(y, x, alpha):
    """y += alpha * x (contiguous device arrays of one shape)."""
    if y.size:
        _axpy[_ceil(y.size, _THREADS), _THREADS](_flat(y), _flat(x), y.dtype.type(alpha))


def _flat(a):
    return a.reshape(a.size)


def fill(a, value):
    """a[...] = value (a contiguous device array; value is cast to a's dtype on the host)."""
    if a.size:
        _fill[_ceil(a.size, _THREADS), _THREADS](_flat(a), a.dtype.type(value))


def scale_into(out, a, s):
    """out = a * s elementwise (all contiguous, same shape)."""
    if out.size:
        _scale_into[_ceil(out.size, _THREADS), _THREADS](_flat(out), _flat(a), _flat(s))


def transpose(a):
    """A contiguous device copy of a 2-D array's transpose."""
    out = cuda.device_array((a.shape[1], a.shape[0]), dtype=a.dtype)
    if a.size:
        _transpose[(_ceil(a.shape[0], 16), _ceil(a.shape[1], 16)), (16, 16)](a, out)
    return out


def copy_step(a, t):
    """a[:, t, :] of a [B, T, H] device array as a contiguous [B, H] array."""
    B, _, H = a.shape
    out = cuda.device_array((B, H), dtype=a.dtype)
    _copy_step[(_ceil(B, 16), _ceil(H, 16)), (16, 16)](a, t, out)
    return out


@cuda.jit
def _set_step(a, t, g):
    # a[b, t, :] = g[b, :]
    b, j = cuda.grid(2)
    if b < g.shape[0] and j < g.shape[1]:
        a[b, t, j] = g[b, j]


def set_step(a, t, g):
    """a[:, t, :] = g for a [B, T, H] device array and g [B, H]."""
    B, _, H = a.shape
    _set_step[(_ceil(B, 16), _ceil(H, 16)), (16, 16)](a, t, g)


def copy(a):
    """A fresh device copy of a device array."""
    out = cuda.device_array(a.shape, dtype=a.dtype)
    out.copy_to_device(a)
    return out




# ---------------------------------------------------------------------------------------------
# Tiled matrix product:  out (+)= op(A) op(Bm) (+ bias)
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _matmul_kernel(dtype, BM, BK, RB):
    dt = from_dtype(np.dtype(dtype))
    zero = np.dtype(dtype).type(0.0)   # literals of the operands' dtype: float32 stays float32
    TPB = BM // RB                     # threads per block along each output dimension
    NT = TPB * TPB

    @cuda.jit
    def matmul_kernel(A, Bm, out, bias, trans_a, trans_b, accumulate, has_bias, k_chunk, atomic):
        # op(A) [M, K], op(Bm) [K, N]; this block: rows m0.., columns n0.., depth slice blockIdx.z
        M, N = out.shape
        K = A.shape[0] if trans_a else A.shape[1]
        sA = cuda.shared.array((BK, BM), dt)          # sA[k, m] = op(A)[m0 + m, k0 + k]
        sB = cuda.shared.array((BK, BM), dt)          # sB[k, n] = op(Bm)[k0 + k, n0 + n]
        acc = cuda.local.array((RB, RB), dt)
        ra = cuda.local.array(RB, dt)
        rb = cuda.local.array(RB, dt)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TPB + tx
        m0, n0 = cuda.blockIdx.y * BM, cuda.blockIdx.x * BM
        k_begin = cuda.blockIdx.z * k_chunk
        k_end = k_begin + k_chunk                     # not min(): the CUDA target built into numba
        if k_end > K:                                 # 0.68 fails on min() (numba-cuda compiles it)
            k_end = K
        for a in range(RB):
            for c in range(RB):
                acc[a, c] = zero
        for k0 in range(k_begin, k_end, BK):
            # stage a BK-deep slice of both operands in shared memory; the index order follows
            # each operand's memory layout so that neighbouring threads read neighbouring addresses
            for idx in range(tid, BK * BM, NT):
                if trans_a:                            # A [K, M]: contiguous along m
                    kk, mm = idx // BM, idx % BM
                else:                                  # A [M, K]: contiguous along k
                    mm, kk = idx // BK, idx % BK
                m, k = m0 + mm, k0 + kk
                v = zero
                if m < M and k < k_end:
                    v = A[k, m] if trans_a else A[m, k]
                sA[kk, mm] = v
                if trans_b:                            # Bm [N, K]: contiguous along k
                    nn, kk2 = idx // BK, idx % BK
                else:                                  # Bm [K, N]: contiguous along n
                    kk2, nn = idx // BM, idx % BM
                n, k = n0 + nn, k0 + kk2
                v = zero
                if n < N and k < k_end:
                    v = Bm[n, k] if trans_b else Bm[k, n]
                sB[kk2, nn] = v
            cuda.syncthreads()
            # each thread: an RB x RB outer-product update per k, operands from registers
            for kk in range(BK):
                for a in range(RB):
                    ra[a] = sA[kk, ty + a * TPB]
                for c in range(RB):
                    rb[c] = sB[kk, tx + c * TPB]
                for a in range(RB):
                    for c in range(RB):
                        acc[a, c] += ra[a] * rb[c]
            cuda.syncthreads()
        for a in range(RB):
            m = m0 + ty + a * TPB
            if m < M:
                for c in range(RB):
                    n = n0 + tx + c * TPB
                    if n < N:
                        v = acc[a, c]
                        if has_bias:
                            v += bias[n]
                        if atomic:
                            cuda.atomic.add(out, (m, n), v)
                        elif accumulate:
                            out[m, n] += v
                        else:
                            out[m, n] = v

    return matmul_kernel


def matmul(A, Bm, out, trans_a=False, trans_b=False, accumulate=False, bias=None, split_k=None):
    """``out = op(A) @ op(Bm) (+ bias)``, or ``out += ...`` with ``accumulate``; 2-D device arrays.

    op(X) is X or X^T (``trans_a`` / ``trans_b``); views with any strides are accepted. With a long
    reduction and a small output (weight gradients: ``K = B * T``), the depth is split over
    ``split_k`` blocks (default: enough to fill the GPU) that add their parts atomically, so
    ``split_k > 1`` needs ``accumulate``.
    """
    M, N = out.shape
    K = A.shape[0] if trans_a else A.shape[1]
    Ka, Ma = (A.shape[0], A.shape[1]) if trans_a else (A.shape[1], A.shape[0])
    Kb, Nb = (Bm.shape[1], Bm.shape[0]) if trans_b else (Bm.shape[0], Bm.shape[1])
    if (Ma, Ka, Kb, Nb) != (M, K, K, N):
        raise ValueError(f"matmul: shapes do not fit: op(A) {(Ma, Ka)}, op(B) {(Kb, Nb)}, out {(M, N)}")
    if M == 0 or N == 0:
        return out
    BM, BK, RB = MATMUL_TILE, MATMUL_K, MATMUL_RB
    if BM % RB:
        raise ValueError(f"MATMUL_TILE ({BM}) must be a multiple of MATMUL_RB ({RB})")
    grid_mn = _ceil(N, BM) * _ceil(M, BM)
    if split_k is None:
        split_k = 1 if not accumulate or bias is not None else max(1, min(_ceil(K, 4 * BK), 128 // grid_mn))
    if split_k > 1 and (not accumulate or bias is not None):
        raise ValueError("matmul: split_k > 1 needs accumulate=True and no bias")
    k_chunk = max(BK, _ceil(_ceil(max(K, 1), split_k), BK) * BK)
    split_k = max(1, _ceil(K, k_chunk))
    if K == 0:                                     # an empty product: out = bias (or 0), or unchanged
        if not accumulate:
            fill_2d(out, 0.0, bias)
        return out
    kernel = _matmul_kernel(np.dtype(out.dtype).name, BM, BK, RB)
    has_bias = bias is not None
    b = bias if has_bias else _dummy(out.dtype)
    grid = (_ceil(N, BM), _ceil(M, BM), split_k)
    kernel[grid, (BM // RB, BM // RB)](A, Bm, out, b, trans_a, trans_b, accumulate, has_bias, k_chunk,
                                       split_k > 1)
    return out


@functools.lru_cache(maxsize=None)
def _dummy_for(dtype):
    return cuda.device_array(1, dtype=dtype)


def _dummy(dtype):
    return _dummy_for(np.dtype(dtype).name)


@cuda.jit
def _fill_2d(out, value, bias, has_bias):
    i, j = cuda.grid(2)
    if i < out.shape[0] and j < out.shape[1]:
        out[i, j] = bias[j] if has_bias else value


def fill_2d(out, value, bias=None):
    """out[i, j] = bias[j] (or value); works on strided 2-D views."""
    M, N = out.shape
    if M and N:
        _fill_2d[(_ceil(M, 16), _ceil(N, 16)), (16, 16)](out, out.dtype.type(value),
                                                         bias if bias is not None else _dummy(out.dtype),
                                                         bias is not None)


# ---------------------------------------------------------------------------------------------
# Column sums (bias gradients):  out[n] += sum_m A[m, n]
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _col_sum_kernel(dtype):
    zero = np.dtype(dtype).type(0.0)          # the sum accumulates in A's dtype

    @cuda.jit
    def col_sum_kernel(A, out, rows_per_block):
        n = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        r0 = cuda.blockIdx.y * rows_per_block
        r1 = r0 + rows_per_block
        if r1 > A.shape[0]:                       # (no min(): see matmul_kernel)
            r1 = A.shape[0]
        if n < A.shape[1]:
            s = zero
            for m in range(r0, r1):
                s += A[m, n]
            cuda.atomic.add(out, n, s)

    return col_sum_kernel


def col_sum(A, out):
    """out += A.sum(axis=0) for a 2-D device array A [M, N] (any strides) and out [N]."""
    M, N = A.shape
    if M and N:
        threads = min(128, max(32, N))
        kernel = _col_sum_kernel(np.dtype(A.dtype).name)
        kernel[(_ceil(N, threads), _ceil(M, COLSUM_ROWS)), threads](A, out, COLSUM_ROWS)


# ---------------------------------------------------------------------------------------------
# The per-step tile product used by every recurrent kernel
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def step_product(dtype, TS, NG):
    """A device function computing, for the calling thread's (row b, unit j)::

        acc[g] = sum_{k < K} A[b, t, a_off + k] * Bm[row_off + k, col_off + g * gate_stride + j]

    for g < NG, through TS x TS shared tiles. Every thread of the block must call it (it
    synchronises); threads outside [B, N) get zeros. K may be 0 (then acc is all zeros).
    """
    dt = from_dtype(np.dtype(dtype))
    zero = np.dtype(dtype).type(0.0)   # literals of the operands' dtype: float32 stays float32
    SB = NG * TS                       # a shared array's shape must be a constant, not an expression

    @cuda.jit(device=True)
    def product(A, t, a_off, K, Bm, row_off, col_off, gate_stride, B, N, acc):
        sA = kcuda.shared.array((TS, TS), dt)          # sA[b, k]: rows of A at step t
        sB = kcuda.shared.array((TS, SB), dt)          # sB[k, g * TS + j]: the NG gate columns
        tx, ty = kcuda.threadIdx.x, kcuda.threadIdx.y
        b0, j0 = kcuda.blockIdx.y * TS, kcuda.blockIdx.x * TS
        for g in range(NG):
            acc[g] = zero
        for k0 in range(0, K, TS):
            v = zero
            if b0 + ty < B and k0 + tx < K:
                v = A[b0 + ty, t, a_off + k0 + tx]
            sA[ty, tx] = v
            for g in range(NG):
                v = zero
                if k0 + ty < K and j0 + tx < N:
                    v = Bm[row_off + k0 + ty, col_off + g * gate_stride + j0 + tx]
                sB[ty, g * TS + tx] = v
            kcuda.syncthreads()
            for kk in range(TS):
                a = sA[ty, kk]
                for g in range(NG):
                    acc[g] += a * sB[kk, g * TS + tx]
            kcuda.syncthreads()

    return product


def step_grid(B, H):
    """(grid, block) of a per-step kernel: one thread per (row, unit)."""
    TS = STEP_TILE
    return (_ceil(H, TS), _ceil(B, TS)), (TS, TS)


# ---------------------------------------------------------------------------------------------
# The kernels launched, with the types of their arguments (compiled ahead of time by the tests)
# ---------------------------------------------------------------------------------------------

class ArgTypes:
    """Numba types of kernel arguments for one float dtype: ``f`` the scalar, ``a1``/``a2``/``a3``
    C-contiguous device arrays, ``any2`` a strided 2-D view, ``mask`` the uint8 mask [B, T], ``i``
    a Python int, ``b`` a Python bool, ``f64``/``a1_f64`` float64 (``float(...)``, the clipping sums)."""

    def __init__(self, dtype):
        self.f = from_dtype(np.dtype(dtype))
        self.a1, self.a2, self.a3 = (types.Array(self.f, n, "C") for n in (1, 2, 3))
        self.any2 = types.Array(self.f, 2, "A")
        self.mask = types.Array(types.uint8, 2, "C")
        self.i, self.b = types.int64, types.boolean
        self.f64, self.a1_f64 = types.float64, types.Array(types.float64, 1, "C")


def launched_kernels(dtype):
    """[(kernel, argument types)] of this module's launches for ``dtype`` (see the module docstring)."""
    t = ArgTypes(dtype)
    mm = _matmul_kernel(np.dtype(dtype).name, MATMUL_TILE, MATMUL_K, MATMUL_RB)
    flags = (t.b, t.b, t.b, t.b, t.i, t.b)      # trans_a, trans_b, accumulate, has_bias, k_chunk, atomic
    out = [
        (_fill, (t.a1, t.f)),
        (_scale_into, (t.a1, t.a1, t.a1)),
        (_transpose, (t.a2, t.a2)),
        (_copy_step, (t.a3, t.i, t.a2)),
        (_set_step, (t.a3, t.i, t.a2)),
        (_axpy, (t.a1, t.a1, t.f)),
        (mm, (t.a2, t.a2, t.a2, t.a1) + flags),
        (mm, (t.a2, t.any2, t.any2, t.a1) + flags),               # GRU reset_after=False: column blocks
        (_fill_2d, (t.a2, t.f, t.a1, t.b)),
        (_fill_2d, (t.any2, t.f, t.a1, t.b)),
        (_col_sum_kernel(np.dtype(dtype).name), (t.a2, t.a1, t.i)),
    ]
    if np.dtype(dtype) != np.float64:
        out.append((_fill, (t.a1_f64, t.f64)))                 # the float64 clipping sums are zeroed
    return out
