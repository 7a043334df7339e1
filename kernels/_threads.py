"""How a kernel call uses the cores: rows of the batch in parallel, or a multi-threaded BLAS.

Rows of a batch are independent all the way through a recurrent layer, so a call can be split into
row blocks that run the whole time loop side by side in threads (the kernels are ``nogil``), with no
synchronisation per step; each block's matrix products then run on one BLAS thread. The alternative
is one block whose per-step products use the BLAS's own threads, which must hand work over and
synchronise at every step, T times per call. A split has a fixed price: the worker thread sleeps
between calls, and waking it (and then the caller, when the worker finishes after it) costs tens to
hundreds of microseconds on a virtual machine whose idle CPU must be rescheduled. So a call is split
into one block per thread only when each block gets at least ``MIN_ROWS`` rows and
``MIN_BLOCK_FLOPS`` of forward products (2 T rows (D + H) G per layer: half a millisecond of forward
kernel, and twice that in backward, on the benchmark machine), long enough to hide the wake-ups
(``benchmarks/bench_training.py --row-blocks`` measures both ways). A smaller call (B=1 latency,
or a short batch like 32 names of 15 characters) runs as one block, on one BLAS thread when its
per-step product is small (threads cost more than they save there) and on all threads otherwise.

A caller running several kernel calls per block (``minirnn.model`` runs a whole stack of layers)
takes the same bounds from :func:`split_rows` and hands the blocks over once with
:func:`run_blocks`: each hand-off costs a thread wake-up each way and the worker's wait for the GIL,
which a model with two layers would otherwise pay four times a step.

Thread count: the BLAS's configured count (``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS``, read
once), capped by ``NUMBA_NUM_THREADS`` when set. The BLAS setting is process-wide, so it is set for
the call and restored when the last overlapping call ends; kernel calls from several Python threads
at once may run with each other's setting (only speed changes: the row split depends on the batch
size and the configured count alone). With a BLAS that exposes no thread control (not OpenBLAS),
calls run unsplit with the BLAS as configured. A forked child process starts a fresh thread pool.

Gradients of weights are summed over row blocks, so their round-off depends on the split (which
depends only on the batch size, shapes and thread count: the same run repeats bit for bit).
"""

import contextlib
import ctypes
import os
import threading

import numpy as np

MIN_ROWS = 8                 # the smallest row block worth a thread
MIN_BLOCK_FLOPS = 25e6       # and the least forward work (flops of its products) a block must have
SMALL_STEP_FLOPS = 4e6       # an unsplit call below this per-step cost (2 B H G flops) uses 1 thread

_controls = None
_configured = None
_active = 0
_set_by_us = False           # the BLAS runs on a count blas_threads set, to be restored
_blas_lock = threading.Lock()


def _blas_controls():
    """(get, set) for the thread count of the BLAS that Numba's np.dot calls, or None."""
    global _controls
    if _controls is None:
        _controls = _find_controls()           # assigned once, found: threads asking at once agree
    return _controls or None


def _find_controls():
    try:
        import scipy.linalg.cython_blas as blas
        lib = ctypes.CDLL(blas.__file__)
    except (ImportError, OSError):
        return ()
    for prefix in ("scipy_openblas", "openblas"):
        try:
            get, set_ = getattr(lib, prefix + "_get_num_threads"), getattr(lib, prefix + "_set_num_threads")
        except AttributeError:
            continue
        get.restype, get.argtypes = ctypes.c_int, []
        set_.restype, set_.argtypes = None, [ctypes.c_int]
        return get, set_
    return ()


def _configured_threads():
    """The BLAS's own thread count, read once before minirnn ever changes it."""
    global _configured
    if _configured is None:
        controls = _blas_controls()
        _configured = max(1, controls[0]()) if controls else 1
    return _configured


_AVX512_CORES = ("skylakex", "cooperlake", "sapphirerapids")
_blas_small = None


def small_products_in_blas():
    """True when the kernels' products should go to BLAS rather than the compiled loops of
    :mod:`.linalg` (the ``blas`` flag of its primitives: the per-step products, the products of every
    step, the weight gradients).

    Decided once per process from the core OpenBLAS picked (``OPENBLAS_CORETYPE`` or its own
    detection): its AVX-512 targets have small-matrix kernels that beat the compiled loops, its AVX2
    (Haswell) and older targets do not. The choice depends on the environment only, never on a
    timing, so a run repeats bit for bit on the same machine and settings."""
    global _blas_small
    if _blas_small is None:
        _blas_small = _avx512_core()           # assigned once, found: threads asking at once agree
    return _blas_small


