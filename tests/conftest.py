"""Markers: ``slow`` (seconds each), ``mpi`` (runs mpiexec), ``cudasim`` (Numba's CUDA simulator).
``mpi`` and ``cudasim`` tests are slow too, so ``pytest -m "not slow"`` is the quick suite."""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("mpi") or item.get_closest_marker("cudasim"):
            item.add_marker(pytest.mark.slow)
