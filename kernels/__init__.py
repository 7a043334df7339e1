"""Recurrent-cell kernels: one module per cell, forward and backward side by side.

Installed as ``minirnn.kernels``. Importing this package is cheap: Numba is imported only when a
Numba kernel module (``simple_rnn``, ``lstm``, ``gru``) is first loaded through :func:`load`.

Reading order: ``reference.py`` (every cell in plain NumPy, one step at a time), then a cell module
(``simple_rnn.py``, ``lstm.py``, ``gru.py``: the equations, then compiled loops whose bodies are
those equations), then the machinery the cells call: ``linalg.py`` (layout copies, blocked products,
the weight gradients), ``activations.py`` (float32 sigmoid and tanh), ``_threads.py`` (row blocks in
threads), ``workspace.py`` (scratch reused between steps), ``_jit.py`` (the compiler options). The
CUDA twins are the ``*_cuda.py`` modules, with ``cuda_common.py``.

Every cell exposes the same two functions, in the Numba modules and in :mod:`reference`::

    y, states_T, saved = forward(x, mask, states0, kernel, recurrent_kernel, bias,
                                 zero_output_for_mask=False, **cell_options, workspace=None,
                                 training=True, all_outputs=True)
    dx, dstates0 = backward(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias,
                            need_dx=True)

For prediction, ``training=False`` keeps only the latest state instead of every step's (``saved``
is None) and ``all_outputs=False`` writes only the last step's output (y [B, 1, H]): the same
numbers, with memory that does not grow with T.

Shapes: x [B, T, D], mask [B, T] (bool, True on valid steps), states [B, H] each, y [B, T, H].
Arrays must be C-contiguous and share one float dtype (float32 or float64); the layer API in
``minirnn.layers`` validates user input and prepares it. ``backward`` adds the parameter gradients
into ``dkernel``, ``drecurrent_kernel`` and ``dbias`` (``+=``) and returns fresh arrays for the input
and the initial states. ``workspace`` (a :class:`workspace.Workspace`, or None for fresh arrays)
holds scratch that a layer's training steps reuse; see :mod:`minirnn.kernels.workspace`. The CUDA
modules (``*_cuda.py``) keep the same contract without it: their memory stays on the device.
"""

import functools
import importlib
import importlib.util
import os

from .workspace import Workspace

CELLS = ("simple_rnn", "lstm", "gru")
BACKENDS = ("numba", "numpy")
COMPILE_MODES = ("now", "background")


def compile_mode():
    """When the Numba kernels compile: ``MINIRNN_COMPILE=now`` (the default: at a kernel's first
    call, which waits for it) or ``background`` (predictions run the NumPy reference until a
    background thread has compiled the kernel; see :mod:`._background`)."""
    chosen = os.environ.get("MINIRNN_COMPILE", "").strip().lower() or "now"
    if chosen not in COMPILE_MODES:
        raise ValueError(f"MINIRNN_COMPILE={chosen!r}: expected one of {COMPILE_MODES}")
    return chosen


def _numba_usable():
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        return False
    # background compilation imports Numba in its own thread: here, only ask whether it is installed
    return _numba_installed() if compile_mode() == "background" else _numba_importable()


@functools.lru_cache(maxsize=None)
def _numba_installed():
    return importlib.util.find_spec("numba") is not None


@functools.lru_cache(maxsize=None)
def _numba_importable():
    """Whether numba imports (asked once: predictions call :func:`default_backend` per batch)."""
    try:
        importlib.import_module("numba")
    except ImportError:
        return False
    return True


def default_backend():
    """The backend used when none is asked for.

    ``MINIRNN_BACKEND=numpy`` (or ``numba``) in the environment chooses explicitly; otherwise Numba when
    it can be imported and is not disabled by ``NUMBA_DISABLE_JIT``, else the NumPy reference.
    """
    chosen = os.environ.get("MINIRNN_BACKEND", "").strip().lower()
    if chosen:
        if chosen not in BACKENDS:
            raise ValueError(f"MINIRNN_BACKEND={chosen!r}: expected one of {BACKENDS}")
        return chosen
    return "numba" if _numba_usable() else "numpy"


def load(cell, backend=None, split_rows=True):
    """Return ``(forward, backward)`` for ``cell`` ('simple_rnn', 'lstm', 'gru') on ``backend``.

    backend: 'numba' (compiled kernels, the default) or 'numpy' (the plain NumPy reference in
    :mod:`minirnn.kernels.reference`, slower, needs no compiler). The Numba functions are the cell
    module's, run through :mod:`minirnn.kernels._threads`, which splits large batches into row blocks
    that run in parallel threads; ``split_rows=False`` gives the module's own functions, for a caller
    that splits the batch itself (``_threads.split_rows``). With ``MINIRNN_COMPILE=background``
    (:func:`compile_mode`) the Numba forward runs predictions on the reference until its loop has
    been compiled in a background thread (:mod:`._background`).
    """
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}: expected one of {CELLS}")
    return _load(cell, default_backend() if backend is None else backend, split_rows, compile_mode())


@functools.lru_cache(maxsize=None)
def _load(cell, backend, split_rows, mode="now"):
    if backend == "numpy":
        from . import reference
        return getattr(reference, cell + "_forward"), getattr(reference, cell + "_backward")
    if backend == "numba":
        if not _numba_usable():
            raise ImportError("backend='numba' needs numba installed and NUMBA_DISABLE_JIT unset; "
                              "use backend='numpy' for the pure-NumPy reference")
        if mode == "background":
            from . import _background
            def compiled(split):               # this cell's compiled (forward, backward), as mode 'now' loads them
                return _load(cell, "numba", split, "now")
            return _background.forward(cell, split_rows, compiled), _background.backward(split_rows, compiled)
        from . import _threads
        module = importlib.import_module(f"{__name__}.{cell}")
        if not split_rows:
            return module.forward, module.backward
        return (functools.partial(_threads.forward, module.forward),
                functools.partial(_threads.backward, module.backward))
    raise ValueError(f"unknown backend {backend!r}: expected one of {BACKENDS}")


def wait_compiled(timeout=None):
    """With ``MINIRNN_COMPILE=background``: block until the kernels being compiled in the background
    are ready (or ``timeout`` seconds passed); -> True when none is still compiling. Immediately
    True when nothing compiles in the background."""
    from . import _background
    return _background.wait(timeout)


@functools.lru_cache(maxsize=None)
def load_update(name):
    """Optimizer update rule ``name`` of :mod:`.updates` (or ``sum_squares``) as one compiled loop
    over flat arrays (:mod:`.updates_cpu`), or the NumPy form (:func:`.updates.in_place`) when
    Numba is unavailable or disabled. The rules take ``(w, g, *slots, *hyper)`` and write w and the
    slots in place."""
    from . import updates
    if _numba_usable():
        from . import updates_cpu
        return updates_cpu.LOOPS[name]
    return updates.sum_squares if name == "sum_squares" else updates.in_place(name)
