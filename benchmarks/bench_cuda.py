"""CUDA benchmark: minirnn's CUDA kernels (Numba) against PyTorch CUDA (cuDNN nn.RNN / nn.LSTM / nn.GRU).

One training step = forward over the whole batch + full BPTT from a gradient on each sequence's last
output (weight gradients and dx included; no optimizer). Inference = forward only. float32, the
same Keras-layout weights for both (converted to PyTorch's layout and gate order). Before timing,
each case checks minirnn's and PyTorch's outputs and gradients against the float64 NumPy reference
(``minirnn.kernels.reference``); a case that disagrees is reported and not timed.

Timing: warm-up, then ``--reps`` repetitions between device synchronisations, median of
``--rounds`` rounds, minirnn and PyTorch alternating. Achieved TFLOP/s count the matrix products
only (forward 2 B T (D + H) G H, a training step three times that) against the GPU's fp32 peak
(SM count x fp32 lanes per SM x 2 x clock).

Usage (on a machine with an NVIDIA GPU and the cuda extra, ``pip install ".[cuda]"``; PyTorch with
CUDA for the peer: without it, or with a CPU-only build, the script says so and times minirnn alone)::

    python3 benchmarks/bench_cuda.py                        # every cell and shape
    python3 benchmarks/bench_cuda.py --cells lstm --shapes S1 large --rounds 5
    python3 benchmarks/bench_cuda.py --simulate-tiny        # no GPU: the validation path only, on
                                                            # Numba's CUDA simulator at a tiny shape

Prints the machine (CPU model, BLAS kernels; a JSON line {"bench": "machine", ...}) and a table on
stderr, and one JSON line per row on stdout: {"bench": "cuda", "cell", "shape", "kind", "minirnn_ms",
"peer_ms", "ratio", "minirnn_tflops", "peer_tflops", "peak_tflops", "device"} (ratio = minirnn / peer:
lower is better). ``--output FILE`` also appends the JSON lines to FILE.
"""

import argparse
import os
import sys
import time

if "--simulate-tiny" in sys.argv:                   # before Numba is imported anywhere
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))     # _common.py, also under python -P
from _common import Report, add_output_argument, require_minirnn, skip_line, version  # noqa: E402

