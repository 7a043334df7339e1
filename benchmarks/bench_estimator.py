"""Estimator benchmark: ``minirnn.RNNClassifier`` end to end on TF's token task, against the figures
measured for TF 2.15's ``tf.estimator.experimental.RNNClassifier`` on the same machine kind.

Task (as TF 2.15's ``RNNClassifier`` was measured on it): token ids 1..99, label 1 iff token 7
occurs (balanced classes), batch 32, T=50, ``embedding_column(sequence_categorical_column_with_identity(
'tokens', 100), 8)``, LSTM units [32, 16], the default optimizer (Adagrad, learning rate 0.05, clipnorm 5),
default RunConfig (checkpoints at the start and end of each ``train`` call, then every 600 s). Every
figure below includes what the estimator API does around the kernels (input parsing, embedding
lookup, head, optimizer, checkpoint files, hooks), as a user calling it would see.

Measured, each in fresh processes (NumPy, minirnn and the model built inside the process):
  startup  import (numpy + minirnn's estimator modules), construction, ``train(steps=1)`` (checkpoint
           writes included), a second ``train(steps=1)`` (TF rebuilt its graph on every call), the
           first ``evaluate`` and ``predict``, and the whole process's wall; once with an emptied
           Numba on-disk cache (NUMBA_CACHE_DIR = a new folder: every kernel compiles) and once
           warm (a second process on that cache). The cache hits/misses are checked.
  train    steady steps/s over 300 steps after 20 warm-up steps (a hook's clock: input pipeline and
           hooks included, checkpoint writes excluded), and the wall of that ``train(steps=300)``
           call (checkpoint writes included); median of 3 such calls per process. Data generated up
           front, batched by ``numpy_input_fn`` (shuffled, padded [32, 50] int arrays).
  evaluate 1024 held-out examples in batches of 32.
  predict  one example (a list of 50 token ids): median and p90 over 200 calls of
           ``next(clf.predict(input_fn))`` on the trained in-memory model, the same with a padded
           [1, 50] array, and through ``minirnn.load_exported(path).predict({"tokens": [[...]]})``.
  export   ``export_saved_model`` and ``load_exported``.
  quality  eval accuracy / average loss after 250, 500, 750, 1000 steps (train in 4 calls, seed 0).

Before timing, a separate process checks that the predictions agree: one example at a time vs the
batch, padded array vs list of lists, exported model vs estimator, evaluate's accuracy vs predict's
class ids, that repeated predict calls read no checkpoint (the model stays in memory), and that the
same checkpoint restored in a process on the plain NumPy reference kernels (``MINIRNN_BACKEND=numpy``)
predicts the same probabilities. The run stops on a mismatch.

The machine has 2 cores and may be shared: before each timed process the driver waits (up to
``--max-wait`` s) until other processes use < 10% of the CPUs, prints their share, and warns when it
gave up waiting. Figures are medians over ``--rounds`` separate processes.

TensorFlow is not installed with minirnn: its figures are quoted in this script (TF 2.15, 2 CPU cores,
measured on the project's machines while they were shared with other benchmarks, so best values are
the unloaded figures). Targets from the issue: steps/s >= 20x TF's best (56.9), first step < 1 s with a
warm Numba cache, one-example predict < 1 ms.

    python3 benchmarks/bench_estimator.py                      # 3 rounds, 2 threads
    python3 benchmarks/bench_estimator.py --rounds 5 --threads 2 --no-quality
    python3 benchmarks/bench_estimator.py --output estimator.jsonl    # also append the JSON lines there

Prints the machine (CPU model, BLAS kernels; a JSON line {"bench": "machine", ...}), a table (median
[min-max] over rounds, TF's figure, speed-up vs TF's best, target) and one JSON line
{"bench": "estimator", ...}. It writes no file unless ``--output FILE`` is given.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))     # _common.py, also under python -P
from _common import Report, add_output_argument, require_minirnn  # noqa: E402

B, T, VOCAB, EMBED, UNITS = 32, 50, 100, 8, [32, 16]
WARMUP_STEPS, STEADY_STEPS, WINDOWS, EVAL_EXAMPLES, PREDICT_CALLS = 20, 300, 3, 1024, 200

# TF 2.15 RNNClassifier on this task, 2 cores, measured on the project's machines:
# (low, high) ranges over runs; "best" is the end a quiet machine gives.
TF = {
    "import_s": (3.2, 4.0),
    "first_step_s": (2.3, 3.3),          # graph build + restore, paid on every train() call
    "steps_per_s": (38.4, 56.9),
    "train300_wall_s": (8.2, 9.7),
    "evaluate_s": (1.5, 2.0),
    "predict_one_s": (0.72, 0.72),
    "export_s": (0.3, 0.9),
    "process_s": (7.9, 8.4),             # fresh process: import + build + train 2 + eval + predict
    "accuracy": {500: (0.61, 0.64), 1000: (0.989, 0.989), 2000: (1.0, 1.0)},
}
TARGET_STEPS_PER_S = 20 * TF["steps_per_s"][1]
TARGET_FIRST_STEP_S = 1.0
TARGET_PREDICT_S = 1e-3


# ---------------------------------------------------------------------------------------------
# the task and the estimator (worker side)
# ---------------------------------------------------------------------------------------------

def token_task(n, seed):
    """n sequences of T ids in 1..99 and labels (exactly balanced); label 1 iff token 7 occurs:
    negatives never hold a 7, positives hold one 7 at a random step."""
    import numpy as np
    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCAB - 1, (n, T))                 # 1..98, then skip 7: 1..6, 8..99
    x[x >= 7] += 1
    y = rng.permutation(np.arange(n) % 2)
    pos = np.flatnonzero(y)
    x[pos, rng.integers(0, T, pos.size)] = 7
    return x, y


def make_classifier(model_dir):
    import minirnn
    from minirnn import feature_column as fc
    tokens = fc.embedding_column(fc.sequence_categorical_column_with_identity("tokens", VOCAB), EMBED)
    return minirnn.RNNClassifier([tokens], units=UNITS, cell_type="lstm", model_dir=model_dir,
                                 config=minirnn.RunConfig(random_seed=0))


def input_fns(n_train=B * 1000):
    from minirnn.inputs import numpy_input_fn
    x, y = token_task(n_train, seed=1)
    xe, ye = token_task(EVAL_EXAMPLES, seed=2)
    train = numpy_input_fn({"tokens": x}, y, batch_size=B, num_epochs=None, shuffle=True, seed=0)
    evaluate = numpy_input_fn({"tokens": xe}, ye, batch_size=B, num_epochs=1, shuffle=False)
    return train, evaluate, xe, ye


def _cache_stats():
    from minirnn.kernels import lstm
    from minirnn.kernels._threads import small_products_in_blas
    hits = misses = 0
    compiled = lstm.loops(small_products_in_blas())
    for loop in (compiled.forward, compiled.backward):
        stats = loop.stats
        hits += sum(stats.cache_hits.values())
        misses += sum(stats.cache_misses.values())
    return {"cache_hits": hits, "cache_misses": misses}


def worker_startup(model_dir):
    t0 = time.perf_counter()
    import numpy  # noqa: F401
    import minirnn
    minirnn.RNNClassifier, minirnn.feature_column, minirnn.inputs        # load what a user needs
    t1 = time.perf_counter()
    clf = make_classifier(model_dir)
    t2 = time.perf_counter()
    train, evaluate, xe, _ = input_fns(n_train=B * 4)       # data is not timed
    t3 = time.perf_counter()
    clf.train(train, steps=1)
    t4 = time.perf_counter()
    clf.train(train, steps=1)
    t5 = time.perf_counter()
    clf.evaluate(evaluate)
    t6 = time.perf_counter()
    one = {"tokens": [xe[0].tolist()]}
    next(clf.predict(lambda: one))
    t7 = time.perf_counter()
    return {"import_s": t1 - t0, "construct_s": t2 - t1, "first_train_s": t4 - t3, "second_train_s": t5 - t4,
            "first_evaluate_s": t6 - t5, "first_predict_s": t7 - t6, **_cache_stats()}


def _step_clock():
    """A training hook that stamps the clock before the first step and after each step."""
    import minirnn.estimator as est

    class StepClock(est.SessionRunHook):
        def begin(self, estimator):
            self.start, self.ends = None, []

        def before_step(self, step):
            if self.start is None:
                self.start = time.perf_counter()

        def after_step(self, step, loss):
            self.ends.append(time.perf_counter())
            return False
    return StepClock()


def _percentiles(times):
    import numpy as np
    return float(np.median(times)), float(np.percentile(times, 90))


def worker_main(model_dir):
    import numpy as np
    import minirnn
    clf = make_classifier(model_dir)
    train, evaluate, xe, ye = input_fns()
    clf.train(train, steps=WARMUP_STEPS)
    out = {}

    walls, rates, step_times = [], [], []
    for _ in range(WINDOWS):                       # separate train() calls: median of the windows
        clock = _step_clock()
        t = time.perf_counter()
        clf.train(train, steps=STEADY_STEPS, hooks=[clock])
        walls.append(time.perf_counter() - t)
        ends = np.array(clock.ends)
        rates.append(STEADY_STEPS / (ends[-1] - clock.start))
        step_times.append(np.diff(np.concatenate([[clock.start], ends])))
    out["train300_wall_s"] = float(np.median(walls))
    out["steps_per_s"] = float(np.median(rates))
    out["step_ms_median"] = 1e3 * float(np.median(np.concatenate(step_times)))

    t = time.perf_counter()
    metrics = clf.evaluate(evaluate)
    out["evaluate_s"] = time.perf_counter() - t
    out["accuracy_after_320_steps"] = float(metrics["accuracy"])

    def latency(call, n=PREDICT_CALLS):
        for _ in range(5):
            call()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
        return _percentiles(times)

    one_list = {"tokens": [xe[0].tolist()]}
    one_array = {"tokens": xe[:1]}
    out["predict_s"], out["predict_p90_s"] = latency(lambda: next(clf.predict(lambda: one_list)))
    out["predict_array_s"], out["predict_array_p90_s"] = latency(lambda: next(clf.predict(lambda: one_array)))

    base = tempfile.mkdtemp(prefix="export_", dir=model_dir)
    t = time.perf_counter()
    path = clf.export_saved_model(base)
    out["export_s"] = time.perf_counter() - t
    t = time.perf_counter()
    exported = minirnn.load_exported(path)
    out["load_exported_s"] = time.perf_counter() - t
    out["exported_predict_s"], out["exported_predict_p90_s"] = latency(lambda: exported.predict(one_list))
    return out


def worker_quality(model_dir):
    clf = make_classifier(model_dir)
    train, evaluate, _, _ = input_fns()
    curve = {}
    t = time.perf_counter()
    for _ in range(4):
        clf.train(train, steps=250)
        m = clf.evaluate(evaluate)
        curve[int(m["global_step"])] = {"accuracy": round(float(m["accuracy"]), 4),
                                        "average_loss": round(float(m["average_loss"]), 4)}
    return {"curve": curve, "wall_s": time.perf_counter() - t}


def worker_check(model_dir):
    """Predictions agree across the paths a user can take; predict reads no checkpoint per call."""
    import numpy as np
    import minirnn
    from minirnn import checkpoint as ckpt
    from minirnn.inputs import numpy_input_fn
    clf = make_classifier(model_dir)
    train, evaluate, xe, ye = input_fns()
    clf.train(train, steps=50)
    worst = {}
    batch = next(clf.predict(lambda: {"tokens": xe[:16]}, yield_single_examples=False))["probabilities"]
    singles = np.stack([next(clf.predict(lambda k=k: {"tokens": [xe[k].tolist()]}))["probabilities"]
                        for k in range(16)])
    worst["one_vs_batch"] = float(np.abs(singles - batch).max())
    as_list = next(clf.predict(lambda: {"tokens": xe[:16].tolist()}, yield_single_examples=False))["probabilities"]
    worst["array_vs_list"] = float(np.abs(as_list - batch).max())
    exported = minirnn.load_exported(clf.export_saved_model(tempfile.mkdtemp(prefix="export_", dir=model_dir)))
    worst["exported_vs_estimator"] = float(np.abs(exported.predict({"tokens": xe[:16].tolist()})["probabilities"]
                                                  - batch).max())
    ids = np.concatenate([p["class_ids"][:, 0] for p in clf.predict(
        numpy_input_fn({"tokens": xe}, batch_size=B, shuffle=False), yield_single_examples=False)])
    accuracy = float(clf.evaluate(evaluate)["accuracy"])
    worst["evaluate_vs_predict_accuracy"] = abs(accuracy - float(np.mean(ids == ye)))
    reads = [0]
    original = ckpt.read

    def counting_read(*a, **k):
        reads[0] += 1
        return original(*a, **k)
    ckpt.read = counting_read
    try:
        for _ in range(20):
            next(clf.predict(lambda: {"tokens": [xe[0].tolist()]}))
    finally:
        ckpt.read = original
    env = dict(os.environ, MINIRNN_BACKEND="numpy")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", "reference", model_dir],
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"worker reference failed:\n{proc.stderr[-3000:]}")
    reference = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))
    worst["numpy_reference_vs_estimator"] = float(np.abs(reference - batch).max())
    return {"max_abs_diff": worst, "checkpoint_reads_in_20_predicts": reads[0]}


def worker_reference(model_dir):
    """The latest checkpoint in model_dir, restored in this process (run with MINIRNN_BACKEND=numpy):
    the probabilities of the check's 16 examples."""
    from minirnn import kernels
    if kernels.default_backend() != "numpy":
        raise SystemExit("the reference worker runs with MINIRNN_BACKEND=numpy")
    _, _, xe, _ = input_fns(n_train=B)
    clf = make_classifier(model_dir)
    return next(clf.predict(lambda: {"tokens": xe[:16]}, yield_single_examples=False))["probabilities"].tolist()


