"""How many BLAS threads one kernel call uses.

Every matrix product of a kernel runs in SciPy's BLAS (Numba's ``np.dot``), and the kernels start no
thread pool of their own. Two threads pay off when the per-step product is large (S2/S3 shapes), but
at small shapes the BLAS threads' hand-offs around every step's short elementwise work cost more than
they save (measured on 2 cores: LSTM S1 forward 1.9 ms on 2 threads, 1.3 ms on 1). So a call whose
per-step product is below ``SMALL_STEP_FLOPS`` runs on one thread; larger ones use the BLAS's own
thread count (``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS``), capped by ``NUMBA_NUM_THREADS`` when
that is set. The previous setting is restored after the call.

The setting is process-wide inside the BLAS: calling kernels from several Python threads at once
can see each other's setting (results stay correct; only speed changes). With a BLAS that exposes no
thread control (not OpenBLAS), this does nothing.
"""

import contextlib
import ctypes
import os

SMALL_STEP_FLOPS = 4e6

_controls = None


def _blas_controls():
    """(get, set) for the thread count of the BLAS that Numba's np.dot calls, or None."""
    global _controls
    if _controls is None:
        _controls = ()
        try:
            import scipy.linalg.cython_blas as blas
            lib = ctypes.CDLL(blas.__file__)
        except (ImportError, OSError):
            return None
        for prefix in ("scipy_openblas", "openblas"):
            try:
                get, set_ = getattr(lib, prefix + "_get_num_threads"), getattr(lib, prefix + "_set_num_threads")
            except AttributeError:
                continue
            get.restype, get.argtypes = ctypes.c_int, []
            set_.restype, set_.argtypes = None, [ctypes.c_int]
            _controls = (get, set_)
            break
    return _controls or None


def threads_for(step_flops):
    """The thread count for a kernel whose per-step matrix product costs ``step_flops``."""
    controls = _blas_controls()
    if controls is None:
        return None
    if step_flops < SMALL_STEP_FLOPS:
        return 1
    n = controls[0]()
    cap = os.environ.get("NUMBA_NUM_THREADS", "").strip()
    return min(n, int(cap)) if cap.isdigit() and int(cap) > 0 else n


@contextlib.contextmanager
def blas_threads(step_flops):
    """Run the enclosed kernel call with ``threads_for(step_flops)`` BLAS threads."""
    controls = _blas_controls()
    n = threads_for(step_flops)
    if controls is None or n is None:
        yield
        return
    before = controls[0]()
    if n != before:
        controls[1](n)
    try:
        yield
    finally:
        if n != before:
            controls[1](before)