SHAPES = {  # B, T, D, H
    "S1": (32, 50, 16, 64),
    "S2": (64, 100, 64, 128),
    "S3": (128, 200, 128, 256),
    "large": (512, 100, 128, 512),
    "tiny": (3, 4, 2, 5),                            # --simulate-tiny
}
CELLS = ("lstm", "gru", "simple_rnn")
GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}
CORES_PER_SM = {(6, 0): 64, (6, 1): 128, (7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128,
                (8, 9): 128, (9, 0): 128, (10, 0): 128, (12, 0): 128}


def problem(cell, shape, seed=0):
    """Keras-layout float32 weights, input, mask, initial states and last-step gradient."""
    B, T, D, H = SHAPES[shape]
    G = GATES[cell]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    W = (rng.standard_normal((D, G * H)) / np.sqrt(D)).astype(np.float32)
    U = (rng.standard_normal((H, G * H)) / np.sqrt(H)).astype(np.float32)
    bias = (rng.standard_normal((2, G * H) if cell == "gru" else (G * H,)) * 0.1).astype(np.float32)
    g_last = rng.standard_normal((B, H)).astype(np.float32)
    return x, W, U, bias, g_last


def flops(cell, shape, kind):
    B, T, D, H = SHAPES[shape]
    fwd = 2.0 * B * T * (D + H) * GATES[cell] * H
    return fwd if kind == "infer" else 3.0 * fwd


def peak_tflops(cuda):
    dev = cuda.get_current_device()
    cc = dev.compute_capability
    lanes = CORES_PER_SM.get(tuple(cc), 128)
    return dev.MULTIPROCESSOR_COUNT * lanes * 2 * dev.CLOCK_RATE * 1e3 / 1e12, dev.name.decode() \
        if isinstance(dev.name, bytes) else str(dev.name)


# ---- minirnn --------------------------------------------------------------------------------

class Minirnn:
    def __init__(self, cell, x, W, U, bias):
        from numba import cuda
        from minirnn.kernels import gru_cuda, lstm_cuda, simple_rnn_cuda
        self.cuda = cuda
        self.module = {"lstm": lstm_cuda, "gru": gru_cuda, "simple_rnn": simple_rnn_cuda}[cell]
        self.n_states = 2 if cell == "lstm" else 1
        self.opts = {"reset_after": True} if cell == "gru" else {}
        B, T, _ = x.shape
        H = U.shape[0]
        self.x, self.W, self.U, self.b = (cuda.to_device(a) for a in (x, W, U, bias))
        self.mask = cuda.to_device(np.ones((B, T), np.uint8))
        self.states0 = [cuda.to_device(np.zeros((B, H), np.float32)) for _ in range(self.n_states)]
        self.grads = [cuda.to_device(np.zeros_like(a)) for a in (W, U, bias)]
        self.zero_states = [cuda.to_device(np.zeros((B, H), np.float32)) for _ in range(self.n_states)]
        self.B, self.T, self.H = B, T, H

    def forward(self):
        return self.module.forward_device(self.x, self.mask, self.states0, self.W, self.U, self.b, False,
                                          **self.opts)

    def train_step(self, dy):
        y, _, saved = self.forward()
        return self.module.backward_device(dy, self.zero_states, saved, *self.grads, need_dx=True)

    def results(self, g_last):
        """(y, dx, dW, dU, db) on the host, for validation."""
        from minirnn.kernels import cuda_common as cc
        dy = np.zeros((self.B, self.T, self.H), np.float32)
        dy[:, -1] = g_last
        for g in self.grads:
            cc.fill(g, 0.0)
        y, _, saved = self.forward()
        dx, _ = self.module.backward_device(self.cuda.to_device(dy), self.zero_states, saved, *self.grads)
        return [y.copy_to_host(), dx.copy_to_host()] + [g.copy_to_host() for g in self.grads]

    def sync(self):
        self.cuda.synchronize()


# ---- PyTorch --------------------------------------------------------------------------------

def _torch_blocks(a, cell, H):
    """Keras gate blocks -> PyTorch's order (GRU: z, r, h -> r, z, n; LSTM and RNN unchanged)."""
    if cell != "gru":
        return a
    return np.concatenate([a[..., H:2 * H], a[..., :H], a[..., 2 * H:]], axis=-1)


class Torch:
    def __init__(self, cell, x, W, U, bias):
        import torch
        self.torch = torch
        D, H = W.shape[0], U.shape[0]
        kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "simple_rnn": torch.nn.RNN}[cell]
        self.net = kind(D, H, batch_first=True).cuda()
        b_in, b_rec = (bias[0], bias[1]) if cell == "gru" else (bias, np.zeros_like(bias))
        with torch.no_grad():
            for name, value in (("weight_ih_l0", W.T), ("weight_hh_l0", U.T), ("bias_ih_l0", b_in),
                                ("bias_hh_l0", b_rec)):
                value = _torch_blocks(value.T, cell, H).T if value.ndim == 2 else _torch_blocks(value, cell, H)
                getattr(self.net, name).copy_(torch.from_numpy(np.ascontiguousarray(value)))
        self.x = torch.from_numpy(x).cuda().requires_grad_(True)
        self.cell, self.H = cell, H

    def forward(self):
        with self.torch.no_grad():
            return self.net(self.x)[0]

    def train_step(self, g_last):
        self.net.zero_grad(set_to_none=False)
        self.x.grad = None
        y = self.net(self.x)[0]
        y[:, -1].backward(g_last)

    def results(self, g_last):
        self.train_step(self.torch.from_numpy(g_last).cuda())
        y = self.forward().cpu().numpy()
        H, cell = self.H, self.cell
        p = dict(self.net.named_parameters())
        back = lambda a: _torch_blocks(a, cell, H)          # noqa: E731  (the block swap is its own inverse)
        dW = back(p["weight_ih_l0"].grad.cpu().numpy().T)
        dU = back(p["weight_hh_l0"].grad.cpu().numpy().T)
        db_in = back(p["bias_ih_l0"].grad.cpu().numpy())
        db_rec = back(p["bias_hh_l0"].grad.cpu().numpy())
        db = np.stack([db_in, db_rec]) if cell == "gru" else db_in
        return [y, self.x.grad.cpu().numpy(), dW, dU, db]

    def sync(self):
        self.torch.cuda.synchronize()


# ---- validation and timing ------------------------------------------------------------------

def reference_results(cell, x, W, U, bias, g_last):
    from minirnn.kernels import reference
    B, T, _ = x.shape
    H = U.shape[0]
    f64 = [a.astype(np.float64) for a in (x, W, U, bias)]
    states0 = tuple(np.zeros((B, H)) for _ in range(2 if cell == "lstm" else 1))
    opts = {"reset_after": True} if cell == "gru" else {}
    y, _, saved = getattr(reference, cell + "_forward")(f64[0], np.ones((B, T), bool), states0, *f64[1:], **opts)
    dy = np.zeros((B, T, H))
    dy[:, -1] = g_last
    grads = [np.zeros_like(a) for a in f64[1:]]
    dx, _ = getattr(reference, cell + "_backward")(dy, tuple(np.zeros_like(s) for s in states0), saved, *grads)
    return [y, dx] + grads


def validate(name, got, want, tol):
    """Largest error relative to each tensor's scale; raises when above ``tol``."""
    worst = 0.0
    for label, g, w in zip(("y", "dx", "dkernel", "drecurrent_kernel", "dbias"), got, want):
        err = float(np.abs(np.asarray(g, np.float64) - w).max() / max(np.abs(w).max(), 1e-6))
        worst = max(worst, err)
        if not err <= tol:
            raise AssertionError(f"{name}: {label} differs from the reference by {err:.2e} (relative), tol {tol}")
    return worst


