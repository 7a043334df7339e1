"""Two ways to split a stack of recurrent layers into row blocks on 2 threads, at the kernel level.

minirnn splits each layer call on its own (``kernels._threads``): a 2-layer forward + backward hands
row blocks to the worker thread 4 times a step, and joins the blocks' outputs between layers. The
alternative splits the batch once for the whole stack: each row block runs every layer's forward in
one hand-off, and every layer's backward in a second one. Rows are independent through the whole
stack, so both compute the same numbers (checked before timing; the weight gradients are summed over
the blocks in the same order).

Only the recurrent layers are timed (no feature columns, head, optimizer or layer wrappers); the
last layer's gradient is 1 at its last output. Default: the estimator benchmark's stack (LSTM
[32, 16] on 8 input features, batch 32, T=50). Both ways alternate in one process (their inputs,
weights and thread pool shared); medians over ``--steps`` steps, per round.

    python3 -P benchmarks/bench_row_blocks.py
    python3 -P benchmarks/bench_row_blocks.py --cell gru --units 64 64 --features 16 --rounds 5

Prints one JSON line per round: {"bench": "row_blocks", "cell", "units", "features", "batch", "time",
"threads", "per_layer_us", "whole_stack_us", "ratio"} (ratio = whole_stack / per_layer).
"""

import argparse
import importlib
import json
import time

import numpy as np

from minirnn.kernels import _threads
from minirnn.kernels.workspace import Workspace

GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


def build(cell, units, features, B, T, seed=0):
    rng = np.random.default_rng(seed)
    layers, D = [], features
    for H in units:
        G = GATES[cell] * H
        bias_shape = (2, G) if cell == "gru" else (G,)
        layers.append(((rng.standard_normal((D, G)) * 0.2).astype(np.float32),
                       (rng.standard_normal((H, G)) * 0.2).astype(np.float32),
                       np.zeros(bias_shape, np.float32)))
        D = H
    x = rng.standard_normal((B, T, features)).astype(np.float32)
    return layers, x, np.ones((B, T), dtype=bool)


def zero_states(cell, rows, H):
    return tuple(np.zeros((rows, H), np.float32) for _ in range(2 if cell == "lstm" else 1))


def per_layer_step(module, cell, layers, x, mask, spaces, grads):
    """What minirnn does: each layer's forward and backward split into row blocks on its own."""
    y, saved = x, []
    for (W, U, b), space in zip(layers, spaces):
        y, _, s = _threads.forward(module.forward, y, mask, zero_states(cell, len(x), U.shape[0]), W, U, b,
                                   workspace=space)
        saved.append(s)
    dy = np.zeros_like(y)
    dy[:, -1] = 1.0
    for k in range(len(layers) - 1, -1, -1):
        H = layers[k][1].shape[0]
        dy, _ = _threads.backward(module.backward, dy, zero_states(cell, len(x), H), saved[k], *grads[k])
    return dy


def whole_stack_step(module, cell, layers, x, mask, block_spaces, grads):
    """The batch split once: each block runs all layers forward, then all layers backward."""
    B = len(x)
    blocks, _ = _threads.plan(B, 0.0)
    bounds = [B * k // blocks for k in range(blocks + 1)]
    index = {b0: k for k, b0 in enumerate(bounds[:-1])}
    saved = {}

    def forward(b0, b1):
        k, y, kept = index[b0], x[b0:b1], []
        for (W, U, b), space in zip(layers, block_spaces[k]):
            y, _, s = module.forward(y, mask[b0:b1], zero_states(cell, b1 - b0, U.shape[0]), W, U, b, workspace=space)
            kept.append(s)
        saved[k] = (kept, y.shape)

    def backward(b0, b1):
        kept, shape = saved[index[b0]]
        dy = np.zeros(shape, np.float32)
        dy[:, -1] = 1.0
        block_grads = [[np.zeros_like(w) for w in layer] for layer in layers]
        for k in range(len(layers) - 1, -1, -1):
            H = layers[k][1].shape[0]
            dy, _ = module.backward(dy, zero_states(cell, b1 - b0, H), kept[k], *block_grads[k])
        return dy, block_grads

    with _threads.blas_threads(1):
        _threads._map(forward, bounds)
        parts = _threads._map(backward, bounds)
    for _, block_grads in parts:          # fixed order, as _threads.backward
        for layer_grads, block in zip(grads, block_grads):
            for g, gb in zip(layer_grads, block):
                g += gb
    return np.concatenate([p[0] for p in parts])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cell", default="lstm", choices=sorted(GATES))
    parser.add_argument("--units", type=int, nargs="+", default=[32, 16])
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--time", type=int, default=50)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    module = importlib.import_module(f"minirnn.kernels.{args.cell}")
    layers, x, mask = build(args.cell, args.units, args.features, args.batch, args.time)
    blocks, _ = _threads.plan(args.batch, 0.0)
    if blocks < 2:
        raise SystemExit(f"batch {args.batch} on {_threads.available_threads()} thread(s) runs as one block: "
                         "nothing to compare")

    def fresh():
        return [[np.zeros_like(w) for w in layer] for layer in layers]

    spaces = [Workspace() for _ in layers]
    block_spaces = [[Workspace() for _ in layers] for _ in range(blocks)]
    grads_a, grads_b = fresh(), fresh()
    dx_a = per_layer_step(module, args.cell, layers, x, mask, spaces, grads_a)
    dx_b = whole_stack_step(module, args.cell, layers, x, mask, block_spaces, grads_b)
    np.testing.assert_array_equal(dx_a, dx_b)
    for ga, gb in zip(grads_a, grads_b):
        for a, b in zip(ga, gb):
            np.testing.assert_array_equal(a, b)

    for _ in range(args.rounds):
        a, b = [], []
        for _ in range(args.steps):
            t = time.perf_counter()
            per_layer_step(module, args.cell, layers, x, mask, spaces, grads_a)
            a.append(time.perf_counter() - t)
            t = time.perf_counter()
            whole_stack_step(module, args.cell, layers, x, mask, block_spaces, grads_b)
            b.append(time.perf_counter() - t)
        per_layer, whole = 1e6 * float(np.median(a)), 1e6 * float(np.median(b))
        print(json.dumps({"bench": "row_blocks", "cell": args.cell, "units": args.units,
                          "features": args.features, "batch": args.batch, "time": args.time,
                          "threads": _threads.available_threads(), "per_layer_us": round(per_layer, 1),
                          "whole_stack_us": round(whole, 1), "ratio": round(whole / per_layer, 3)}))


if __name__ == "__main__":
    main()
