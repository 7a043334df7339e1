"""The per-step product on its own: ``kernels._jit.matmul_bt`` and ``matmul_rows`` against BLAS's
``np.dot`` inside ``@njit``.

Backs the figures in the docstrings of ``matmul_bt`` and ``matmul_rows`` and in the README. One thread (the kernels run each row
block's products on one thread), float32, the shapes of per-step products at the benchmark sizes:
forward h_{t-1} U is [B, H] x [H, 4H], backward dz U^T is [B, 4H] x [4H, H]. Best of 5 repeats.

    python3 -P benchmarks/bench_products.py
    OPENBLAS_CORETYPE=SkylakeX python3 -P benchmarks/bench_products.py     # AVX-512 BLAS kernels

Prints one JSON line per shape: {"bench": "products", "M", "K", "N", "blas_us", "matmul_bt_us",
"matmul_rows_us", "ratio"} (ratio = matmul_bt / BLAS); then the products over all steps (input
projection, weight gradients): {"bench": "long_products", "M", "K", "N", "blas_us",
"matmul_bt_add_us", "ratio"} (ratio = matmul_bt_add / BLAS; input projections add "matmul_rows_us");
then {"bench": "transpose_into", "B", "G", "T", "ns_per_value"}.
"""

import json
import os
import time

import numpy as np
from numba import njit

from minirnn.kernels._jit import OPTIONS, matmul_bt, matmul_bt_add, matmul_rows, transpose_into
from minirnn.kernels._threads import blas_threads

# products over all steps, per row block of one thread: input projections [T*B, D] x [D, 4H] and LSTM
# weight gradients [D or H, T*B] x [T*B, 4H], at S1 / S2 / S3 (B = 16 / 32 / 64 rows a block)
LONG_SHAPES = [(800, 16, 256), (3200, 64, 512), (6400, 128, 1024), (16, 800, 256), (64, 800, 256),
               (64, 3200, 512), (128, 3200, 512), (128, 12800, 1024), (256, 12800, 1024)]
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
def _repeat_add(a, bt, out, n):
    for _ in range(n):
        matmul_bt_add(a, bt, out)


@njit(**OPTIONS)
def _transpose_steps(src, dst, n):
    for t in range(n):
        transpose_into(src, dst, t * src.shape[0])


def _best(fn, *args):
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best / args[-1]


def main():
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
                assert np.allclose(out, ref, rtol=1e-4, atol=1e-4 * K), "results differ"
            blas, loop = _best(_repeat_blas, a, b, out, reps), _best(_repeat_loop, a, bt, out, reps)
            rows = _best(_repeat_rows, a, b, out, reps)
            print(f"[{M}, {K}] x [{K}, {N}]  BLAS {blas * 1e6:8.2f} us  matmul_bt {loop * 1e6:8.2f} us  "
                  f"matmul_rows {rows * 1e6:8.2f} us  BLAS / matmul_bt {blas / loop:5.2f}")
            print(json.dumps({"bench": "products", "M": M, "K": K, "N": N, "blas_us": round(blas * 1e6, 3),
                              "matmul_bt_us": round(loop * 1e6, 3), "matmul_rows_us": round(rows * 1e6, 3),
                              "ratio": round(loop / blas, 3)}))
        print("products over all steps: out = a @ b (BLAS) against out += a @ bt.T (matmul_bt_add) and, "
              "for the input projections (K < N), out = a @ b (matmul_rows, what input_product runs)")
        for M, K, N in LONG_SHAPES:
            a = rng.standard_normal((M, K)).astype(np.float32)
            b = rng.standard_normal((K, N)).astype(np.float32)
            bt, out = np.ascontiguousarray(b.T), np.zeros((M, N), np.float32)
            ref = a.astype(np.float64) @ b
            _repeat_add(a, bt, out, 1)
            assert np.allclose(out, ref, rtol=1e-4, atol=1e-4 * K), "results differ"
            reps = max(3, int(2e9 / (M * K * N)))
            blas, add = _best(_repeat_blas, a, b, out, reps), _best(_repeat_add, a, bt, out, reps)
            flops = 2.0 * M * K * N
            line = {"bench": "long_products", "M": M, "K": K, "N": N, "blas_us": round(blas * 1e6, 1),
                    "matmul_bt_add_us": round(add * 1e6, 1), "ratio": round(add / blas, 3)}
            text = (f"[{M}, {K}] x [{K}, {N}]  BLAS {blas * 1e6:9.1f} us ({flops / blas / 1e9:4.0f} GFLOP/s)  "
                    f"matmul_bt_add {add * 1e6:9.1f} us ({flops / add / 1e9:4.0f} GFLOP/s)  "
                    f"BLAS / add {blas / add:5.2f}")
            if K < N:
                _repeat_rows(a, b, out, 1)
                assert np.allclose(out, ref, rtol=1e-4, atol=1e-4 * K), "results differ"
                rows = _best(_repeat_rows, a, b, out, reps)
                line["matmul_rows_us"] = round(rows * 1e6, 1)
                text += f"  matmul_rows {rows * 1e6:9.1f} us ({flops / rows / 1e9:4.0f} GFLOP/s)"
            print(text)
            print(json.dumps(line))
        print("transpose_into, step by step: a step's [B, 4H] into columns of [4H, T * B] (LSTM dz)")
        for B, G, T in ((16, 256, 50), (32, 512, 100), (64, 1024, 200)):
            src, dst = rng.standard_normal((B, G)).astype(np.float32), np.empty((G, T * B), np.float32)
            _transpose_steps(src, dst, 1)
            assert np.array_equal(dst[:, :B], src.T), "transpose differs"
            ns = _best(_transpose_steps, src, dst, T) / (B * G) * 1e9   # _best: per step
            print(f"[{B}, {G}] x {T} steps  {ns:5.2f} ns a value")
            print(json.dumps({"bench": "transpose_into", "B": B, "G": G, "T": T, "ns_per_value": round(ns, 3)}))


if __name__ == "__main__":
    main()
