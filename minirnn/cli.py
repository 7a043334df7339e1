"""The command line: ``minirnn train | evaluate | predict | export | info | plot`` on data files.

``train`` reads a data file (:mod:`minirnn.datafiles`: UEA/UCR ``.ts``, CSV, NPZ, HDF5), builds an
``RNNClassifier`` (or an ``RNNEstimator`` with a regression head) over one numeric sequence feature
``x`` and trains it in ``--model-dir``. By default the feature is standardised with the mean and
variance of the training data (a ``feature_column.Normalization``, part of the model). The model
options, the label vocabulary, the normaliser and the data options are stored there in
``minirnn_cli.json``, so ``evaluate``, ``predict``, ``export``, ``info`` and ``plot`` need only
``--model-dir`` (and the data). Training again on the same model_dir continues from its checkpoint.
``--validation-split`` evaluates a held-out part after every epoch, ``--patience`` stops early and
keeps the best epoch's checkpoint. Each training step's loss goes to ``training_loss.jsonl``.

Output: results on stdout (``evaluate``: the metrics as one JSON line; ``predict``: CSV or JSON
lines; ``export``: the export path; ``info``: a summary, or JSON; ``plot``: the PNG's path), progress
on stderr (a one-line bar on a terminal, log lines otherwise; ``--quiet`` keeps only warnings). Bad
arguments or data give one line ``minirnn: error: ...`` on stderr and exit status 2. Plots need
matplotlib (the ``plot`` extra), imported only by ``evaluate --plot`` and ``plot``.
"""

import argparse
import contextlib
import csv
import difflib
import json
import logging
import math
import os
import shutil
import sys
import textwrap
import time

import numpy as np

from . import datafiles
from .config import DEVICES
from .errors import install_hint

__all__ = ["main", "COMMANDS"]

