"""Inference benchmark: minirnn's exported predictor against onnxruntime running minirnn's own ONNX
export of the same model (and PyTorch CPU's nn.LSTM / nn.GRU / nn.RNN with the same weights, when
installed), per call, in one process, alternating.

For each row (cell, units, T, D, batch) the script trains a classifier for one step, exports it
(``export_saved_model`` and ``export_onnx``), checks that the three give the same logits (within
1e-4), then times each call: ``load_exported(...).predict({"x": x})`` (``predict`` below),
``estimator.predict`` on a batch (``estimator``), an onnxruntime session's ``run`` (``onnxruntime``),
and PyTorch's module forward plus the logits layer under ``torch.inference_mode`` (``pytorch``). The
implementations alternate in short rounds and the figure is the median over rounds of each round's
mean, in microseconds; ratios are minirnn over the peer (lower is better).

Usage, from the repository root (peers: ``pip install onnxruntime`` and a CPU build of PyTorch,
``pip install torch --index-url https://download.pytorch.org/whl/cpu``)::

    python3 benchmarks/bench_inference.py                    # the issue's five rows, 2 threads
    python3 benchmarks/bench_inference.py --rows lstm-64-b1 --rounds 30 --threads 1

Prints the machine (CPU model, BLAS kernels; a JSON line {"bench": "machine", ...}), a table, and
one JSON line per row: {"bench": "inference", "row", "predict_us", "estimator_us", "onnxruntime_us",
"pytorch_us", "predict_vs_onnxruntime", "predict_vs_pytorch"}. ``--output FILE`` also appends the
JSON lines to FILE.
"""

import argparse
import os
import statistics
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
    """(estimator, exported predictor, input batch, onnx path) for one row."""
    import numpy as np

    import minirnn
    from minirnn import feature_column as fc
    cell, units, T, D, B = ROWS[row]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    clf = minirnn.RNNClassifier([fc.sequence_numeric_column("x", shape=D)], units=[units], cell_type=cell,
                                model_dir=os.path.join(folder, row), config=minirnn.RunConfig(random_seed=0))
    train = rng.standard_normal((8, T, D)).astype(np.float32)
    clf.train(lambda: ({"x": train}, np.arange(8) % 2), steps=1)
    exported = minirnn.load_exported(clf.export_saved_model(os.path.join(folder, row, "export")))
    onnx_path = clf.export_onnx(os.path.join(folder, row, "model.onnx"))
    return clf, exported, x, onnx_path


def torch_twin(exported, cell):
    """PyTorch's module with the exported weights (Keras layout -> PyTorch's), and the logits layer."""
    import numpy as np
    import torch
    net = exported._network
    layer = net.model.layers[0]
    W, U = np.asarray(layer.kernel), np.asarray(layer.recurrent_kernel)
    bias = np.asarray(layer.bias)
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
    dense = torch.nn.Linear(H, net.model.logits_dimension)
    with torch.no_grad():
        dense.weight.copy_(torch.from_numpy(np.asarray(net.model.logits_kernel).T.copy()))
        dense.bias.copy_(torch.from_numpy(np.asarray(net.model.logits_bias).copy()))
    return module, dense


def measure(calls, rounds, seconds_per_round):
    """{name: median over rounds of the mean microseconds per call}, the calls alternating."""
    per_call = {}
    for name, call in calls.items():                 # warm up and size each round
        for _ in range(20):
            call()
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < seconds_per_round:
            call()
            n += 1
        per_call[name] = n
    samples = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            n = per_call[name]
            start = time.perf_counter()
            for _ in range(n):
                call()
            samples[name].append((time.perf_counter() - start) / n * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="+", default=list(DEFAULT_ROWS), choices=sorted(ROWS))
    parser.add_argument("--threads", type=int, default=2, help="threads for every implementation (default 2)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=0.1, help="length of one implementation's round")
    add_output_argument(parser)
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(args.threads)
    require_minirnn()
    import numpy as np
    report = Report(args.output)
    report.machine(threads=args.threads, onnxruntime=version("onnxruntime"))
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
        print(skip_line("onnxruntime", "pip install onnxruntime"))
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
        print(skip_line("PyTorch", CPU_TORCH))
    folder = tempfile.mkdtemp(prefix="bench_inference_")
    print(f"{'row':<16}{'predict us':>12}{'estimator':>11}{'onnxrt us':>11}{'pytorch us':>12}"
          f"{'vs ort':>8}{'vs torch':>10}")
    for row in args.rows:
        cell = ROWS[row][0]
        clf, exported, x, onnx_path = build(row, folder)
        want = exported.predict({"x": x})["logits"]
        calls = {"predict": lambda: exported.predict({"x": x}),
                 "estimator": lambda: next(clf.predict(lambda: {"x": x}, predict_keys=["logits"],
                                                       yield_single_examples=False))}
        got = next(clf.predict(lambda: {"x": x}, predict_keys=["logits"], yield_single_examples=False))["logits"]
        if not np.allclose(got, want, rtol=1e-5, atol=1e-6):
            sys.exit(f"{row}: estimator.predict and the exported predictor differ")
        if onnxruntime is not None:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
            session = onnxruntime.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
            feed = {"x": x, "sequence_length": np.full(len(x), x.shape[1], dtype=np.int64)}
            feed = {i.name: feed[i.name] for i in session.get_inputs()}
            if not np.allclose(session.run(["logits"], feed)[0], want, rtol=1e-4, atol=1e-5):
                sys.exit(f"{row}: onnxruntime's logits differ from minirnn's")
            calls["onnxruntime"] = lambda: session.run(None, feed)
        if torch is not None and cell in ("lstm", "gru", "simple_rnn") and not (
                cell == "gru" and np.asarray(exported._network.model.layers[0].bias).ndim != 2):
            module, dense = torch_twin(exported, cell)
            tx = torch.from_numpy(x)

            def forward():
                with torch.inference_mode():
                    return dense(module(tx)[0][:, -1])
            if not np.allclose(forward().numpy(), want, rtol=1e-4, atol=1e-5):
                sys.exit(f"{row}: PyTorch's logits differ from minirnn's")
            calls["pytorch"] = forward
        times = measure(calls, args.rounds, args.seconds)
        line = {"bench": "inference", "row": row, "cell": cell, "units": ROWS[row][1], "T": ROWS[row][2],
                "D": ROWS[row][3], "batch": ROWS[row][4], "threads": args.threads,
                "predict_us": round(times["predict"], 1), "estimator_us": round(times["estimator"], 1),
                "onnxruntime_us": round(times["onnxruntime"], 1) if "onnxruntime" in times else None,
                "pytorch_us": round(times["pytorch"], 1) if "pytorch" in times else None}
        for peer in ("onnxruntime", "pytorch"):
            line[f"predict_vs_{peer}"] = round(times["predict"] / times[peer], 2) if peer in times else None
        shown = [f"{line[k]:>11}" if line[k] is not None else f"{'-':>11}" for k in ("onnxruntime_us",)]
        print(f"{row:<16}{line['predict_us']:>12}{line['estimator_us']:>11}{shown[0]}"
              f"{line['pytorch_us'] if line['pytorch_us'] is not None else '-':>12}"
              f"{line['predict_vs_onnxruntime'] if line['predict_vs_onnxruntime'] is not None else '-':>8}"
              f"{line['predict_vs_pytorch'] if line['predict_vs_pytorch'] is not None else '-':>10}")
        report.row(line)


if __name__ == "__main__":
    main()
