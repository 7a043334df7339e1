"""MINIRNN_COMPILE=background: predictions run the NumPy reference until a background thread has
compiled the kernel, then the compiled kernel; training compiles in the calling thread."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

from minirnn import kernels

pytestmark = pytest.mark.skipif(not kernels._numba_importable(), reason="needs numba")

MODEL = """
    import json, os, sys
    import numpy as np
    from minirnn import kernels
    from minirnn.model import RNNModel
    CELL = sys.argv[1]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6, 4)).astype(np.float32)
    mask = np.ones((3, 6), dtype=bool)
    mask[1, 4:] = False
    mask[2, :2] = False

    def model(backend=None):
        m = RNNModel([5, 3], cell_type=CELL, seed=0, backend=backend)
        m.build(4)
        return m
"""


def _run(code, cell, env=None):
    """``code`` in a fresh process with MINIRNN_COMPILE=background -> (its last stdout line as JSON, stderr)."""
    full = dict(os.environ, MINIRNN_COMPILE="background", **(env or {}))
    full.pop("MINIRNN_BACKEND", None)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(MODEL) + textwrap.dedent(code), cell], env=full,
                          cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=600)   # the installed minirnn
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru", "simple_rnn"])
def test_predictions_run_the_reference_until_the_background_compile_is_done_then_the_kernel(cell):
    out, stderr = _run("""
        import threading
        from minirnn.kernels import _background
        gate, compile_now = threading.Event(), _background._compile
        _background._compile = lambda *args: (gate.wait(), compile_now(*args))   # not before the first call is done
        m = model()
        first = m.forward(x, mask)                   # starts the compile, answers with the reference
        gate.set()
        ready = kernels.wait_compiled(600)
        later = m.forward(x, mask)
        reference = model("numpy")
        reference.set_params(m.params())
        os.environ["MINIRNN_COMPILE"] = "now"        # the same weights, compiled the default way
        now = model()
        now.set_params(m.params())
        print(json.dumps({"ready": ready, "compiled": [[list(k[:2]), v] for k, v in _background._compiled.items()],
                          "first_is_reference": bool(np.array_equal(first, reference.forward(x, mask))),
                          "later_is_compiled": bool(np.array_equal(later, now.forward(x, mask))),
                          "difference": float(np.abs(first - later).max())}))
    """, cell)
    assert out["ready"] and out["compiled"] == [[[cell, "<f4"], True]]
    assert out["first_is_reference"] and out["later_is_compiled"]
    assert out["difference"] < 1e-5                  # float32 activations: the kernel's approximation
    assert "Warning" not in stderr


@pytest.mark.slow
def test_training_compiles_in_the_calling_thread_and_equals_the_default_mode():
    out, _ = _run("""
        def step(m):
            m.forward(x, mask, training=True)
            m.zero_grads()
            m.backward(np.ones((3, 1), np.float32))
            return [g.copy() for g in m.grads()]
        background = step(model())
        from minirnn.kernels import _background
        started = dict(_background._running)         # a training forward starts no background compile
        os.environ["MINIRNN_COMPILE"] = "now"
        now = step(model())
        print(json.dumps({"equal": all(np.array_equal(a, b) for a, b in zip(background, now)),
                          "started": len(started)}))
    """, "lstm")
    assert out == {"equal": True, "started": 0}


@pytest.mark.slow
def test_a_failed_background_compile_warns_and_predictions_keep_the_reference():
    out, stderr = _run("""
        real = kernels._load
        def broken(cell, backend, split_rows, mode="now"):
            if backend == "numba" and mode == "now":
                raise ImportError("numba is broken here")
            return real(cell, backend, split_rows, mode)
        kernels._load = broken
        m = model()
        first = m.forward(x, mask)
        ready = kernels.wait_compiled(600)
        later = m.forward(x, mask)
        reference = model("numpy")
        reference.set_params(m.params())
        print(json.dumps({"ready": ready, "same": bool(np.array_equal(first, later)),
                          "reference": bool(np.array_equal(later, reference.forward(x, mask)))}))
    """, "lstm")
    assert out == {"ready": True, "same": True, "reference": True}
    assert "MINIRNN_COMPILE=background: compiling the lstm kernel failed (ImportError: numba is broken here); " \
           "predictions keep the NumPy reference" in stderr


def test_choosing_the_backend_in_background_mode_does_not_import_numba():
    out, _ = _run("""
        print(json.dumps({"backend": kernels.default_backend(), "numba": "numba" in sys.modules}))
    """, "lstm")
    assert out == {"backend": "numba", "numba": False}


def test_an_unknown_compile_mode_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("MINIRNN_COMPILE", "later")
    with pytest.raises(ValueError, match=r"MINIRNN_COMPILE='later': expected one of \('now', 'background'\)"):
        kernels.load("lstm")


def test_wait_compiled_is_true_when_nothing_compiles():
    assert kernels.wait_compiled(0) is True