COMMANDS = ("train", "evaluate", "predict", "export", "info", "plot", "serve", "warmup", "demo")
CONFIG_FILE = "minirnn_cli.json"
CONFIG_FORMAT = "minirnn-cli/1"
FEATURE_KEY = "x"
CELL_TYPES = ("lstm", "gru", "simple_rnn")
OPTIMIZERS = ("Adam", "Adagrad", "RMSProp", "SGD", "Momentum", "Ftrl")
DATA_OPTIONS = ("format", "label_column", "id_column", "time_column", "feature_columns", "csv_layout", "delimiter")
MODEL_OPTIONS = ("task", "units", "cell_type", "optimizer")
LOSS_FILE = "training_loss.jsonl"          # {"step": .., "loss": ..} per training step, written by train
BEST_FILE = "minirnn_cli_best.h5"          # the best epoch's checkpoint while training with --patience
PLOT_EXTRA = "matplotlib: " + install_hint("plot", "matplotlib")

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
  minirnn info --model-dir runs/walk
  minirnn plot --model-dir runs/walk
  minirnn serve runs/walk/export            # TF Serving's REST API on port 8501
  minirnn warmup                            # compile the kernels once, e.g. in an image build

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
    """argparse, with errors as one line (``minirnn: error: ...``) and exit status 2, and no prefix
    matching of long options (``--epoch`` is not taken for ``--epochs``: it gets a suggestion)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def option_names(self):
        return [name for action in self._actions for name in action.option_strings if name.startswith("--")]


def _unknown_arguments(parser, extra):
    """The error for arguments no option takes, with the closest option for each misspelt flag."""
    message = f"unrecognized arguments: {' '.join(extra)}"
    guesses = []
    for word in extra:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=", 1)[0], parser.option_names(), n=1, cutoff=0.6)
            guesses += [g for g in close if g not in guesses]
    if guesses:
        message += f" (did you mean {' or '.join(guesses)}?)"
    return UsageError(f"{message} (see '{parser.prog} --help')")


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


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1 (e.g. 0.2), got {text!r}")
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


def _add_common(parser, data=True, device=None):
    if data:
        parser.add_argument("data", metavar="DATA", help="data file (.ts, .csv, .npz, .h5)")
    parser.add_argument("--model-dir", required=True, metavar="DIR",
                        help="folder holding the model's checkpoints and settings")
    if device:
        parser.add_argument("--device", choices=DEVICES, default="cpu",
                            help=f"where {device} runs the recurrent model: cpu (default), cuda (an NVIDIA GPU "
                                 "with the cuda extra; an error when there is none) or auto (the GPU when one is "
                                 "usable, else the CPU)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or log lines (warnings only)")


def build_parser():
    from . import __version__
    parser = _Parser(prog="minirnn", description=DESCRIPTION, epilog=EPILOG, formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"minirnn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=True,
                                     parser_class=_Parser)

    train = commands.add_parser("train", help="train a model on a data file (or continue training it)",
                                description=_wrap("Train an RNN on the sequences of DATA and save it in --model-dir. "
                                                  "Training again on the same --model-dir continues from its last "
                                                  "checkpoint; the model options are then fixed."),
                                epilog=DATA_HELP, formatter_class=_Help)
    _add_common(train, device="training")
    model = train.add_argument_group("model options (fixed once the model has a checkpoint)")
    model.add_argument("--task", choices=("classification", "regression"),
                       help="default: from a .ts header, else classification")
    model.add_argument("--units", type=_units, metavar="N[,N..]", help="units per recurrent layer (default 32)")
    model.add_argument("--cell-type", choices=CELL_TYPES, help="recurrent cell (default lstm)")
    model.add_argument("--optimizer", choices=OPTIMIZERS, help="default Adam")
    model.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=None,
                       help="scale each feature to mean 0 and variance 1 with the training data's mean and "
                            "variance, stored with the model (default: on)")
    training = train.add_argument_group("training options")
    training.add_argument("--learning-rate", type=_positive_float, metavar="LR", help="default 0.01")
    length = training.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=_positive_int, metavar="N", help="passes over the data (default 10)")
    length.add_argument("--steps", type=_positive_int, metavar="N",
                        help="training steps (batches), instead of --epochs")
    training.add_argument("--batch-size", type=_positive_int, metavar="N",
                          help="default 32, or the last training run's")
    training.add_argument("--seed", type=_seed, metavar="N",
                          help="random seed for initialisation, shuffling and the validation split (default 0)")
    training.add_argument("--validation-split", type=_fraction, metavar="F",
                          help="hold out this fraction of the sequences (chosen by --seed) and report the "
                               "validation metrics after every epoch")
    training.add_argument("--patience", type=_positive_int, metavar="N",
                          help="with --validation-split: stop when the validation loss has not improved for N "
                               "epochs, and keep the checkpoint of the best epoch as the model")
    training.add_argument("--log-every", type=_positive_int, default=100, metavar="N",
                          help="log the loss every N steps (default 100)")
    _add_data_options(train)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="compute metrics on labelled data; prints one JSON line",
                                   description=_wrap("Evaluate the model of --model-dir on DATA (which must have "
                                                     "labels) and print the metrics as one JSON line."),
                                   epilog=DATA_HELP, formatter_class=_Help)
    _add_common(evaluate, device="evaluation")
    evaluate.add_argument("--batch-size", type=_positive_int, default=128, metavar="N", help="default 128")
    evaluate.add_argument("--plot", metavar="FILE.png",
                          help="also draw the results: a confusion matrix (and a ROC curve for two classes), "
                               f"or predicted against true values for a regression (needs {PLOT_EXTRA})")
    _add_data_options(evaluate)
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser("predict", help="predict every sequence; writes CSV or JSON lines",
                                  description=_wrap("Predict with the model of --model-dir: one output row per "
                                                    "sequence of DATA (labels in DATA are ignored). Classification: "
                                                    "id, class and one probability per class; regression: id and "
                                                    "prediction."),
                                  epilog=DATA_HELP, formatter_class=_Help)
    _add_common(predict, device="prediction")
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
                                                   "[steps, D] array per sequence, in the data's own units (the "
                                                   "bundle standardises it as training did)."),
                                 formatter_class=_Help)
    _add_common(export, data=False)
    export.add_argument("--export-dir", metavar="DIR", help="where the bundle goes (default MODEL_DIR/export)")
    export.set_defaults(run=_export)

    info = commands.add_parser("info", help="describe a trained model: inputs, layers, parameters, metrics",
                               description=_wrap("Describe the model of --model-dir: its input column and "
                                                 "normaliser, its layers, its parameters (per variable and in "
                                                 "total), the steps trained and the last evaluation and validation "
                                                 "metrics."), formatter_class=_Help)
    _add_common(info, data=False)
    info.add_argument("--json", action="store_true", help="one JSON object instead of text")
    info.set_defaults(run=_info)

    plot = commands.add_parser("plot", help="draw the training loss and evaluation metrics over the steps",
                               description=_wrap("Draw the training loss of --model-dir over the training steps, "
                                                 "with the validation and evaluation metrics recorded there, into "
                                                 f"a PNG file and print its path (needs {PLOT_EXTRA})."),
                               formatter_class=_Help)
    _add_common(plot, data=False)
    plot.add_argument("-o", "--output", metavar="FILE.png", help="default MODEL_DIR/training.png")
    plot.set_defaults(run=_plot)

    warmup = commands.add_parser(
        "warmup", help="compile the kernels into the on-disk cache (for an image or CI build step)",
        description=_wrap("Compile the Numba kernels that training and prediction use, for each cell type, and "
                          "store them in the kernel cache, so that the first prediction and the first training "
                          "step of a later process load them instead of compiling (seconds each). Run it once "
                          "where the package is installed, e.g. in a container image's build. The cache is "
                          "next to the installed package, or in NUMBA_CACHE_DIR when that is set."),
        formatter_class=_Help)
    warmup.add_argument("--cells", nargs="+", choices=CELL_TYPES, default=list(CELL_TYPES), metavar="CELL",
                        help=f"cell types to compile (default all: {', '.join(CELL_TYPES)})")
    warmup.add_argument("--inference-only", action="store_true",
                        help="compile only what predicting needs (no training kernels)")
    warmup.add_argument("-q", "--quiet", action="store_true", help="no log lines")
    warmup.set_defaults(run=_warmup)
    from . import serving                    # its HTTP stack is imported only when the server runs
    serve = serving.add_parser(commands, formatter_class=_Help)
    commands.add_parser("demo", help="run the built-in demo (same as 'python -m minirnn'; 'minirnn demo --help')",
                        add_help=False)
    parser.commands = {"train": train, "evaluate": evaluate, "predict": predict, "export": export, "info": info,
                       "plot": plot, "serve": serve, "warmup": warmup}
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


def _checked_device(args):
    """``--device`` -> 'cpu' or 'cuda': a missing GPU with ``cuda`` is one error now, before any data
    is read; ``auto`` without one says once that the command runs on the CPU."""
    if args.device == "cpu":
        return "cpu"
    from .cuda import select_device
    try:
        return select_device(args.device, f"{args.command} runs")
    except (RuntimeError, ImportError) as error:
        raise UsageError(f"--device {args.device}: {_one_line(error)}") from error


def _estimator(settings, model_dir, log_every=100, device="cpu"):
    import minirnn
    from minirnn import feature_column as fc
    from minirnn import optimizers
    from minirnn.heads import RegressionHead
    stored = settings.get("normalizer")
    normalizer = None if stored is None else fc.Normalization(stored["mean"], stored["variance"])
    column = fc.sequence_numeric_column(FEATURE_KEY, shape=(settings["dimension"],), normalizer=normalizer)
    optimizer = optimizers.get(settings["optimizer"], learning_rate=settings["learning_rate"])
    config = minirnn.RunConfig(random_seed=settings["seed"], log_step_count_steps=log_every, device=device)
    common = dict(units=settings["units"], cell_type=settings["cell_type"], optimizer=optimizer, model_dir=model_dir,
                  config=config)
    if settings["task"] == "regression":
        return minirnn.RNNEstimator(RegressionHead(), [column], **common)
    vocabulary = settings["label_vocabulary"]
    return minirnn.RNNClassifier([column], n_classes=len(vocabulary), label_vocabulary=vocabulary, **common)


def _normalizer_settings(data):
    """The mean and variance of each feature over the valid steps of ``data`` (the training
    sequences), as stored in the settings. A feature constant there keeps variance 1, so that it is
    only centred (as scikit-learn's StandardScaler does) instead of divided by ~0."""
    values = data.valid_steps().astype(np.float64)
    mean, variance = values.mean(axis=0), values.var(axis=0)
    variance[variance == 0] = 1.0
    return {"mean": mean.tolist(), "variance": variance.tolist()}


def _split(n, fraction, seed):
    """(training rows, validation rows) of ``n`` sequences: ``fraction`` of them for validation,
    drawn at random with ``seed``; both in the file's order."""
    held = int(round(fraction * n))
    if held < 1 or held > n - 1:
        raise UsageError(f"--validation-split {fraction}: {n} sequences give {held} for validation; "
                         "need at least one for validation and one for training")
    chosen = np.random.default_rng(seed).permutation(n)
    return np.sort(chosen[held:]), np.sort(chosen[:held])


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
    device = _checked_device(args)
    if args.patience is not None and args.validation_split is None:
        raise UsageError("--patience N stops on the validation loss: give --validation-split F too")
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
        standardized = stored.get("normalizer") is not None
        if args.standardize is not None and args.standardize != standardized:
            raise UsageError(f"--model-dir {model_dir} holds a model trained with"
                             f"{'' if standardized else 'out'} standardised inputs, so "
                             f"--{'' if args.standardize else 'no-'}standardize does not apply; use another "
                             "--model-dir for a different model")
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
                    "dimension": data.dimension, "n_classes": None, "label_vocabulary": None, "normalizer": None}
        if task == "classification":
            vocabulary = _label_vocabulary(data)
            if len(vocabulary) < 2:
                raise datafiles.DataError(f"{args.data}: every sequence has the label {vocabulary[0]!r}; "
                                          "classification needs at least 2 classes")
            settings["label_vocabulary"], settings["n_classes"] = vocabulary, len(vocabulary)
    settings["data"] = {k: v for k, v in data_options.items() if v is not None}
    labels = _labels_for(data, settings)
    train_data, valid_data, valid_labels = data, None, None
    if args.validation_split is not None:
        train_rows, valid_rows = _split(len(data), args.validation_split, settings["seed"])
        train_data, valid_data = data.take(train_rows), data.take(valid_rows)
        labels, valid_labels = labels[train_rows], labels[valid_rows]
    if not stored and args.standardize is not False:
        settings["normalizer"] = _normalizer_settings(train_data)      # learnt from the training part alone
    batch_size = settings["batch_size"]
    epoch_steps = math.ceil(len(train_data) / batch_size)
    steps = args.steps or epoch_steps * (args.epochs or 10)
    settings["last_training_run"] = {"data": os.path.abspath(args.data), "steps": steps, "epochs": args.epochs,
                                     "validation_split": args.validation_split, "patience": args.patience}
    estimator = _estimator(settings, model_dir, args.log_every, device)
    _on_chief(estimator, lambda: _save_settings(model_dir, settings), "writing the command-line settings")
    logger.info("training %s on %d sequences%s of %d feature(s) from %s: %s(%s), %d steps of batch %d%s%s",
                "a regression" if settings["task"] == "regression" else
                f"a {len(settings['label_vocabulary'])}-class classifier", len(train_data),
                "" if valid_data is None else f" ({len(valid_data)} more held out for validation)", data.dimension,
                args.data, settings["cell_type"], ",".join(map(str, settings["units"])), steps, batch_size,
                "" if settings.get("normalizer") else ", inputs not standardised",
                f", continuing from {os.path.basename(estimator.latest_checkpoint())}" if resuming else "")
    start = time.perf_counter()
    first_step = ckpt.step_of(estimator.latest_checkpoint()) if resuming else 0     # a resumed run reshuffles
    _on_chief(estimator, lambda: _drop_records_after(model_dir, first_step), "trimming the training records")
    hooks = [_loss_recorder(os.path.join(model_dir, LOSS_FILE))] if estimator._is_chief() else []
    if valid_data is None:
        estimator.train(_input_fn(train_data, labels, batch_size, shuffle=True, num_epochs=None,
                                  seed=[settings["seed"], first_step]), steps=steps, hooks=hooks)
    else:
        valid_input, _ = _length_batches(*_by_length(valid_data, valid_labels), batch_size)
        kept = _train_with_validation(estimator, settings, train_data, labels, valid_input, steps, epoch_steps,
                                      args.patience, hooks)
        if kept is not None:
            settings["last_training_run"].update(kept)
            _on_chief(estimator, lambda: _save_settings(model_dir, settings), "writing the command-line settings")
    logger.info("trained to global step %d in %.1fs; model in %s", ckpt.step_of(estimator.latest_checkpoint()),
                time.perf_counter() - start, model_dir)
    return 0


