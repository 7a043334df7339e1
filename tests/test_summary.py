"""TensorBoard event files (minirnn.summary): read back with TensorBoard's own reader, no TensorFlow."""

import logging
import os
import sys

import numpy as np
import pytest

import minirnn
from minirnn import feature_column as fc
from minirnn import summary
from minirnn.estimator import SessionRunHook
from minirnn.inputs import numpy_input_fn

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = [rng.normal(size=(int(rng.integers(3, 8)), 2)).astype(np.float32) for _ in range(n)]
    y = np.array([int(s[:, 0].sum() > 0) for s in x])
    return x, y


def _classifier(model_dir, **config):
    return minirnn.RNNClassifier([fc.sequence_numeric_column("x", shape=(2,))], units=[4], cell_type="gru",
                                 optimizer="Adam", model_dir=str(model_dir),
                                 config=minirnn.RunConfig(random_seed=0, **config))


def _train_input(x, y):
    return numpy_input_fn({"x": x}, y, batch_size=8, num_epochs=None, shuffle=True, seed=0)


def _eval_input(x, y):
    return numpy_input_fn({"x": x}, y, batch_size=16, shuffle=False)


def _scalars(logdir):
    """{tag: [(step, value), ...]} of every event file in ``logdir``, as TensorBoard reads them."""
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _event_files(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith("events.out.tfevents."))


class _Record(SessionRunHook):
    def __init__(self):
        self.losses = {}

    def after_step(self, step, loss):
        self.losses[step] = loss
        return False


def test_train_writes_loss_and_steps_per_second_as_tf(tmp_path, caplog):
    x, y = _data()
    clf = _classifier(tmp_path, save_summary_steps=3, log_step_count_steps=4)
    record = _Record()
    with caplog.at_level(logging.INFO, logger="minirnn"):
        clf.train(_train_input(x, y), hooks=[record], steps=10)
    scalars = _scalars(tmp_path)
    assert sorted(scalars) == ["global_step/sec", "loss"]
    # the first step, every save_summary_steps, and the last step, with the losses the training loop saw
    assert [step for step, _ in scalars["loss"]] == [1, 3, 6, 9, 10]
    for step, value in scalars["loss"]:
        assert value == np.float32(record.losses[step])
    # the LoggingHook's lines at steps 4 and 8 report the same losses
    logged = {r.args[1]: r.args[0] for r in caplog.records if r.msg.startswith("loss = ")}
    assert sorted(logged) == [4, 8]
    assert all(np.float32(logged[s]) == np.float32(record.losses[s]) for s in logged)
    assert [step for step, _ in scalars["global_step/sec"]] == [4, 8]
    assert all(value > 0 for _, value in scalars["global_step/sec"])
    # the writer was closed when train returned: one complete file, nothing left open
    assert len(_event_files(tmp_path)) == 1


def test_evaluate_writes_its_metrics_at_the_global_step_in_eval_dir(tmp_path):
    x, y = _data()
    clf = _classifier(tmp_path, save_summary_steps=5)
    clf.train(_train_input(x, y), steps=7)
    first = clf.evaluate(_eval_input(x, y))
    clf.train(_train_input(x, y), steps=3)
    second = clf.evaluate(_eval_input(x[:20], y[:20]))
    named = clf.evaluate(_eval_input(x, y), name="holdout")
    scalars = _scalars(clf.eval_dir())
    assert sorted(scalars) == sorted(k for k in first if k != "global_step")
    assert "global_step" not in scalars
    for tag, events in scalars.items():
        assert events == [(7, np.float32(first[tag])), (10, np.float32(second[tag]))]
    assert _scalars(clf.eval_dir("holdout"))["accuracy"] == [(10, np.float32(named["accuracy"]))]
    # training events stay in model_dir: the two train calls, each from its first step
    assert [s for s, _ in _scalars(tmp_path)["loss"]] == [1, 5, 7, 8, 10]


def test_two_writers_in_the_same_second_keep_both_files(tmp_path):
    summary.write_scalars(tmp_path, 1, {"accuracy": 0.5})
    summary.write_scalars(tmp_path, 1, {"accuracy": 0.75})
    assert len(_event_files(tmp_path)) == 2
    assert sorted(v for _, v in _scalars(tmp_path)["accuracy"]) == [0.5, 0.75]


def test_save_summary_steps_none_or_zero_writes_no_event_files(tmp_path):
    x, y = _data()
    for k, value in enumerate((None, 0)):
        clf = _classifier(tmp_path / str(k), save_summary_steps=value)
        assert clf.config.save_summary_steps == value
        clf.train(_train_input(x, y), steps=3)
        clf.evaluate(_eval_input(x, y))
        assert _event_files(clf.model_dir) == [] and _event_files(clf.eval_dir()) == []
        assert os.path.exists(os.path.join(clf.eval_dir(), "metrics.jsonl"))


def test_run_config_keeps_and_checks_save_summary_steps(tmp_path):
    clf = _classifier(tmp_path, save_summary_steps=7)
    assert clf.config.save_summary_steps == 7                   # kept through the estimator's replace()
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(ValueError, match="save_summary_steps"):
            minirnn.RunConfig(save_summary_steps=bad)
    with pytest.raises(ValueError, match="save_steps"):
        summary.SummarySaverHook(str(tmp_path), save_steps=0)
    with pytest.raises(ValueError, match="save_steps: expected a positive integer, got None"):
        summary.SummarySaverHook(str(tmp_path), save_steps=None)


def test_without_tensorboardx_the_estimator_works_and_says_so_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)      # `import tensorboardX` raises ImportError
    monkeypatch.setattr(summary, "_writer_class", None)          # as in a fresh process
    x, y = _data()
    clf = _classifier(tmp_path, save_summary_steps=2)
    with caplog.at_level(logging.INFO, logger="minirnn"):
        clf.train(_train_input(x, y), steps=5)
        metrics = clf.evaluate(_eval_input(x, y))
        clf.train(_train_input(x, y), steps=2)
    assert clf.latest_checkpoint().endswith("model.ckpt-7.h5") and metrics["global_step"] == 5
    notes = [r.getMessage() for r in caplog.records if "TensorBoard summaries are off" in r.getMessage()]
    assert len(notes) == 1 and "tensorboardX is not installed" in notes[0] and ".[tensorboard]" in notes[0]
    assert _event_files(tmp_path) == [] and _event_files(clf.eval_dir()) == []
    writer = summary.EventWriter(tmp_path / "direct")
    writer.scalars(1, {"loss": 1.0})
    writer.close()
    assert not writer.enabled and not os.path.exists(tmp_path / "direct")