def time_it(fn, sync, reps):
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t0) / reps * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS)
    parser.add_argument("--shapes", nargs="+", default=["S1", "S2", "S3", "large"],
                        choices=[s for s in SHAPES if s != "tiny"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--simulate-tiny", action="store_true",
                        help="no GPU needed: validate the kernels on Numba's CUDA simulator at a tiny shape")
    add_output_argument(parser)
    args = parser.parse_args(argv)
    require_minirnn()
    report = Report(args.output, machine_stream=sys.stderr)
    report.machine(script="bench_cuda", rounds=args.rounds, reps=args.reps, simulate_tiny=args.simulate_tiny)

    from numba import config, cuda
    if args.simulate_tiny:
        if not config.ENABLE_CUDASIM:
            sys.exit("bench_cuda.py --simulate-tiny: Numba was imported before the simulator was enabled")
        sys.setswitchinterval(1e-5)
        from minirnn.kernels import cuda_common as cc
        cc.STEP_TILE, cc.MATMUL_TILE, cc.MATMUL_K, cc.MATMUL_RB = 4, 4, 2, 2     # several blocks per launch
        for cell in args.cells:
            x, W, U, bias, g_last = problem(cell, "tiny")
            worst = validate(f"minirnn {cell}", Minirnn(cell, x, W, U, bias).results(g_last),
                             reference_results(cell, x, W, U, bias, g_last), 1e-4)
            report.row({"bench": "cuda", "simulate_tiny": True, "cell": cell, "shape": "tiny",
                        "validated": True, "max_rel_err": worst})
        return 0
    if config.ENABLE_CUDASIM or not cuda.is_available():
        sys.exit("bench_cuda.py: no CUDA GPU found (numba.cuda.is_available() is False, or the simulator is "
                 "enabled). Run it on a machine with an NVIDIA GPU, or use --simulate-tiny to check the "
                 "validation path without one.")
    torch = None
    if version("torch") is None:
        print(skip_line("PyTorch", "pip install torch, a CUDA build"), file=sys.stderr, flush=True)
    else:
        import torch
        if torch.cuda.is_available():
            torch.backends.cudnn.benchmark = True
        else:
            print("PyTorch here has no CUDA: skipping the PyTorch (cuDNN) peer (to compare with it: a CUDA build of "
                  "torch)", file=sys.stderr, flush=True)
            torch = None
    peak, device = peak_tflops(cuda)
    rows = []
    for shape in args.shapes:
        for cell in args.cells:
            x, W, U, bias, g_last = problem(cell, shape)
            ours = Minirnn(cell, x, W, U, bias)
            peer = Torch(cell, x, W, U, bias) if torch else None
            want = reference_results(cell, x, W, U, bias, g_last)
            try:
                validate(f"minirnn {cell} {shape}", ours.results(g_last), want, 2e-3)
                if peer:
                    validate(f"torch {cell} {shape}", peer.results(g_last), want, 2e-3)
            except AssertionError as exc:
                report.row({"bench": "cuda", "cell": cell, "shape": shape, "error": str(exc)})
                continue
            B, T, _, H = SHAPES[shape]
            dy = np.zeros((B, T, H), np.float32)
            dy[:, -1] = g_last
            dy_d = cuda.to_device(dy)
            g_t = torch.from_numpy(g_last).cuda() if peer else None
            cases = {"train": (lambda: ours.train_step(dy_d), peer and (lambda: peer.train_step(g_t))),
                     "infer": (ours.forward, peer and peer.forward)}
            for kind, (f_ours, f_peer) in cases.items():
                t_ours, t_peer = [], []
                for _ in range(args.rounds):
                    t_ours.append(time_it(f_ours, ours.sync, args.reps))
                    if peer:
                        t_peer.append(time_it(f_peer, peer.sync, args.reps))
                m, p = float(np.median(t_ours)), (float(np.median(t_peer)) if peer else None)
                work = flops(cell, shape, kind)
                row = {"bench": "cuda", "cell": cell, "shape": shape, "kind": kind, "minirnn_ms": m, "peer_ms": p,
                       "ratio": p and m / p, "minirnn_tflops": work / m / 1e9, "peer_tflops": p and work / p / 1e9,
                       "peak_tflops": peak, "device": device}
                rows.append(row)
                versus = f"cuDNN {p:9.3f} ms ({row['peer_tflops']:6.2f})   ratio {m / p:5.2f}" if p else "no peer"
                print(f"{cell:10s} {shape:6s} {kind:5s}  minirnn {m:9.3f} ms ({row['minirnn_tflops']:6.2f} TFLOP/s)"
                      f"   {versus}", file=sys.stderr)
    for row in rows:
        report.row(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
