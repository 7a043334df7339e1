"""The command line's training options end to end: standardised inputs by default, a validation
split with early stopping, and ``minirnn info``."""

import csv
import json
import os
import re
import sys

import numpy as np
import pytest

from test_cli import minirnn_cli, one_line_error, write_ts

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="python -P needs Python 3.11")

CLASSES = ("rest", "walk", "run")
VITALS = ("--id-column", "patient", "--time-column", "minute", "--label-column", "activity")


def write_vitals(path, n, seed, normalize=None):
    """A long CSV as a wearable would log it: heart rate (bpm, 60-120) and air pressure (hPa, ~1013)
    each minute. The activity sets the heart rate's level and the pressure's drift; the pressure's
    own level varies from patient to patient. ``normalize``: (mean, variance) to standardise the two
    columns with before writing. Returns the [T, 2] values of each sequence and the labels."""
    rng = np.random.default_rng(seed)
    sequences, labels, rows = [], [], []
    for i in range(n):
        k = i % 3
        T = int(rng.integers(8, 16))
        heart = np.clip(65 + 25 * k + 6 * rng.normal() + 3 * rng.normal(size=T), 50, 130)
        pressure = 1013 + 4 * rng.normal() + np.cumsum(0.3 * rng.normal(size=T)) + (k - 1) * 0.5 * np.arange(T)
        values = np.stack([np.round(heart, 1), np.round(pressure, 2)], axis=1)
        if normalize is not None:
            values = np.round((values - normalize[0]) / np.sqrt(normalize[1]), 6)
        sequences.append(values)
        labels.append(CLASSES[k])
        rows += [[f"p{i}", t, values[t, 0], values[t, 1], CLASSES[k]] for t in range(T)]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patient", "minute", "heart_rate", "pressure", "activity"])
        w.writerows(rows)
    return sequences, labels