WORKERS = {"startup": worker_startup, "main": worker_main, "quality": worker_quality, "check": worker_check,
           "reference": worker_reference}


# ---------------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------------

def _busy_share(seconds=1.0):
    """Share of the machine's CPU time spent by other processes over ``seconds`` (this process
    sleeps meanwhile), from /proc/stat; None where it cannot be read."""
    def sample():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return sum(fields[:8]), fields[3] + fields[4]           # total (no guest), idle + iowait
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def _wait_until_quiet(max_wait_s, log):
    """Wait (up to max_wait_s) until other processes use < 10% of the CPUs; returns the last share.
    The machine is shared: a test suite running beside the benchmark halves its figures."""
    deadline = time.monotonic() + max_wait_s
    busy = _busy_share()
    while busy is not None and busy >= 0.10 and time.monotonic() < deadline:
        log.append(round(busy, 2))
        time.sleep(2.0)
        busy = _busy_share()
    return busy


def _run(kind, threads, cache_dir, quiet=None):
    if quiet is not None:
        quiet["busy"].append(_wait_until_quiet(quiet["max_wait_s"], quiet["waited"]))
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    with tempfile.TemporaryDirectory(prefix="bench_estimator_") as model_dir:
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", kind, model_dir],
                              env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"worker {kind} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = wall
    out["stderr_lines"] = len(proc.stderr.splitlines())
    return out


