"""The one decorator every Numba kernel uses, and its compiler options.

``kernel_jit`` compiles with ``cache=True`` so the second process starts warm. Numba raises
``RuntimeError`` at decoration time when it finds no writable cache directory (a read-only install
with no writable home); then the kernel is compiled without a cache instead of breaking the import.
Point ``NUMBA_CACHE_DIR`` at a writable folder to keep a cache in that case.

``nogil``: the row blocks of :mod:`._threads` run the compiled time loops in parallel Python threads.

fastmath: contraction (FMA), reassociation, reciprocal and no-signed-zero flags only, so that LLVM
may vectorise reductions. Never ``nnan`` or ``ninf``: NaN and inf in the inputs must come out as
NaN/inf, not as garbage.

``error_model="numpy"``: a division by zero gives inf or NaN, as in NumPy, instead of a Python
exception (whose check would sit in every inner loop).

``inline_jit``: the same, for the thin functions that only choose between BLAS and a blocked loop
(``linalg.step_product`` and its kin), inlined into each caller (Numba's ``inline="always"``). Why:
Numba compiles a called kernel on its own, then again as part of every caller (it links the callee
into the caller's module and optimises the whole), so each level of calls between a cell's time
loop and the blocked loops would compile those loops once more. Inlined, the dispatchers add no
level: the blocked loops compile once on their own and once into each time loop.

The cell maths is in ``simple_rnn.py``, ``lstm.py`` and ``gru.py``; the products and copies they
call in :mod:`.linalg`; the float32 activations in :mod:`.activations`.
"""

import functools
import threading

from numba import njit

FASTMATH = {"contract", "arcp", "nsz", "reassoc"}
OPTIONS = dict(nogil=True, error_model="numpy", fastmath=FASTMATH)


def kernel_jit(fn, **options):
    """``njit`` with the project's options and a guarded on-disk cache."""
    try:
        return njit(cache=True, **OPTIONS, **options)(fn)
    except RuntimeError:  # no writable cache location: compile per process instead
        return njit(cache=False, **OPTIONS, **options)(fn)


def inline_jit(fn):
    """:func:`kernel_jit`, inlined into the compiled functions that call it (see the module docstring)."""
    return kernel_jit(fn, inline="always")


def once_per_flag(factory):
    """``factory(flag)`` (a cell's ``loops``) made once per flag value and kept. A lock, not
    ``functools.lru_cache``: the row blocks of a first call ask from several threads at once, and two
    factory calls would make two sets of dispatchers, each compiling the same loops."""
    made, lock = {}, threading.Lock()

    @functools.wraps(factory)
    def get(flag):
        found = made.get(flag)
        if found is None:
            with lock:
                found = made.get(flag)
                if found is None:
                    found = made[flag] = factory(flag)
        return found
    return get
