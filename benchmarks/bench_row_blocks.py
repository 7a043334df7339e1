"""Two ways to split a stack of recurrent layers into row blocks on 2 threads, in ``RNNModel``.

A batch of at least 16 rows runs as row blocks in parallel threads (``kernels._threads``). The model
splits it once for the whole stack (``RNNModel.stack_row_blocks = True``, the default): each block
runs every layer's forward in one hand-off to the worker thread, and every layer's backward in a
second one. The other way (``stack_row_blocks = False``) splits each layer's kernel call on its own:
a 2-layer forward + backward hands off 4 times a step, joins the blocks' outputs between layers, and
validates each layer's input and output gradient. Both compute the same numbers bit for bit (checked
before timing).

What is timed: ``RNNModel.forward(training=True)`` + ``backward`` (dense logits layer included; no
feature columns, loss or optimizer). Default: the estimator benchmark's model (LSTM [32, 16] on 8
input features, batch 32, T=50, every step valid). Both ways alternate step by step in one process
(same inputs, weights and thread pool); medians over ``--steps`` steps, per round.

    python3 -P benchmarks/bench_row_blocks.py
    python3 -P benchmarks/bench_row_blocks.py --cell gru --units 64 64 --features 16 --rounds 5

Prints one JSON line per round: {"bench": "row_blocks", "level": "model", "cell", "units", "features",
"batch", "time", "threads", "per_layer_us", "whole_stack_us", "ratio"} (ratio = whole_stack / per_layer).
Rows in ``results/`` without ``"level"`` came from an earlier version that timed the kernel calls
alone (no layer or model code).
"""

import argparse
import json
import time

import numpy as np

from minirnn.kernels import _threads
from minirnn.model import RNNModel


def step(model, x, mask, d_logits):
    model.zero_grads()
    logits = model.forward(x, mask, training=True)
    model.backward(d_logits)
    return [logits] + [g.copy() for g in model.grads()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cell", default="lstm", choices=["simple_rnn", "lstm", "gru"])
    parser.add_argument("--units", type=int, nargs="+", default=[32, 16])
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--time", type=int, default=50)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if _threads.split_rows(args.batch) is None:
        raise SystemExit(f"batch {args.batch} on {_threads.available_threads()} thread(s) runs as one block: "
                         "nothing to compare")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.time, args.features)).astype(np.float32)
    mask = np.ones((args.batch, args.time), dtype=bool)
    d_logits = rng.standard_normal((args.batch, 1)).astype(np.float32)
    models = {}
    for whole_stack in (False, True):
        model = RNNModel(args.units, cell_type=args.cell, seed=0)
        model.stack_row_blocks = whole_stack
        model.build(args.features)
        models[whole_stack] = model
    for a, b in zip(step(models[False], x, mask, d_logits), step(models[True], x, mask, d_logits)):
        np.testing.assert_array_equal(a, b)
    for _ in range(args.rounds):
        times = {False: [], True: []}
        for _ in range(args.steps):
            for whole_stack, model in models.items():
                t = time.perf_counter()
                model.zero_grads()
                model.forward(x, mask, training=True)
                model.backward(d_logits)
                times[whole_stack].append(time.perf_counter() - t)
        per_layer, whole = (1e6 * float(np.median(times[k])) for k in (False, True))
        print(json.dumps({"bench": "row_blocks", "level": "model", "cell": args.cell, "units": args.units,
                          "features": args.features, "batch": args.batch, "time": args.time,
                          "threads": _threads.available_threads(), "per_layer_us": round(per_layer, 1),
                          "whole_stack_us": round(whole, 1), "ratio": round(whole / per_layer, 3)}))


if __name__ == "__main__":
    main()