def _by_length(data, labels):
    ordered, order = data.by_length()
    return ordered, labels[order]


def _train_with_validation(estimator, settings, data, labels, valid_input, steps, epoch_steps, patience, hooks):
    """Train ``steps`` steps an epoch at a time, evaluating on ``valid_input`` after each epoch
    (logged, and recorded in ``eval_validation/metrics.jsonl``). With ``patience``: stop once the
    validation loss (``average_loss``, the mean loss per sequence) has not improved for ``patience``
    epochs, and make the best epoch's checkpoint the model's latest again, removing the later ones;
    returns what was kept (else None)."""
    from minirnn import checkpoint as ckpt
    model_dir, epochs = estimator.model_dir, math.ceil(steps / epoch_steps)
    best_copy = os.path.join(model_dir, BEST_FILE)
    best, waited, done, epoch = None, 0, 0, 0
    try:
        while done < steps:
            epoch += 1
            chunk = min(epoch_steps, steps - done)
            latest = estimator.latest_checkpoint()
            step = 0 if latest is None else ckpt.step_of(latest)
            estimator.train(_input_fn(data, labels, settings["batch_size"], shuffle=True, num_epochs=None,
                                      seed=[settings["seed"], step]), steps=chunk, hooks=hooks)
            done += chunk
            metrics = _quietly(estimator.evaluate, valid_input, name="validation")
            step, loss = int(metrics["global_step"]), float(metrics.get("average_loss", metrics["loss"]))
            improved = best is None or loss < best["best_validation_loss"]
            logger.info("epoch %d/%d, step %d: validation %s%s", epoch, epochs, step,
                        ", ".join(f"{k} = {float(v):.4g}" for k, v in metrics.items() if k != "global_step"),
                        " (best so far)" if improved and patience and epoch > 1 else "")
            if improved:
                best, waited = {"kept_epoch": epoch, "kept_step": step, "best_validation_loss": loss}, 0
                if patience:
                    path = estimator.latest_checkpoint()
                    _on_chief(estimator, lambda: _link(path, best_copy), "keeping the best checkpoint")
            else:
                waited += 1
            if patience and waited >= patience:
                logger.info("early stopping after epoch %d: the validation loss has not improved for %d epoch(s)",
                            epoch, patience)
                break
        if not patience:
            return None
        if best["kept_step"] != step:
            _on_chief(estimator, lambda: _rewind(model_dir, best_copy, best["kept_step"]),
                      "restoring the best checkpoint")
        logger.info("kept the model of epoch %d (step %d), whose validation loss %.4g is the lowest",
                    best["kept_epoch"], best["kept_step"], best["best_validation_loss"])
        return {**best, "stopped_early": waited >= patience}
    finally:
        if estimator._is_chief() and os.path.exists(best_copy):
            os.remove(best_copy)


