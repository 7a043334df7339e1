"""Cold start: the time from a fresh Python process to minirnn's first prediction and first training
step, with an empty compiled-kernel cache (a new install, container or CI job) and with a warm one.

Each measurement is a fresh process (``python -P``) that imports minirnn and either loads an exported
LSTM classifier and predicts one example (``predict``), or builds an ``RNNClassifier`` and takes its
first ``train`` step (``train``). ``cold`` runs point ``NUMBA_CACHE_DIR`` at a new empty folder;
``warm`` runs reuse the folder the cold run filled. ``MINIRNN_BACKEND=numpy`` (no compilation at all)
gives the floor. ``background`` predictions run with ``MINIRNN_COMPILE=background`` (the first
prediction runs the NumPy reference while the kernel compiles in a background thread), once with a
new empty cache and once with the filled one. Before timing, the script checks that the prediction
of every run equals the prediction of the process that made the export (to 1e-5). The figure is the
median over ``--rounds``, in seconds, of the time measured inside the process from its first line
(the interpreter's own start, ~20 ms, is not counted), plus the peer: onnxruntime's import and
first run of the ONNX export.

Usage, from the repository root::

    python3 benchmarks/bench_coldstart.py                 # 3 rounds
    python3 benchmarks/bench_coldstart.py --rounds 5

Prints the machine, a table, and one JSON line per case: {"bench": "coldstart", "case", "cache",
"seconds"}. ``--output FILE`` also appends the JSON lines to FILE.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))     # _common.py, also under python -P
from _common import Report, add_output_argument, require_minirnn, version  # noqa: E402

PREDICT = """
import time; start = time.perf_counter()
import sys, numpy as np, minirnn
model = minirnn.load_exported(sys.argv[1])
p = model.predict({"x": np.load(sys.argv[2])})["probabilities"]
print(time.perf_counter() - start, float(p[0, 1]))
"""
TRAIN = """
import time; start = time.perf_counter()
import sys, numpy as np, minirnn
from minirnn import feature_column as fc
x = np.load(sys.argv[2])
clf = minirnn.RNNClassifier([fc.sequence_numeric_column("x", shape=x.shape[2])], units=[32], cell_type="lstm",
                            model_dir=sys.argv[1], config=minirnn.RunConfig(random_seed=0))
clf.train(lambda: ({"x": np.repeat(x, 8, axis=0)}, np.arange(8) % 2), steps=1)
print(time.perf_counter() - start, float(clf.get_variable_value("rnn_model/logits/bias")[0]))
"""
ONNX = """
import time; start = time.perf_counter()
import sys, numpy as np, onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2])
p = session.run(["probabilities"], {"x": x, "sequence_length": np.array([x.shape[1]], dtype=np.int64)})[0]
print(time.perf_counter() - start, float(p[0, 1]))
"""


def run(code, args, env):
    done = subprocess.run([sys.executable, "-P", "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        sys.exit(f"a measured process failed:\n{done.stderr}")
    seconds, value = done.stdout.split()
    return float(seconds), float(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    add_output_argument(parser)
    args = parser.parse_args()
    require_minirnn()
    import numpy as np

    import minirnn
    from minirnn import feature_column as fc
    report = Report(args.output)
    report.machine(rounds=args.rounds, onnxruntime=version("onnxruntime"))
    folder = tempfile.mkdtemp(prefix="bench_coldstart_")
    x = np.random.default_rng(0).standard_normal((1, 50, 16)).astype(np.float32)
    np.save(os.path.join(folder, "x.npy"), x)
    clf = minirnn.RNNClassifier([fc.sequence_numeric_column("x", shape=16)], units=[64], cell_type="lstm",
                                model_dir=os.path.join(folder, "model"), config=minirnn.RunConfig(random_seed=0))
    clf.train(lambda: ({"x": np.repeat(x, 4, axis=0)}, np.arange(4) % 2), steps=1)
    export = os.fsdecode(clf.export_saved_model(os.path.join(folder, "export")))
    want = float(minirnn.load_exported(export).predict({"x": x})["probabilities"][0, 1])
    onnx_path = None
    if version("onnxruntime") and version("onnx"):
        onnx_path = clf.export_onnx(os.path.join(folder, "model.onnx"))
    base = {k: v for k, v in os.environ.items() if k not in ("MINIRNN_BACKEND", "MINIRNN_COMPILE", "NUMBA_CACHE_DIR")}
    base.pop("PYTHONDONTWRITEBYTECODE", None)          # an installed package has its bytecode compiled
    samples = {}
    for _ in range(args.rounds):
        for case, code in (("predict", PREDICT), ("train", TRAIN)):
            cache = tempfile.mkdtemp(prefix="numba_cache_", dir=folder)
            env = dict(base, NUMBA_CACHE_DIR=cache)
            runs = [("cold", env), ("warm", env)]
            if case == "predict":        # the background compile's own process exits before it fills a cache
                empty = dict(env, NUMBA_CACHE_DIR=tempfile.mkdtemp(prefix="numba_cache_", dir=folder))
                runs += [("background cold", dict(empty, MINIRNN_COMPILE="background")),
                         ("background warm", dict(env, MINIRNN_COMPILE="background"))]
            for kind, run_env in runs:
                target = [export] if case == "predict" else [tempfile.mkdtemp(dir=folder)]
                seconds, value = run(code, target + [os.path.join(folder, "x.npy")], run_env)
                if case == "predict" and abs(value - want) > 1e-5:
                    sys.exit(f"the {kind} prediction {value} differs from the exporting process's {want}")
                samples.setdefault((case, kind), []).append(seconds)
            shutil.rmtree(cache)
            numpy_env = dict(base, MINIRNN_BACKEND="numpy")
            target = [export] if case == "predict" else [tempfile.mkdtemp(dir=folder)]
            seconds, value = run(code, target + [os.path.join(folder, "x.npy")], numpy_env)
            samples.setdefault((case, "numpy backend"), []).append(seconds)
        if onnx_path:
            seconds, value = run(ONNX, [onnx_path, os.path.join(folder, "x.npy")], base)
            if abs(value - want) > 1e-4:
                sys.exit(f"onnxruntime's prediction {value} differs from minirnn's {want}")
            samples.setdefault(("onnxruntime predict", "-"), []).append(seconds)
    print(f"{'case':<22}{'cache':<16}{'seconds':>8}")
    for (case, kind), values in samples.items():
        seconds = statistics.median(values)
        print(f"{case:<22}{kind:<16}{seconds:>8.2f}")
        report.row({"bench": "coldstart", "case": case, "cache": kind, "seconds": round(seconds, 3),
                    "samples": [round(v, 3) for v in values]})
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