def _stats(values):
    values = sorted(values)
    return values[len(values) // 2], values[0], values[-1]


def _fmt(value, unit):
    """A figure in ``unit`` ('s', 'ms' for a value in seconds, '' for a plain number), no unit text."""
    if unit == "ms":
        value *= 1e3
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value >= 1 or unit == "" else f"{value:.3f}"


def main():
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--threads", type=int, default=2,
                        help="OMP/MKL/OPENBLAS/NUMBA_NUM_THREADS in the timed processes (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per figure (default 3)")
    parser.add_argument("--no-quality", action="store_true", help="skip the 1000-step accuracy run")
    add_output_argument(parser)
    parser.add_argument("--max-wait", type=float, default=120.0,
                        help="before each timed process, wait up to this many seconds for other processes to "
                             "use < 10%% of the CPUs (0: do not wait)")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "MODEL_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, model_dir = args.worker
        print(json.dumps(WORKERS[kind](model_dir)))
        return

    require_minirnn()
    report = Report(args.output)
    report.machine(script="bench_estimator", threads=args.threads, rounds=args.rounds, peer=None)
    load_start = os.getloadavg()
    print(f"minirnn RNNClassifier, LSTM {UNITS}, embedding {EMBED}, token task B={B} T={T}; {args.threads} threads "
          f"(OMP/MKL/OPENBLAS/NUMBA_NUM_THREADS), OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"{args.rounds} rounds; load average at start {load_start[0]:.2f}", flush=True)
    print("TensorFlow is not a peer run here: TF 2.15's figures are quoted from this script (measured on the "
          "project's 2-core machines).", flush=True)

    quiet = {"max_wait_s": args.max_wait, "busy": [], "waited": []}
    with tempfile.TemporaryDirectory(prefix="numba_cache_") as shared_cache:
        check = _run("check", args.threads, shared_cache)
        bad = {k: v for k, v in check["max_abs_diff"].items() if v > 1e-5}
        if bad or check["checkpoint_reads_in_20_predicts"]:
            raise SystemExit(f"validation failed: {check}")
        print(f"check: max abs differences {check['max_abs_diff']}, checkpoint reads in 20 predicts "
              f"{check['checkpoint_reads_in_20_predicts']}", flush=True)

        cold, warm, runs = [], [], []
        for r in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="numba_cache_") as cache:
                cold.append(_run("startup", args.threads, cache, quiet))   # empty cache: every kernel compiles
                warm.append(_run("startup", args.threads, cache, quiet))   # a second process on that cache
            if cold[-1]["cache_hits"] or not warm[-1]["cache_hits"] or warm[-1]["cache_misses"]:
                raise SystemExit(f"Numba cache not as expected: cold {cold[-1]}, warm {warm[-1]}")
            runs.append(_run("main", args.threads, shared_cache, quiet))
            others = [b for b in quiet["busy"][-3:] if b is not None]
            print(f"round {r + 1}: cold first step {cold[-1]['first_train_s']:.2f} s, warm "
                  f"{warm[-1]['first_train_s']:.3f} s, {runs[-1]['steps_per_s']:.0f} steps/s, predict "
                  f"{1e3 * runs[-1]['predict_s']:.3f} ms (other processes' CPU share before the runs: "
                  f"{', '.join(f'{100 * b:.0f}%' for b in others) or 'unknown'})", flush=True)
        quality = None if args.no_quality else _run("quality", args.threads, shared_cache)
    busy = [b for b in quiet["busy"] if b is not None]
    if busy and max(busy) >= 0.10:
        print(f"WARNING: other processes used up to {100 * max(busy):.0f}% of the CPUs just before some timed runs "
              f"(after waiting up to {args.max_wait:g} s each for quiet): those runs' figures are pessimistic",
              flush=True)

    # (label, value list, unit, TF figure key or None, higher is better, target)
    rows = [
        ("import numpy + minirnn (warm)", [w["import_s"] for w in warm], "s", "import_s", False, None),
        ("construct columns + RNNClassifier", [w["construct_s"] for w in warm], "s", None, False, None),
        ("first train(steps=1), cold Numba cache", [c["first_train_s"] for c in cold], "s", "first_step_s", False,
         None),
        ("first train(steps=1), warm Numba cache", [w["first_train_s"] for w in warm], "s", "first_step_s", False,
         ("<", TARGET_FIRST_STEP_S)),
        ("later train(steps=1) call, same process", [w["second_train_s"] for w in warm], "s", "first_step_s", False,
         None),
        ("first evaluate (1024 ex), cold cache", [c["first_evaluate_s"] for c in cold], "s", "evaluate_s", False, None),
        ("first predict (1 ex), cold cache", [c["first_predict_s"] for c in cold], "ms", "predict_one_s", False, None),
        ("fresh process total, cold cache", [c["process_s"] for c in cold], "s", "process_s", False, None),
        ("fresh process total, warm cache", [w["process_s"] for w in warm], "s", "process_s", False, None),
        ("steady steps/s (hook clock)", [r["steps_per_s"] for r in runs], "", "steps_per_s", True,
         (">=", TARGET_STEPS_PER_S)),
        ("median step", [1e-3 * r["step_ms_median"] for r in runs], "ms", None, False, None),
        ("train(steps=300) wall, checkpoints incl.", [r["train300_wall_s"] for r in runs], "s", "train300_wall_s",
         False, None),
        ("evaluate 1024 examples (warm)", [r["evaluate_s"] for r in runs], "s", "evaluate_s", False, None),
        ("predict 1 example p50 (list of ids)", [r["predict_s"] for r in runs], "ms", "predict_one_s", False,
         ("<", TARGET_PREDICT_S)),
        ("predict 1 example p90 (list of ids)", [r["predict_p90_s"] for r in runs], "ms", "predict_one_s", False,
         ("<", TARGET_PREDICT_S)),
        ("predict 1 example p50 ([1, 50] array)", [r["predict_array_s"] for r in runs], "ms", "predict_one_s", False,
         ("<", TARGET_PREDICT_S)),
        ("exported model predict 1 example p50", [r["exported_predict_s"] for r in runs], "ms", "predict_one_s",
         False, ("<", TARGET_PREDICT_S)),
        ("exported model predict 1 example p90", [r["exported_predict_p90_s"] for r in runs], "ms", None, False,
         ("<", TARGET_PREDICT_S)),
        ("export_saved_model", [r["export_s"] for r in runs], "ms", "export_s", False, None),
        ("load_exported", [r["load_exported_s"] for r in runs], "ms", None, False, None),
    ]
    print(f"\n{'metric':42s} {'minirnn median [min-max]':34s} {'TF 2.15':>14s} {'vs TF best':>11s}  target")
    record = {}
    for label, values, unit, tf_key, higher, target in rows:
        med, lo, hi = _stats(values)
        text = f"{_fmt(med, unit)} [{_fmt(lo, unit)}-{_fmt(hi, unit)}] {unit or 'steps/s'}"
        tf_text = ratio_text = ""
        key = label
        entry = {"median": round(med, 6), "min": round(lo, 6), "max": round(hi, 6)}
        if tf_key:
            low, high = TF[tf_key]
            tf_text = f"{low:g}-{high:g}" if low != high else f"{low:g}"
            tf_text += "" if tf_key == "steps_per_s" else " s"
            ratio = med / high if higher else low / med         # > 1: minirnn faster than TF's best
            ratio_text = f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"
            entry.update(tf=[low, high], speedup_vs_tf_best=round(ratio, 1))
        target_text = ""
        if target:
            op, bound = target
            met = med >= bound if op == ">=" else med < bound
            target_text = f"{op} {_fmt(bound, unit)} {unit or 'steps/s'}: {'met' if met else 'NOT met'}"
            entry.update(target=f"{op} {bound:g}", target_met=met)
        record[key] = entry
        print(f"{label:42s} {text:34s} {tf_text:>14s} {ratio_text:>11s}  {target_text}")
    print(f"(stderr lines of a fresh warm process: {warm[-1]['stderr_lines']}; TF printed 78 with 26 warnings)")

    if quality:
        print(f"\nquality (seed 0, train in 4 calls of 250 steps, eval on {EVAL_EXAMPLES} held-out examples; "
              f"{quality['wall_s']:.1f} s in all):")
        for step, m in sorted(quality["curve"].items(), key=lambda kv: int(kv[0])):
            tf = TF["accuracy"].get(int(step))
            tf_text = f"   TF 2.15 (Adagrad): {tf[0]:g}-{tf[1]:g}" if tf else ""
            print(f"  step {int(step):5d}: accuracy {m['accuracy']:.4f}  average_loss {m['average_loss']:.4f}{tf_text}")

    line = {"bench": "estimator", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": args.threads,
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"), "rounds": args.rounds,
            "loadavg_start": round(load_start[0], 2), "loadavg_end": round(os.getloadavg()[0], 2),
            "others_cpu_share_before_runs_max": round(max(busy), 3) if busy else None,
            "waited_for_quiet_s": 3 * len(quiet["waited"]),
            "task": {"B": B, "T": T, "vocab": VOCAB, "embedding": EMBED, "units": UNITS, "cell": "lstm",
                     "optimizer": "Adagrad (default)"},
            "tf_installed": False, "figures": record, "check": check,
            "quality": quality and quality["curve"], "cache_misses_cold": cold[-1]["cache_misses"],
            "cache_hits_warm": warm[-1]["cache_hits"]}
    report.row(line)


if __name__ == "__main__":
    main()