def _quietly(fn, *args, **kwargs):
    """``fn(...)`` with the "minirnn" logger at warnings only (the caller logs the result its way)."""
    log = logging.getLogger("minirnn")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        return fn(*args, **kwargs)
    finally:
        log.setLevel(level)


def _link(path, copy):
    """``copy`` as a second name of the checkpoint file ``path``: it outlives the pruning of old
    checkpoints (keep_checkpoint_max); a new checkpoint is a new file, so the copy never changes."""
    if os.path.exists(copy):
        os.remove(copy)
    try:
        os.link(path, copy)
    except OSError:                                   # no hard links on this file system
        shutil.copyfile(path, copy)


def _rewind(model_dir, copy, step):
    """Make the checkpoint of ``step`` (from ``copy``) the latest of ``model_dir``, removing later ones."""
    from minirnn import checkpoint as ckpt
    lock = ckpt.TrainingLock(model_dir)
    lock.acquire()
    try:
        target = ckpt.checkpoint_path(model_dir, step)
        if not os.path.isfile(target):
            os.replace(copy, target)
        _, kept = ckpt.read_index(model_dir)
        kept = [p for p in kept if ckpt.step_of(p) < step and os.path.isfile(p)] + [target]
        ckpt.write_index(model_dir, target, kept)
        for path in ckpt.on_disk(model_dir):
            if ckpt.step_of(path) > step:
                os.remove(path)
    finally:
        lock.release()


def _loss_recorder(path):
    """A training hook appending ``{"step": .., "loss": ..}`` per step to the JSON-lines file
    ``path`` (what ``minirnn plot`` draws), written every 100 steps and when training ends."""
    from .hooks import SessionRunHook

    class LossRecorder(SessionRunHook):
        def begin(self, estimator):
            self.lines = []

        def after_step(self, step, loss):
            self.lines.append(json.dumps({"step": int(step), "loss": float(loss)}) + "\n")
            if len(self.lines) >= 100:
                self.write()
            return False

        def end(self, estimator):
            self.write()

        def write(self):
            if self.lines:
                with open(path, "a", encoding="utf-8") as f:
                    f.writelines(self.lines)
                self.lines = []

    return LossRecorder()


