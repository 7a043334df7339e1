"""Kernel benchmark: minirnn's Numba kernels against PyTorch CPU (nn.RNN / nn.LSTM / nn.GRU).

One training step = forward + full BPTT + gradient of a dense softmax head on each sequence's last
valid output (no optimizer). Inference = forward only. float32, the same weights and thread count for
both. Each measurement runs in its own fresh process (PyTorch is slower in a process where another
thread pool already ran), minirnn and PyTorch alternate, and the figure is the median over rounds of
per-process medians. Before timing, a separate process checks minirnn's loss, last outputs and
gradients against the float64 NumPy reference (``minirnn.kernels.reference``) and against PyTorch,
and the run stops when either differs by more than 1e-3 (relative). Without PyTorch installed the
script says so, checks against the reference only and times minirnn alone.

Usage, from the repository root (a CPU build of PyTorch for the peer:
``pip install torch --index-url https://download.pytorch.org/whl/cpu``)::

    python3 benchmarks/bench_kernels.py                      # everything, 2 threads
    python3 benchmarks/bench_kernels.py --cells lstm --shapes S1 S3 --rounds 3 --threads 2

Prints the machine (CPU model, BLAS kernels; a JSON line {"bench": "machine", ...}), a table, then one
JSON line per row: {"bench": "kernels", "cell", "shape", "threads", "minirnn_ms", "peer_ms", "ratio"}
(lower is better; peer_ms and ratio null without PyTorch), plus import time, cold/warm time to the
first forward+backward, and each training step's own peak memory (peak RSS minus the RSS after a
warm-up on a tiny problem). ``--output FILE`` also appends the JSON lines to FILE.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))     # _common.py, also under python -P
from _common import CPU_TORCH, Report, add_output_argument, require_minirnn, skip_line, version  # noqa: E402

SHAPES = {  # B, T, D, H, variable lengths
    "S1": (32, 50, 16, 64, False),
    "S1var": (32, 50, 16, 64, True),
    "S2": (64, 100, 64, 128, False),
    "S3": (128, 200, 128, 256, False),
    "latency": (1, 50, 16, 64, False),
    "warmup": (4, 5, 8, 8, False),      # loads code and allocators before memory is measured
}
CELLS = ("lstm", "gru", "simple_rnn")
GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}
N_CLASSES = 10


def problem(cell, shape, seed=0):
    """Inputs, lengths, labels and Keras-layout weights for one benchmark case (NumPy only)."""
    import numpy as np
    B, T, D, H, var = SHAPES[shape]
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    lengths = rng.integers(10, T + 1, size=B) if var else np.full(B, T)
    labels = rng.integers(0, N_CLASSES, size=B)
    s = 1 / np.sqrt(H)
    kernel = rng.uniform(-s, s, (D, G * H)).astype(np.float32)
    recurrent = rng.uniform(-s, s, (H, G * H)).astype(np.float32)
    bias = rng.uniform(-s, s, (2, G * H) if cell == "gru" else (G * H,)).astype(np.float32)
    head_w = rng.uniform(-s, s, (H, N_CLASSES)).astype(np.float32)
    head_b = np.zeros(N_CLASSES, np.float32)
    return x, lengths, labels, (kernel, recurrent, bias), (head_w, head_b)


# ---------------------------------------------------------------------------------------------
# the two implementations of one step
# ---------------------------------------------------------------------------------------------

def softmax_head(h, hw, hb, labels):
    """Mean softmax cross-entropy of a dense head on h [B, H] -> (loss, dlogits, dhw, dhb)."""
    import numpy as np
    B = h.shape[0]
    rows = np.arange(B)
    logits = h @ hw + hb
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[rows, labels]))
    p[rows, labels] -= 1.0
    p /= B
    return loss, p, h.T @ p, p.sum(axis=0)


def minirnn_step(cell, shape):
    """Return (train_step, infer) closures for minirnn; train_step returns (loss, grads, h)."""
    from minirnn.layers import GRU, LSTM, SimpleRNN
    x, lengths, labels, weights, (hw, hb) = problem(cell, shape)
    layer = {"lstm": LSTM, "gru": GRU, "simple_rnn": SimpleRNN}[cell](weights[1].shape[0])
    layer.set_weights(list(weights))

    def train_step():
        h = layer.forward(x, lengths=lengths)
        loss, p, dhw, dhb = softmax_head(h, hw, hb, labels)
        layer.zero_grads()
        layer.backward(p @ hw.T, need_input_grad=False)
        return loss, [g.copy() for g in layer.grads] + [dhw, dhb], h

    def infer():
        return layer.forward(x, lengths=lengths if SHAPES[shape][4] else None, training=False)

    return train_step, infer


def reference_step(cell, shape):
    """minirnn's training step computed by the plain NumPy reference in float64: (loss, grads, h)."""
    import numpy as np
    from minirnn.kernels import reference
    x, lengths, labels, weights, (hw, hb) = problem(cell, shape)
    B, T, D, H, _ = SHAPES[shape]
    mask = np.arange(T)[None] < lengths[:, None]
    states0 = tuple(np.zeros((B, H)) for _ in range(2 if cell == "lstm" else 1))
    options = {"reset_after": True} if cell == "gru" else {}
    weights = [w.astype(np.float64) for w in weights]
    y, _, saved = getattr(reference, cell + "_forward")(x.astype(np.float64), mask, states0, *weights, **options)
    h = y[:, -1]                                       # each row's output at its last valid step
    loss, p, dhw, dhb = softmax_head(h, hw.astype(np.float64), hb.astype(np.float64), labels)
    dy = np.zeros((B, T, H))
    dy[:, -1] = p @ hw.T
    grads = [np.zeros_like(w) for w in weights]
    getattr(reference, cell + "_backward")(dy, tuple(np.zeros_like(s) for s in states0), saved, *grads,
                                           need_dx=False)
    return loss, grads + [dhw, dhb], h


