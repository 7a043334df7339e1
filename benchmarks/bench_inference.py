"""Inference benchmark: minirnn's exported predictor against onnxruntime running minirnn's own ONNX
export of the same model (and PyTorch CPU's nn.LSTM / nn.GRU / nn.RNN with the same weights, when
installed), per call, each in its own process, alternating.

For each row (cell, units, T, D, batch) the script trains a classifier for one step and exports it
(``export_saved_model`` and ``export_onnx``). Each implementation then runs in a worker process of
its own: ``load_exported(...).predict({"x": x})`` (``predict`` below), ``estimator.predict`` on a
batch (``estimator``), an onnxruntime session's ``run`` (``onnxruntime``), and PyTorch's module
forward plus the logits layer under ``torch.inference_mode`` (``pytorch``). Each worker first checks
its logits against the exported predictor's (within 1e-4) and stops the run if they differ. The
workers take turns in short rounds (one runs while the others wait, idle; each round starts after
``--gap`` seconds with nothing running, and each worker goes first in turn), and the figure is the
median over rounds of each round's mean, in microseconds; ratios are minirnn over the peer (lower is
better). Separate processes, so that no library's thread pool shares a process with another's
(PyTorch has run several times slower in a process where Numba's thread pool had started); the
idle gap lets a pool that spins after a call go to sleep before the next worker runs.

Usage, from the repository root (peers: ``pip install onnxruntime`` and a CPU build of PyTorch,
``pip install torch --index-url https://download.pytorch.org/whl/cpu``)::

    python3 benchmarks/bench_inference.py                    # the issue's five rows, 2 threads
    python3 benchmarks/bench_inference.py --rows lstm-64-b1 --rounds 30 --threads 1
    python3 benchmarks/bench_inference.py --rows lstm-64-b1 --stages   # where one call's time goes

Prints the machine (CPU model, BLAS kernels; a JSON line {"bench": "machine", ...}), a table, and
one JSON line per row: {"bench": "inference", "row", "predict_us", "estimator_us", "onnxruntime_us",
"pytorch_us", "predict_vs_onnxruntime", "predict_vs_pytorch"}. ``--output FILE`` also appends the
JSON lines to FILE.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))     # _common.py, also under python -P
from _common import CPU_TORCH, Report, add_output_argument, require_minirnn, skip_line, version  # noqa: E402

ROWS = {  # cell, units, T, D, batch
    "lstm-64-b1": ("lstm", 64, 50, 16, 1),
    "gru-64-b1": ("gru", 64, 50, 16, 1),
    "lstm-128-b1": ("lstm", 128, 100, 64, 1),
    "lstm-64-b64": ("lstm", 64, 50, 16, 64),
    "lstm-128-b64": ("lstm", 128, 100, 64, 64),
    "simple_rnn-64-b1": ("simple_rnn", 64, 50, 16, 1),
}
DEFAULT_ROWS = ("lstm-64-b1", "gru-64-b1", "lstm-128-b1", "lstm-64-b64", "lstm-128-b64")


def build(row, folder):
    """Train and export one row's model into ``folder``/row: the bundle (under ``export/``), model.onnx,
    and inputs.npz (the batch x, the bundle's path, its logits, the weights for PyTorch). -> the folder."""
    import numpy as np

    import minirnn
    _, _, T, D, B = ROWS[row]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    where = os.path.join(folder, row)
    clf = minirnn.RNNClassifier(**estimator_arguments(row, where))
    train = rng.standard_normal((8, T, D)).astype(np.float32)
    clf.train(lambda: ({"x": train}, np.arange(8) % 2), steps=1)
    path = clf.export_saved_model(os.path.join(where, "export"))
    exported = minirnn.load_exported(path)
    clf.export_onnx(os.path.join(where, "model.onnx"))
    model = exported._network.model
    layer = model.layers[0]
    np.savez(os.path.join(where, "inputs.npz"), x=x, export=path, logits=exported.predict({"x": x})["logits"],
             kernel=layer.kernel, recurrent_kernel=layer.recurrent_kernel, bias=layer.bias,
             logits_kernel=model.logits_kernel, logits_bias=model.logits_bias)
    return where


def estimator_arguments(row, model_dir):
    import minirnn
    from minirnn import feature_column as fc
    cell, units, _, D, _ = ROWS[row]
    return dict(sequence_feature_columns=[fc.sequence_numeric_column("x", shape=D)], units=[units], cell_type=cell,
                model_dir=model_dir, config=minirnn.RunConfig(random_seed=0))


def torch_twin(weights, cell):
    """PyTorch's module with the exported weights (Keras layout -> PyTorch's), and the logits layer."""
    import numpy as np
    import torch
    W, U, bias = weights["kernel"], weights["recurrent_kernel"], weights["bias"]
    D, H = W.shape[0], U.shape[0]
    if cell == "lstm":                   # Keras gates i, f, c, o = PyTorch's i, f, g, o
        module, order, b_ih, b_hh = torch.nn.LSTM(D, H, batch_first=True), [0, 1, 2, 3], bias, np.zeros_like(bias)
    elif cell == "gru":                  # Keras z, r, h (reset_after) -> PyTorch r, z, n
        module, order = torch.nn.GRU(D, H, batch_first=True), [1, 0, 2]
        b_ih, b_hh = (bias[0], bias[1]) if bias.ndim == 2 else (bias, np.zeros_like(bias))
    else:
        module, order, b_ih, b_hh = torch.nn.RNN(D, H, batch_first=True), [0], bias, np.zeros_like(bias)

    def blocks(a):
        return np.concatenate([a[..., k * H:(k + 1) * H] for k in order], axis=-1)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(blocks(W).T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(blocks(U).T.copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(blocks(b_ih).copy()))
        module.bias_hh_l0.copy_(torch.from_numpy(blocks(b_hh).copy()))
    dense = torch.nn.Linear(H, weights["logits_kernel"].shape[1])
    with torch.no_grad():
        dense.weight.copy_(torch.from_numpy(weights["logits_kernel"].T.copy()))
        dense.bias.copy_(torch.from_numpy(weights["logits_bias"].copy()))
    return module, dense


def implementation(name, row, where, threads):
    """The call that worker ``name`` times, and the logits it gives (checked before timing)."""
    import numpy as np
    data = dict(np.load(os.path.join(where, "inputs.npz")))
    x = data["x"]
    if name == "predict":
        import minirnn
        exported = minirnn.load_exported(os.fsdecode(data["export"].item()))
        return lambda: exported.predict({"x": x}), lambda: exported.predict({"x": x})["logits"]
    if name == "estimator":
        import minirnn
        clf = minirnn.RNNClassifier(**estimator_arguments(row, where))

        def predict():
            return next(clf.predict(lambda: {"x": x}, predict_keys=["logits"], yield_single_examples=False))
        return predict, lambda: predict()["logits"]
    if name == "onnxruntime":
        import onnxruntime
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = onnxruntime.InferenceSession(os.path.join(where, "model.onnx"), options,
                                               providers=["CPUExecutionProvider"])
        feed = {"x": x, "sequence_length": np.full(len(x), x.shape[1], dtype=np.int64)}
        feed = {i.name: feed[i.name] for i in session.get_inputs()}
        return lambda: session.run(None, feed), lambda: session.run(["logits"], feed)[0]
    import torch
    torch.set_num_threads(threads)
    module, dense = torch_twin(data, ROWS[row][0])
    tx = torch.from_numpy(x)

    def forward():
        with torch.inference_mode():
            return dense(module(tx)[0][:, -1])
    return forward, lambda: forward().numpy()


def worker(name, row, where, threads, seconds):
    """A worker process: check the logits, size a round, then run a round per line read; prints one
    JSON line per answer."""
    import numpy as np
    call, logits = implementation(name, row, where, threads)
    want = np.load(os.path.join(where, "inputs.npz"))["logits"]
    if not np.allclose(logits(), want, rtol=1e-4, atol=1e-5):
        print(json.dumps({"error": f"{row}: {name}'s logits differ from the exported predictor's"}), flush=True)
        return
    for _ in range(20):                  # warm up, then size a round
        call()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        call()
        n += 1
    print(json.dumps({"ready": n}), flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        for _ in range(n):
            call()
        print(json.dumps({"us": (time.perf_counter() - start) / n * 1e6}), flush=True)


def stages(row, where, rounds):
    """Microseconds per call of the exported predictor's nested stages, each timed on its own in this
    process, alternating (medians over ``rounds`` of 200 calls each): where a call's time goes."""
    import numpy as np

    import minirnn
    from minirnn import kernels
    from minirnn.kernels import _threads
    from minirnn.predictions import predict_batch
    data = dict(np.load(os.path.join(where, "inputs.npz")))
    exported = minirnn.load_exported(os.fsdecode(data["export"].item()))
    features = {"x": data["x"]}
    net, head = exported._network, exported._head
    model, layer = net.model, net.model.layers[0]
    x, mask = net.sequence.forward(features)
    logits, _ = net.forward(features)
    forward = kernels.load(layer.cell, "numba", split_rows=False)[0]
    states = tuple(np.zeros((len(x), layer.units), np.float32) for _ in range(layer.n_states))
    workspace = layer._workspace.inference()
    cell = dict(workspace=workspace, training=False, all_outputs=False, **layer._cell_options())
    weights = (layer.kernel, layer.recurrent_kernel, layer.bias, layer.zero_output_for_mask)
    calls = {
        "predict": lambda: exported.predict(features),
        "predict_batch": lambda: predict_batch(exported.spec["kind"], head, net, features),
        "network.forward": lambda: net.forward(features),
        "feature columns": lambda: net.sequence.forward(features),
        "model.forward": lambda: model.forward(x, mask),
        "row blocks and threads": lambda: _threads.forward(forward, x, mask, states, *weights, **cell),
        "cell forward": lambda: forward(x, mask, states, *weights, **cell),
        "head outputs": lambda: head.predictions(logits),
    }
    for call in calls.values():
        for _ in range(50):
            call()
    samples = {name: [] for name in calls}
    for _ in range(rounds):                   # the stages alternate, so that drift hits them alike
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(200):
                call()
            samples[name].append((time.perf_counter() - start) / 200 * 1e6)
    return {name: round(statistics.median(values), 1) for name, values in samples.items()}


def measure(names, row, where, args):
    """{name: median over rounds of the mean microseconds per call}: one worker process per
    implementation, taking turns."""
    workers = {}
    try:
        for name in names:
            workers[name] = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--worker", name, "--rows", row, "--folder", where,
                 "--threads", str(args.threads), "--seconds", str(args.seconds)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            answer = json.loads(workers[name].stdout.readline() or '{"error": "%s: the %s worker failed"}' % (row, name))
            if "error" in answer:
                sys.exit(answer["error"])
        samples = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:     # each goes first in turn
                time.sleep(args.gap)                 # the last worker's spinning threads go to sleep
                workers[name].stdin.write("round\n")
                workers[name].stdin.flush()
                samples[name].append(json.loads(workers[name].stdout.readline())["us"])
        return {name: statistics.median(values) for name, values in samples.items()}
    finally:
        for process in workers.values():
            process.stdin.close()
            process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="+", default=list(DEFAULT_ROWS), choices=sorted(ROWS))
    parser.add_argument("--threads", type=int, default=2, help="threads for every implementation (default 2)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=0.1, help="length of one implementation's round")
    parser.add_argument("--gap", type=float, default=0.2,
                        help="seconds of idle time before each round, so that the thread pools of the worker "
                             "that ran last stop spinning (default 0.2)")
    parser.add_argument("--stages", action="store_true",
                        help="instead of the peers: time the exported predictor's nested stages (predict, "
                             "predict_batch, network.forward, the feature columns, model.forward, the row-block "
                             "and thread settings, the cell's forward, the head's outputs), in one process")
    parser.add_argument("--worker", help=argparse.SUPPRESS)          # internal: one implementation's process
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    add_output_argument(parser)
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(args.threads)
    if args.worker:
        return worker(args.worker, args.rows[0], args.folder, args.threads, args.seconds)
    require_minirnn()
    import numpy as np
    report = Report(args.output)
    report.machine(threads=args.threads, onnxruntime=version("onnxruntime"))
    names = ["predict", "estimator"]
    if version("onnxruntime") is None:
        print(skip_line("onnxruntime", "pip install onnxruntime"))
    else:
        names.append("onnxruntime")
    torch = version("torch") is not None
    if not torch:
        print(skip_line("PyTorch", CPU_TORCH))
    folder = tempfile.mkdtemp(prefix="bench_inference_")
    if args.stages:
        for row in args.rows:
            times = stages(row, build(row, folder), args.rounds)
            print(f"{row}: " + ", ".join(f"{name} {us}" for name, us in times.items()) + " (us per call)", flush=True)
            report.row({"bench": "inference-stages", "row": row, "threads": args.threads, **{
                name.replace(" ", "_").replace(".", "_") + "_us": us for name, us in times.items()}})
        return
    print(f"{'row':<16}{'predict us':>12}{'estimator':>11}{'onnxrt us':>11}{'pytorch us':>12}"
          f"{'vs ort':>8}{'vs torch':>10}")
    for row in args.rows:
        cell = ROWS[row][0]
        where = build(row, folder)
        reset_before = cell == "gru" and np.load(os.path.join(where, "inputs.npz"))["bias"].ndim != 2
        times = measure(names + (["pytorch"] if torch and not reset_before else []), row, where, args)
        line = {"bench": "inference", "row": row, "cell": cell, "units": ROWS[row][1], "T": ROWS[row][2],
                "D": ROWS[row][3], "batch": ROWS[row][4], "threads": args.threads, "processes": "one per implementation",
                "predict_us": round(times["predict"], 1), "estimator_us": round(times["estimator"], 1),
                "onnxruntime_us": round(times["onnxruntime"], 1) if "onnxruntime" in times else None,
                "pytorch_us": round(times["pytorch"], 1) if "pytorch" in times else None}
        for peer in ("onnxruntime", "pytorch"):
            line[f"predict_vs_{peer}"] = round(times["predict"] / times[peer], 2) if peer in times else None
        shown = [f"{line[k]:>11}" if line[k] is not None else f"{'-':>11}" for k in ("onnxruntime_us",)]
        print(f"{row:<16}{line['predict_us']:>12}{line['estimator_us']:>11}{shown[0]}"
              f"{line['pytorch_us'] if line['pytorch_us'] is not None else '-':>12}"
              f"{line['predict_vs_onnxruntime'] if line['predict_vs_onnxruntime'] is not None else '-':>8}"
              f"{line['predict_vs_pytorch'] if line['predict_vs_pytorch'] is not None else '-':>10}", flush=True)
        report.row(line)


if __name__ == "__main__":
    main()