def _drop_records_after(model_dir, step):
    """Remove the training-loss and validation records past ``step`` (the latest checkpoint's): a
    run that continues from there replaces them."""
    for path in (os.path.join(model_dir, LOSS_FILE), os.path.join(model_dir, "eval_validation", "metrics.jsonl")):
        records = _read_jsonl(path)
        if any(r.get("step", r.get("global_step", 0)) > step for r in records):
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in records
                             if r.get("step", r.get("global_step", 0)) <= step)


def _read_jsonl(path):
    """The JSON objects of a JSON-lines file (none when it is missing; unreadable lines skipped)."""
    if not os.path.isfile(path):
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue                               # e.g. a line cut short by a kill
            if isinstance(record, dict):
                records.append(record)
    return records


def _evaluate(args):
    device = _checked_device(args)
    settings = _load_settings(args.model_dir)
    if args.plot is not None:
        _pyplot()                                      # a missing matplotlib fails before the work
    data, _ = _read(args.data, _data_options(args, settings.get("data")), settings, need_labels=True).by_length()
    labels = _labels_for(data, settings)
    estimator = _estimator(settings, args.model_dir, device=device)
    _require_checkpoint(estimator, args.model_dir)
    if args.plot is not None:
        _on_chief(estimator, lambda: _check_writable(args.plot, "--plot"), "opening the plot file")
    input_fn, count = _length_batches(data, labels, args.batch_size)
    metrics = estimator.evaluate(input_fn, hooks=_batch_bar("evaluate", count))
    if args.plot is not None:
        values = _predicted(estimator, data, settings, args.batch_size)
        if estimator._is_chief():
            _plot_evaluation(args.plot, settings, labels, values, metrics, args.data)
    if not estimator._is_chief():                # under mpiexec: every rank has the metrics, rank 0 prints
        return 0
    print(json.dumps({k: (int(v) if k == "global_step" else round(float(v), 7)) for k, v in metrics.items()}))
    if args.plot is not None:
        logger.info("drew the evaluation in %s", args.plot)
    return 0


def _predicted(estimator, data, settings, batch_size, what=None):
    """The model's output for each sequence of ``data`` (in its order), [N, classes] probabilities
    or [N, 1] predictions; under mpiexec, rank 0 gets them (the others None)."""
    regression = settings["task"] == "regression"
    key = "predictions" if regression else "probabilities"
    input_fn, count = _length_batches(data, None, batch_size)
    batches = estimator.predict(input_fn, predict_keys=[key], yield_single_examples=False,
                                hooks=_batch_bar(what, count) if what else [])
    if not estimator._is_chief():                # under mpiexec: rank 0 gets every prediction
        for _ in batches:
            pass
        return None
    values = np.empty((len(data), 1 if regression else len(settings["label_vocabulary"])), dtype=np.float32)
    row = 0
    for batch in batches:
        values[row:row + len(batch[key])] = batch[key]
        row += len(batch[key])
    return values


def _predict(args):
    device = _checked_device(args)
    settings = _load_settings(args.model_dir)
    data, order = _read(args.data, _data_options(args, settings.get("data")), settings).by_length()   # labels unused
    estimator = _estimator(settings, args.model_dir, device=device)
    _require_checkpoint(estimator, args.model_dir)
    output_format = args.output_format or ("jsonl" if args.output.lower().endswith((".jsonl", ".json")) else "csv")
    regression = settings["task"] == "regression"
    vocabulary = settings["label_vocabulary"]
    if args.output != "-":                        # a bad output path fails now, on every rank, not after predicting
        _on_chief(estimator, lambda: _check_writable(args.output, "--output"), "opening the output file")
    ordered = _predicted(estimator, data, settings, args.batch_size, "predict")
    if ordered is None:
        return 0
    values = np.empty_like(ordered)
    values[order] = ordered                       # predicted in order of length; written in the file's order
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
        logger.info("wrote %d predictions to %s", len(values), args.output)
    return 0


def _on_chief(estimator, fn, what):
    """``fn()`` here, or under mpiexec on rank 0 with its result (or error) given to every rank, so
    that a failure there stops all ranks at once instead of leaving them waiting."""
    return estimator._session.runner().on_chief(fn, what)


def _check_writable(path, flag):
    probe = f"{path}.tmp-{os.getpid()}"
    try:
        open(probe, "w").close()
    except OSError as error:
        raise UsageError(f"{flag} {path}: cannot write there ({error.strerror})") from None
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
# info: a summary of a model_dir
# ---------------------------------------------------------------------------------------------

def _eval_dirs(model_dir):
    """{name: metrics.jsonl path} of the evaluation folders in ``model_dir``: 'evaluation' for
    ``eval`` (minirnn evaluate), 'validation' for ``eval_validation`` (train --validation-split)."""
    found = {}
    for name in sorted(os.listdir(model_dir)):
        path = os.path.join(model_dir, name, "metrics.jsonl")
        if (name == "eval" or name.startswith("eval_")) and os.path.isfile(path):
            found["evaluation" if name == "eval" else name[len("eval_"):]] = path
    return found