def _avx512_core():
    try:
        import scipy.linalg.cython_blas as blas
        lib = ctypes.CDLL(blas.__file__)
    except (ImportError, OSError):
        return False
    for prefix in ("scipy_openblas", "openblas"):
        get = getattr(lib, prefix + "_get_corename", None)
        if get is not None:
            get.restype, get.argtypes = ctypes.c_char_p, []
            return (get() or b"").decode().lower() in _AVX512_CORES
    return False


def available_threads():
    """Threads a kernel call may use: the BLAS's configured count, capped by NUMBA_NUM_THREADS."""
    if _blas_controls() is None:
        return 1
    n = _configured_threads()
    cap = os.environ.get("NUMBA_NUM_THREADS", "").strip()
    return max(1, min(n, int(cap))) if cap.isdigit() and int(cap) > 0 else n


def plan(B, step_flops, call_flops, threads=None):
    """(row blocks, BLAS threads per block) for a batch of B rows whose per-step product costs
    ``step_flops`` and whose forward products cost ``call_flops`` in all."""
    threads = available_threads() if threads is None else threads
    if threads <= 1 or _blas_controls() is None:
        return 1, threads
    blocks = min(threads, B // MIN_ROWS)
    while blocks >= 2 and call_flops < blocks * MIN_BLOCK_FLOPS:      # every block needs its share of work
        blocks -= 1
    if blocks >= 2:
        return blocks, 1
    return 1, (1 if step_flops < SMALL_STEP_FLOPS else threads)


def _bounds(B, blocks):
    return [B * k // blocks for k in range(blocks + 1)]


def forward_flops(B, T, weights):
    """The flops of a forward's products over B rows and T steps: 2 B T (D + H) G for each layer's
    ``(kernel [D, G], recurrent_kernel [H, G])`` in ``weights``."""
    return 2.0 * B * T * sum(kernel.size + recurrent_kernel.size for kernel, recurrent_kernel in weights)


def split_rows(B, T, weights):
    """Row-block bounds ``[0, ..., B]`` when ``plan`` splits a batch of B rows and T steps through
    layers of ``weights`` (``(kernel, recurrent_kernel)`` each: see :func:`forward_flops`), else None.

    For a caller that runs several kernel calls in each row block with :func:`run_blocks`
    (``minirnn.model`` runs every layer of a stack there: one hand-off to the worker thread for the
    forward and one for the backward, instead of one per layer each way). The bounds are those a
    single call would use, so the results are bit for bit the same either way."""
    if B < 2 * MIN_ROWS:                           # too few rows to split: decided without the settings
        return None
    blocks, _ = plan(B, 0.0, forward_flops(B, T, weights))
    return _bounds(B, blocks) if blocks >= 2 else None


def run_blocks(fn, bounds):
    """``fn(k, b0, b1)`` for each row block ``k`` (rows ``b0:b1``), the blocks in parallel threads on
    one BLAS thread each; returns the results in block order (errors as :func:`_map`)."""
    with blas_threads(1):
        return _map(fn, bounds)


@contextlib.contextmanager
def blas_threads(n):
    """Run the enclosed calls with ``n`` BLAS threads; the configured count is restored when the last
    overlapping call leaves (a count of active calls under a lock, so out-of-order exits from
    concurrent calls cannot leave the BLAS on the wrong setting)."""
    global _active, _set_by_us
    controls = _blas_controls()
    if controls is None:
        yield
        return
    configured = _configured_threads()
    with _blas_lock:
        if _active == 0 and n != configured:
            controls[1](n)
            _set_by_us = True
        _active += 1
    try:
        yield
    finally:
        with _blas_lock:
            _active -= 1
            if _active == 0 and _set_by_us:
                controls[1](configured)
                _set_by_us = False


class _Worker:
    """A thread that runs one job at a time, handed over through two locks (no queue, no futures).

    ``go`` is released to start the job in ``job``; ``done`` is released when it has finished. A
    lock hand-off is one futex wake each way, where ``concurrent.futures`` would add a queue, futures
    and waiters, Python code that holds the GIL the other thread needs; a training step makes
    several such hand-offs, so their cost shows at small batches."""

    def __init__(self):
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()
        self.done.acquire()
        self.job = self.result = self.error = None
        threading.Thread(target=self._run, name="minirnn", daemon=True).start()

    def _run(self):
        while True:
            self.go.acquire()
            fn, k, b0, b1 = self.job
            self.job = None
            try:
                self.result, self.error = fn(k, b0, b1), None
            except BaseException as error:       # handed to the caller, which re-raises it
                self.result, self.error = None, error
            self.done.release()


_workers = []
_workers_lock = threading.Lock()     # one caller at a time uses the workers


def _map(fn, bounds):
    """fn(k, b0, b1) for each row block k (rows b0:b1) of ``bounds``; the calling thread runs the last
    block itself, the others run on minirnn's worker threads. Waits for every block, even when one fails, then raises
    the first error (the calling thread's own first). When another Python thread is using the
    workers, the blocks run one after another in the calling thread instead of waiting for them."""
    n = len(bounds) - 2
    if not _workers_lock.acquire(blocking=False):
        return [fn(k, bounds[k], bounds[k + 1]) for k in range(n + 1)]
    workers = []
    try:
        while len(_workers) < n:
            _workers.append(_Worker())
        workers = _workers[:n]
        for k, worker in enumerate(workers):
            worker.job = (fn, k, bounds[k], bounds[k + 1])
            worker.go.release()
        finished = 0
        try:
            last = fn(n, bounds[-2], bounds[-1])
        finally:
            try:
                for worker in workers:
                    worker.done.acquire()
                    finished += 1
            finally:
                if finished < n:         # interrupted while waiting (KeyboardInterrupt): those workers are
                    del _workers[:]      # still busy; later calls start new ones
        errors = [worker.error for worker in workers if worker.error is not None]
        if errors:
            raise errors[0]
        return [worker.result for worker in workers] + [last]
    finally:
        for worker in workers:           # keep no block's arrays or errors alive between calls
            worker.result = worker.error = None
        _workers_lock.release()


def _after_fork_in_child():
    # a forked child inherits the worker objects but not their threads: start afresh
    global _workers_lock, _active
    del _workers[:]
    _workers_lock, _active = threading.Lock(), 0


os.register_at_fork(after_in_child=_after_fork_in_child)


class RowBlocks:
    """What a split forward saved: the row boundaries and each block's own saved tensors."""

    def __init__(self, bounds, saved):
        self.bounds, self.saved = bounds, saved


def forward(cell_forward, x, mask, states0, kernel, recurrent_kernel, bias,
            zero_output_for_mask=False, workspace=None, **cell_options):
    """``cell_forward`` over the batch, split into row blocks when ``plan`` says so (each block with
    its own part of ``workspace``)."""
    B, T = x.shape[:2]
    blocks, per_block = plan(B, 2.0 * B * recurrent_kernel.size, forward_flops(B, T, [(kernel, recurrent_kernel)]))
    with blas_threads(per_block):
        if blocks == 1:
            return cell_forward(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask,
                                workspace=workspace, **cell_options)
        bounds = _bounds(B, blocks)
        parts = _map(lambda k, b0, b1: cell_forward(
            x[b0:b1], mask[b0:b1], tuple(s[b0:b1] for s in states0), kernel, recurrent_kernel, bias,
            zero_output_for_mask, workspace=None if workspace is None else workspace.block(k), **cell_options),
            bounds)
    y = np.concatenate([p[0] for p in parts])
    states = tuple(np.concatenate([p[1][k] for p in parts]) for k in range(len(states0)))
    saved = [p[2] for p in parts]
    return y, states, None if saved[0] is None else RowBlocks(bounds, saved)     # None: nothing kept (prediction)


def backward(cell_backward, dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """``cell_backward`` for a forward made by :func:`forward`, block by block when it was split."""
    if not isinstance(saved, RowBlocks):             # the forward ran as one block: so does backward
        B = dy.shape[0]
        _, per_block = plan(B, 2.0 * B * drecurrent_kernel.size, 0.0)
        with blas_threads(per_block):
            return cell_backward(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx)

    def block(k, b0, b1):
        grads = [np.zeros_like(dkernel), np.zeros_like(drecurrent_kernel), np.zeros_like(dbias)]
        dx, dstates0 = cell_backward(dy[b0:b1], tuple(d[b0:b1] for d in dstates_T), saved.saved[k],
                                     *grads, need_dx)
        return dx, dstates0, grads

    with blas_threads(1):
        parts = _map(block, saved.bounds)
    for _, _, grads in parts:        # fixed order: the sum does not depend on thread timing
        dkernel += grads[0]
        drecurrent_kernel += grads[1]
        dbias += grads[2]
    dx = np.concatenate([p[0] for p in parts]) if need_dx else None
    dstates0 = tuple(np.concatenate([p[1][k] for p in parts]) for k in range(len(dstates_T)))
    return dx, dstates0
