"""The command line: ``minirnn train | evaluate | predict | export`` on data files.

``train`` reads a data file (:mod:`minirnn.datafiles`: UEA/UCR ``.ts``, CSV, NPZ, HDF5), builds an
``RNNClassifier`` (or an ``RNNEstimator`` with a regression head) over one numeric sequence feature
``x`` and trains it in ``--model-dir``. The model options, the label vocabulary and the data options
are stored there in ``minirnn_cli.json``, so ``evaluate``, ``predict`` and ``export`` need only
``--model-dir`` and the data. Training again on the same model_dir continues from its checkpoint.

Output: results on stdout (``evaluate``: the metrics as one JSON line; ``predict``: CSV or JSON
lines; ``export``: the export path), progress on stderr (a one-line bar on a terminal, log lines
otherwise; ``--quiet`` keeps only warnings). Bad arguments or data give one line ``minirnn: error:
...`` on stderr and exit status 2.
"""

import argparse
import contextlib
import csv
import json
import logging
import math
import os
import sys
import textwrap
import time

import numpy as np

from . import datafiles

__all__ = ["main", "COMMANDS"]

COMMANDS = ("train", "evaluate", "predict", "export", "demo")
CONFIG_FILE = "minirnn_cli.json"
CONFIG_FORMAT = "minirnn-cli/1"
FEATURE_KEY = "x"
CELL_TYPES = ("lstm", "gru", "simple_rnn")
OPTIMIZERS = ("Adam", "Adagrad", "RMSProp", "SGD", "Momentum", "Ftrl")
DATA_OPTIONS = ("format", "label_column", "id_column", "time_column", "feature_columns", "csv_layout", "delimiter")
MODEL_OPTIONS = ("task", "units", "cell_type", "optimizer")

logger = logging.getLogger("minirnn")

DESCRIPTION = """\
Train recurrent sequence models (LSTM, GRU, simple RNN) on data files, then evaluate them, predict
with them and export them. Data files: UEA/UCR .ts, CSV (one row per time step with an id column,
or one row per sequence), NPZ or HDF5 arrays (x [N, T, D], lengths or mask, y).
"""

EPILOG = """\
examples:
  minirnn train walk.ts --model-dir runs/walk --units 32 --epochs 20
  minirnn evaluate walk_test.ts --model-dir runs/walk
  minirnn predict walk_test.ts --model-dir runs/walk --output predictions.csv
  minirnn train steps.csv --id-column series --time-column t --label-column activity --model-dir runs/act
  minirnn export --model-dir runs/walk

'minirnn COMMAND --help' describes each command. 'minirnn demo' (or 'python -m minirnn' with no
command) runs the built-in demo on the Japanese Vowels data.
"""

DATA_HELP = """\
data formats (chosen by the file extension, or --format):
  .ts       UEA/UCR time-series format (@classLabel / @targetLabel headers, ':' between
            dimensions); trailing '?' values are padding, a '?' inside a series is an error
  .csv      long layout (with --id-column): one row per time step; --time-column orders the
            steps, --label-column holds the sequence's label, every other column (or
            --feature-columns) is a feature. Wide layout (no --id-column, or --csv-layout wide):
            one row per sequence, every column but the id/label columns is one time step
  .npz .h5  arrays 'x' [N, T] or [N, T, D], optional 'lengths' [N] or 'mask' [N, T], 'y' [N]
            (labels) and 'ids' [N]
"""