def _summary(model_dir):
    """What ``minirnn info`` shows, as a JSON-ready dict, read from the latest checkpoint (and the
    command-line settings and the recorded metrics when present)."""
    from minirnn import checkpoint as ckpt
    if not os.path.isdir(model_dir):
        raise UsageError(f"--model-dir {model_dir}: no such folder")
    path = ckpt.latest_checkpoint(model_dir)
    if path is None:
        raise UsageError(f"--model-dir {model_dir}: no checkpoint; train a model there first")
    variables, attributes = ckpt.read(path, ckpt.read_index(model_dir)[1])
    spec = attributes.get("spec") or {}
    settings = _load_settings(model_dir) if os.path.isfile(_config_path(model_dir)) else None
    head, network = spec.get("head") or {}, spec.get("network") or {}
    columns = []
    for column in spec.get("sequence_columns", []) + spec.get("context_columns", []):
        columns.append({"key": column.get("key"), "type": column.get("type"), "shape": column.get("shape"),
                        "sequence": column.get("sequence", True), "normalizer": column.get("normalizer")})
    units = network.get("units") or []
    cells = network.get("cell_type")
    cells = cells if isinstance(cells, list) else [cells] * len(units)
    layers = [{"type": str(c), "units": int(u)} for c, u in zip(cells, units)]
    if network.get("logits_dimension"):
        layers.append({"type": "dense logits", "units": int(network["logits_dimension"])})
    weights = {name: {"shape": list(np.shape(v)), "count": int(np.size(v))} for name, v in sorted(variables.items())
               if name != "global_step" and not name.startswith("training/")}
    slots = sum(int(np.size(v)) for name, v in variables.items() if name.startswith("training/"))
    optimizer = (attributes.get("optimizer") or {}).get("config") or {}
    evaluations, step = {}, ckpt.step_of(path)
    for name, metrics_path in _eval_dirs(model_dir).items():
        records = _read_jsonl(metrics_path)            # the model's own step, else the last before it
        records = [r for r in records if r.get("global_step") == step] or \
            [r for r in records if isinstance(r.get("global_step"), int) and r["global_step"] <= step] or records
        if records:
            evaluations[name] = records[-1]
    return {"model_dir": model_dir, "checkpoint": os.path.basename(path), "global_step": ckpt.step_of(path),
            "estimator": spec.get("estimator"), "head": head.get("class"), "n_classes": head.get("n_classes"),
            "label_vocabulary": head.get("label_vocabulary"), "columns": columns, "layers": layers,
            "parameters": weights, "total_parameters": sum(w["count"] for w in weights.values()),
            "optimizer": {"class": optimizer.get("class"), "learning_rate": optimizer.get("learning_rate"),
                          "slot_values": slots},
            "last_training_run": None if settings is None else settings.get("last_training_run"),
            "metrics": evaluations}


def _short(values, digits=4, most=6):
    text = ", ".join(f"{v:.{digits}g}" for v in values[:most])
    return f"[{text}{', ...' if len(values) > most else ''}]"


def _info(args):
    summary = _summary(args.model_dir)
    if args.json:
        print(json.dumps(summary))
        return 0
    lines = [f"model         {summary['model_dir']}: {summary['estimator'] or '?'} ({summary['head'] or '?'}), "
             f"checkpoint {summary['checkpoint']}"]
    if summary["label_vocabulary"] or summary["n_classes"]:
        classes = summary["label_vocabulary"] or list(range(summary["n_classes"]))
        lines.append(f"classes       {len(classes)}: {', '.join(map(str, classes))}")
    for column in summary["columns"]:
        width = int(np.prod(column["shape"] or [1]))
        text = f"{column['key']}: {column['type']}, {width} value(s) per {'step' if column['sequence'] else 'example'}"
        norm = column["normalizer"]
        if norm:
            text += (f", standardised with mean {_short(norm['mean'])} and standard deviation "
                     f"{_short([math.sqrt(v) for v in norm['variance']])}")
        elif column["type"] == "numeric":
            text += ", not standardised"
        lines.append(f"input         {text}")
    lines.append("layers        " + " -> ".join(f"{layer['type']}: {layer['units']} unit{'' if layer['units'] == 1 else 's'}"
                                               for layer in summary["layers"]))
    lines.append("parameters")
    width = max(len(name) for name in summary["parameters"])
    for name, weight in summary["parameters"].items():
        shape = " x ".join(map(str, weight["shape"])) or "scalar"
        lines.append(f"  {name:<{width}}  {shape:>12}  {weight['count']:>10,}")
    lines.append(f"  {'total':<{width}}  {'':>12}  {summary['total_parameters']:>10,}")
    optimizer = summary["optimizer"]
    if optimizer["class"]:
        lines.append(f"optimizer     {optimizer['class']}, learning rate {optimizer['learning_rate']:g} "
                     f"({optimizer['slot_values']:,} slot values)")
    run = summary["last_training_run"]
    text = f"{summary['global_step']:,} steps"
    if run:
        text += f"; the last run: {run['steps']:,} steps on {run['data']}"
        if run.get("validation_split"):
            text += f", {run['validation_split']:g} held out for validation"
        if run.get("kept_step") is not None:
            text += (f", {'stopped early, ' if run.get('stopped_early') else ''}kept epoch {run['kept_epoch']} "
                     f"(step {run['kept_step']}, validation loss {run['best_validation_loss']:.4g})")
    lines.append(f"trained       {text}")
    for name, record in summary["metrics"].items():
        values = ", ".join(f"{k} {float(v):.4g}" for k, v in record.items() if k != "global_step")
        lines.append(f"{name:<13} at step {record.get('global_step', '?')}: {values}")
    print("\n".join(lines))
    return 0


# ---------------------------------------------------------------------------------------------
# plots (matplotlib, an optional extra, imported here only)
# ---------------------------------------------------------------------------------------------

