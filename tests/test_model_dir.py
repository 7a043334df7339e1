"""model_dir under faults and hostile files: nothing outside it is deleted, a full disk or a
diverged model never leaves a bad latest checkpoint, one trainer at a time, missing files and
leftovers of killed runs are handled."""

import errno
import logging
import os
import subprocess
import sys
from unittest import mock

import h5py
import numpy as np
import pytest

import minirnn
from minirnn import checkpoint as ckpt
from minirnn import feature_column as fc
from minirnn.heads import RegressionHead


def batches(n=50):
    return lambda: iter([({"x": np.array([[0.1, 0.5, 0.9], [0.3, 0.2, 0.0]])}, np.array([1, 0]))] * n)


def classifier(model_dir, **config):
    config.setdefault("random_seed", 0)
    return minirnn.RNNClassifier([fc.sequence_numeric_column("x")], units=[4], cell_type="gru", model_dir=model_dir,
                                 config=minirnn.RunConfig(**config))


def test_a_hostile_index_can_delete_nothing(tmp_path):
    model_dir = tmp_path / "m"
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    clf = classifier(model_dir, keep_checkpoint_max=1)
    clf.train(batches(), steps=1)
    for hostile in ("../precious.txt", str(precious), "model.ckpt-1.h5/../../precious.txt"):
        with open(model_dir / "checkpoint", "a") as f:
            f.write(f'all_model_checkpoint_paths: "{hostile}"\n')
        with pytest.raises(ckpt.CheckpointError, match=r"checkpoint', line \d+: .* is not a checkpoint of this"):
            classifier(model_dir, keep_checkpoint_max=1).train(batches(), steps=2)
        assert precious.read_text() == "keep me"
        lines = (model_dir / "checkpoint").read_text().splitlines()
        (model_dir / "checkpoint").write_text("\n".join(lines[:-1]) + "\n")


def test_a_full_disk_is_a_clean_error_and_the_last_checkpoint_stays(tmp_path):
    model_dir = tmp_path / "m"
    clf = classifier(model_dir, save_summary_steps=0)    # fsync fails for everyone below: no event files
    clf.train(batches(), steps=2)
    before = sorted(os.listdir(model_dir))
    full = OSError(errno.ENOSPC, "No space left on device")
    with mock.patch.object(ckpt.os, "fsync", side_effect=full), \
            pytest.raises(OSError, match=r"writing checkpoint .*model\.ckpt-3\.h5' failed \(No space left"):
        clf.train(batches(), steps=1)
    assert sorted(os.listdir(model_dir)) == before                # no temporary file left behind
    assert classifier(model_dir).latest_checkpoint().endswith("model.ckpt-2.h5")
    assert classifier(model_dir).evaluate(batches(1))["global_step"] == 2


FULL_DISK = """
import sys
import numpy as np
import minirnn
from minirnn import feature_column as fc
clf = minirnn.RNNClassifier([fc.sequence_numeric_column("x")], units=[64, 64], cell_type="lstm",
                            model_dir=sys.argv[1])
try:
    clf.train(lambda: iter([({"x": np.ones((2, 3))}, np.array([0, 1]))] * 3), steps=2)
except OSError as error:
    print("OSError:", error)
"""


def test_a_real_full_disk_gives_an_error_not_a_crash(tmp_path):
    """On a 64 KiB tmpfs (root only): HDF5 writing to a full disk used to crash the process."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount permission)")
    try:
        script = tmp_path / "full.py"
        script.write_text(FULL_DISK)
        proc = subprocess.run([sys.executable, "-P", str(script), str(mount / "m")], capture_output=True, text=True,
                              timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "OSError: [Errno 28] writing checkpoint" in proc.stdout and "No space left" in proc.stdout
        assert not [n for n in os.listdir(mount / "m") if ".tmp-" in n]
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


class Diverging(minirnn.optimizers.SGD):
    """SGD whose third update overflows a weight (as a too large learning rate does)."""

    def apply(self, params, grads):
        super().apply(params, grads)
        if self.iterations == 3:
            params[-1][...] = np.inf


@pytest.mark.parametrize("every", [1, 100])
def test_divergence_keeps_the_last_finite_checkpoint_as_latest(tmp_path, every):
    """The update of step 3 overflows: whether a save follows at once (every step) or the next step's
    loss is NaN first, no checkpoint of step 3 is written and step 2's stays the latest."""
    model_dir = tmp_path / "m"
    est = minirnn.RNNEstimator(RegressionHead(), [fc.sequence_numeric_column("x")], units=[4], cell_type="simple_rnn",
                               model_dir=model_dir, optimizer=Diverging(0.1),
                               config=minirnn.RunConfig(random_seed=0, save_checkpoints_steps=every))
    data = lambda: iter([({"x": np.array([[0.1, 0.5, 0.9], [0.3, 0.2, 0.0]])}, np.array([3.0, -2.0]))] * 20)
    with pytest.raises(FloatingPointError, match="at step [34]"), np.errstate(all="ignore"):
        est.train(data, steps=10)
    latest = est.latest_checkpoint()
    last_saved = 2 if every == 1 else 0
    assert ckpt.step_of(latest) == last_saved and not os.path.exists(model_dir / "model.ckpt-3.h5")
    variables, _ = ckpt.read(latest)
    assert all(np.all(np.isfinite(v)) for v in variables.values())
    metrics = est.evaluate(lambda: iter([next(data())]))
    assert np.isfinite(metrics["loss"]) and metrics["global_step"] == ckpt.step_of(latest)
    # a checkpoint with NaN weights (written by something else) is refused when loaded
    with h5py.File(latest, "r+") as f:
        f["variables/rnn_model/logits/kernel"][...] = np.nan
    with pytest.raises(ckpt.CheckpointError, match="holds NaN or inf"):
        minirnn.RNNEstimator(RegressionHead(), [fc.sequence_numeric_column("x")], units=[4], cell_type="simple_rnn",
                             model_dir=model_dir).evaluate(data)


