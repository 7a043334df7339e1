"""Training-step benchmark: minirnn's whole step (graph + head + optimizer) against PyTorch.

One step = forward through RNNModel, loss and gradient (softmax cross-entropy head), backward, and
an Adam update of every weight. PyTorch runs the same architecture (stacked nn.LSTM/GRU/RNN, linear
head on each sequence's last valid output, Adam). Each measurement runs in its own fresh process,
alternating minirnn and PyTorch, median of rounds.

Cases:
  tokens     2-layer LSTM [32, 16] on one-hot token sequences, vocabulary 32, batch 32, T=50,
             lengths 10..50
  S1, S2, S3 one LSTM layer at the kernel benchmark's shapes (B, T, D, H), full lengths
  short      one LSTM layer [64] over short sequences: batch 32, T=15, D=16, lengths 10..15 (like 32
             names of up to 15 characters after a 16-wide embedding)

Before timing, a separate process checks one minirnn step (float32, compiled kernels) against the
same step on the plain NumPy reference backend in float64 with the same weights: the loss and every
gradient within 1e-3 (relative to each gradient's scale), and the weights after Adam's update. The
run stops on a mismatch. Without PyTorch installed the script says so and times minirnn alone.

Besides steps/s it reports the share of minirnn's step spent outside the recurrent stack
(``RNNModel._forward_stack`` and ``_backward_stack``: the recurrent kernels with their row-block
threads): input checks, the dense logits layer and its gradient, the head, zeroing the gradients and
the optimizer. The target is < 20% at S1.

    python3 benchmarks/bench_training.py --rounds 3 --threads 2

``--row-blocks`` times, instead of the peer, minirnn's step both ways a batch can run on the threads:
split into row blocks (one per thread) and whole (one block, BLAS threads for large per-step
products), alternating fresh processes, and says which one the default plan
(``kernels._threads.plan``: blocks of at least ``MIN_ROWS`` rows and ``MIN_BLOCK_FLOPS`` of work)
picks. It is the measurement behind that rule: rerun it on a new machine.

    python3 benchmarks/bench_training.py --row-blocks --cases short tokens S1 S2 --rounds 5

Prints the machine (CPU model, BLAS kernels; a JSON line {"bench": "machine", ...}), a table and
JSON lines {"bench": "training", "case", "cell", "threads", "minirnn_ms", "peer_ms", "ratio",
"minirnn_steps_per_s", "outside_kernels_share"}. ``--output FILE`` also appends the JSON lines to FILE.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))     # _common.py, also under python -P
from _common import CPU_TORCH, Report, add_output_argument, require_minirnn, skip_line, version  # noqa: E402

CASES = {  # units, B, T, D, variable lengths
    "tokens": ([32, 16], 32, 50, 32, True),
    "S1": ([64], 32, 50, 16, False),
    "S2": ([128], 64, 100, 64, False),
    "S3": ([256], 128, 200, 128, False),
    "short": ([64], 32, 15, 16, True),
}
N_CLASSES = 10


def data(case, seed=0):
    import numpy as np
    units, B, T, D, var = CASES[case]
    rng = np.random.default_rng(seed)
    if case == "tokens":
        x = np.eye(D, dtype=np.float32)[rng.integers(0, D, (B, T))]
    else:
        x = rng.standard_normal((B, T, D)).astype(np.float32)
    lengths = rng.integers(10, T + 1, B) if var else np.full(B, T)
    labels = rng.integers(0, N_CLASSES, B)
    return x, lengths, labels


def minirnn_model(case, cell, dtype="float32", backend=None):
    """(model, head, optimizer, x, mask, labels) for one case; the model built, seed 0."""
    import numpy as np
    from minirnn import optimizers
    from minirnn.heads import MultiClassHead
    from minirnn.model import RNNModel
    x, lengths, labels = data(case)
    units, B, T, D, _ = CASES[case]
    mask = np.arange(T)[None] < lengths[:, None]
    model = RNNModel(units, cell_type=cell, logits_dimension=N_CLASSES, seed=0, dtype=dtype, backend=backend)
    model.build(D)
    return model, MultiClassHead(N_CLASSES), optimizers.Adam(0.001), x.astype(dtype), mask, labels


def one_step(model, head, opt, x, mask, labels):
    result = head.loss(model.forward(x, mask, training=True), labels)
    model.zero_grads()
    model.backward(result.d_logits)
    opt.apply(model.params(), model.grads())
    return result.loss


def minirnn_step(case, cell, row_blocks="default"):
    """(step, recurrent_time, split): recurrent_time[0] accumulates the wall time of the recurrent
    stack; split: whether the batch runs as row blocks. ``row_blocks``: 'default' (the plan's rule),
    'split' (whenever there are rows enough) or 'whole' (never)."""
    from minirnn.kernels import _threads
    from minirnn.model import RNNModel
    _threads.MIN_BLOCK_FLOPS = {"default": _threads.MIN_BLOCK_FLOPS, "split": 0.0, "whole": float("inf")}[row_blocks]
    model, head, opt, x, mask, labels = minirnn_model(case, cell)
    split = len(model._row_blocks(*x.shape[:2])) > 2
    recurrent_time = [0.0]
    for name in ("_forward_stack", "_backward_stack"):   # the recurrent layers' kernels, row-block threads
        original = getattr(RNNModel, name)

        def timed(self, *a, _original=original, **k):
            t = time.perf_counter()
            try:
                return _original(self, *a, **k)
            finally:
                recurrent_time[0] += time.perf_counter() - t
        setattr(RNNModel, name, timed)
    return (lambda: one_step(model, head, opt, x, mask, labels)), recurrent_time, split


def check(case, cell):
    """One step in float32 on the compiled kernels against the NumPy reference backend in float64."""
    import numpy as np
    ours = minirnn_model(case, cell)
    ref = minirnn_model(case, cell, dtype="float64", backend="numpy")
    ref[0].set_params([p.astype(np.float64) for p in ours[0].params()])
    before = [p.astype(np.float64) for p in ref[0].params()]
    losses = [one_step(*m) for m in (ours, ref)]
    worst = {"loss": abs(float(losses[0]) - float(losses[1]))}
    worst["gradients"] = max(float(np.abs(g - r).max() / (np.abs(r).max() + 1e-6))
                             for g, r in zip(ours[0].grads(), ref[0].grads()))
    # Adam's first step moves each weight by about the learning rate: compare the moves
    worst["update"] = max(float(np.abs((p - b) - (r - b)).max()) / 0.001
                          for p, r, b in zip(ours[0].params(), ref[0].params(), before))
    print(json.dumps(worst))


def torch_step(case, cell):
    import torch
    x, lengths, labels = data(case)
    units, B, T, D, var = CASES[case]
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "simple_rnn": torch.nn.RNN}[cell]
    layers = torch.nn.ModuleList([cls(d_in, h, batch_first=True) for d_in, h in zip([D] + units[:-1], units)])
    head = torch.nn.Linear(units[-1], N_CLASSES)
    opt = torch.optim.Adam(list(layers.parameters()) + list(head.parameters()), lr=0.001)
    xt, yt, lt = torch.from_numpy(x), torch.from_numpy(labels), torch.from_numpy(lengths)

    def step():
        opt.zero_grad()
        h = xt
        for layer in layers:
            if var:
                packed = torch.nn.utils.rnn.pack_padded_sequence(h, lt, batch_first=True, enforce_sorted=False)
                h, _ = torch.nn.utils.rnn.pad_packed_sequence(layer(packed)[0], batch_first=True, total_length=T)
            else:
                h, _ = layer(h)
        last = h[torch.arange(B), lt - 1]
        loss = torch.nn.functional.cross_entropy(head(last), yt)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def worker(impl, case, cell, reps):
    if impl == "torch":
        import torch
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        step, kernel_time, split = torch_step(case, cell), None, None
    else:                                # minirnn, minirnn-split, minirnn-whole
        step, kernel_time, split = minirnn_step(case, cell, impl.partition("-")[2] or "default")
    for _ in range(3):
        step()
    if kernel_time is not None and not kernel_time[0] > 0:
        raise SystemExit("bench_training: the recurrent stack's timer saw no call (RNNModel._forward_stack / "
                         "_backward_stack): the measurement of the share outside it needs updating")
    times, inside = [], []
    for _ in range(reps):
        before = kernel_time[0] if kernel_time else 0.0
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
        if kernel_time:
            inside.append(kernel_time[0] - before)
    order = sorted(range(reps), key=lambda i: times[i])
    mid = order[reps // 2]
    out = {"ms": 1e3 * times[mid], "split": split}
    if inside:
        out["outside_share"] = 1.0 - inside[mid] / times[mid]
    print(json.dumps(out))


def _run(args, threads):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__)] + args, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), help="default: all")
    parser.add_argument("--cells", nargs="+", default=["lstm"], choices=["lstm", "gru", "simple_rnn"],
                        help="default: lstm")
    parser.add_argument("--threads", type=int, default=2,
                        help="OMP/MKL/OPENBLAS/NUMBA_NUM_THREADS and PyTorch's threads in the workers (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per case and library (default 3)")
    parser.add_argument("--row-blocks", action="store_true",
                        help="instead of PyTorch: minirnn's step with the batch split into row blocks and whole")
    add_output_argument(parser)
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--check", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, case, cell, reps = args.worker
        return worker(impl, case, cell, int(reps))
    if args.check:
        return check(*args.check)

    require_minirnn()
    if args.row_blocks:
        return row_blocks(args)
    torch_version = version("torch")
    report = Report(args.output)
    report.machine(script="bench_training", threads=args.threads, rounds=args.rounds,
                   peer=torch_version and f"torch {torch_version}")
    impls = ("minirnn", "torch") if torch_version else ("minirnn",)
    if not torch_version:
        print(skip_line("PyTorch", CPU_TORCH), flush=True)
    rows = []
    for cell in args.cells:
        for case in args.cases:
            worst = _run(["--check", case, cell], args.threads)
            if not (worst["loss"] <= 1e-4 and worst["gradients"] <= 1e-3 and worst["update"] <= 0.01):
                raise SystemExit(f"{cell} {case}: minirnn's step and the NumPy reference's disagree: {worst} (loss "
                                 f"absolute, gradients relative to their scale, updates relative to the learning rate)")
            reps = {"S3": 3, "S2": 10}.get(case, 30)
            res = {impl: [] for impl in impls}
            for _ in range(args.rounds):
                for impl in res:
                    res[impl].append(_run(["--worker", impl, case, cell, str(reps)], args.threads))
            med = lambda xs: sorted(xs)[len(xs) // 2]
            m = med([r["ms"] for r in res["minirnn"]])
            p = med([r["ms"] for r in res["torch"]]) if torch_version else None
            share = med([r["outside_share"] for r in res["minirnn"]])
            rows.append({"bench": "training", "case": case, "cell": cell, "threads": args.threads,
                         "minirnn_ms": round(m, 3), "peer_ms": p and round(p, 3), "ratio": p and round(m / p, 3),
                         "minirnn_steps_per_s": round(1e3 / m, 1), "peer_steps_per_s": p and round(1e3 / p, 1),
                         "outside_kernels_share": round(share, 3), "check": worst})
            peer = f"torch {p:8.2f} ms  ratio {m / p:5.2f}" if p else "torch (not installed)"
            print(f"{cell:10s} {case:7s} minirnn {m:8.2f} ms ({1e3 / m:7.1f} steps/s)  {peer}  "
                  f"outside the recurrent stack {100 * share:4.1f}%", flush=True)
    for row in rows:
        report.row(row)


def row_blocks(args):
    """minirnn's step split into row blocks and whole, alternating fresh processes (see the docstring)."""
    report = Report(args.output)
    report.machine(script="bench_training", mode="row-blocks", threads=args.threads, rounds=args.rounds)
    med = lambda xs: sorted(xs)[len(xs) // 2]
    for cell in args.cells:
        for case in args.cases:
            reps = {"S3": 3, "S2": 10}.get(case, 30)
            res = {"split": [], "whole": []}
            for k in range(args.rounds):           # alternate which goes first
                for way in (("split", "whole") if k % 2 == 0 else ("whole", "split")):
                    res[way].append(_run(["--worker", f"minirnn-{way}", case, cell, str(reps)], args.threads))
            default = _run(["--worker", "minirnn", case, cell, "1"], args.threads)["split"]
            split, whole = med([r["ms"] for r in res["split"]]), med([r["ms"] for r in res["whole"]])
            row = {"bench": "training-row-blocks", "case": case, "cell": cell, "threads": args.threads,
                   "split_ms": round(split, 3), "whole_ms": round(whole, 3),
                   "split_over_whole": round(split / whole, 3),
                   "default_plan": "split" if default else "whole"}
            print(f"{cell:10s} {case:7s} split {split:8.2f} ms  whole {whole:8.2f} ms  split/whole {split / whole:5.2f}"
                  f"  the default plan: {row['default_plan']}", flush=True)
            report.row(row)


if __name__ == "__main__":
    main()
