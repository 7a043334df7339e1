"""The command line (minirnn.cli) end to end in fresh processes, and its file readers (minirnn.datafiles)."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minirnn import datafiles
from minirnn.datafiles import DataError

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="python -P needs Python 3.11")


def minirnn_cli(*args, cwd, stderr=None):
    """Run ``python -P -m minirnn ARGS`` from ``cwd`` (the installed package, not the checkout)."""
    env = dict(os.environ, MINIRNN_PROGRESS="1")
    env.pop("MINIRNN_BACKEND", None)
    return subprocess.run([sys.executable, "-P", "-m", "minirnn", *map(str, args)], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=stderr or subprocess.PIPE, timeout=300)


def one_line_error(proc, *needles):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("minirnn: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------
# small data files
# ---------------------------------------------------------------------------------------------

def write_ts(path, n=24, seed=0):
    """Two-dimensional rising/falling series of 4 to 9 steps, some padded with trailing '?'."""
    rng = np.random.default_rng(seed)
    lines = ["# made by the test", "@problemName Rise", "@timeStamps false", "@missing true", "@univariate false",
             "@dimensions 2", "@equalLength false", "@classLabel true up down", "@data"]
    sequences, labels = [], []
    for i in range(n):
        T, label = int(rng.integers(4, 10)), ("up" if i % 2 else "down")
        a = np.round(np.linspace(0, 1, T) * (1 if label == "up" else -1) + 0.1 * rng.normal(size=T), 3)
        b = np.round(rng.normal(size=T), 3)
        pad = ",?" * (i % 3)
        lines.append(",".join(map(str, a)) + pad + ":" + ",".join(map(str, b)) + pad + ":" + label)
        sequences.append(np.stack([a, b], axis=1).astype(np.float32))
        labels.append(label)
    path.write_text("\n".join(lines) + "\n")
    return sequences, labels


def write_long_csv(path, n=18, seed=1):
    """One row per step, steps of each series in random order (the time column orders them)."""
    rng = np.random.default_rng(seed)
    expected = {}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["series", "t", "a", "activity", "b"])
        for i in range(n):
            T, label = int(rng.integers(3, 7)), ("run" if i % 3 == 0 else "walk")
            values = np.round(rng.normal(size=(T, 2)) + (1.5 if label == "run" else 0), 3)
            for t in rng.permutation(T):
                w.writerow([f"s{i}", 10 * t, values[t, 0], label, values[t, 1]])
            expected[f"s{i}"] = (values.astype(np.float32), label)
    return expected


def write_wide_csv(path, n=20, seed=2):
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "target"] + [f"t{k}" for k in range(8)])
        for i in range(n):
            T, target = int(rng.integers(3, 9)), round(float(rng.normal()), 3)
            w.writerow([f"r{i}", target] + [round(target + 0.1 * float(rng.normal()), 3) for _ in range(T)]
                       + [""] * (8 - T))


def arrays(n=20, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6, 3)).astype(np.float32)
    lengths = rng.integers(2, 7, n)
    y = (x[:, 0, 0] > 0).astype(np.int64)
    return x, lengths, y


# ---------------------------------------------------------------------------------------------
# end to end
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ts_train_evaluate_predict_export(tmp_path):
    sequences, labels = write_ts(tmp_path / "rise.ts")
    train = minirnn_cli("train", "rise.ts", "--model-dir", "run", "--steps", 20, "--batch-size", 8, "--units", "8",
                        "--log-every", 10, cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    assert train.stdout == ""
    assert "minirnn: training a 2-class classifier on 24 sequences of 2 feature(s)" in train.stderr
    assert "loss = " in train.stderr and "trained to global step 20" in train.stderr and "\r" not in train.stderr
    settings = json.loads((tmp_path / "run" / "minirnn_cli.json").read_text())
    assert settings["label_vocabulary"] == ["up", "down"] and settings["n_classes"] == 2
    assert (settings["task"], settings["units"], settings["cell_type"], settings["optimizer"], settings["learning_rate"],
            settings["batch_size"], settings["seed"], settings["dimension"]) == \
        ("classification", [8], "lstm", "Adam", 0.01, 8, 0, 2)
    assert settings["last_training_run"]["steps"] == 20

    evaluate = minirnn_cli("evaluate", "rise.ts", "--model-dir", "run", "-q", cwd=tmp_path)
    assert evaluate.returncode == 0 and evaluate.stderr == "", evaluate.stderr
    metrics = json.loads(evaluate.stdout)
    assert metrics["global_step"] == 20 and 0 <= metrics["accuracy"] <= 1 and metrics["loss"] > 0

    predict_csv = minirnn_cli("predict", "rise.ts", "--model-dir", "run", "-o", "out.csv", "-q", cwd=tmp_path)
    assert predict_csv.returncode == 0 and predict_csv.stdout == "", predict_csv.stderr
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "class", "probability_up", "probability_down"]
    assert [r[0] for r in rows[1:]] == [str(k) for k in range(24)]
    probabilities = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-6)
    assert [r[1] for r in rows[1:]] == [["up", "down"][k] for k in probabilities.argmax(axis=1)]
    accuracy = np.mean([r[1] == label for r, label in zip(rows[1:], labels)])
    assert accuracy == pytest.approx(metrics["accuracy"], abs=1e-6)     # the same model on the same data

    predict_json = minirnn_cli("predict", "rise.ts", "--model-dir", "run", "--output-format", "jsonl", cwd=tmp_path)
    assert predict_json.returncode == 0, predict_json.stderr
    records = [json.loads(line) for line in predict_json.stdout.splitlines()]
    assert [r["id"] for r in records] == [r[0] for r in rows[1:]]
    assert [r["class"] for r in records] == [r[1] for r in rows[1:]]
    np.testing.assert_array_equal([[r["probabilities"]["up"], r["probabilities"]["down"]] for r in records],
                                  probabilities)

    export = minirnn_cli("export", "--model-dir", "run", cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    bundle = export.stdout.strip()
    assert os.path.isfile(os.path.join(tmp_path, bundle, "spec.json"))
    import minirnn
    served = minirnn.load_exported(os.path.join(tmp_path, bundle)).classify([{"x": s} for s in sequences[:5]])
    np.testing.assert_allclose(served["scores"], probabilities[:5], atol=1e-6)

    # training again continues from the checkpoint; a different model on the same model_dir is refused
    more = minirnn_cli("train", "rise.ts", "--model-dir", "run", "--steps", 5, "-q", cwd=tmp_path)
    assert more.returncode == 0 and more.stderr == "", more.stderr
    assert (tmp_path / "run" / "model.ckpt-25.h5").exists()
    one_line_error(minirnn_cli("train", "rise.ts", "--model-dir", "run", "--units", "16", cwd=tmp_path),
                   "holds a model trained with --units 8")


@pytest.mark.slow
def test_long_csv_with_time_column_then_predict(tmp_path):
    write_long_csv(tmp_path / "steps.csv")
    train = minirnn_cli("train", "steps.csv", "--id-column", "series", "--time-column", "t", "--label-column",
                        "activity", "--model-dir", "run", "--steps", 10, "--cell-type", "gru", "-q", cwd=tmp_path)
    assert train.returncode == 0 and train.stderr == "", train.stderr
    settings = json.loads((tmp_path / "run" / "minirnn_cli.json").read_text())
    assert settings["data"]["feature_columns"] == ["a", "b"] and settings["label_vocabulary"] == ["run", "walk"]
    # predict needs no data options: they were stored; the label column may be absent
    with open(tmp_path / "steps.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["series"] in ("s4", "s1")]
    with open(tmp_path / "new.csv", "w", newline="") as f:         # other column order, no label column
        w = csv.writer(f)
        w.writerow(["series", "b", "a", "t"])
        w.writerows([r["series"], r["b"], r["a"], r["t"]] for r in rows)
    predict = minirnn_cli("predict", "new.csv", "--model-dir", "run", "-o", "p.jsonl", "-q", cwd=tmp_path)
    assert predict.returncode == 0, predict.stderr
    records = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["s1", "s4"]                # in order of first appearance
    assert all(r["class"] in ("run", "walk") for r in records)


def test_one_long_sequence_among_short_ones_costs_only_its_own_steps(tmp_path):
    """A 170 KB file: one sequence of 20,000 steps and 3,000 of one step. Padded in batches of 128
    it would cost GBs; evaluate and predict batch by length and stay small, and predictions come
    back in the file's order, each the same as predicted alone."""
    with open(tmp_path / "skew.csv", "w") as f:
        f.write("id,v,label\n")
        f.writelines(f"s{k},{k % 5},{k % 2}\n" for k in range(1500))
        f.writelines(f"long,{t % 7},1\n" for t in range(20000))
        f.writelines(f"t{k},{k % 3},{k % 2}\n" for k in range(1500))
    assert minirnn_cli("train", "skew.csv", "--id-column", "id", "--label-column", "label", "--model-dir", "run",
                       "--steps", 1, "-q", cwd=tmp_path).returncode == 0
    peak = ("import resource, subprocess, sys\n"
            "proc = subprocess.run([sys.executable, '-P', '-m', 'minirnn'] + sys.argv[1:])\n"
            "print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)")
    for command in (["evaluate", "skew.csv"], ["predict", "skew.csv", "-o", "p.csv"]):
        proc = subprocess.run([sys.executable, "-c", peak, *command, "--model-dir", "run", "-q"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        code, megabytes = map(int, proc.stdout.split()[-2:])
        assert code == 0 and megabytes < 700, (proc.stdout, proc.stderr)
    rows = list(csv.reader(open(tmp_path / "p.csv")))[1:]
    assert [r[0] for r in rows] == [f"s{k}" for k in range(1500)] + ["long"] + [f"t{k}" for k in range(1500)]
    with open(tmp_path / "few.csv", "w") as f:
        f.write("id,v\n" + "".join(f"{i},{v}\n" for i, v in (("s3", 3), ("t4", 1))))
    assert minirnn_cli("predict", "few.csv", "--model-dir", "run", "-o", "q.csv", "-q", cwd=tmp_path).returncode == 0
    alone = {r[0]: r[2:] for r in list(csv.reader(open(tmp_path / "q.csv")))[1:]}
    together = {r[0]: r[2:] for r in rows}
    assert alone == {k: together[k] for k in alone}


def test_an_hdf5_file_declaring_values_it_does_not_store_is_refused_unread(tmp_path):
    import h5py
    with h5py.File(tmp_path / "hostile.h5", "w") as f:        # 4 GB declared, nothing written: a few KB
        f.create_dataset("x", shape=(10000, 100000), dtype="float32", chunks=(100, 1000), compression="gzip")
    with pytest.raises(DataError, match=r"'x' declares 4,000,000,000 bytes but stores 0"):
        datafiles.read(str(tmp_path / "hostile.h5"))
    with h5py.File(tmp_path / "zeros.h5", "w") as f:          # real, highly compressible data still reads
        f.create_dataset("x", data=np.zeros((200, 1000, 8), np.float32), compression="gzip")
    data = datafiles.read(str(tmp_path / "zeros.h5"))
    assert len(data) == 200 and data.dimension == 8 and set(data.lengths) == {1000}


@pytest.mark.slow
def test_wide_csv_regression_train_and_evaluate(tmp_path):
    write_wide_csv(tmp_path / "wide.csv")
    train = minirnn_cli("train", "wide.csv", "--csv-layout", "wide", "--id-column", "name", "--label-column",
                        "target", "--task", "regression", "--model-dir", "run", "--epochs", 2, "--batch-size", 5,
                        "-q", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    assert (tmp_path / "run" / "model.ckpt-8.h5").exists()          # 2 epochs of 4 batches
    evaluate = minirnn_cli("evaluate", "wide.csv", "--model-dir", "run", "-q", cwd=tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr
    metrics = json.loads(evaluate.stdout)
    assert sorted(metrics) == ["average_loss", "global_step", "label/mean", "loss", "prediction/mean"]
    targets = [float(r["target"]) for r in csv.DictReader(open(tmp_path / "wide.csv"))]
    assert metrics["label/mean"] == pytest.approx(np.mean(targets), abs=1e-5)


@pytest.mark.slow
def test_npz_with_lengths_train_and_predict(tmp_path):
    x, lengths, y = arrays()
    x[np.arange(6)[None, :] >= lengths[:, None]] = np.nan         # NaN padding after each length
    np.savez(tmp_path / "data.npz", x=x, lengths=lengths, y=y)
    train = minirnn_cli("train", "data.npz", "--model-dir", "run", "--steps", 5, "--units", "4,3", "-q", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    predict = minirnn_cli("predict", "data.npz", "--model-dir", "run", "-q", cwd=tmp_path)
    assert predict.returncode == 0, predict.stderr
    rows = list(csv.reader(predict.stdout.splitlines()))
    assert rows[0] == ["id", "class", "probability_0", "probability_1"] and len(rows) == 21


@pytest.mark.slow
def test_hdf5_with_mask_and_string_labels_train_and_evaluate(tmp_path):
    import h5py
    x, _, y = arrays()
    mask = np.random.default_rng(0).random((20, 6)) < 0.7
    mask[:, 0] = True                                              # gaps inside rows are allowed
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"], f["mask"] = x, mask
        f["y"] = np.array(["neg", "pos"], dtype="S")[y]
        f["ids"] = np.array([f"e{i}" for i in range(20)], dtype="S")
    train = minirnn_cli("train", "data.h5", "--model-dir", "run", "--steps", 5, "--optimizer", "Adagrad",
                        "--learning-rate", "0.1", "-q", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    evaluate = minirnn_cli("evaluate", "data.h5", "--model-dir", "run", "-q", cwd=tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr
    metrics = json.loads(evaluate.stdout)
    assert metrics["global_step"] == 5 and metrics["label/mean"] == pytest.approx(y.mean(), abs=1e-6)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_a_terminal_gets_a_progress_bar(tmp_path):
    write_ts(tmp_path / "rise.ts")
    master, slave = os.openpty()
    try:
        proc = minirnn_cli("train", "rise.ts", "--model-dir", "run", "--steps", 5, cwd=tmp_path, stderr=slave)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    assert proc.returncode == 0
    text = out.decode()
    assert "\rstep 1/5" in text and "minirnn: trained to global step 5" in text


# ---------------------------------------------------------------------------------------------
# errors: one line, exit status 2
# ---------------------------------------------------------------------------------------------

def test_bad_arguments_and_files_give_one_line_and_status_2(tmp_path):
    write_ts(tmp_path / "rise.ts")
    lines = (tmp_path / "rise.ts").read_text().splitlines()
    lines[10] = lines[10].replace(",", ",?,", 1)                   # a missing value inside a series
    (tmp_path / "holes.ts").write_text("\n".join(lines) + "\n")
    write_long_csv(tmp_path / "steps.csv")
    one_line_error(minirnn_cli("train", "holes.ts", "--model-dir", "run", cwd=tmp_path),
                   "holes.ts, line 11", "missing value")
    one_line_error(minirnn_cli("train", "steps.csv", "--id-column", "series", "--label-column", "kind",
                               "--model-dir", "run", cwd=tmp_path), "steps.csv", "no column 'kind'", "--label-column")
    one_line_error(minirnn_cli("train", "rise.ts", "--model-dir", "run", "--stepz", "3", cwd=tmp_path),
                   "unrecognized arguments: --stepz", "minirnn train --help")
    one_line_error(minirnn_cli("train", "rise.ts", "--model-dir", "run", "--units", "8,x", cwd=tmp_path), "--units")
    one_line_error(minirnn_cli("evaluate", "rise.ts", "--model-dir", "nothing", cwd=tmp_path), "nothing")
    one_line_error(minirnn_cli("trian", cwd=tmp_path), "invalid choice: 'trian' (did you mean train?)")
    # no prefix matching: --epoch is not taken for --epochs, it gets a suggestion
    one_line_error(minirnn_cli("train", "rise.ts", "--model-dir", "run", "--epoch", "3", cwd=tmp_path),
                   "unrecognized arguments: --epoch 3 (did you mean --epochs?)", "minirnn train --help")
    one_line_error(minirnn_cli("evaluate", "rise.ts", "--model-dir", "run", "--batch", "3", cwd=tmp_path),
                   "(did you mean --batch-size?)")
    one_line_error(minirnn_cli("train", "rise.ts", "--model-dir=run", "--learning-rat=0.1", cwd=tmp_path),
                   "unrecognized arguments: --learning-rat=0.1 (did you mean --learning-rate?)")
    assert not (tmp_path / "run").exists()                         # nothing was trained


def test_a_csv_whose_ids_or_labels_are_read_as_numbers_gets_a_hint(tmp_path):
    write_long_csv(tmp_path / "steps.csv")
    one_line_error(minirnn_cli("train", "steps.csv", "--model-dir", "run", cwd=tmp_path),
                   "line 2, column 'series': expected a finite number, got 's0'",
                   "the first column 'series' is not numeric: if it names the sequences (one row per time step), "
                   "give --id-column series")
    one_line_error(minirnn_cli("train", "steps.csv", "--id-column", "series", "--model-dir", "run", cwd=tmp_path),
                   "column 'activity'", "if column 'activity' holds the labels, give --label-column activity")
    write_wide_csv(tmp_path / "wide.csv")
    one_line_error(minirnn_cli("train", "wide.csv", "--label-column", "target", "--model-dir", "run", cwd=tmp_path),
                   "if it names the sequences (one row per sequence), give --id-column name --csv-layout wide")
    (tmp_path / "typo.csv").write_text("label,t0,t1\nx,1,2\ny,3,oops\nx,4,5\n")        # one bad cell: no hint
    line = one_line_error(minirnn_cli("train", "typo.csv", "--label-column", "label", "--model-dir", "run",
                                      cwd=tmp_path))
    assert line.endswith("line 3, column 't1': expected a finite number, got 'oops'")
    assert not (tmp_path / "run").exists()


def test_help_lists_the_commands_and_the_demo(tmp_path):
    proc = minirnn_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for word in ("train", "evaluate", "predict", "export", "info", "plot", "demo", "--steps STEPS", "Japanese Vowels"):
        assert word in proc.stdout
    proc = minirnn_cli("train", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "--id-column" in proc.stdout and "UEA/UCR" in proc.stdout
    assert "--no-standardize" in proc.stdout and "--validation-split F" in proc.stdout and "--patience N" in proc.stdout


def test_version(tmp_path):
    import minirnn
    proc = minirnn_cli("--version", cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"minirnn {minirnn.__version__}\n", "")


def test_a_closed_pipe_stops_quietly(tmp_path):
    """`minirnn --help | head -1` and `minirnn predict ... | head -1`: the reader is gone, so the
    output stops, with no BrokenPipeError traceback. Here the pipe's reading end is closed before
    the command starts, so every write fails."""
    write_ts(tmp_path / "rise.ts")
    assert minirnn_cli("train", "rise.ts", "--model-dir", "run", "--steps", 1, "-q", cwd=tmp_path).returncode == 0
    script = [sys.executable, "-P", "-c", "import sys; from minirnn.cli import main; sys.exit(main())"]  # `minirnn`
    module = [sys.executable, "-P", "-m", "minirnn"]               # its --help adds the demo's options
    for command in (script + ["--help"], module + ["--help"], script + ["train", "--help"], script + ["--version"],
                    script + ["info", "--model-dir", "run"], script + ["predict", "rise.ts", "--model-dir", "run", "-q"]):
        read, write = os.pipe()
        os.close(read)
        try:
            proc = subprocess.run(command, cwd=tmp_path, stdout=write, stderr=subprocess.PIPE, text=True, timeout=300)
        finally:
            os.close(write)
        assert proc.stderr == "" and proc.returncode in (0, 1), (command, proc.stderr)


# ---------------------------------------------------------------------------------------------
# readers, in process
# ---------------------------------------------------------------------------------------------

def test_ts_reader_trims_padding_and_keeps_the_values(tmp_path):
    sequences, labels = write_ts(tmp_path / "rise.ts")
    data = datafiles.read(tmp_path / "rise.ts")
    assert data.task == "classification" and data.class_labels == ["up", "down"] and data.dimension == 2
    assert list(data.labels) == labels
    for got, want in zip(data.sequences, sequences):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.split("@data")[0], "no @data line"),
    (lambda t: t.replace("@data\n", ""), "line 9: expected a header line starting with '@'"),
    (lambda t: t.split("@data")[0] + "@data\n", "no cases after @data"),
    (lambda t: t.replace(":up\n", ":sideways\n", 1), "class label 'sideways' is not among"),
    (lambda t: t.replace(":up\n", ":1,2:up\n", 1), "expected 2 dimension(s) and a label"),
    (lambda t: t.replace(",", ",abc,", 1), "line 10: dimension 1, step 2: expected a number, got 'abc'"),
    (lambda t: t.replace(":up\n", ":up:\n", 1), "expected 2 dimension(s) and a label"),
    (lambda t: t.replace("@equalLength false", "@equalLength true"), "@equalLength true"),
    (lambda t: t.replace("@timeStamps false", "@timeStamps true"), "@timeStamps true is not supported"),
    (lambda t: t.replace("@univariate false", "@univariate maybe"), "@univariate expects true or false"),
])
def test_ts_reader_errors_name_the_place(tmp_path, edit, message):
    write_ts(tmp_path / "rise.ts")
    (tmp_path / "bad.ts").write_text(edit((tmp_path / "rise.ts").read_text()))
    with pytest.raises(DataError, match="bad.ts") as info:
        datafiles.read(tmp_path / "bad.ts")
    assert message in str(info.value)


def test_ts_regression_and_univariate(tmp_path):
    (tmp_path / "r.ts").write_text("@problemName R\n@univariate true\n@targetLabel true\n@data\n"
                                   "1,2,3:0.5\n4,5,?,?:-1.25\n")
    data = datafiles.read(tmp_path / "r.ts")
    assert data.task == "regression" and list(data.labels) == [0.5, -1.25]
    assert [s.ravel().tolist() for s in data.sequences] == [[1, 2, 3], [4, 5]]


def test_long_csv_reader_orders_steps_by_time(tmp_path):
    expected = write_long_csv(tmp_path / "steps.csv")
    data = datafiles.read(tmp_path / "steps.csv", id_column="series", time_column="t", label_column="activity")
    assert data.ids == list(expected) and data.feature_names == ["a", "b"]
    for key, got, label in zip(data.ids, data.sequences, data.labels):
        np.testing.assert_array_equal(got, expected[key][0])
        assert label == expected[key][1]


def test_csv_reader_errors(tmp_path):
    (tmp_path / "a.csv").write_text("id,t,v,label\na,0,1.5,x\na,1,oops,x\n")
    with pytest.raises(DataError, match=r"a.csv, line 3, column 'v': expected a finite number, got 'oops'"):
        datafiles.read(tmp_path / "a.csv", id_column="id", label_column="label")
    (tmp_path / "b.csv").write_text("id,v,label\na,1,x\na,2,y\n")
    with pytest.raises(DataError, match=r"line 3: sequence 'a' has label 'y' here but 'x' on line 2"):
        datafiles.read(tmp_path / "b.csv", id_column="id", label_column="label")
    (tmp_path / "c.csv").write_text("id,t,v\na,1,1\na,1,2\n")
    with pytest.raises(DataError, match=r"lines 2 and 3: sequence 'a' has two rows at time 1"):
        datafiles.read(tmp_path / "c.csv", id_column="id", time_column="t")
    (tmp_path / "d.csv").write_text("label,t0,t1,t2\nx,1,,3\n")
    with pytest.raises(DataError, match=r"line 2, column 't1': empty cell inside the sequence"):
        datafiles.read(tmp_path / "d.csv", label_column="label")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="empty file"):
        datafiles.read(tmp_path / "e.csv")


def test_array_readers_and_their_errors(tmp_path):
    x, lengths, y = arrays()
    np.savez(tmp_path / "ok.npz", x=x, lengths=lengths, y=y)
    data = datafiles.read(tmp_path / "ok.npz")
    assert [len(s) for s in data.sequences] == list(lengths) and list(data.labels) == list(y)
    np.testing.assert_array_equal(data.sequences[3], x[3, :lengths[3]])
    mask = np.ones((20, 6), bool)
    mask[0, 2] = False                                             # a gap: kept as padded array + mask
    np.savez(tmp_path / "gap.npz", x=x, mask=mask)
    data = datafiles.read(tmp_path / "gap.npz")
    assert data.sequences is None and data.features()["sequence_mask"] is data.mask and data.labels is None
    bad = x.copy()
    bad[2, 1, 0] = np.nan
    for name, arrays_, message in [
            ("nox.npz", {"y": y}, "no array 'x'"),
            ("nan.npz", {"x": bad}, "'x'[2, 1] is NaN"),
            ("len.npz", {"x": x, "lengths": lengths + 5}, "'lengths'["),
            ("both.npz", {"x": x, "lengths": lengths, "mask": mask}, "both 'lengths' and 'mask'"),
            ("obj.npz", {"x": x, "y": np.array(["a", None] * 10, dtype=object)}, "pickled")]:
        np.savez(tmp_path / name, **arrays_)
        with pytest.raises(DataError, match=name.replace(".", r"\.")) as info:
            datafiles.read(tmp_path / name)
        assert message in str(info.value)
    with pytest.raises(DataError, match="can not tell the format"):
        datafiles.read(tmp_path / "data.xyz")


def test_reader_refuses_what_would_crash_or_mislabel(tmp_path):
    """Malformed files that once gave a raw traceback or wrong class names: each is a DataError
    naming the file and what was expected."""
    (tmp_path / "a.csv").write_text("label,t0,t1\nx,1,2\n")
    for delimiter in (";;", "", "\n"):
        with pytest.raises(DataError, match="delimiter: expected one character"):
            datafiles.read(tmp_path / "a.csv", label_column="label", delimiter=delimiter)
    (tmp_path / "big.csv").write_text("label,t0,t1\nx,1,1e39\n")
    with pytest.raises(DataError, match=r"big.csv, line 2, column 't1': 1e39 is beyond float32's range"):
        datafiles.read(tmp_path / "big.csv", label_column="label")
    (tmp_path / "big.ts").write_text("@problemName p\n@univariate true\n@equalLength false\n@classLabel true a b\n"
                                     "@data\n1,1e39:a\n2,3:b\n")
    with pytest.raises(DataError, match=r"big.ts, line 6: dimension 1, step 2: 1e39 is beyond float32's range"):
        datafiles.read(tmp_path / "big.ts")
    (tmp_path / "zip.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="zip.npz: not a readable .npz file"):
        datafiles.read(tmp_path / "zip.npz")
    np.save(tmp_path / "one.npy", np.ones(3))
    os.replace(tmp_path / "one.npy", tmp_path / "one.npz")
    with pytest.raises(DataError, match="one.npz: a single .npy array; expected an .npz archive"):
        datafiles.read(tmp_path / "one.npz")
    x = np.ones((4, 3, 2), np.float32)
    np.savez(tmp_path / "nan.npz", x=x, y=[0, 1, 0, np.nan])
    with pytest.raises(DataError, match=r"nan.npz: 'y'\[3\] is nan; labels must be finite"):
        datafiles.read(tmp_path / "nan.npz")
    np.savez(tmp_path / "bytes.npz", x=x, y=np.array([b"a", b"b", b"a", b"b"]))
    assert list(datafiles.read(tmp_path / "bytes.npz").labels) == ["a", "b", "a", "b"]   # text, as from HDF5


def test_bom_missing_labels_and_memory_are_one_line(tmp_path):
    write_ts(tmp_path / "rise.ts")
    (tmp_path / "bom.ts").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "rise.ts").read_bytes())  # saved by Notepad
    assert len(datafiles.read(str(tmp_path / "bom.ts")).labels) == 24
    rows = ["id,t,a,label"] + [f"s{k},{t},{k * 0.1 + t},{'nan' if k == 3 else k % 2}" for k in range(6) for t in range(3)]
    (tmp_path / "nan.csv").write_text("\n".join(rows) + "\n")
    one_line_error(minirnn_cli("train", "nan.csv", "--model-dir", "run", "--id-column", "id", "--time-column", "t",
                               "--label-column", "label", cwd=tmp_path),
                   "the label of sequence 's3' is missing ('nan')")
    one_line_error(minirnn_cli("train", "rise.ts", "--model-dir", "big", "--units", "200000,200000",
                               cwd=tmp_path), "out of memory")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["now", "background"])
def test_warmup_fills_the_kernel_cache_that_a_later_prediction_loads(tmp_path, mode):
    """After `minirnn warmup`, a new process's first prediction loads its kernels from the cache:
    Numba counts cache hits and no compilation (misses). With MINIRNN_COMPILE=background the warm-up
    waits for the kernels its predictions compile in the background."""
    cache = tmp_path / "numba_cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), MINIRNN_PROGRESS="0")
    env.pop("MINIRNN_BACKEND", None)
    env.pop("MINIRNN_COMPILE", None)
    done = subprocess.run([sys.executable, "-P", "-m", "minirnn", "warmup", "--cells", "simple_rnn",
                           "--inference-only"], cwd=tmp_path, env=dict(env, MINIRNN_COMPILE=mode),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "simple_rnn: compiled and cached" in done.stderr, done.stderr
    assert any(cache.rglob("*.nbi"))
    probe = ("import numpy as np, minirnn\n"
             "from minirnn import feature_column as fc\n"
             "from minirnn.kernels import simple_rnn\n"
             "from minirnn.kernels._threads import small_products_in_blas\n"
             "net = minirnn.network.Network([fc.sequence_numeric_column('x', shape=5)], units=[7],\n"
             "                              cell_type='simple_rnn', seed=1)\n"
             "net.forward({'x': np.ones((2, 4, 5), np.float32)})\n"
             "stats = simple_rnn.loops(small_products_in_blas()).forward.stats\n"
             "print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))")
    done = subprocess.run([sys.executable, "-P", "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    hits, misses = map(int, done.stdout.split())
    assert hits >= 1 and misses == 0, done.stdout + done.stderr


def test_device_cuda_without_a_gpu_is_one_error_and_auto_runs_on_the_cpu(tmp_path):
    cuda = pytest.importorskip("numba.cuda")
    if cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda would run")
    x, lengths, y = arrays()
    np.savez(tmp_path / "data.npz", x=x, lengths=lengths, y=y)
    for command in ("train", "evaluate", "predict"):
        refused = minirnn_cli(command, "data.npz", "--model-dir", "run", "--device", "cuda", cwd=tmp_path)
        one_line_error(refused, "--device cuda:", "no CUDA GPU", "device='cpu' or 'auto'")
    assert not (tmp_path / "run").exists()                      # refused before anything was written
    predictions = {}
    for device in ("cpu", "auto"):
        train = minirnn_cli("train", "data.npz", "--model-dir", device, "--steps", 3, "--units", 4, "--device", device,
                            cwd=tmp_path)
        assert train.returncode == 0, train.stderr
        assert ("no CUDA GPU" in train.stderr) == (device == "auto")   # auto says where it runs
        predict = minirnn_cli("predict", "data.npz", "--model-dir", device, "--device", device, "-q", cwd=tmp_path)
        assert predict.returncode == 0, predict.stderr
        predictions[device] = predict.stdout
    assert predictions["auto"] == predictions["cpu"]            # the same model, bit for bit