HOLDER = """
import sys, time
from minirnn.checkpoint import TrainingLock
lock = TrainingLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_one_trainer_per_model_dir_and_readers_go_on(tmp_path):
    model_dir = tmp_path / "m"
    clf = classifier(model_dir)
    clf.train(batches(), steps=2)
    holder = subprocess.Popen([sys.executable, "-P", "-c", HOLDER, str(model_dir)], stdout=subprocess.PIPE, text=True,
                              cwd=tmp_path)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError, match=rf"being trained by another process \(pid {holder.pid}\)"):
            classifier(model_dir).train(batches(), steps=1)
        assert classifier(model_dir).evaluate(batches(1))["global_step"] == 2       # readers need no lock
    finally:
        holder.kill()
        holder.wait()
    clf.train(batches(), steps=1)                  # the lock died with its holder
    assert clf.get_variable_value("global_step") == 3


def test_a_missing_latest_checkpoint_falls_back_and_deletes_nothing(tmp_path, caplog):
    model_dir = tmp_path / "m"
    clf = classifier(model_dir, save_checkpoints_steps=1, keep_checkpoint_max=3)
    clf.train(batches(), steps=4)
    os.remove(model_dir / "model.ckpt-4.h5")
    with caplog.at_level(logging.WARNING, logger="minirnn"):
        assert classifier(model_dir).evaluate(batches(1))["global_step"] == 3
    assert "model.ckpt-4.h5' is missing" in caplog.text
    resumed = classifier(model_dir, save_checkpoints_steps=1, keep_checkpoint_max=3)
    resumed.train(batches(), steps=1)
    assert resumed.get_variable_value("global_step") == 4       # resumed at 3, never from scratch
    os.remove(model_dir / "checkpoint")                          # the index itself lost
    assert classifier(model_dir).evaluate(batches(1))["global_step"] == 4


def test_leftovers_of_killed_runs_are_cleaned_at_the_next_train(tmp_path):
    model_dir = tmp_path / "m"
    clf = classifier(model_dir, save_checkpoints_steps=1, keep_checkpoint_max=2)
    clf.train(batches(), steps=3)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    leftovers = [f"model.ckpt-4.h5.tmp-{dead}", f"checkpoint.tmp-{dead}", "model.ckpt-1.h5", "model.ckpt-9.h5"]
    for name in leftovers:                          # a dead writer's temporaries, checkpoints the index lost
        (model_dir / name).write_bytes(b"x")
    alive = model_dir / "model.ckpt-5.h5.tmp-1"     # pid 1 runs: another writer's file is left alone
    alive.write_bytes(b"x")
    clf.train(batches(), steps=1)
    names = set(os.listdir(model_dir))
    assert not names & set(leftovers) and alive.name in names
    assert {"model.ckpt-3.h5", "model.ckpt-4.h5"} <= names and clf.get_variable_value("global_step") == 4


def test_every_write_of_the_index_and_checkpoints_is_atomic(tmp_path):
    """write_bytes: a failure leaves the old file and no temporary."""
    path = tmp_path / "file"
    path.write_bytes(b"old")
    with mock.patch.object(ckpt.os, "replace", side_effect=OSError(errno.EIO, "I/O error")), \
            pytest.raises(OSError, match="writing thing .* failed"):
        ckpt.write_bytes(str(path), b"new", "thing")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["file"]


HUGE = """
import resource, sys
import numpy as np
import minirnn
from minirnn import feature_column as fc
clf = minirnn.RNNClassifier([fc.sequence_numeric_column("x")], units=[4], cell_type="gru", model_dir=sys.argv[1],
                            config=minirnn.RunConfig(random_seed=0))
try:
    print("global_step", clf.evaluate(lambda: iter([({"x": np.ones((2, 3))}, np.array([0, 1]))]))["global_step"])
except Exception as error:
    print(type(error).__name__, error)