def _pyplot():
    """matplotlib.pyplot with the Agg backend (files only), or a one-line error naming the extra."""
    try:
        import matplotlib
    except ImportError:
        raise UsageError(f"plots need {PLOT_EXTRA}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save_figure(fig, path, data):
    """Write ``fig`` as a PNG at ``path`` (complete or not at all), with ``data`` (what it shows, as
    JSON) in the PNG text chunk ``minirnn``."""
    plt = _pyplot()
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        fig.savefig(tmp, format="png", dpi=110, metadata={"minirnn": json.dumps(data)})
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)


def _roc(positive, scores):
    """(false positive rates, true positive rates, exact area) of the ROC curve of ``scores``."""
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    ends = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]     # the last example of each score
    tpr = np.r_[0.0, np.cumsum(positive)[ends]] / max(int(positive.sum()), 1)
    fpr = np.r_[0.0, np.cumsum(~positive)[ends]] / max(int((~positive).sum()), 1)
    return fpr, tpr, float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def _plot_evaluation(path, settings, labels, values, metrics, source):
    plt = _pyplot()
    title = f"{os.path.basename(source)}: {len(labels)} sequences, model at step {int(metrics['global_step'])}"
    if settings["task"] == "regression":
        truth, predicted = np.asarray(labels, dtype=np.float64), values[:, 0].astype(np.float64)
        rmse = float(np.sqrt(np.mean((predicted - truth) ** 2)))
        fig, ax = plt.subplots(figsize=(6, 5.5), layout="constrained")
        ax.scatter(truth, predicted, s=14, alpha=0.6, label="one sequence")
        low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
        ax.plot([low, high], [low, high], color="gray", linestyle="--", linewidth=1, label="predicted = true")
        ax.set_xlabel("true value")
        ax.set_ylabel("predicted value")
        ax.set_title(f"Predicted against true (RMSE {rmse:.4g})")
        ax.legend(loc="upper left")
        ax.grid(alpha=0.3)
        fig.suptitle(title, fontsize=10)
        _save_figure(fig, path, {"kind": "regression", "n": len(truth), "rmse": rmse})
        return
    vocabulary = settings["label_vocabulary"]
    index = {c: k for k, c in enumerate(vocabulary)}
    truth = np.array([index[label] for label in labels])
    predicted = values.argmax(axis=1)
    k = len(vocabulary)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (truth, predicted), 1)
    accuracy = float(np.trace(counts) / counts.sum())
    side = min(4.5 + 0.35 * k, 14)
    binary = k == 2
    fig, axes = plt.subplots(1, 2 if binary else 1, figsize=(side + (5 if binary else 0), side), layout="constrained")
    ax = axes[0] if binary else axes
    ax.imshow(counts, cmap="Blues", vmin=0)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    longest = max(len(str(c)) for c in vocabulary)
    slanted = longest > 6 or (k > 8 and longest > 2)
    ax.set_xticklabels(vocabulary, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    ax.set_yticklabels(vocabulary)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix (accuracy {accuracy:.3f})")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=9 if k <= 12 else 7,
                        color="white" if counts[i, j] > counts.max() / 2 else "black")
    data = {"kind": "classification", "classes": vocabulary, "counts": counts.tolist(), "accuracy": accuracy}
    if binary:
        fpr, tpr, area = _roc(truth == 1, values[:, 1].astype(np.float64))
        roc = axes[1]
        roc.plot(fpr, tpr, linewidth=2, label=f"model (AUC {area:.3f})")
        roc.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="chance")
        roc.set_xlabel("false positive rate")
        roc.set_ylabel("true positive rate")
        roc.set_title(f"ROC curve (positive class {vocabulary[1]!r})")
        roc.set_xlim(-0.01, 1.01)
        roc.set_ylim(-0.01, 1.01)
        roc.set_aspect("equal")
        roc.grid(alpha=0.3)
        roc.legend(loc="lower right")
        data["auc"] = area
    fig.suptitle(title, fontsize=10)
    _save_figure(fig, path, data)


def _by_step(records, key="global_step"):
    """Records ordered by step, the last one written for each step."""
    latest = {}
    for record in records:
        if isinstance(record.get(key), (int, float)):
            latest[int(record[key])] = record
    return [latest[step] for step in sorted(latest)]


