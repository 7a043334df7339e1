"""Markers: ``slow`` (seconds each), ``mpi`` (runs mpiexec), ``cudasim`` (Numba's CUDA simulator).
``mpi`` and ``cudasim`` tests are slow too, so ``pytest -m "not slow"`` is the quick suite. The run
leaves no temporary folder behind."""

import os
import shutil
import tempfile

import pytest

_TEMPORARY = {}


def pytest_configure(config):
    """Every temporary folder of the run (an estimator's model_dir without one given, the examples'
    mkdtemp, subprocesses through TMPDIR) goes into one folder, removed at the end."""
    folder = tempfile.mkdtemp(prefix="minirnn-tests-")
    _TEMPORARY.update(folder=folder, tmpdir=os.environ.get("TMPDIR"), tempdir=tempfile.tempdir)
    os.environ["TMPDIR"] = tempfile.tempdir = folder


def pytest_unconfigure(config):
    if "folder" not in _TEMPORARY:
        return
    tempfile.tempdir = _TEMPORARY["tempdir"]
    if _TEMPORARY["tmpdir"] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = _TEMPORARY["tmpdir"]
    shutil.rmtree(_TEMPORARY.pop("folder"), ignore_errors=True)


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("mpi") or item.get_closest_marker("cudasim"):
            item.add_marker(pytest.mark.slow)