class UsageError(Exception):
    """Bad command-line arguments: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with errors as one line (``minirnn: error: ...``) and exit status 2."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _wrap(text):
    return textwrap.fill(text, 96)


class _Help(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=32)


def _units(text):
    try:
        units = [int(u) for u in text.split(",")]
    except ValueError:
        units = []
    if not units or any(u < 1 for u in units):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas (e.g. 32 or 32,16), "
                                         f"got {text!r}")
    return units


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _columns(text):
    names = [c.strip() for c in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected column names separated by commas, got {text!r}")
    return names


def _add_data_options(parser):
    group = parser.add_argument_group("data options (stored by train, reused by the other commands)")
    group.add_argument("--format", choices=datafiles.FORMATS, help="data format (default: from the file extension)")
    group.add_argument("--label-column", metavar="NAME", help="CSV column holding the labels")
    group.add_argument("--id-column", metavar="NAME",
                       help="CSV column naming each sequence; selects the long layout (one row per time step)")
    group.add_argument("--time-column", metavar="NAME",
                       help="CSV column ordering the steps of a sequence (long layout)")
    group.add_argument("--feature-columns", metavar="A,B,..", type=_columns,
                       help="CSV feature columns (long layout; default: every column but id/time/label)")
    group.add_argument("--csv-layout", choices=("long", "wide"),
                       help="CSV layout (default: long with --id-column, else wide)")
    group.add_argument("--delimiter", metavar="CHAR", help="CSV delimiter (default ',' or a tab for .tsv)")


def _add_common(parser, data=True):
    if data:
        parser.add_argument("data", metavar="DATA", help="data file (.ts, .csv, .npz, .h5)")
    parser.add_argument("--model-dir", required=True, metavar="DIR",
                        help="folder holding the model's checkpoints and settings")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or log lines (warnings only)")


def build_parser():
    parser = _Parser(prog="minirnn", description=DESCRIPTION, epilog=EPILOG, formatter_class=_Help)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=True,
                                     parser_class=_Parser)

    train = commands.add_parser("train", help="train a model on a data file (or continue training it)",
                                description=_wrap("Train an RNN on the sequences of DATA and save it in --model-dir. "
                                                  "Training again on the same --model-dir continues from its last "
                                                  "checkpoint; the model options are then fixed."),
                                epilog=DATA_HELP, formatter_class=_Help)
    _add_common(train)
    model = train.add_argument_group("model options (fixed once the model has a checkpoint)")
    model.add_argument("--task", choices=("classification", "regression"),
                       help="default: from a .ts header, else classification")
    model.add_argument("--units", type=_units, metavar="N[,N..]", help="units per recurrent layer (default 32)")
    model.add_argument("--cell-type", choices=CELL_TYPES, help="recurrent cell (default lstm)")
    model.add_argument("--optimizer", choices=OPTIMIZERS, help="default Adam")
    training = train.add_argument_group("training options")
    training.add_argument("--learning-rate", type=_positive_float, metavar="LR", help="default 0.01")
    length = training.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=_positive_int, metavar="N", help="passes over the data (default 10)")
    length.add_argument("--steps", type=_positive_int, metavar="N",
                        help="training steps (batches), instead of --epochs")
    training.add_argument("--batch-size", type=_positive_int, metavar="N",
                          help="default 32, or the last training run's")
    training.add_argument("--seed", type=_seed, metavar="N",
                          help="random seed for initialisation and shuffling (default 0)")
    training.add_argument("--log-every", type=_positive_int, default=100, metavar="N",
                          help="log the loss every N steps (default 100)")
    _add_data_options(train)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="compute metrics on labelled data; prints one JSON line",
                                   description=_wrap("Evaluate the model of --model-dir on DATA (which must have "
                                                     "labels) and print the metrics as one JSON line."),
                                   epilog=DATA_HELP, formatter_class=_Help)
    _add_common(evaluate)
    evaluate.add_argument("--batch-size", type=_positive_int, default=128, metavar="N", help="default 128")
    _add_data_options(evaluate)
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser("predict", help="predict every sequence; writes CSV or JSON lines",
                                  description=_wrap("Predict with the model of --model-dir: one output row per "
                                                    "sequence of DATA (labels in DATA are ignored). Classification: "
                                                    "id, class and one probability per class; regression: id and "
                                                    "prediction."),
                                  epilog=DATA_HELP, formatter_class=_Help)
    _add_common(predict)
    predict.add_argument("-o", "--output", default="-", metavar="FILE",
                         help="output file (default '-': standard output)")
    predict.add_argument("--output-format", choices=("csv", "jsonl"),
                         help="default: jsonl for a .jsonl/.json output file, else csv")
    predict.add_argument("--batch-size", type=_positive_int, default=128, metavar="N", help="default 128")
    _add_data_options(predict)
    predict.set_defaults(run=_predict)

    export = commands.add_parser("export", help="export the model for serving (minirnn.load_exported)",
                                 description=_wrap("Export the latest checkpoint of --model-dir as a self-contained "
                                                   "bundle and print its path. Load it in Python with "
                                                   "minirnn.load_exported(path); its input feature is 'x', one "
                                                   "[steps, D] array per sequence."), formatter_class=_Help)
    _add_common(export, data=False)
    export.add_argument("--export-dir", metavar="DIR", help="where the bundle goes (default MODEL_DIR/export)")
    export.set_defaults(run=_export)

    commands.add_parser("demo", help="run the built-in demo (same as 'python -m minirnn'; 'minirnn demo --help')",
                        add_help=False)
    return parser


# ---------------------------------------------------------------------------------------------
# output: log lines or a progress bar, and quiet
# ---------------------------------------------------------------------------------------------

def _terminal():
    return sys.stderr.isatty() and os.environ.get("MINIRNN_PROGRESS", "1") != "0"


@contextlib.contextmanager
def _reporting(quiet):
    """Log lines on stderr (cleared to the line start on a terminal, so they print above the progress
    bar); quiet: warnings only, and no progress bar."""
    log = logging.getLogger("minirnn")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(("\r\x1b[K" if sys.stderr.isatty() else "") + "minirnn: %(message)s"))
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    old_level, old_progress = log.level, os.environ.get("MINIRNN_PROGRESS")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    if quiet:
        os.environ["MINIRNN_PROGRESS"] = "0"         # the estimator's own progress bar (train)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        if quiet:
            if old_progress is None:
                os.environ.pop("MINIRNN_PROGRESS", None)
            else:
                os.environ["MINIRNN_PROGRESS"] = old_progress


def _batch_bar(what, total):
    """A progress bar over the batches of evaluate/predict on a terminal (the estimator's bar is train's)."""
    from .hooks import SessionRunHook

    class BatchBar(SessionRunHook):
        def begin(self, estimator):
            self._last = 0.0

        def after_step(self, step, loss):
            now = time.perf_counter()
            if now - self._last > 0.1 or step == total:
                self._last = now
                sys.stderr.write(f"\r{what}: batch {step}/{total} ")
                sys.stderr.flush()
            return False

        def end(self, estimator):
            sys.stderr.write("\n")
            sys.stderr.flush()

    return [BatchBar()] if _terminal() else []


# ---------------------------------------------------------------------------------------------
# the stored settings and the estimator
# ---------------------------------------------------------------------------------------------

def _config_path(model_dir):
    return os.path.join(model_dir, CONFIG_FILE)


def _load_settings(model_dir):
    path = _config_path(model_dir)
    if not os.path.isdir(model_dir):
        raise UsageError(f"--model-dir {model_dir}: no such folder; train a model there first with "
                         f"'minirnn train DATA --model-dir {model_dir}'")
    if not os.path.isfile(path):
        raise UsageError(f"--model-dir {model_dir}: no {CONFIG_FILE}, so no model trained by 'minirnn train' is there")
    try:
        with open(path, encoding="utf-8") as f:
            settings = json.load(f)
    except (ValueError, OSError) as error:
        raise UsageError(f"{path}: unreadable ({error})") from None
    if not isinstance(settings, dict) or settings.get("format") != CONFIG_FORMAT:
        raise UsageError(f"{path}: not a minirnn command-line settings file (expected format {CONFIG_FORMAT!r})")
    return settings


def _save_settings(model_dir, settings):
    os.makedirs(model_dir, exist_ok=True)
    path = _config_path(model_dir)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(settings, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def _estimator(settings, model_dir, log_every=100):
    import minirnn
    from minirnn import feature_column as fc
    from minirnn import optimizers
    from minirnn.heads import RegressionHead
    column = fc.sequence_numeric_column(FEATURE_KEY, shape=(settings["dimension"],))
    optimizer = optimizers.get(settings["optimizer"], learning_rate=settings["learning_rate"])
    config = minirnn.RunConfig(random_seed=settings["seed"], log_step_count_steps=log_every)
    common = dict(units=settings["units"], cell_type=settings["cell_type"], optimizer=optimizer, model_dir=model_dir,
                  config=config)
    if settings["task"] == "regression":
        return minirnn.RNNEstimator(RegressionHead(), [column], **common)
    vocabulary = settings["label_vocabulary"]
    return minirnn.RNNClassifier([column], n_classes=len(vocabulary), label_vocabulary=vocabulary, **common)


def _data_options(args, stored=None):
    """The data options: the flags given, else those stored at train time."""
    stored = stored or {}
    return {k: (getattr(args, k) if getattr(args, k) is not None else stored.get(k)) for k in DATA_OPTIONS}


def _read(path, options, settings=None, need_labels=False):
    data = datafiles.read(path, **options, label_optional=not need_labels)
    if settings is not None:
        if data.dimension != settings["dimension"]:
            raise datafiles.DataError(f"{path}: {data.dimension} feature(s) per step, but the model was trained on "
                                      f"{settings['dimension']}")
    if need_labels and data.labels is None:
        where = ("give --label-column" if datafiles.format_of(path, options["format"]) == "csv" else
                 "a .ts file needs @classLabel true or @targetLabel true" if path.endswith(".ts") else
                 "the file needs an array 'y'")
        raise datafiles.DataError(f"{path}: no labels ({where})")
    return data


def _check_no_missing_labels(data):
    """A missing label (``?``, ``nan``, empty) is refused by name: it is no class."""
    for k, value in enumerate(data.labels):
        text = _label_text(value).strip()
        if text in datafiles.MISSING or text == "" or text.lower() == "nan":
            raise datafiles.DataError(f"{data.source}: the label of sequence {data.ids[k]!r} is missing ({text!r}); "
                                      "give it a class or leave the row out")


def _label_vocabulary(data):
    """Class names as strings: the .ts @classLabel list, else the sorted distinct labels (numerically
    when they are all numbers)."""
    if data.class_labels is not None:
        return list(data.class_labels)
    _check_no_missing_labels(data)
    labels = sorted({_label_text(v) for v in data.labels})
    try:
        return sorted(labels, key=float)
    except ValueError:
        return labels


def _label_text(value):
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _labels_for(data, settings):
    """The labels of ``data`` as the model takes them: class names (checked) or float targets."""
    if settings["task"] == "regression":
        out = np.empty(len(data), dtype=np.float32)
        for k, v in enumerate(data.labels):
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                raise datafiles.DataError(f"{data.source}: label of sequence {data.ids[k]!r} is {v!r}; a regression "
                                          "needs numbers") from None
            if not math.isfinite(out[k]):
                raise datafiles.DataError(f"{data.source}: label of sequence {data.ids[k]!r} is not finite")
        return out
    _check_no_missing_labels(data)
    known = set(settings["label_vocabulary"])
    labels = np.array([_label_text(v) for v in data.labels], dtype=object)
    for k, label in enumerate(labels):
        if label not in known:
            raise datafiles.DataError(f"{data.source}: sequence {data.ids[k]!r} has label {label!r}, which the model "
                                      f"does not know; its classes are {settings['label_vocabulary']}")
    return labels


def _input_fn(data, labels, batch_size, shuffle=False, num_epochs=1, seed=None):
    from minirnn.inputs import numpy_input_fn
    return numpy_input_fn(data.features(FEATURE_KEY), labels, batch_size=batch_size, shuffle=shuffle,
                          num_epochs=num_epochs, seed=seed)


def _length_batches(data, labels, batch_size):
    """(input_fn, number of batches) for evaluate/predict of ``data`` ordered by length: batches of
    at most ``batch_size`` sequences and ``batch_size`` times the median length in padded steps, so a
    long sequence among short ones pads only itself. Padded arrays (NPZ/HDF5) keep their padding."""
    if data.sequences is None:
        return _input_fn(data, labels, batch_size), math.ceil(len(data) / batch_size)
    budget, bounds, start = batch_size * max(1, int(np.median(data.lengths))), [], 0
    while start < len(data):
        end = start + 1
        while end < len(data) and end - start < batch_size and (end + 1 - start) * data.lengths[end] <= budget:
            end += 1
        bounds.append((start, end))
        start = end

    def input_fn():
        for a, b in bounds:
            yield {FEATURE_KEY: data.sequences[a:b]}, None if labels is None else labels[a:b]
    return input_fn, len(bounds)


def _require_checkpoint(estimator, model_dir):
    if estimator.latest_checkpoint() is None:
        raise UsageError(f"--model-dir {model_dir}: no checkpoint yet; train the model first")


# ---------------------------------------------------------------------------------------------
# the commands
# ---------------------------------------------------------------------------------------------

def _train(args):
    from minirnn import checkpoint as ckpt
    model_dir = args.model_dir
    resuming = os.path.isdir(model_dir) and ckpt.latest_checkpoint(model_dir) is not None
    stored = _load_settings(model_dir) if resuming else None     # settings without a checkpoint: start afresh
    given = {k: getattr(args, k) for k in MODEL_OPTIONS + ("learning_rate", "seed")}
    if stored:
        for key in MODEL_OPTIONS:
            if given[key] is not None and given[key] != stored[key]:
                flag = "--" + key.replace("_", "-")
                value = ",".join(map(str, stored[key])) if key == "units" else stored[key]
                raise UsageError(f"--model-dir {model_dir} holds a model trained with {flag} {value}; "
                                 f"use another --model-dir for a different model")
    data_options = _data_options(args, stored and stored.get("data"))
    data = _read(args.data, data_options, stored, need_labels=True)
    if data.feature_names is not None:
        data_options["feature_columns"] = data.feature_names      # later files: the same columns, by name
    if stored:
        settings = dict(stored)
        for key in ("learning_rate", "seed", "batch_size"):
            if getattr(args, key) is not None:
                settings[key] = getattr(args, key)
    else:
        task = given["task"] or data.task or "classification"
        if data.task is not None and data.task != task:
            raise UsageError(f"--task {task}: {args.data} is a {data.task} data set (its header says so)")
        settings = {"format": CONFIG_FORMAT, "task": task, "units": given["units"] or [32],
                    "cell_type": given["cell_type"] or "lstm", "optimizer": given["optimizer"] or "Adam",
                    "learning_rate": given["learning_rate"] or 0.01,
                    "seed": given["seed"] if given["seed"] is not None else 0, "batch_size": args.batch_size or 32,
                    "dimension": data.dimension, "n_classes": None, "label_vocabulary": None}
        if task == "classification":
            vocabulary = _label_vocabulary(data)
            if len(vocabulary) < 2:
                raise datafiles.DataError(f"{args.data}: every sequence has the label {vocabulary[0]!r}; "
                                          "classification needs at least 2 classes")
            settings["label_vocabulary"], settings["n_classes"] = vocabulary, len(vocabulary)
    settings["data"] = {k: v for k, v in data_options.items() if v is not None}
    labels = _labels_for(data, settings)
    batch_size = settings["batch_size"]
    steps = args.steps or math.ceil(len(data) / batch_size) * (args.epochs or 10)
    settings["last_training_run"] = {"data": os.path.abspath(args.data), "steps": steps, "epochs": args.epochs}
    estimator = _estimator(settings, model_dir, args.log_every)
    _on_chief(estimator, lambda: _save_settings(model_dir, settings), "writing the command-line settings")
    logger.info("training %s on %d sequences of %d feature(s) from %s: %s(%s), %d steps of batch %d%s",
                "a regression" if settings["task"] == "regression" else
                f"a {len(settings['label_vocabulary'])}-class classifier", len(data), data.dimension, args.data,
                settings["cell_type"], ",".join(map(str, settings["units"])), steps, batch_size,
                f", continuing from {os.path.basename(estimator.latest_checkpoint())}" if resuming else "")
    start = time.perf_counter()
    first_step = ckpt.step_of(estimator.latest_checkpoint()) if resuming else 0     # a resumed run reshuffles
    estimator.train(_input_fn(data, labels, batch_size, shuffle=True, num_epochs=None,
                              seed=[settings["seed"], first_step]), steps=steps)
    logger.info("trained to global step %d in %.1fs; model in %s", ckpt.step_of(estimator.latest_checkpoint()),
                time.perf_counter() - start, model_dir)
    return 0


def _evaluate(args):
    settings = _load_settings(args.model_dir)
    data, _ = _read(args.data, _data_options(args, settings.get("data")), settings, need_labels=True).by_length()
    labels = _labels_for(data, settings)
    estimator = _estimator(settings, args.model_dir)
    _require_checkpoint(estimator, args.model_dir)
    input_fn, count = _length_batches(data, labels, args.batch_size)
    metrics = estimator.evaluate(input_fn, hooks=_batch_bar("evaluate", count))
    if not estimator._is_chief():                # under mpiexec: every rank has the metrics, rank 0 prints
        return 0
    print(json.dumps({k: (int(v) if k == "global_step" else round(float(v), 7)) for k, v in metrics.items()}))
    return 0


def _predict(args):
    settings = _load_settings(args.model_dir)
    data, order = _read(args.data, _data_options(args, settings.get("data")), settings).by_length()   # labels unused
    estimator = _estimator(settings, args.model_dir)
    _require_checkpoint(estimator, args.model_dir)
    output_format = args.output_format or ("jsonl" if args.output.lower().endswith((".jsonl", ".json")) else "csv")
    regression = settings["task"] == "regression"
    keys = ["predictions"] if regression else ["probabilities"]
    vocabulary = settings["label_vocabulary"]
    if args.output != "-":                        # a bad output path fails now, on every rank, not after predicting
        _on_chief(estimator, lambda: _check_writable(args.output), "opening the output file")
    input_fn, count = _length_batches(data, None, args.batch_size)
    batches = estimator.predict(input_fn, predict_keys=keys, yield_single_examples=False,
                                hooks=_batch_bar("predict", count))
    if not estimator._is_chief():                # under mpiexec: rank 0 gets every prediction and writes them
        for _ in batches:
            pass
        return 0
    values = np.empty((len(data), 1 if regression else len(vocabulary)), dtype=np.float32)
    row = 0
    for batch in batches:                         # in order of length; written in the file's order
        values[order[row:row + len(batch[keys[0]])]] = batch[keys[0]]
        row += len(batch[keys[0]])
    ids = [None] * len(data)
    for k, id_ in zip(order, data.ids):
        ids[k] = id_
    with _open_output(args.output) as out:
        writer = csv.writer(out, lineterminator="\n") if output_format == "csv" else None
        if writer:
            writer.writerow(["id", "prediction"] if regression else
                            ["id", "class"] + [f"probability_{c}" for c in vocabulary])
        for id_, p in zip(ids, values):
            if regression:
                record = {"id": id_, "prediction": _number(p[0])}
            else:
                record = {"id": id_, "class": vocabulary[int(np.argmax(p))],
                          "probabilities": {c: _number(v) for c, v in zip(vocabulary, p)}}
            if writer:
                writer.writerow([record["id"], record["prediction"]] if regression else
                                [record["id"], record["class"], *record["probabilities"].values()])
            else:
                out.write(json.dumps(record) + "\n")
    if args.output != "-":
        logger.info("wrote %d predictions to %s", row, args.output)
    return 0


def _on_chief(estimator, fn, what):
    """``fn()`` here, or under mpiexec on rank 0 with its result (or error) given to every rank, so
    that a failure there stops all ranks at once instead of leaving them waiting."""
    return estimator._session.runner().on_chief(fn, what)


def _check_writable(path):
    probe = f"{path}.tmp-{os.getpid()}"
    try:
        open(probe, "w").close()
    except OSError as error:
        raise UsageError(f"--output {path}: cannot write there ({error.strerror})") from None
    os.remove(probe)


def _number(value):
    """A float32 output as the shortest decimal that reads back to the same float32."""
    return float(np.format_float_positional(np.float32(value), unique=True, trim="-"))


@contextlib.contextmanager
def _open_output(path):
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            yield f
        os.replace(tmp, path)                                # a complete file, or none
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _export(args):
    settings = _load_settings(args.model_dir)
    estimator = _estimator(settings, args.model_dir)
    _require_checkpoint(estimator, args.model_dir)
    path = estimator.export_saved_model(args.export_dir or os.path.join(args.model_dir, "export"))
    if estimator._is_chief():                    # under mpiexec: rank 0 wrote it
        print(os.fsdecode(path))
    return 0


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

def _one_line(error):
    text = str(error) or type(error).__name__
    if isinstance(error, KeyError) and len(error.args) == 1:
        text = str(error.args[0])
    return " ".join(text.split())


def main(argv=None):
    """Run the command line; returns the exit status (0 ok, 1 training failed, 2 bad arguments or data)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "demo":
        from .demo import main as demo
        demo(argv[1:])
        return 0
    parser = build_parser()
    try:
        if not argv:
            raise UsageError(f"give a command: {', '.join(COMMANDS)} (see 'minirnn --help')")
        args, extra = parser.parse_known_args(argv)
        if extra:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see 'minirnn {args.command} --help')")
        with _reporting(args.quiet):
            return args.run(args)
    except BrokenPipeError:                                  # `minirnn predict ... | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (UsageError, datafiles.DataError) as error:
        print(f"minirnn: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, OSError) as error:           # refused by the estimator: still the input's fault
        print(f"minirnn: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except FloatingPointError as error:
        print(f"minirnn: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except MemoryError:                                      # e.g. --units 100000: the model does not fit
        print("minirnn: error: out of memory: the model or the data is too large for this machine (fewer "
              "--units, a smaller --batch-size, or less data)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minirnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
