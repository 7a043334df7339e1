"""The products of ``kernels/linalg.py`` on their own: ``matmul_bt`` and ``matmul_rows`` against BLAS's
``np.dot`` inside ``@njit``, at the per-step shapes and at the shapes of the products over many
steps, ``transpose_into``, and the weight-gradient primitive ``accumulate_weight_grads`` on both of
its paths.

Backs the choices described in the docstrings of ``linalg.py`` and the figures in the README. One
thread (the kernels run each row block's products on one thread), float32, the shapes of per-step
products at the benchmark sizes: forward h_{t-1} U is [B, H] x [H, 4H], backward dz U^T is
[B, 4H] x [4H, H]. Best of 5 repeats. Every result is checked before it is timed: the products against
a float64 NumPy product, ``transpose_into`` against NumPy's transpose, and both paths of
``accumulate_weight_grads`` against NumPy's weight gradients; the run stops on a mismatch.

    python3 benchmarks/bench_products.py
    OPENBLAS_CORETYPE=SkylakeX python3 benchmarks/bench_products.py     # AVX-512 BLAS kernels
    OPENBLAS_CORETYPE=Haswell python3 benchmarks/bench_products.py      # AVX2 BLAS kernels

Prints the machine (CPU model, BLAS kernels; a JSON line {"bench": "machine", ...}), then one JSON
line per shape: {"bench": "products", "M", "K", "N", "blas_us", "matmul_bt_us",
"matmul_rows_us", "ratio"} (ratio = matmul_bt / BLAS); then the products over many steps (input
projections over all steps, weight gradients over one chunk of steps): {"bench": "long_products",
"M", "K", "N", "blas_us", "matmul_bt_us", "ratio"} (ratio = matmul_bt / BLAS; input projections
add "matmul_rows_us");
then {"bench": "transpose_into", "n", "G", "ns_per_value"} (a chunk's gradient rows, as
``accumulate_weight_grads`` transposes them), then {"bench": "weight_grads", "B", "T", "D", "H", "G",
"blas_ms", "loops_ms"}: a whole backward's weight gradients, chunk by chunk, on each path.
``--output FILE`` also appends the JSON lines to FILE.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))     # _common.py, also under python -P
from _common import Report, add_output_argument, require_minirnn  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    add_output_argument(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":          # --help answers before Numba and minirnn are imported
    ARGS = parse_args()
    require_minirnn()

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from minirnn.kernels._jit import OPTIONS  # noqa: E402
from minirnn.kernels.linalg import (GRADIENT_CHUNK_COLUMNS, accumulate_weight_grads, chunk_steps,  # noqa: E402
                                    matmul_bt, matmul_rows, transpose_into, weight_grad_scratch)
from minirnn.kernels._threads import blas_threads  # noqa: E402

# products over many steps, per row block of one thread: input projections [T*B, D] x [D, 4H] over all
# steps, and LSTM weight gradients [D or H, n] x [n, 4H] over one chunk of n (step, row) columns,
# at S1 / S2 / S3 (B = 16 / 32 / 64 rows a block)
CHUNK = GRADIENT_CHUNK_COLUMNS
LONG_SHAPES = [(800, 16, 256), (3200, 64, 512), (6400, 128, 1024), (16, CHUNK, 256), (64, CHUNK, 256),
               (64, CHUNK, 512), (128, CHUNK, 512), (128, CHUNK, 1024), (256, CHUNK, 1024)]
SHAPES = [(16, 8, 128), (16, 16, 64), (16, 32, 128), (16, 64, 256), (16, 256, 64), (32, 128, 512), (32, 512, 128),
          (64, 256, 1024), (64, 1024, 256), (1, 64, 256)]


@njit(**OPTIONS)
def _repeat_blas(a, b, out, n):
    for _ in range(n):
        np.dot(a, b, out)


@njit(**OPTIONS)
def _repeat_loop(a, bt, out, n):
    for _ in range(n):
        matmul_bt(a, bt, out)


@njit(**OPTIONS)
def _repeat_rows(a, b, out, n):
    for _ in range(n):
        matmul_rows(a, b, out)


@njit(**OPTIONS)
def _repeat_transpose(src, dst, n):
    for _ in range(n):
        transpose_into(src, dst)


@njit(**OPTIONS)
def _weight_grads(x_tm, hs, dz, dW, dU, blas, chunk, scratch, n):
    T = x_tm.shape[0]
    for _ in range(n):
        for t1 in range(T, 0, -chunk):
            t0 = max(t1 - chunk, 0)
            accumulate_weight_grads(x_tm[t0:t1], dz[:t1 - t0], dW, hs[t0:t1], dz[:t1 - t0], dU, 0, blas, scratch)


def _best(fn, *args):
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best / args[-1]


def _require(ok, what):
    if not ok:
        raise SystemExit(f"bench_products: {what} differs from NumPy's result")


def main(args):
    report = Report(args.output)
    report.machine(script="bench_products", threads=1, dtype="float32")
    rng = np.random.default_rng(0)
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, 1 thread, float32")
    with blas_threads(1):
        for M, K, N in SHAPES:
            a = rng.standard_normal((M, K)).astype(np.float32)
            b = rng.standard_normal((K, N)).astype(np.float32)
            bt, out, ref = np.ascontiguousarray(b.T), np.empty((M, N), np.float32), a.astype(np.float64) @ b
            reps = max(10, int(2e8 / (M * K * N)))
            for fn, operand in ((_repeat_blas, b), (_repeat_loop, bt), (_repeat_rows, b)):
                fn(a, operand, out, 1)
                _require(np.allclose(out, ref, rtol=1e-4, atol=1e-4 * K), f"{fn.__name__} at [{M}, {K}] x [{K}, {N}]")
            blas, loop = _best(_repeat_blas, a, b, out, reps), _best(_repeat_loop, a, bt, out, reps)
            rows = _best(_repeat_rows, a, b, out, reps)
            print(f"[{M}, {K}] x [{K}, {N}]  BLAS {blas * 1e6:8.2f} us  matmul_bt {loop * 1e6:8.2f} us  "
                  f"matmul_rows {rows * 1e6:8.2f} us  BLAS / matmul_bt {blas / loop:5.2f}")
            report.row({"bench": "products", "M": M, "K": K, "N": N, "blas_us": round(blas * 1e6, 3),
                        "matmul_bt_us": round(loop * 1e6, 3), "matmul_rows_us": round(rows * 1e6, 3),
                        "ratio": round(loop / blas, 3)})
        print("products over many steps: out = a @ b (BLAS) against out = a @ bt.T (matmul_bt) and, "
              "for the input projections (K < N), out = a @ b (matmul_rows, what input_product runs)")
        for M, K, N in LONG_SHAPES:
            a = rng.standard_normal((M, K)).astype(np.float32)
            b = rng.standard_normal((K, N)).astype(np.float32)
            bt, out = np.ascontiguousarray(b.T), np.empty((M, N), np.float32)
            ref = a.astype(np.float64) @ b
            _repeat_blas(a, b, out, 1)
            _require(np.allclose(out, ref, rtol=1e-4, atol=1e-4 * K), f"BLAS at [{M}, {K}] x [{K}, {N}]")
            _repeat_loop(a, bt, out, 1)
            _require(np.allclose(out, ref, rtol=1e-4, atol=1e-4 * K), f"matmul_bt at [{M}, {K}] x [{K}, {N}]")
            reps = max(3, int(2e9 / (M * K * N)))
            blas, add = _best(_repeat_blas, a, b, out, reps), _best(_repeat_loop, a, bt, out, reps)
            flops = 2.0 * M * K * N
            line = {"bench": "long_products", "M": M, "K": K, "N": N, "blas_us": round(blas * 1e6, 1),
                    "matmul_bt_us": round(add * 1e6, 1), "ratio": round(add / blas, 3)}
            text = (f"[{M}, {K}] x [{K}, {N}]  BLAS {blas * 1e6:9.1f} us ({flops / blas / 1e9:4.0f} GFLOP/s)  "
                    f"matmul_bt {add * 1e6:9.1f} us ({flops / add / 1e9:4.0f} GFLOP/s)  "
                    f"BLAS / matmul_bt {blas / add:5.2f}")
            if K < N:
                _repeat_rows(a, b, out, 1)
                _require(np.allclose(out, ref, rtol=1e-4, atol=1e-4 * K), f"matmul_rows at [{M}, {K}] x [{K}, {N}]")
                rows = _best(_repeat_rows, a, b, out, reps)
                line["matmul_rows_us"] = round(rows * 1e6, 1)
                text += f"  matmul_rows {rows * 1e6:9.1f} us ({flops / rows / 1e9:4.0f} GFLOP/s)"
            print(text)
            report.row(line)
        print("transpose_into: a chunk's [n, 4H] gradient rows into [4H, n] (LSTM dz)")
        for n, G in ((512, 256), (512, 512), (512, 1024)):
            src, dst = rng.standard_normal((n, G)).astype(np.float32), np.empty((G, n), np.float32)
            _repeat_transpose(src, dst, 1)
            _require(np.array_equal(dst, src.T), f"transpose_into at [{n}, {G}]")
            ns = _best(_repeat_transpose, src, dst, 20) / (n * G) * 1e9
            print(f"[{n}, {G}]  {ns:5.2f} ns a value")
            report.row({"bench": "transpose_into", "n": n, "G": G, "ns_per_value": round(ns, 3)})
        print("accumulate_weight_grads: dW, dU of a whole backward, chunk by chunk (LSTM, one row block)")
        for B, T, D, H in ((16, 50, 16, 64), (32, 100, 64, 128), (64, 200, 128, 256)):
            G = 4 * H
            x_tm = rng.standard_normal((T, B, D)).astype(np.float32)
            hs = rng.standard_normal((T + 1, B, H)).astype(np.float32)
            chunk = chunk_steps(T, B)
            dz = rng.standard_normal((chunk, B, G)).astype(np.float32)
            scratch = np.empty(weight_grad_scratch(chunk * B, max(D, H), G), np.float32)
            dW_ref, dU_ref = np.zeros((D, G)), np.zeros((H, G))
            for t1 in range(T, 0, -chunk):                 # what _weight_grads adds, in float64
                t0 = max(t1 - chunk, 0)
                dz2 = dz[:t1 - t0].reshape(-1, G).astype(np.float64)
                dW_ref += x_tm[t0:t1].reshape(-1, D).T.astype(np.float64) @ dz2
                dU_ref += hs[t0:t1].reshape(-1, H).T.astype(np.float64) @ dz2
            times = {}
            for blas in (True, False):
                dW, dU = np.zeros((D, G), np.float32), np.zeros((H, G), np.float32)
                _weight_grads(x_tm, hs, dz, dW, dU, blas, chunk, scratch, 1)
                for got, want, name in ((dW, dW_ref, "dW"), (dU, dU_ref, "dU")):
                    _require(np.allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(T * B)),
                             f"accumulate_weight_grads {name} ({'BLAS' if blas else 'loops'}) at B={B} T={T} D={D} H={H}")
                times[blas] = _best(_weight_grads, x_tm, hs, dz, dW, dU, blas, chunk, scratch, 2)
            print(f"B={B} T={T} D={D} H={H}  BLAS {times[True] * 1e3:8.2f} ms  loops {times[False] * 1e3:8.2f} ms")
            report.row({"bench": "weight_grads", "B": B, "T": T, "D": D, "H": H, "G": G,
                        "blas_ms": round(times[True] * 1e3, 3), "loops_ms": round(times[False] * 1e3, 3)})


if __name__ == "__main__":
    main(ARGS)
