"""Training-step benchmark: minirnn's whole step (graph + head + optimizer) against PyTorch.

One step = forward through RNNModel, loss and gradient (softmax cross-entropy head), backward, and
an Adam update of every weight. PyTorch runs the same architecture (stacked nn.LSTM/GRU/RNN, linear
head on each sequence's last valid output, Adam). Each measurement runs in its own fresh process,
alternating minirnn and PyTorch, median of rounds (see ../shared/BENCHMARKING.md).

Cases:
  tokens     2-layer LSTM [32, 16] on one-hot token sequences, vocabulary 32, batch 32, T=50,
             lengths 10..50
  S1, S2, S3 one LSTM layer at the kernel benchmark's shapes (B, T, D, H), full lengths

Besides steps/s it reports how much of minirnn's step is spent outside the recurrent kernels
(input validation, dense layer, head, optimizer, copies): the target is < 20% at S1.

    python benchmarks/bench_training.py --rounds 3 --threads 2

Prints a table and JSON lines {"bench": "training", "case", "cell", "threads", "minirnn_ms",
"peer_ms", "ratio", "minirnn_steps_per_s", "outside_kernels_share"}.
"""

import argparse
import json
import os
import subprocess
import sys
import time

CASES = {  # units, B, T, D, variable lengths
    "tokens": ([32, 16], 32, 50, 32, True),
    "S1": ([64], 32, 50, 16, False),
    "S2": ([128], 64, 100, 64, False),
    "S3": ([256], 128, 200, 128, False),
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


def minirnn_step(case, cell):
    import numpy as np
    from minirnn import optimizers
    from minirnn.heads import MultiClassHead
    from minirnn.layers import _Recurrent
    from minirnn.model import RNNModel
    x, lengths, labels = data(case)
    units, B, T, D, _ = CASES[case]
    mask = np.arange(T)[None] < lengths[:, None]
    model = RNNModel(units, cell_type=cell, logits_dimension=N_CLASSES, seed=0)
    head, opt = MultiClassHead(N_CLASSES), optimizers.Adam(0.001)
    kernel_time = [0.0]
    for name in ("forward", "backward"):   # time the recurrent layers' calls (validation + kernels)
        original = getattr(_Recurrent, name)

        def timed(self, *a, _original=original, **k):
            t = time.perf_counter()
            try:
                return _original(self, *a, **k)
            finally:
                kernel_time[0] += time.perf_counter() - t
        setattr(_Recurrent, name, timed)

    def step():
        result = head.loss(model.forward(x, mask, training=True), labels)
        model.zero_grads()
        model.backward(result.d_logits)
        opt.apply(model.params(), model.grads())
        return result.loss

    return step, kernel_time


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
        step, kernel_time = torch_step(case, cell), None
    else:
        step, kernel_time = minirnn_step(case, cell)
    for _ in range(3):
        step()
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
    out = {"ms": 1e3 * times[mid]}
    if inside:
        out["outside_share"] = 1.0 - inside[mid] / times[mid]
    print(json.dumps(out))


def _run(args, threads):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    proc = subprocess.run([sys.executable, __file__] + args, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--cells", nargs="+", default=["lstm"], choices=["lstm", "gru", "simple_rnn"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, case, cell, reps = args.worker
        return worker(impl, case, cell, int(reps))
    rows = []
    for cell in args.cells:
        for case in args.cases:
            reps = {"S3": 3, "S2": 10}.get(case, 30)
            res = {"minirnn": [], "torch": []}
            for _ in range(args.rounds):
                for impl in res:
                    res[impl].append(_run(["--worker", impl, case, cell, str(reps)], args.threads))
            med = lambda xs: sorted(xs)[len(xs) // 2]
            m, p = med([r["ms"] for r in res["minirnn"]]), med([r["ms"] for r in res["torch"]])
            share = med([r["outside_share"] for r in res["minirnn"]])
            rows.append({"bench": "training", "case": case, "cell": cell, "threads": args.threads,
                         "minirnn_ms": round(m, 3), "peer_ms": round(p, 3), "ratio": round(m / p, 3),
                         "minirnn_steps_per_s": round(1e3 / m, 1), "peer_steps_per_s": round(1e3 / p, 1),
                         "outside_kernels_share": round(share, 3)})
            print(f"{cell:10s} {case:7s} minirnn {m:8.2f} ms ({1e3 / m:7.1f} steps/s)  torch {p:8.2f} ms  "
                  f"ratio {m / p:5.2f}  outside kernels {100 * share:4.1f}%", flush=True)
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