def torch_step(cell, shape):
    """The same computation in PyTorch; grads are returned in Keras layout for comparison."""
    import numpy as np
    import torch
    x, lengths, labels, (kernel, recurrent, bias), (hw, hb) = problem(cell, shape)
    B, T, D, H, var = SHAPES[shape]
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "simple_rnn": torch.nn.RNN}[cell](D, H, batch_first=True)
    # Keras -> PyTorch gate order: LSTM i,f,c,o == i,f,g,o; GRU z,r,h -> r,z,n
    order = (lambda a: np.concatenate([a[..., H:2 * H], a[..., :H], a[..., 2 * H:]], axis=-1)) if cell == "gru" else (lambda a: a)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(order(kernel).T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(order(recurrent).T.copy()))
        b_in, b_rec = (bias[0], bias[1]) if cell == "gru" else (bias, np.zeros_like(bias))
        module.bias_ih_l0.copy_(torch.from_numpy(order(b_in).copy()))
        module.bias_hh_l0.copy_(torch.from_numpy(order(b_rec).copy()))
    head = torch.nn.Linear(H, N_CLASSES)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(hw.T.copy()))
        head.bias.copy_(torch.from_numpy(hb))
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels)
    lt = torch.from_numpy(lengths)
    params = list(module.parameters()) + list(head.parameters())

    def last_output():
        if var:
            packed = torch.nn.utils.rnn.pack_padded_sequence(xt, lt, batch_first=True, enforce_sorted=False)
            out, _ = module(packed)
            out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
            return out[torch.arange(B), lt - 1]
        out, _ = module(xt)
        return out[:, -1]

    def train_step():
        for p in params:
            p.grad = None
        h = last_output()
        loss = torch.nn.functional.cross_entropy(head(h), yt)
        loss.backward()
        return loss, params, h

    def infer():
        with torch.inference_mode():
            return last_output()

    def grads_keras_layout():
        g = [p.grad.numpy() for p in params]
        kernel_g, rec_g = order(g[0].T), order(g[1].T)
        b_g = np.stack([order(g[2]), order(g[3])]) if cell == "gru" else order(g[2])  # b_ih, b_hh share one grad
        return [kernel_g, rec_g, b_g, g[4].T, g[5]]

    return train_step, infer, grads_keras_layout


# ---------------------------------------------------------------------------------------------
# worker processes
# ---------------------------------------------------------------------------------------------

def _median(values):
    values = sorted(values)
    return values[len(values) // 2]


def _current_rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def worker(impl, cell, shape, reps):
    import resource
    if impl == "torch":
        import torch
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        build = lambda s: torch_step(cell, s)[:2]
    else:
        build = lambda s: minirnn_step(cell, s)
    for f in build("warmup"):           # code, compiled kernels and allocators in place first
        f()
    baseline = _current_rss_mib()
    train_step, infer = build(shape)
    result = {}
    if shape != "latency":
        for _ in range(2):
            train_step()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            train_step()
            times.append(time.perf_counter() - t)
        result["train_ms"] = 1e3 * _median(times)
        # the step's own memory: peak RSS minus the RSS after a warm-up on a tiny problem had loaded
        # every library, compiled kernel and allocator (inputs and weights of the case included)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["step_mib"] = result["peak_rss_mib"] - baseline
    for _ in range(3):
        infer()
    times = []
    for _ in range(reps * (50 if shape == "latency" else 1)):
        t = time.perf_counter()
        infer()
        times.append(time.perf_counter() - t)
    result["infer_ms"] = 1e3 * _median(times)
    print(json.dumps(result))


def _worst(a, b):
    """Largest difference of (loss, h, grads) a against b, each gradient relative to its scale."""
    import numpy as np
    (a_loss, a_grads, a_h), (b_loss, b_grads, b_h) = a, b
    return max(abs(float(a_loss) - float(b_loss)), float(np.abs(a_h - b_h).max()),
               *(float(np.abs(x - y).max() / (np.abs(y).max() + 1e-3)) for x, y in zip(a_grads, b_grads)))


def check(cell, shape, with_torch):
    """Same weights -> same loss, last outputs and gradients as the NumPy reference and PyTorch."""
    ours = minirnn_step(cell, shape)[0]()
    result = {"worst_vs_reference": _worst(ours, reference_step(cell, shape)), "worst_vs_torch": None}
    if with_torch:
        t_train, _, t_grads = torch_step(cell, shape)
        t_loss, _, t_h = t_train()
        result["worst_vs_torch"] = _worst(ours, (t_loss.item(), t_grads(), t_h.detach().numpy()))
    print(json.dumps(result))


def _run(args, threads, env_extra=None):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, os.path.abspath(__file__)] + args, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def startup_worker():
    """import time, and the first forward+backward of an LSTM in this (fresh) process."""
    t0 = time.perf_counter()
    import minirnn.layers as L
    t1 = time.perf_counter()
    import numpy as np
    layer = L.LSTM(64)
    y = layer.forward(np.ones((32, 50, 16), np.float32))
    layer.backward(np.ones_like(y))
    print(json.dumps({"import_s": t1 - t0, "first_step_s": time.perf_counter() - t1}))