print("maxrss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


@pytest.mark.parametrize("where", ["needed", "extra"])
def test_a_small_file_declaring_huge_data_costs_nothing(tmp_path, where):
    """A 3.2 GB dataset, gzip-filled into a few KB: its shape is checked before anything is read,
    and a dataset the model does not need is never read."""
    model_dir = tmp_path / "m"
    classifier(model_dir).train(batches(), steps=1)
    path = classifier(model_dir).latest_checkpoint()
    with h5py.File(path, "r+") as f:
        name = "variables/rnn_model/logits/kernel" if where == "needed" else "variables/extra"
        if name in f:
            del f[name]
        f.create_dataset(name, shape=(20000, 20000), dtype="float64", compression="gzip", chunks=(1000, 1000))
    assert os.path.getsize(path) < 1 << 20
    proc = subprocess.run([sys.executable, "-P", "-c", HUGE, str(model_dir)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    if where == "needed":
        assert "CheckpointError" in out and "has shape (20000, 20000), this model's is (4, 1)" in out["CheckpointError"]
    else:
        assert out.get("global_step") == "1", proc.stdout + proc.stderr
    assert int(out["maxrss_mb"]) < 1000, out


@pytest.mark.parametrize("buckets", [30_000_000, 300_000_000])
def test_an_export_declaring_a_huge_model_is_refused_before_allocating(tmp_path, buckets):
    """A 1 KB spec.json asks for a hash-bucket table of ``buckets`` rows: against the real model.h5
    it declares more weights than the file holds; with a gzip-filled model.h5 declaring the table
    too, the total is beyond ``max_bytes``. Either way: a clear error, no allocation."""
    import json
    import tracemalloc
    column = fc.embedding_column(fc.sequence_categorical_column_with_hash_bucket("tok", 10), 4)
    clf = minirnn.RNNClassifier([column], units=[4], model_dir=str(tmp_path / "m"),
                                config=minirnn.RunConfig(random_seed=0))
    clf.train(lambda: iter([({"tok": np.array([["a", "b"], ["c", "d"]])}, np.array([0, 1]))]), steps=1)
    export = os.fsdecode(clf.export_saved_model(str(tmp_path / "export")))
    spec_file = os.path.join(export, "spec.json")
    spec = json.load(open(spec_file))
    spec["sequence_columns"][0]["categorical"]["hash_bucket_size"] = buckets
    json.dump(spec, open(spec_file, "w"))
    table = "variables/sequence_features/tok_embedding/embedding_weights"
    if buckets > 100_000_000:
        with h5py.File(os.path.join(export, "model.h5"), "r+") as f:
            del f[table]
            f.create_dataset(table, shape=(buckets, 4), dtype="float32", compression="gzip", chunks=(100000, 4))
        message = r"model\.h5' declares 4,800,000,\d+ bytes of weights, more than max_bytes=2,147,483,648"
    else:
        message = r"spec\.json' is not a valid .*declares 120,000,041 weights, more than max_parameters=81\)"
    assert os.path.getsize(os.path.join(export, "model.h5")) < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=message):
            minirnn.load_exported(export)
        assert tracemalloc.get_traced_memory()[1] < 50 << 20
    finally:
        tracemalloc.stop()


def test_malformed_files_are_errors_naming_the_file(tmp_path):
    model_dir = tmp_path / "m"
    clf = classifier(model_dir)
    clf.train(batches(), steps=1)
    export = os.fsdecode(clf.export_saved_model(str(tmp_path / "export")))
    spec_file = os.path.join(export, "spec.json")
    good = open(spec_file).read()
    for bad in ("{not json", "[1, 2]", good.replace('"head"', '"heed"'), "[" * 100000 + "]" * 100000,
                good.replace('"units": [4]', '"units": [4e400]')):
        with open(spec_file, "w") as f:
            f.write(bad)
        with pytest.raises(ValueError, match=r"spec\.json' is not a valid minirnn export spec"):
            minirnn.load_exported(export)
    (model_dir / "checkpoint").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ckpt.CheckpointError, match="checkpoint' is not a checkpoint index"):
        classifier(model_dir).evaluate(batches(1))
    with pytest.raises(ValueError, match="is a file; give a folder"):
        classifier(model_dir / "checkpoint")


def test_evaluate_on_a_read_only_model_dir_warns_and_returns(tmp_path, caplog):
    model_dir = tmp_path / "m"
    classifier(model_dir).train(batches(), steps=1)
    (model_dir / "eval").write_text("")             # eval/ cannot be made (root ignores a read-only mode)
    with caplog.at_level(logging.WARNING, logger="minirnn"):
        metrics = classifier(model_dir, save_summary_steps=0).evaluate(batches(1))
    assert metrics["global_step"] == 1 and "could not record the evaluation" in caplog.text


def test_an_interrupt_while_writing_leaves_no_temporary(tmp_path):
    path = tmp_path / "file"
    with mock.patch.object(ckpt, "_replace_atomically", side_effect=KeyboardInterrupt), \
            pytest.raises(KeyboardInterrupt):
        ckpt.write_bytes(str(path), b"new", "thing")
    assert os.listdir(tmp_path) == []
