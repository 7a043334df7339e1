"""Run a CUDA test module in a fresh Python process with Numba's CUDA simulator enabled.

Numba reads ``NUMBA_ENABLE_CUDASIM`` once, when it is first imported, and this pytest process has
imported Numba long before; so the simulator tests (``tests/_cuda_*_sim.py``) run in a child pytest.
The child starts in a temporary folder, so that the repository root is not on ``sys.path`` (the
folder ``kernels/`` must only be importable as ``minirnn.kernels``).
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_simulated(module, tmp_path, timeout=600):
    """Run ``tests/<module>`` under the simulator; fail with the child's output when it fails."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", NUMBA_NUM_THREADS="1", MINIRNN_PROGRESS="0")
    env.pop("NUMBA_DISABLE_JIT", None)
    cmd = [sys.executable, "-c", "import sys, pytest; sys.exit(pytest.main(sys.argv[1:]))",
           os.path.join(HERE, module), "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-rfEs"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"simulated CUDA tests in {module} failed:\n{output[-20000:]}"
    summary = [line for line in output.splitlines() if line.strip()][-1]
    assert " passed" in summary and "skipped" not in summary, output[-4000:]    # nothing silently skipped
    return output