def startup_figures(threads):
    """import time, and first forward+backward in a fresh process with a cold and a warm Numba cache."""
    with tempfile.TemporaryDirectory() as cache:
        runs = [_run(["--startup"], threads, {"NUMBA_CACHE_DIR": cache}) for _ in range(2)]   # cold, then warm
    return {"import_minirnn_s": runs[1]["import_s"], "first_fwd_bwd_cold_s": runs[0]["first_step_s"],
            "first_fwd_bwd_warm_s": runs[1]["first_step_s"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS, help="default: all")
    parser.add_argument("--shapes", nargs="+", default=[k for k in SHAPES if k != "warmup"],
                        choices=[k for k in SHAPES if k != "warmup"], help="default: all")
    parser.add_argument("--threads", type=int, default=2,
                        help="OMP/MKL/OPENBLAS/NUMBA_NUM_THREADS and PyTorch's threads in the workers (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per case and library (default 3)")
    add_output_argument(parser)
    parser.add_argument("--worker", nargs=4, metavar=("IMPL", "CELL", "SHAPE", "REPS"), help=argparse.SUPPRESS)
    parser.add_argument("--check", nargs=3, metavar=("CELL", "SHAPE", "TORCH"), help=argparse.SUPPRESS)
    parser.add_argument("--startup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, cell, shape, reps = args.worker
        return worker(impl, cell, shape, int(reps))
    if args.check:
        cell, shape, with_torch = args.check
        return check(cell, shape, with_torch == "torch")
    if args.startup:
        return startup_worker()

    require_minirnn()
    torch_version = version("torch")
    report = Report(args.output)
    report.machine(script="bench_kernels", threads=args.threads, rounds=args.rounds,
                   peer=torch_version and f"torch {torch_version}")
    impls = ("minirnn", "torch") if torch_version else ("minirnn",)
    if not torch_version:
        print(skip_line("PyTorch", CPU_TORCH), flush=True)
    report.row({"bench": "kernels_startup", "threads": args.threads, **startup_figures(args.threads)})
    rows = []
    for cell in args.cells:
        for shape in args.shapes:
            check_shape = "S1" if shape == "latency" else shape
            checked = _run(["--check", cell, check_shape, impls[-1]], args.threads)
            for peer, worst in (("the NumPy reference", checked["worst_vs_reference"]),
                                ("PyTorch", checked["worst_vs_torch"])):
                if worst is not None and not worst <= 1e-3:
                    raise SystemExit(f"{cell} {check_shape}: minirnn and {peer} disagree (max rel diff {worst:.2e})")
            worst = max(w for w in checked.values() if w is not None)
            reps = {"S3": 3, "S2": 10}.get(shape, 20)
            results = {impl: [] for impl in impls}
            for _ in range(args.rounds):
                for impl in impls:
                    results[impl].append(_run(["--worker", impl, cell, shape, str(reps)], args.threads))
            for kind in ("train", "infer"):
                key = f"{kind}_ms"
                if key not in results["minirnn"][0]:
                    continue
                m = _median([r[key] for r in results["minirnn"]])
                p = _median([r[key] for r in results["torch"]]) if torch_version else None
                row = {"bench": "kernels", "cell": cell, "shape": shape, "step": kind, "threads": args.threads,
                       "minirnn_ms": round(m, 4), "peer_ms": p and round(p, 4), "ratio": p and round(m / p, 3),
                       "check_max_rel_diff": worst}
                if kind == "train":
                    for impl, key in (("minirnn", "minirnn"), ("torch", "peer")):
                        if impl in results:
                            row[f"{key}_peak_rss_mib"] = round(_median([r["peak_rss_mib"] for r in results[impl]]), 1)
                            row[f"{key}_step_mib"] = round(_median([r["step_mib"] for r in results[impl]]), 1)
                rows.append(row)
                peer = f"torch {p:9.3f} ms   ratio {m / p:5.2f}" if p else "torch (not installed)"
                print(f"{cell:10s} {shape:8s} {kind:5s}  minirnn {m:9.3f} ms   {peer}", flush=True)
    for row in rows:
        report.row(row)


if __name__ == "__main__":
    main()
