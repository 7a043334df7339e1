"""``minirnn evaluate --plot`` and ``minirnn plot``: PNG files whose drawn numbers (kept in the PNG's
``minirnn`` text chunk) are the evaluation's; a clear error without matplotlib."""

import csv
import json
import struct
import sys

import numpy as np
import pytest

from test_cli import minirnn_cli, one_line_error, write_ts, write_wide_csv
from test_cli_training import VITALS, write_vitals

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="python -P needs Python 3.11")


@pytest.fixture
def matplotlib():
    return pytest.importorskip("matplotlib")


def read_png(path):
    """(width, height, the JSON of the 'minirnn' text chunk) of a PNG file, checking its structure."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    at, chunks = 8, {}
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        chunks.setdefault(kind, []).append(data[at + 8:at + 8 + length])
        at += 12 + length
    assert at == len(data) and b"IHDR" in chunks and b"IDAT" in chunks and b"IEND" in chunks
    width, height = struct.unpack(">II", chunks[b"IHDR"][0][:8])
    texts = dict(chunk.split(b"\0", 1) for chunk in chunks.get(b"tEXt", []))
    return width, height, json.loads(texts[b"minirnn"].decode("latin-1"))


@pytest.mark.slow
def test_evaluate_plot_draws_the_confusion_matrix_of_the_evaluation(tmp_path, matplotlib):
    write_vitals(tmp_path / "train.csv", 90, seed=0)
    _, labels = write_vitals(tmp_path / "test.csv", 60, seed=1)
    assert minirnn_cli("train", "train.csv", "--model-dir", "run", *VITALS, "--units", "8", "--epochs", "3",
                       "-q", cwd=tmp_path).returncode == 0
    proc = minirnn_cli("evaluate", "test.csv", "--model-dir", "run", "--plot", "confusion.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "minirnn: drew the evaluation in confusion.png" in proc.stderr
    metrics = json.loads(proc.stdout)
    width, height, drawn = read_png(tmp_path / "confusion.png")
    assert 400 <= width <= 2000 and 400 <= height <= 2000
    assert drawn["kind"] == "classification" and drawn["classes"] == ["rest", "run", "walk"]
    counts = np.array(drawn["counts"])
    assert counts.sum() == 60 and counts.sum(axis=1).tolist() == [20, 20, 20]   # rows: the true classes
    assert np.trace(counts) / 60 == pytest.approx(metrics["accuracy"], abs=1e-6)
    assert drawn["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-6)
    predicted = [r[1] for r in csv.reader(minirnn_cli("predict", "test.csv", "--model-dir", "run", "-q",
                                                      cwd=tmp_path).stdout.splitlines()[1:])]
    expected = np.zeros((3, 3), dtype=int)
    for truth, guess in zip(labels, predicted):
        expected[drawn["classes"].index(truth), drawn["classes"].index(guess)] += 1
    np.testing.assert_array_equal(counts, expected)


@pytest.mark.slow
def test_evaluate_plot_of_a_binary_classifier_and_of_a_regression(tmp_path, matplotlib):
    write_ts(tmp_path / "rise.ts")
    assert minirnn_cli("train", "rise.ts", "--model-dir", "binary", "--units", "8", "--steps", "30", "--batch-size", "8",
                       "-q", cwd=tmp_path).returncode == 0
    proc = minirnn_cli("evaluate", "rise.ts", "--model-dir", "binary", "--plot", "roc.png", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    width, height, drawn = read_png(tmp_path / "roc.png")
    assert width > height >= 400                                        # the matrix and the ROC curve side by side
    assert np.array(drawn["counts"]).sum() == 24
    assert drawn["auc"] == pytest.approx(metrics["auc"], abs=0.02)      # exact, and TF's 200 thresholds

    write_wide_csv(tmp_path / "wide.csv", n=40)
    assert minirnn_cli("train", "wide.csv", "--csv-layout", "wide", "--id-column", "name", "--label-column", "target",
                       "--task", "regression", "--model-dir", "regression", "--epochs", "5", "--batch-size", "8", "-q",
                       cwd=tmp_path).returncode == 0
    proc = minirnn_cli("evaluate", "wide.csv", "--model-dir", "regression", "--plot", "scatter.png", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    width, height, drawn = read_png(tmp_path / "scatter.png")
    assert width >= 400 and height >= 400
    assert drawn["kind"] == "regression" and drawn["n"] == 40
    assert drawn["rmse"] == pytest.approx(np.sqrt(metrics["average_loss"]), rel=1e-4)   # the head's squared error


@pytest.mark.slow
def test_plot_draws_the_training_loss_and_the_validation_metrics(tmp_path, matplotlib):
    write_ts(tmp_path / "rise.ts", n=40)
    assert minirnn_cli("train", "rise.ts", "--model-dir", "run", "--units", "8", "--epochs", "4", "--batch-size", "8",
                       "--validation-split", "0.2", "-q", cwd=tmp_path).returncode == 0
    assert minirnn_cli("evaluate", "rise.ts", "--model-dir", "run", "-q", cwd=tmp_path).returncode == 0
    proc = minirnn_cli("plot", "--model-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "run/training.png"
    width, height, drawn = read_png(tmp_path / "run" / "training.png")
    assert 400 <= width <= 2000 and 400 <= height <= 2000
    assert drawn["training_loss_steps"] == 16                     # 4 epochs of 4 batches, each step's loss
    assert drawn["evaluations"] == {"evaluation": 1, "validation": 4} and drawn["metrics"] == ["accuracy", "auc"]
    proc = minirnn_cli("plot", "--model-dir", "run", "-o", "elsewhere.png", "-q", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "elsewhere.png" and (tmp_path / "elsewhere.png").exists()


def test_plot_errors_are_one_line(tmp_path, matplotlib):
    (tmp_path / "empty").mkdir()
    one_line_error(minirnn_cli("plot", "--model-dir", "empty", cwd=tmp_path), "nothing to plot", "training_loss.jsonl")
    one_line_error(minirnn_cli("plot", "--model-dir", "missing", cwd=tmp_path), "--model-dir missing: no such folder")


def test_without_matplotlib_plots_name_the_extra(tmp_path, monkeypatch, capsys):
    from minirnn import cli
    (tmp_path / "run").mkdir()
    monkeypatch.setitem(sys.modules, "matplotlib", None)            # `import matplotlib` fails
    assert cli.main(["plot", "--model-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == ('minirnn: error: plots need matplotlib: pip install ".[plot]" in the minirnn checkout, or pip '
                   'install matplotlib\n')