def _plot(args):
    model_dir = args.model_dir
    if not os.path.isdir(model_dir):
        raise UsageError(f"--model-dir {model_dir}: no such folder")
    plt = _pyplot()
    output = args.output or os.path.join(model_dir, "training.png")
    losses = _by_step(_read_jsonl(os.path.join(model_dir, LOSS_FILE)), "step")
    evaluations = {name: _by_step(_read_jsonl(path)) for name, path in _eval_dirs(model_dir).items()}
    evaluations = {name: records for name, records in evaluations.items() if records}
    if not losses and not evaluations:
        raise UsageError(f"--model-dir {model_dir}: nothing to plot: no {LOSS_FILE} (written by 'minirnn train') "
                         "and no eval*/metrics.jsonl (written by 'minirnn evaluate' and by --validation-split)")
    _check_writable(output, "--output")
    others = [m for m in ("accuracy", "auc") if any(m in r for records in evaluations.values() for r in records)]
    fig, axes = plt.subplots(2 if others else 1, 1, figsize=(8, 7.5 if others else 4.5), sharex=True, squeeze=False,
                             layout="constrained")
    ax = axes[0][0]
    if losses:
        steps, values = np.array([r["step"] for r in losses]), np.array([r["loss"] for r in losses], dtype=float)
        window = len(values) // 25 if len(values) >= 50 else 1
        ax.plot(steps, values, color="tab:blue", alpha=0.3 if window > 1 else 1.0, linewidth=0.8 if window > 1 else 1.5,
                label="training loss (each step)")
        if window > 1:
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], smooth, color="tab:blue", linewidth=2,
                    label=f"training loss (mean of {window} steps)")
    colors = {"validation": "tab:orange", "evaluation": "tab:green"}
    palette = iter(["tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"])
    for name, records in evaluations.items():
        colors.setdefault(name, next(palette, "black"))
        points = [(r["global_step"], r.get("average_loss", r.get("loss"))) for r in records
                  if "average_loss" in r or "loss" in r]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=4, color=colors[name],
                    label=f"{name} loss (mean per sequence)")
    every = [v for v in (list(values) if losses else []) +
             [r.get("average_loss", r.get("loss")) for rs in evaluations.values() for r in rs]
             if isinstance(v, (int, float))]
    if every and min(every) > 0 and max(every) / min(every) > 100:
        ax.set_yscale("log")
    ax.set_ylabel("loss")
    ax.set_title(f"Training of {model_dir}")
    settings = _load_settings(model_dir) if os.path.isfile(_config_path(model_dir)) else {}
    kept = (settings.get("last_training_run") or {}).get("kept_step")
    last = max([r["step"] for r in losses] + [r["global_step"] for rs in evaluations.values() for r in rs])
    panels = [row[0] for row in axes]
    if kept is not None and kept < last:
        for panel in panels:
            panel.axvline(kept, color="gray", linestyle="--", linewidth=1,
                          label=f"kept model (step {kept})" if panel is ax else None)
    if others:
        lower = axes[1][0]
        styles = iter(["-", "--"])
        for metric in others:
            style = next(styles)
            for name, records in evaluations.items():
                points = [(r["global_step"], r[metric]) for r in records if metric in r]
                if points:
                    lower.plot(*zip(*points), marker="o", markersize=3, linestyle=style, color=colors[name],
                               label=f"{name} {metric}")
        lower.set_ylabel(" and ".join(others))
        lower.grid(alpha=0.3)
        lower.legend(fontsize=8, loc="best")
    panels[-1].set_xlabel("training step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    _save_figure(fig, output, {"kind": "training", "training_loss_steps": len(losses),
                               "evaluations": {name: len(records) for name, records in evaluations.items()},
                               "metrics": others, "kept_step": kept})
    print(output)
    return 0


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

def _one_line(error):
    text = str(error) or type(error).__name__
    if isinstance(error, KeyError) and len(error.args) == 1:
        text = str(error.args[0])
    return " ".join(text.split())


def _warmup(args):
    """Train one step and predict with a tiny model of each cell type (float32, as the estimators
    compute), in a temporary folder: every kernel either path calls is compiled and cached."""
    import tempfile

    import numpy as np

    import minirnn
    from minirnn import feature_column as fc
    from minirnn.kernels import default_backend, wait_compiled
    from minirnn.network import Network
    if default_backend() != "numba":
        raise UsageError(f"the kernel backend is {default_backend()!r} (MINIRNN_BACKEND): nothing to compile")
    x = np.random.default_rng(0).standard_normal((4, 3, 2)).astype(np.float32)
    tokens = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [3, 2, 1]]
    with tempfile.TemporaryDirectory(prefix="minirnn_warmup_") as folder:
        for cell in args.cells:
            start = time.perf_counter()
            columns = [fc.sequence_numeric_column("x", shape=2),
                       fc.embedding_column(fc.sequence_categorical_column_with_identity("t", 10), 2)]
            clf = minirnn.RNNClassifier(columns, units=[3], cell_type=cell, model_dir=os.path.join(folder, cell),
                                        config=minirnn.RunConfig(random_seed=0, log_step_count_steps=None,
                                                                 save_summary_steps=None))
            batch = {"x": x, "t": tokens}
            if args.inference_only:                  # the forward kernels alone, on initial weights
                Network(columns, units=[3], cell_type=cell, seed=0).forward(batch)
            else:
                clf.train(lambda: (batch, np.arange(4) % 2), steps=1)
                minirnn.load_exported(clf.export_saved_model(os.path.join(folder, cell, "export"))).predict(batch)
            wait_compiled()                          # MINIRNN_COMPILE=background: the predictions' kernels too
            logger.info("%s: compiled and cached in %.1fs", cell, time.perf_counter() - start)
    return 0


def main(argv=None):
    """Run the command line; returns the exit status (0 ok, 1 training failed, 2 bad arguments or data)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "demo":
        from .demo import main as demo
        demo(argv[1:])
        return 0
    try:
        try:
            parser = build_parser()
            if not argv:
                raise UsageError(f"give a command: {', '.join(COMMANDS)} (see 'minirnn --help')")
            if not argv[0].startswith("-") and argv[0] not in COMMANDS:
                close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
                raise UsageError(f"invalid choice: {argv[0]!r}{f' (did you mean {close[0]}?)' if close else ''}; "
                                 f"the commands are {', '.join(COMMANDS)} (see 'minirnn --help')")
            args, extra = parser.parse_known_args(argv)
            if extra:
                raise _unknown_arguments(parser.commands[args.command], extra)
            with _reporting(args.quiet):
                return args.run(args)
        finally:
            sys.stdout.flush()                               # a closed pipe fails here, inside the handler
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
