"""Data-parallel training on MPI: steps/s on 1 and 2 ranks at S2, the share of a step spent in the
gradient Allreduce, and the dense-vs-sparse exchange of embedding gradients.

    python3 benchmarks/bench_distributed.py                  # launches mpiexec -n 1, then -n 2, itself
    python3 benchmarks/bench_distributed.py --ranks 1 2 4    # more ranks (oversubscribed beyond the cores)
    python3 benchmarks/bench_distributed.py --embedding      # the embedding-gradient exchange

It needs mpi4py and mpiexec (``pip install ".[mpi]"`` from the repository root) and says so when
either is missing.

S2: an LSTM, B=64 examples per rank (weak scaling: the global batch is 64 x ranks), T=100, D=64,
H=128, float32, Adagrad (TF's preset). Each run first checks that every rank ends with the same
weights (bit for bit), then prints one JSON line from rank 0: steps/s, examples/s, seconds per step,
the seconds in the gradient Allreduce (which includes waiting for the slowest rank) and a pure
Allreduce of the same buffer after a barrier (the communication alone), and the gradient bytes per
step. ``--embedding`` runs the exchange micro-benchmark instead: for a table of V rows x 64 with
2,000 rows touched per rank, the time of the dense path (zero V x 65 values, Allreduce, find the
flagged rows) and of the sparse path (Allgatherv of the rows, sort and sum), and what 'auto' picks.
Run it on an idle machine: ranks sharing cores, or other jobs on them, make every figure noisy.
The machine (CPU model, BLAS kernels) heads the output as a JSON line {"bench": "machine", ...};
``--output FILE`` also appends the JSON lines to FILE.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))     # _common.py, also under python -P
from _common import Report, add_output_argument, require_minirnn, version  # noqa: E402

B, T, D, H = 64, 100, 64, 128


def launch(args):
    mpiexec = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable),
                                                             os.environ.get("PATH", "")]))
    if mpiexec is None or version("mpi4py") is None:
        sys.exit("bench_distributed: this Python has no " + ("mpi4py" if mpiexec else "mpiexec") +
                 ": install the mpi extra (pip install \".[mpi]\" from the repository root: mpi4py and Open MPI)")
    require_minirnn()
    report = Report(args.output)
    report.machine(script="bench_distributed", ranks=args.ranks, threads_per_rank=args.threads, steps=args.steps,
                   embedding=args.embedding)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", MINIRNN_PROGRESS="0")
    for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[key] = str(args.threads)                     # the same compute per rank at every rank count
    for n in args.ranks:
        mode = ["--embedding-worker"] if args.embedding else ["--worker"]
        command = [mpiexec, "--oversubscribe", "-n", str(n), sys.executable, os.path.abspath(__file__), *mode,
                   "--steps", str(args.steps)]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"bench_distributed: mpiexec -n {n} failed:\n{done.stdout}\n{done.stderr}")
        for line in done.stdout.splitlines():
            if line.startswith("{"):
                report.row(json.loads(line))
            else:
                print(line, flush=True)


def worker(steps):
    import minirnn
    from minirnn import feature_column as fc
    from minirnn.distributed import context
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    rng = np.random.default_rng(rank)
    data = [(rng.standard_normal((B, T, D)).astype(np.float32), rng.integers(0, 2, B)) for _ in range(4)]

    def input_fn(input_context=None):                        # each rank its own B examples per step
        k = 0
        while True:
            x, y = data[k % len(data)]
            k += 1
            yield {"x": x}, y

    model_dir = tempfile.mkdtemp(prefix="bench_distributed_") if rank == 0 else None
    est = minirnn.RNNClassifier([fc.sequence_numeric_column("x", shape=(D,))], units=[H], cell_type="lstm",
                                config=minirnn.RunConfig(model_dir=model_dir, random_seed=0,
                                                         save_checkpoints_steps=10 ** 9, log_step_count_steps=None,
                                                         save_summary_steps=0, distribute="mpi"))
    est.train(input_fn, steps=3)                             # compile, first checkpoint
    ctx = context("mpi")
    before = dict(ctx.stats) if ctx else {}
    comm.Barrier()
    start = time.perf_counter()
    est.train(input_fn, steps=steps)
    elapsed = time.perf_counter() - start
    after = dict(ctx.stats) if ctx else {}
    params = est._session.state.network.params()
    digest = np.array([zlib.crc32(b"".join(p.tobytes() for p in params))], dtype=np.float64)
    low, high = digest.copy(), digest.copy()
    comm.Allreduce(MPI.IN_PLACE, low, MPI.MIN)
    comm.Allreduce(MPI.IN_PLACE, high, MPI.MAX)
    if low[0] != high[0]:
        raise SystemExit("bench_distributed: the ranks' weights differ after training")
    grad_bytes = sum(p.nbytes for p in params)
    pure = 0.0
    if size > 1:                                             # the same Allreduce with no one to wait for
        buffer = np.zeros(grad_bytes // 4 + 6 + size, dtype=np.float32)
        for _ in range(3):
            comm.Allreduce(MPI.IN_PLACE, buffer, MPI.SUM)
        comm.Barrier()
        t = time.perf_counter()
        for _ in range(steps):
            comm.Allreduce(MPI.IN_PLACE, buffer, MPI.SUM)
        pure = (time.perf_counter() - t) / steps
    allreduce = (after.get("allreduce_seconds", 0.0) - before.get("allreduce_seconds", 0.0)) / steps
    per_step = elapsed / steps
    if rank == 0:
        print(json.dumps({"bench": "distributed-S2", "ranks": size, "cores": os.cpu_count(),
                          "oversubscribed": size > (os.cpu_count() or 1), "B_per_rank": B, "T": T, "D": D, "H": H,
                          "cell": "lstm", "dtype": "float32", "threads_per_rank": os.environ.get("OPENBLAS_NUM_THREADS"), "steps": steps, "steps_per_s": round(1 / per_step, 3),
                          "examples_per_s": round(B * size / per_step, 1), "step_ms": round(per_step * 1e3, 2),
                          "allreduce_ms_in_step": round(allreduce * 1e3, 3),
                          "allreduce_share": round(allreduce / per_step, 4),
                          "pure_allreduce_ms": round(pure * 1e3, 3), "gradient_bytes": grad_bytes,
                          "weights_identical_on_all_ranks": True}), flush=True)
        shutil.rmtree(model_dir, ignore_errors=True)


def embedding_worker(steps, rows_per_rank=2000, width=64):
    from minirnn.distributed import context, prefer_sparse
    from mpi4py import MPI

    ctx = context("mpi")
    comm = MPI.COMM_WORLD
    size, rank = comm.Get_size(), comm.Get_rank()
    if ctx is None:
        if rank == 0:
            print(json.dumps({"bench": "embedding-exchange", "ranks": 1, "note": "needs 2 or more ranks"}))
        return
    rng = np.random.default_rng(rank)
    for V in (10_000, 100_000, 1_000_000):
        rows = np.sort(rng.choice(V, size=min(rows_per_rank, V), replace=False))
        values = rng.standard_normal((len(rows), width)).astype(np.float32)
        results = {}
        for mode in ("dense", "sparse"):
            buffer = np.zeros(V * width + V, dtype=np.float32)
            times = []
            for _ in range(steps + 2):
                comm.Barrier()
                t = time.perf_counter()
                if mode == "dense":
                    buffer[:] = 0
                    table, flags = buffer[:V * width].reshape(V, width), buffer[V * width:]
                    table[rows] = values
                    flags[rows] = 1
                    ctx.allreduce(buffer, "bench")
                    touched = np.flatnonzero(flags)
                    merged = table[touched]
                else:
                    counts = np.zeros(size, np.int64)
                    counts[rank] = len(rows)
                    comm.Allreduce(MPI.IN_PLACE, counts, MPI.SUM)     # (in training: inside the fused buffer)
                    data = np.frombuffer(rows.astype(np.int64).tobytes() + values.tobytes(), np.uint8)
                    out = ctx.allgatherv_bytes(data, counts * (8 + width * 4), "bench")
                    starts = np.concatenate([[0], np.cumsum(counts * (8 + width * 4))])
                    all_rows = np.concatenate([out[starts[r]:starts[r] + 8 * counts[r]].view(np.int64)
                                               for r in range(size)])
                    all_values = np.concatenate([out[starts[r] + 8 * counts[r]:starts[r + 1]].view(np.float32)
                                                 .reshape(-1, width) for r in range(size)])
                    order = np.argsort(all_rows, kind="stable")
                    sorted_rows = all_rows[order]
                    first = np.flatnonzero(np.concatenate([[True], sorted_rows[1:] != sorted_rows[:-1]]))
                    merged = np.add.reduceat(all_values[order], first, axis=0)
                times.append(time.perf_counter() - t)
            results[mode] = float(np.median(times[2:]))
            results[mode + "_rows"] = len(merged)
        auto = "sparse" if prefer_sparse(size * len(rows), V, width, 4) else "dense"
        if rank == 0:
            print(json.dumps({"bench": "embedding-exchange", "ranks": size, "V": V, "D": width,
                              "rows_per_rank": len(rows), "dense_ms": round(results["dense"] * 1e3, 3),
                              "sparse_ms": round(results["sparse"] * 1e3, 3),
                              "faster": "dense" if results["dense"] < results["sparse"] else "sparse",
                              "auto_picks": auto}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="rank counts, one mpiexec each "
                        "(default 1 2)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/Numba threads per rank (default 1)")
    parser.add_argument("--embedding", action="store_true", help="the embedding-gradient exchange instead")
    add_output_argument(parser)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--embedding-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.steps)
    elif args.embedding_worker:
        embedding_worker(args.steps)
    else:
        launch(args)
