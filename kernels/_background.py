"""Predictions that do not wait for the compiler: ``MINIRNN_COMPILE=background``.

A fresh process with an empty kernel cache spends seconds compiling a cell's time loop before its
first prediction, and even a warm cache costs Numba's import and first dispatch (see
``benchmarks/README.md``, "Cold start"). In this mode a prediction forward (``training=False``)
whose compiled loop is not ready runs the plain NumPy reference (:mod:`.reference`) instead, and
starts a background thread that imports Numba and compiles, or loads from the cache, the loop for
the same cell, dtype and options, with a one-step batch. The calls after it has finished run
compiled. The process's first prediction then costs what the NumPy backend's does.

What differs: until the switch, predictions are the reference's numbers. In float64 they agree
with the compiled kernels to 1e-10 (the tests' bound); in float32 to about 1e-6, because the
compiled float32 activations are a rational approximation (:mod:`.activations`). A training
forward and every backward compile in the calling thread, as in the default mode: a training
step's forward and backward must come from the same implementation. If the background compilation
fails (Numba missing or broken), a RuntimeWarning says so and predictions keep the reference.

``minirnn.kernels.wait_compiled()`` (:func:`wait`) blocks until the compilations started so far
have finished: for tests, benchmarks, or a server that reports ready only when compiled.
"""

import importlib
import threading
import warnings

import numpy as np

_compiled = {}          # (cell, dtype, options) -> True (compiled) or False (failed): the finished ones
_running = {}           # the same key -> its background thread, started once
_lock = threading.Lock()


def forward(cell, split_rows, compiled):
    """``cell``'s forward with the contract of :func:`minirnn.kernels.load`'s (``split_rows`` as
    there): compiled once its loop is ready, else the reference for predictions. ``compiled(split)``
    loads the cell's compiled (forward, backward) pair for ``split_rows=split``."""
    reference = getattr(importlib.import_module(f"{__package__}.reference"), cell + "_forward")

    def run(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False, workspace=None,
            training=True, all_outputs=True, **options):
        key = (cell, x.dtype.str, tuple(sorted(options.items())))
        if training or _compiled.get(key):
            forward = compiled(split_rows)[0]
            return forward(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask,
                           workspace=workspace, training=training, all_outputs=all_outputs, **options)
        if key not in _compiled:
            _start(key, compiled, kernel, recurrent_kernel, bias, len(states0), options)
        return reference(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask,
                         workspace=workspace, training=False, all_outputs=all_outputs, **options)
    return run


def backward(split_rows, compiled):
    """The compiled backward, loaded at its first call (a training step compiles it there)."""
    def run(*args, **kwargs):
        return compiled(split_rows)[1](*args, **kwargs)
    return run


def wait(timeout=None):
    """Block until every background compilation started so far has finished (or ``timeout``
    seconds passed); -> True when none is still running."""
    with _lock:
        running = list(_running.values())
    for thread in running:
        thread.join(timeout)
    return not any(thread.is_alive() for thread in running)


def _start(key, compiled, kernel, recurrent_kernel, bias, n_states, options):
    """Start the background compilation of ``key``'s loop, once."""
    with _lock:
        if key in _running:
            return
        weights = tuple(np.array(w) for w in (kernel, recurrent_kernel, bias))   # the caller may change its own
        thread = threading.Thread(target=_compile, args=(key, compiled, weights, n_states, options),
                                  name=f"minirnn compile {key[0]}", daemon=True)
        _running[key] = thread
    thread.start()


def _compile(key, compiled, weights, n_states, options):
    """Run the compiled forward once on a one-row, one-step batch of the caller's dtype and weights:
    that compiles its loop (or loads it from the cache) for the argument types real calls have."""
    cell, dtype = key[0], np.dtype(key[1])
    kernel, recurrent_kernel, bias = weights
    H = recurrent_kernel.shape[0]
    try:
        forward = compiled(False)[0]       # importing the cell module imports Numba
        forward(np.zeros((1, 1, kernel.shape[0]), dtype), np.ones((1, 1), dtype=bool),
                tuple(np.zeros((1, H), dtype) for _ in range(n_states)), kernel, recurrent_kernel, bias, False,
                training=False, all_outputs=False, **options)
    except Exception as error:   # noqa: BLE001 - reported, and predictions keep the reference
        warnings.warn(f"MINIRNN_COMPILE=background: compiling the {cell} kernel failed ({type(error).__name__}: "
                      f"{error}); predictions keep the NumPy reference", RuntimeWarning, stacklevel=1)
        _compiled[key] = False
        return
    _compiled[key] = True
