"""Data-parallel training, evaluation and batch prediction across processes and machines, on MPI.

The package: :mod:`.runner` (the runner a :class:`minirnn.loop.Session` trains, evaluates and
predicts through: batch shares, the gradient Allreduce, state broadcast, gathering), :mod:`.comm`
(collectives, timeouts, failure), :mod:`.sharding` (what each rank reads), :mod:`.files` (prediction
files per rank). The settings class :class:`MPIDistribution` lives in :mod:`minirnn.config`.

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

from ..config import (DEFAULT_TIMEOUT, EMBEDDING_MODES, SIZE_VARIABLES, MPIDistribution, check_distribute,
                      launched_size)
from .comm import DistributedError
from .files import predict_to_files, read_predictions
from .runner import SPARSE_COST, Context, context, prefer_sparse, runner_for
from .sharding import InputContext, shard_hdf5_input_fn, shard_input_fn, split_batch

__all__ = ["MPIDistribution", "InputContext", "DistributedError", "launched_size", "shard_input_fn",
           "shard_hdf5_input_fn", "predict_to_files", "read_predictions", "split_batch", "context", "runner_for",
           "Context", "check_distribute", "prefer_sparse", "SPARSE_COST", "SIZE_VARIABLES", "DEFAULT_TIMEOUT",
           "EMBEDDING_MODES"]
