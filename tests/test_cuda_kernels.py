"""The CUDA kernels against the NumPy reference, under Numba's CUDA simulator (no GPU needed).

The tests themselves are in ``_cuda_kernels_sim.py``; they run in a child process because the
simulator must be switched on before Numba is first imported (see ``_cuda_subprocess.py``).
On a machine with a real GPU, ``test_cuda_gpu.py`` runs larger shapes on the device itself.
"""

import pytest

from _cuda_subprocess import run_simulated


@pytest.mark.cudasim
def test_cuda_kernels_under_the_simulator(tmp_path):
    run_simulated("_cuda_kernels_sim.py", tmp_path)


@pytest.mark.cudasim
def test_cuda_benchmark_validation_runs_under_the_simulator(tmp_path):
    # benchmarks/bench_cuda.py cannot time anything without a GPU; its validation path must still work
    import os
    import subprocess
    import sys
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "bench_cuda.py")
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    proc = subprocess.run([sys.executable, script, "--simulate-tiny", "--cells", "gru", "lstm"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 2 and all('"validated": true' in line for line in lines), proc.stdout