def accuracy(tmp_path, data, model_dir):
    proc = minirnn_cli("evaluate", data, "--model-dir", model_dir, "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["accuracy"]


@pytest.mark.slow
def test_raw_scale_data_trains_as_well_as_standardised_by_hand(tmp_path):
    """Heart rate and pressure at their own scales: the default (standardised with the training
    data's mean and variance, stored with the model) reaches the accuracy of the same data
    standardised by hand; --no-standardize trains at about chance (3 classes)."""
    train, _ = write_vitals(tmp_path / "train.csv", 150, seed=0)
    write_vitals(tmp_path / "test.csv", 90, seed=1)
    steps = np.concatenate(train)
    mean, variance = steps.mean(axis=0), steps.var(axis=0)
    write_vitals(tmp_path / "train_std.csv", 150, seed=0, normalize=(mean, variance))
    write_vitals(tmp_path / "test_std.csv", 90, seed=1, normalize=(mean, variance))
    options = (*VITALS, "--units", "16", "--epochs", "10", "--batch-size", "16", "-q")
    for data, model_dir, extra in (("train.csv", "default", ()), ("train_std.csv", "by_hand", ("--no-standardize",)),
                                   ("train.csv", "raw", ("--no-standardize",))):
        proc = minirnn_cli("train", data, "--model-dir", model_dir, *options, *extra, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    default, by_hand = accuracy(tmp_path, "test.csv", "default"), accuracy(tmp_path, "test_std.csv", "by_hand")
    raw = accuracy(tmp_path, "test.csv", "raw")
    assert default > 0.9 and default >= by_hand - 0.05, (default, by_hand)
    assert raw < 0.5 and default - raw > 0.4, (default, raw)

    settings = json.loads((tmp_path / "default" / "minirnn_cli.json").read_text())
    np.testing.assert_allclose(settings["normalizer"]["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(settings["normalizer"]["variance"], variance, rtol=1e-5)
    assert json.loads((tmp_path / "raw" / "minirnn_cli.json").read_text())["normalizer"] is None

    # the exported bundle takes the data's own units and predicts what `minirnn predict` writes
    predict = minirnn_cli("predict", "test.csv", "--model-dir", "default", "-q", cwd=tmp_path)
    assert predict.returncode == 0, predict.stderr
    rows = list(csv.reader(predict.stdout.splitlines()))
    assert rows[0] == ["id", "class", "probability_rest", "probability_run", "probability_walk"]
    export = minirnn_cli("export", "--model-dir", "default", "-q", cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    import minirnn
    bundle = minirnn.load_exported(str(tmp_path / export.stdout.strip()))
    test, _ = write_vitals(tmp_path / "test.csv", 90, seed=1)
    served = bundle.classify([{"x": s.astype(np.float32)} for s in test])
    np.testing.assert_allclose(served["scores"], [[float(v) for v in r[2:]] for r in rows[1:]], atol=1e-6)

    # resuming keeps the stored normaliser; asking for the other choice is refused
    more = minirnn_cli("train", "test.csv", "--model-dir", "default", "--steps", "2", "-q", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert json.loads((tmp_path / "default" / "minirnn_cli.json").read_text())["normalizer"] == settings["normalizer"]
    one_line_error(minirnn_cli("train", "train.csv", "--model-dir", "default", "--no-standardize", cwd=tmp_path),
                   "trained with standardised inputs", "--no-standardize")
    one_line_error(minirnn_cli("train", "train.csv", "--model-dir", "raw", "--standardize", cwd=tmp_path),
                   "trained without standardised inputs")


@pytest.mark.slow
def test_validation_split_with_patience_keeps_the_best_epoch(tmp_path):
    write_vitals(tmp_path / "train.csv", 150, seed=0)
    train = minirnn_cli("train", "train.csv", "--model-dir", "run", *VITALS, "--units", "16", "--batch-size", "16",
                        "--epochs", "40", "--learning-rate", "0.05", "--validation-split", "0.2", "--patience", "2",
                        "--log-every", "1000", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    assert "on 120 sequences (30 more held out for validation)" in train.stderr
    assert "minirnn: epoch 1/40, step 8: validation accuracy = " in train.stderr
    settings = json.loads((tmp_path / "run" / "minirnn_cli.json").read_text())
    run = settings["last_training_run"]
    assert run["stopped_early"] and "early stopping after epoch" in train.stderr

    # the validation loss recorded per epoch: the kept step is its lowest, and patience epochs followed it
    records = [json.loads(line) for line in (tmp_path / "run" / "eval_validation" / "metrics.jsonl").open()]
    steps = [r["global_step"] for r in records]
    assert steps == [8 * (k + 1) for k in range(len(records))]              # one per epoch of 8 batches
    best = min(records, key=lambda r: r["average_loss"])
    assert (run["kept_step"], run["kept_epoch"]) == (best["global_step"], steps.index(best["global_step"]) + 1)
    assert run["best_validation_loss"] == pytest.approx(best["average_loss"])
    assert len(records) == run["kept_epoch"] + 2
    kept = f"model.ckpt-{run['kept_step']}.h5"
    assert f"kept the model of epoch {run['kept_epoch']} (step {run['kept_step']})" in train.stderr
    assert f'model_checkpoint_path: "{kept}"' in (tmp_path / "run" / "checkpoint").read_text()
    on_disk = [n for n in os.listdir(tmp_path / "run") if n.startswith("model.ckpt-")]
    assert kept in on_disk and all(int(n[11:-3]) <= run["kept_step"] for n in on_disk)
    assert not (tmp_path / "run" / "minirnn_cli_best.h5").exists()

    # the normaliser comes from the training part alone (the split drawn with --seed 0)
    import minirnn.datafiles as datafiles
    data = datafiles.read(tmp_path / "train.csv", id_column="patient", time_column="minute", label_column="activity")
    training = np.sort(np.random.default_rng(0).permutation(150)[30:])
    np.testing.assert_allclose(settings["normalizer"]["mean"],
                               np.concatenate([data.sequences[k] for k in training]).astype(np.float64).mean(axis=0))

    # the training loss of every step was recorded; evaluate uses the kept model
    losses = [json.loads(line) for line in (tmp_path / "run" / "training_loss.jsonl").open()]
    assert [r["step"] for r in losses] == list(range(1, steps[-1] + 1))
    evaluate = minirnn_cli("evaluate", "train.csv", "--model-dir", "run", "-q", cwd=tmp_path)
    assert json.loads(evaluate.stdout)["global_step"] == run["kept_step"]

    # training on continues from the kept step; the records past it are replaced
    more = minirnn_cli("train", "train.csv", "--model-dir", "run", "--epochs", "1", "--validation-split", "0.2", "-q",
                       cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    losses = [json.loads(line)["step"] for line in (tmp_path / "run" / "training_loss.jsonl").open()]
    assert losses == list(range(1, run["kept_step"] + 9))
    steps = [json.loads(line)["global_step"] for line in (tmp_path / "run" / "eval_validation" / "metrics.jsonl").open()]
    assert steps == [8 * (k + 1) for k in range(run["kept_epoch"] + 1)]


def test_validation_options_are_checked(tmp_path):
    write_ts(tmp_path / "rise.ts")
    one_line_error(minirnn_cli("train", "rise.ts", "--model-dir", "run", "--patience", "3", cwd=tmp_path),
                   "--patience N stops on the validation loss: give --validation-split F too")
    one_line_error(minirnn_cli("train", "rise.ts", "--model-dir", "run", "--validation-split", "1.5", cwd=tmp_path),
                   "--validation-split", "expected a fraction between 0 and 1")
    one_line_error(minirnn_cli("train", "rise.ts", "--model-dir", "run", "--validation-split", "0.01", cwd=tmp_path),
                   "24 sequences give 0 for validation")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_info_describes_the_model(tmp_path):
    write_ts(tmp_path / "rise.ts")
    assert minirnn_cli("train", "rise.ts", "--model-dir", "run", "--units", "8,4", "--cell-type", "gru", "--steps", "3",
                       "-q", cwd=tmp_path).returncode == 0
    assert minirnn_cli("evaluate", "rise.ts", "--model-dir", "run", "-q", cwd=tmp_path).returncode == 0
    proc = minirnn_cli("info", "--model-dir", "run", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert (info["estimator"], info["head"], info["label_vocabulary"], info["global_step"]) == \
        ("RNNClassifier", "BinaryClassHead", ["up", "down"], 3)
    assert info["layers"] == [{"type": "gru", "units": 8}, {"type": "gru", "units": 4},
                              {"type": "dense logits", "units": 1}]
    column, = info["columns"]
    assert column["key"] == "x" and column["shape"] == [2] and len(column["normalizer"]["mean"]) == 2
    counts = {name: p["count"] for name, p in info["parameters"].items()}
    assert info["total_parameters"] == sum(counts.values())
    # a GRU layer of H units on D inputs: kernel D x 3H, recurrent kernel H x 3H, bias 2 x 3H (Keras's reset_after)
    assert info["total_parameters"] == (2 * 24 + 8 * 24 + 2 * 24) + (8 * 12 + 4 * 12 + 2 * 12) + (4 + 1)
    assert info["metrics"]["evaluation"]["global_step"] == 3 and info["last_training_run"]["steps"] == 3

    text = minirnn_cli("info", "--model-dir", "run", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "layers        gru: 8 units -> gru: 4 units -> dense logits: 1 unit\n" in text.stdout
    assert "standardised with mean [" in text.stdout and "classes       2: up, down" in text.stdout
    assert re.search(rf"^  total +{info['total_parameters']:,}$", text.stdout, re.M), text.stdout
    assert "evaluation    at step 3: accuracy " in text.stdout
    one_line_error(minirnn_cli("info", "--model-dir", "nothing", cwd=tmp_path), "--model-dir nothing: no such folder")
