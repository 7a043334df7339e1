"""RNNClassifier / RNNEstimator: TF's semantics (tf-estimator-behaviour.md sections a-d) and where we do better."""

import itertools
import json
import logging
import os

import numpy as np
import pytest

import minirnn
from minirnn import checkpoint as ckpt
from minirnn import feature_column as fc
from minirnn.estimator import EarlyStoppingHook, NotFittedError, StopAtStepHook
from minirnn.heads import MultiClassHead, RegressionHead
from minirnn.inputs import numpy_input_fn
from minirnn.optimizers import Adam


def tokens_column(buckets=100, dim=8):
    return fc.embedding_column(fc.sequence_categorical_column_with_identity("tokens", buckets), dim)


def token_data(n, seed=0, low=5, high=20):
    """TF's reference task: ids 1..99, label 1 iff token 7 occurs (balanced)."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for k in range(n):
        seq = list(rng.choice(np.setdiff1d(np.arange(1, 100), [7]), rng.integers(low, high + 1)))
        if k % 2:
            seq[rng.integers(len(seq))] = 7
        seqs.append(seq)
        labels.append(k % 2)
    return seqs, np.array(labels)


def classifier(tmp_path, name="m", **kwargs):
    kwargs.setdefault("units", [8])
    kwargs.setdefault("cell_type", "lstm")
    config = kwargs.pop("config", minirnn.RunConfig(random_seed=0))
    return minirnn.RNNClassifier([kwargs.pop("column", tokens_column())], model_dir=str(tmp_path / name),
                                 config=config, **kwargs)


def repeat_input(seqs, labels, batch_size=32, seed=0):
    return numpy_input_fn({"tokens": seqs}, labels, batch_size=batch_size, num_epochs=None, shuffle=True, seed=seed)


def once_input(seqs, labels=None, batch_size=64):
    return numpy_input_fn({"tokens": seqs}, labels, batch_size=batch_size, shuffle=False)


# ---- validation at construction (TF failed at train time) ------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(rnn_cell_fn=lambda: minirnn.layers.LSTM(4), units=[4]), ValueError, "must not be specified when using rnn_cell_fn"),
    (dict(units=None), ValueError, "units: give the number of units"),
    (dict(units=8, cell_type=minirnn.estimator.USE_DEFAULT), ValueError, r"needs an explicit cell_type.*units=\[8\]"),
    (dict(cell_type="bogus"), ValueError, "cell_type should be"),
    (dict(n_classes=1), ValueError, "n_classes must be > 1"),
    (dict(label_vocabulary="ab"), ValueError, "label_vocabulary should be a list or a tuple"),
    (dict(label_vocabulary=["a", "b", "c"]), ValueError, "label_vocabulary has 3 items, n_classes is 2"),
    (dict(n_classes=3, label_vocabulary=["a", "b"]), ValueError, "label_vocabulary has 2 items"),
    (dict(loss_reduction="none"), ValueError, "Invalid loss_reduction: none"),
    (dict(optimizer="Bogus"), ValueError, "Unsupported optimizer name: Bogus"),
    (dict(optimizer=3), ValueError, "optimizer: expected one of"),
    (dict(return_sequences=True, sequence_mask=3), TypeError, "`sequence_mask` column must be a string"),
    (dict(return_sequences=True, weight_column=fc.numeric_column("w")), TypeError, "weight_column must be a feature name"),
    (dict(column=fc.numeric_column("x")), ValueError, "only sequence_\\* columns belong here"),
    (dict(config="x"), TypeError, "config: expected a minirnn RunConfig"),
])
def test_construction_errors(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        classifier(tmp_path, **kwargs)


def test_empty_sequence_columns_and_bad_head(tmp_path):
    with pytest.raises(ValueError, match="feature_columns must not be empty"):
        minirnn.RNNClassifier([], units=[4], model_dir=str(tmp_path))
    with pytest.raises(TypeError, match="head: expected a minirnn head"):
        minirnn.RNNEstimator("regression", [tokens_column()], units=[4], model_dir=str(tmp_path))


def test_run_config_rules():
    assert minirnn.RunConfig().save_checkpoints_secs == 600
    config = minirnn.RunConfig(save_checkpoints_steps=10)
    assert config.save_checkpoints_secs is None and config.keep_checkpoint_max == 5
    with pytest.raises(ValueError, match="both save_checkpoints_secs and save_checkpoints_steps"):
        minirnn.RunConfig(save_checkpoints_steps=10, save_checkpoints_secs=5)
    assert minirnn.RunConfig(tf_random_seed=3).random_seed == 3


def test_temporary_model_dir_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="minirnn"):
        clf = minirnn.RNNClassifier([tokens_column()], units=[4])
    assert os.path.isdir(clf.model_dir) and "Using temporary folder as model directory" in caplog.text


# ---- train: steps / max_steps / checkpoints -----------------------------------------------------

def test_steps_and_max_steps_semantics_and_kept_checkpoints(tmp_path, caplog):
    seqs, labels = token_data(70)
    config = minirnn.RunConfig(random_seed=0, save_checkpoints_steps=5, keep_checkpoint_max=3)
    clf = classifier(tmp_path, config=config)
    clf.train(repeat_input(seqs, labels), steps=12)
    assert clf.get_variable_value("global_step") == 12
    again = classifier(tmp_path, config=config)            # a new estimator resumes from model_dir
    again.train(repeat_input(seqs, labels), steps=3)
    assert again.get_variable_value("global_step") == 15
    with caplog.at_level(logging.INFO, logger="minirnn"):
        again.train(repeat_input(seqs, labels), max_steps=10)
    assert "Skipping training since max_steps has already saved" in caplog.text
    again.train(repeat_input(seqs, labels), max_steps=20)
    assert again.get_variable_value("global_step") == 20
    again.train(once_input(seqs, labels, batch_size=32))   # 70 examples / 32: three batches, then the end
    assert again.get_variable_value("global_step") == 23
    latest, kept = ckpt.read_index(again.model_dir)
    assert [os.path.basename(p) for p in kept] == ["model.ckpt-15.h5", "model.ckpt-20.h5", "model.ckpt-23.h5"]
    assert sorted(f for f in os.listdir(again.model_dir) if f.endswith(".h5")) == \
        ["model.ckpt-15.h5", "model.ckpt-20.h5", "model.ckpt-23.h5"]
    assert again.latest_checkpoint().endswith("model.ckpt-23.h5")


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0), "Must specify steps > 0, given: 0"),
    (dict(max_steps=-1), "Must specify max_steps > 0, given: -1"),
    (dict(steps=1, max_steps=1), "Can not provide both steps and max_steps."),
])
def test_train_argument_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        classifier(tmp_path).train(lambda: None, **kwargs)


def test_resume_is_bit_identical(tmp_path):
    """train(20) twice == train(40) once, with dropout (RNG state) and Adam (slots, iterations)."""
    seqs, labels = token_data(96)
    batches = [({"tokens": seqs[k:k + 32]}, labels[k:k + 32]) for k in range(0, 96, 32)]

    def stream():                                # deterministic input that continues across calls
        counter = itertools.count()

        def input_fn():
            while True:
                yield batches[next(counter) % len(batches)]
        return input_fn

    def make(name):
        return classifier(tmp_path, name, units=[8, 4], optimizer=Adam(0.01),
                          dropout_keep_probabilities=[0.9, 0.8, 0.7])
    once = make("once")
    once.train(stream(), steps=40)
    twice_input = stream()
    make("twice").train(twice_input, steps=20)
    make("twice").train(twice_input, steps=20)          # a new estimator: everything from the checkpoint
    first = {n: once.get_variable_value(n) for n in once.get_variable_names()}
    second = make("twice")
    assert sorted(first) == second.get_variable_names()
    for name, value in first.items():
        assert np.array_equal(value, second.get_variable_value(name)), name


def test_resume_with_another_model_names_the_difference(tmp_path):
    seqs, labels = token_data(32)
    classifier(tmp_path).train(repeat_input(seqs, labels), steps=1)
    with pytest.raises(ValueError, match=r"different model \(network.units.0: the checkpoint has 8, this estimator 6\)"):
        classifier(tmp_path, units=[6]).train(repeat_input(seqs, labels), steps=1)


def test_bad_batch_keeps_finished_steps(tmp_path):
    seqs, labels = token_data(64)

    def input_fn():
        yield {"tokens": seqs[:32]}, labels[:32]
        yield {"tokens": seqs[32:]}, labels[32:]
        yield {"tokenz": seqs[:32]}, labels[:32]
    clf = classifier(tmp_path, config=minirnn.RunConfig(random_seed=0))
    with pytest.raises(KeyError, match=r"feature 'tokens' is missing; the batch has \['tokenz'\]"):
        clf.train(input_fn)
    assert clf.get_variable_value("global_step") == 2          # saved before the error was raised


def test_nan_loss_stops_without_updating(tmp_path):
    clf = minirnn.RNNEstimator(RegressionHead(), [fc.sequence_numeric_column("x")], units=[4], cell_type="gru",
                               model_dir=str(tmp_path), optimizer=minirnn.optimizers.SGD(1e30))

    def input_fn():
        for _ in range(50):
            yield {"x": [[1.0, 2.0], [3.0]]}, np.array([1e30, -1e30])
    with pytest.raises(FloatingPointError, match="training diverged"):
        clf.train(input_fn)


# ---- checkpoints: crash during save, corruption ------------------------------------------------

CRASH_SCRIPT = """
import os, signal, sys
import numpy as np
import minirnn
from minirnn import checkpoint, feature_column as fc
col = fc.embedding_column(fc.sequence_categorical_column_with_identity("tokens", 100), 8)
clf = minirnn.RNNClassifier([col], units=[8], cell_type="lstm", model_dir=sys.argv[1],
                            config=minirnn.RunConfig(random_seed=0))
data = lambda: iter([({"tokens": [[1, 2, 3], [7, 5]]}, np.array([0, 1]))] * 100)
clf.train(data, steps=5)
import h5py
calls = [0]
original = h5py.Group.create_dataset
def dying(self, *a, **k):
    calls[0] += 1
    if calls[0] == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)      # killed in the middle of writing a checkpoint
    return original(self, *a, **k)
h5py.Group.create_dataset = dying
clf.train(data, steps=5)
"""


@pytest.mark.parametrize("die_at", [1, 4])
def test_killed_during_save_keeps_previous_checkpoint(tmp_path, die_at):
    import subprocess
    import sys
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    model_dir = tmp_path / "m"
    proc = subprocess.run([sys.executable, "-P", str(script), str(model_dir), str(die_at)], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    clf = classifier(tmp_path, "m")
    assert clf.latest_checkpoint().endswith("model.ckpt-5.h5")
    assert clf.get_variable_value("global_step") == 5
    clf.train(lambda: iter([({"tokens": [[1, 2, 3], [7, 5]]}, np.array([0, 1]))] * 3), steps=2)
    assert clf.get_variable_value("global_step") == 7


def test_corrupted_latest_checkpoint_names_the_file_and_the_fallback(tmp_path):
    seqs, labels = token_data(32)
    clf = classifier(tmp_path, config=minirnn.RunConfig(random_seed=0, save_checkpoints_steps=2))
    clf.train(repeat_input(seqs, labels), steps=4)
    latest = clf.latest_checkpoint()
    with open(latest, "r+b") as f:
        f.truncate(os.path.getsize(latest) // 2)
    fresh = classifier(tmp_path)
    with pytest.raises(ckpt.CheckpointError, match=r"model\.ckpt-4\.h5' cannot be read .* truncated or corrupted"
                                                   r"\. Earlier checkpoints: .*model\.ckpt-2\.h5"):
        fresh.evaluate(once_input(seqs, labels))
    earlier = os.path.join(clf.model_dir, "model.ckpt-2.h5")
    assert fresh.evaluate(once_input(seqs, labels), checkpoint_path=earlier)["global_step"] == 2


def test_checkpoint_is_hdf5_with_json_spec(tmp_path):
    import h5py
    seqs, labels = token_data(32)
    clf = classifier(tmp_path)
    clf.train(repeat_input(seqs, labels), steps=1)
    with h5py.File(clf.latest_checkpoint(), "r") as f:
        spec = json.loads(f.attrs["spec"])
        assert f.attrs["format"] == ckpt.FORMAT and json.loads(f.attrs["global_step"]) == 1
    assert spec["sequence_columns"][0]["type"] == "embedding" and spec["network"]["units"] == [8]


# ---- variable names as TF ----------------------------------------------------------------------

def test_variable_names_and_shapes_match_tf(tmp_path):
    seqs, labels = token_data(32)
    clf = classifier(tmp_path, units=[32, 16])
    clf.train(repeat_input(seqs, labels), steps=1)
    shapes = {n: np.shape(clf.get_variable_value(n)) for n in clf.get_variable_names()}
    expected = {
        "global_step": (), "rnn_model/logits/bias": (1,), "rnn_model/logits/kernel": (16, 1),
        "rnn_model/rnn/stacked_rnn_cells/lstm_cell/bias": (128,),
        "rnn_model/rnn/stacked_rnn_cells/lstm_cell/kernel": (8, 128),
        "rnn_model/rnn/stacked_rnn_cells/lstm_cell/recurrent_kernel": (32, 128),
        "rnn_model/rnn/stacked_rnn_cells/lstm_cell_1/bias": (64,),
        "rnn_model/rnn/stacked_rnn_cells/lstm_cell_1/kernel": (32, 64),
        "rnn_model/rnn/stacked_rnn_cells/lstm_cell_1/recurrent_kernel": (16, 64),
        "sequence_features/tokens_embedding/embedding_weights": (100, 8)}
    for name, shape in expected.items():
        assert shapes[name] == shape, name
        if name != "global_step":
            assert shapes[f"training/Adagrad/{name}/accumulator"] == shape
    assert len(shapes) == 2 * len(expected) - 1


def test_context_columns_and_weights(tmp_path):
    seqs, labels = token_data(64)
    context = fc.embedding_column(fc.categorical_column_with_vocabulary_list("c", ["a", "b", "c", "d", "e"]), 3)
    clf = minirnn.RNNClassifier([tokens_column()], [context], units=[8], cell_type="lstm", weight_column="w",
                                model_dir=str(tmp_path), config=minirnn.RunConfig(random_seed=0))
    c = np.array(list("abcde") * 13)[:64]
    w = np.linspace(0.5, 2.0, 64)
    clf.train(numpy_input_fn({"tokens": seqs, "c": c, "w": w}, labels, batch_size=32, shuffle=False), steps=2)
    assert clf.get_variable_value("dense_features/c_embedding/embedding_weights").shape == (5, 3)
    assert clf.get_variable_value("rnn_model/rnn/lstm_cell/kernel").shape == (8 + 3, 32)
    with pytest.raises(KeyError, match="weight_column: feature 'w' is not in the batch"):
        clf.evaluate(numpy_input_fn({"tokens": seqs, "c": c}, labels, batch_size=32, shuffle=False))


# ---- evaluate ----------------------------------------------------------------------------------

def test_evaluate_keys_and_eval_dir(tmp_path):
    seqs, labels = token_data(64)
    clf = classifier(tmp_path)
    clf.train(repeat_input(seqs, labels), steps=3)
    metrics = clf.evaluate(once_input(seqs, labels, batch_size=48), name="val")
    assert sorted(metrics) == ["accuracy", "accuracy_baseline", "auc", "auc_precision_recall", "average_loss",
                               "global_step", "label/mean", "loss", "precision", "prediction/mean", "recall"]
    assert metrics["global_step"] == 3 and isinstance(metrics["global_step"], np.int64)
    assert all(isinstance(v, np.float32) for k, v in metrics.items() if k != "global_step")
    with open(os.path.join(clf.eval_dir("val"), "metrics.jsonl")) as f:
        assert json.loads(f.readline())["global_step"] == 3
    assert clf.eval_dir() == os.path.join(clf.model_dir, "eval")
    with pytest.raises(ValueError, match="Must specify steps > 0, given: 0"):
        clf.evaluate(once_input(seqs, labels), steps=0)
    # evaluate(steps=1) reads one batch only
    assert clf.evaluate(once_input(seqs, labels, batch_size=16), steps=1)["label/mean"] == np.float32(labels[:16].mean())


def test_evaluate_without_checkpoint_uses_initial_weights(tmp_path, caplog):
    seqs, labels = token_data(16)
    with caplog.at_level(logging.WARNING, logger="minirnn"):
        metrics = classifier(tmp_path).evaluate(once_input(seqs, labels))
    assert metrics["global_step"] == 0 and "no checkpoint" in caplog.text


def test_multiclass_and_regression_metric_keys(tmp_path):
    seqs, labels = token_data(32)
    multi = classifier(tmp_path, "multi", n_classes=3, label_vocabulary=["x", "y", "z"])
    names = np.array(["x", "y", "z"])[labels]
    multi.train(repeat_input(seqs, names), steps=1)
    assert sorted(multi.evaluate(once_input(seqs, names))) == ["accuracy", "average_loss", "global_step", "loss"]
    with pytest.raises(ValueError, match="labels: 'w' is not in label_vocabulary"):
        multi.train(repeat_input(seqs, np.array(["w"] * 32)), steps=1)
    reg = minirnn.RNNEstimator(RegressionHead(label_dimension=2), [tokens_column()], units=[4], cell_type="gru",
                               model_dir=str(tmp_path / "reg"))
    y = np.stack([labels, 1.0 - labels], axis=1).astype(float)
    reg.train(repeat_input(seqs, y), steps=1)
    assert sorted(reg.evaluate(once_input(seqs, y))) == ["average_loss", "global_step", "label/mean", "loss",
                                                         "prediction/mean"]
    prediction = next(reg.predict(once_input(seqs)))
    assert sorted(prediction) == ["predictions"] and prediction["predictions"].shape == (2,)


# ---- predict -----------------------------------------------------------------------------------

def test_binary_prediction_keys_and_shapes(tmp_path):
    seqs, labels = token_data(32)
    clf = classifier(tmp_path)
    clf.train(repeat_input(seqs, labels), steps=2)
    p = next(clf.predict(once_input(seqs[:3])))
    expected = {"logits": (np.float32, (1,)), "logistic": (np.float32, (1,)), "probabilities": (np.float32, (2,)),
                "class_ids": (np.int64, (1,)), "classes": (object, (1,)), "all_class_ids": (np.int32, (2,)),
                "all_classes": (object, (2,))}
    assert sorted(p) == sorted(expected)
    for key, (dtype, shape) in expected.items():
        assert p[key].dtype == dtype and p[key].shape == shape, key
    assert p["classes"][0] == (b"1" if p["logits"][0] > 0 else b"0")
    assert list(p["all_classes"]) == [b"0", b"1"]
    np.testing.assert_allclose(p["probabilities"].sum(), 1.0, rtol=1e-6)
    batch = next(clf.predict(once_input(seqs[:3]), predict_keys=["probabilities", "class_ids"],
                             yield_single_examples=False))
    assert sorted(batch) == ["class_ids", "probabilities"] and batch["probabilities"].shape == (3, 2)
    assert batch["class_ids"].shape == (3, 1)
    with pytest.raises(ValueError, match=r"predict_keys: \['bogus'\] are not predictions"):
        next(clf.predict(once_input(seqs[:3]), predict_keys=["bogus"]))
    proba = clf.predict_proba(once_input(seqs[:5], batch_size=2))
    assert proba.shape == (5, 2)
    np.testing.assert_allclose(proba[0], p["probabilities"])


def test_predict_keeps_the_model_in_memory(tmp_path, monkeypatch):
    seqs, labels = token_data(32)
    clf = classifier(tmp_path)
    clf.train(repeat_input(seqs, labels), steps=1)
    reads = []
    original = ckpt.read
    monkeypatch.setattr(ckpt, "read", lambda *a, **k: reads.append(a) or original(*a, **k))
    for _ in range(3):
        list(clf.predict(once_input(seqs[:2])))
    assert reads == []
    other = classifier(tmp_path)              # another process-like writer makes a newer checkpoint
    other.train(repeat_input(seqs, labels), steps=1)
    reads.clear()
    list(clf.predict(once_input(seqs[:2])))
    list(clf.predict(once_input(seqs[:2])))
    assert len(reads) == 1 and reads[0][0].endswith("model.ckpt-2.h5") and clf._session.state.global_step == 2


def test_return_sequences_predictions_mask_and_trim(tmp_path):
    seqs = [[1, 2, 3], [4, 5, 6, 7, 8, 9]]
    step_labels = [[0, 1, 0], [1, 1, 0, 0, 1, 0]]
    clf = classifier(tmp_path, return_sequences=True)

    def input_fn():
        return {"tokens": seqs}, step_labels
    clf.train(input_fn, steps=2)
    padded = list(clf.predict(input_fn))
    assert padded[0]["logits"].shape == (6, 1) and padded[0]["probabilities"].shape == (6, 2)
    assert list(padded[0]["sequence_mask"]) == [True, True, True, False, False, False]
    assert padded[0]["all_classes"].shape == (2,)
    trimmed = list(clf.predict(input_fn, trim_sequences=True))
    assert trimmed[0]["logits"].shape == (3, 1) and trimmed[1]["class_ids"].shape == (6, 1)
    np.testing.assert_array_equal(trimmed[0]["logits"], padded[0]["logits"][:3])
    assert sorted(clf.evaluate(input_fn)) == sorted(classifier(tmp_path, "b").evaluate(
        lambda: ({"tokens": seqs}, np.array([0, 1]))))
    with pytest.raises(ValueError, match="labels: example 0 has 2 labels but its sequence has 3 steps"):
        clf.train(lambda: ({"tokens": seqs}, [[0, 1], [1, 1, 0, 0, 1, 0]]), steps=1)


# ---- export ------------------------------------------------------------------------------------

def test_export_round_trip_and_signatures(tmp_path):
    seqs, labels = token_data(64)
    clf = classifier(tmp_path)
    with pytest.raises(NotFittedError, match="Couldn't find trained model"):
        clf.export_saved_model(str(tmp_path / "export"))
    clf.train(repeat_input(seqs, labels), steps=3)
    path = clf.export_saved_model(str(tmp_path / "export"), assets_extra={"notes/readme.txt": __file__})
    assert isinstance(path, bytes) and os.path.basename(path).isdigit()
    assert os.path.isfile(os.path.join(path, b"assets.extra", b"notes", b"readme.txt"))
    model = minirnn.load_exported(path)
    assert model.signatures == ["classification", "predict", "regression", "serving_default"]
    expected = next(clf.predict(once_input(seqs[:4]), yield_single_examples=False))
    got = model.predict({"tokens": seqs[:4]})
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    served = model.signature("serving_default")([{"tokens": s} for s in seqs[:4]])
    assert sorted(served) == ["classes", "scores"]
    np.testing.assert_array_equal(served["scores"], expected["probabilities"])
    np.testing.assert_array_equal(model.regress({"tokens": seqs[:4]})["outputs"], expected["logistic"])
    raw = clf.export_saved_model(str(tmp_path / "export"),
                                 minirnn.export.build_raw_serving_input_receiver_fn({"tokens": None}))
    assert minirnn.load_exported(raw).signatures == ["predict", "serving_default"]
    with pytest.raises(KeyError, match="signature 'classification' not in this export"):
        minirnn.load_exported(raw).classify({"tokens": seqs[:1]})
    with pytest.raises(ValueError, match="this export has no 'eval' mode"):
        model.evaluate({"tokens": seqs}, labels)
    both = minirnn.load_exported(clf.experimental_export_all_saved_models(str(tmp_path / "export"),
                                                                          {"infer": None, "eval": None}))
    metrics = both.evaluate({"tokens": seqs}, labels)
    expected_metrics = clf.evaluate(once_input(seqs, labels, batch_size=64))
    for key in ("accuracy", "auc", "average_loss", "precision", "recall"):
        assert metrics[key] == pytest.approx(expected_metrics[key], rel=1e-6), key
    with pytest.raises(ValueError, match="mode 'training' not exported"):
        clf.experimental_export_all_saved_models(str(tmp_path / "export"), {"training": None})


def test_export_regression_and_vocabulary_file_and_normalizer(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nb\nc\n")
    words = fc.embedding_column(fc.sequence_categorical_column_with_vocabulary_file("w", str(vocab)), 4)

    def scale(x):
        return x / 10.0
    numbers = fc.sequence_numeric_column("x", normalizer_fn=scale)
    est = minirnn.RNNEstimator(RegressionHead(), [words, numbers], units=[4], cell_type="simple_rnn",
                               model_dir=str(tmp_path / "m"))
    data = {"w": [["a", "b"], ["c"]], "x": [[1.0, 2.0], [3.0]]}
    est.train(lambda: (data, np.array([0.5, 1.5])), steps=2)
    path = est.export_saved_model(str(tmp_path / "export"))
    assert os.listdir(os.path.join(path, b"assets")) == [b"vocab.txt"]
    with pytest.raises(ValueError, match="was normalised by .*scale.*custom_objects"):
        minirnn.load_exported(path)
    name = f"{scale.__module__}.{scale.__qualname__}"
    model = minirnn.load_exported(path, custom_objects={name: scale})
    assert model.signatures == ["predict", "regression", "serving_default"]
    np.testing.assert_array_equal(model.regress(data)["outputs"],
                                  next(est.predict(lambda: data, yield_single_examples=False))["predictions"])


# ---- hooks, warm start, learning ---------------------------------------------------------------

def test_hooks(tmp_path, caplog):
    seqs, labels = token_data(64)
    clf = classifier(tmp_path, config=minirnn.RunConfig(random_seed=0, log_step_count_steps=5))
    with caplog.at_level(logging.INFO, logger="minirnn"):
        clf.train(repeat_input(seqs, labels), hooks=[StopAtStepHook(num_steps=7)])
    assert clf.get_variable_value("global_step") == 7
    assert "step = 5" in caplog.text
    stopper = EarlyStoppingHook(once_input(seqs, labels), metric="loss", max_steps_without_improvement=4,
                                every_n_steps=2, min_delta=10.0)      # nothing improves by 10: stop 4 steps on
    clf.train(repeat_input(seqs, labels), hooks=[stopper], steps=10 ** 6)
    assert stopper.best_step == 8 and clf.get_variable_value("global_step") == 12
    with pytest.raises(TypeError, match="hooks: expected SessionRunHook"):
        clf.train(repeat_input(seqs, labels), hooks=[object()], steps=1)


def test_warm_start_copies_matching_weights(tmp_path):
    seqs, labels = token_data(32)
    source = classifier(tmp_path, "source")
    source.train(repeat_input(seqs, labels), steps=3)
    target = classifier(tmp_path, "target", warm_start_from=minirnn.WarmStartSettings(
        source.model_dir, vars_to_warm_start="sequence_features/.*"))
    target.train(repeat_input(seqs, labels), steps=1)
    # the embedding started from the source's; the LSTM did not
    name = "sequence_features/tokens_embedding/embedding_weights"
    moved = target.get_variable_value(name) - source.get_variable_value(name)
    assert np.abs(moved).max() < 0.1
    fresh = classifier(tmp_path, "fresh")
    fresh.train(repeat_input(seqs, labels), steps=1)
    assert not np.allclose(fresh.get_variable_value(name), target.get_variable_value(name))


def test_classifier_learns_the_token_task(tmp_path):
    seqs, labels = token_data(512, seed=1)
    test_seqs, test_labels = token_data(256, seed=2)
    clf = classifier(tmp_path, units=[16], optimizer=Adam(0.01))
    clf.train(repeat_input(seqs, labels), steps=300)
    assert clf.evaluate(once_input(test_seqs, test_labels))["accuracy"] > 0.95


def test_rnn_cell_fn_mixed_stack(tmp_path):
    seqs, labels = token_data(32)
    clf = minirnn.RNNClassifier([tokens_column()], rnn_cell_fn=lambda: [minirnn.layers.GRU(6, reset_after=False),
                                                                     minirnn.layers.LSTM(4)],
                                model_dir=str(tmp_path))
    clf.train(repeat_input(seqs, labels), steps=1)
    names = clf.get_variable_names()
    assert "rnn_model/rnn/stacked_rnn_cells/gru_cell/kernel" in names
    assert clf.get_variable_value("rnn_model/rnn/stacked_rnn_cells/lstm_cell/kernel").shape == (6, 16)
    assert clf.get_variable_value("rnn_model/rnn/stacked_rnn_cells/gru_cell/bias").shape == (18,)


def test_evaluate_and_predict_hooks_see_batches_and_may_stop(tmp_path):
    seqs, labels = token_data(64)
    clf = classifier(tmp_path)
    clf.train(repeat_input(seqs, labels), steps=1)

    class Recorder(minirnn.estimator.SessionRunHook):
        def __init__(self, stop_at):
            self.events, self.stop_at = [], stop_at

        def begin(self, estimator):
            self.events.append("begin")

        def after_step(self, step, loss):
            self.events.append((step, loss is None))
            return step >= self.stop_at

        def end(self, estimator):
            self.events.append("end")
    hook = Recorder(stop_at=2)
    clf.evaluate(once_input(seqs, labels, batch_size=16), hooks=[hook])
    assert hook.events == ["begin", (1, False), (2, False), "end"]
    hook = Recorder(stop_at=1)
    out = list(clf.predict(once_input(seqs, batch_size=16), hooks=[hook], yield_single_examples=False))
    assert len(out) == 1 and hook.events == ["begin", (1, True), "end"]


def test_quiet_by_default_and_progress_bar_on_a_terminal(tmp_path, capsys, monkeypatch):
    seqs, labels = token_data(32)
    clf = classifier(tmp_path)
    clf.train(repeat_input(seqs, labels), steps=2)
    assert capsys.readouterr() == ("", "")                    # a library call prints nothing
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    clf.train(repeat_input(seqs, labels), steps=2)
    assert "step 3/4  loss" in capsys.readouterr().err
    monkeypatch.setenv("MINIRNN_PROGRESS", "0")
    clf.train(repeat_input(seqs, labels), steps=2)
    assert capsys.readouterr().err == ""


def test_an_unseeded_shuffle_takes_the_estimators_seed():
    """TF's graph-level seed drove unseeded shuffles: numpy_input_fn(shuffle=True) without a seed
    takes RunConfig.random_seed, so a seeded estimator trains the same twice."""
    from minirnn.inputs import numpy_input_fn
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 4, 1)).astype(np.float32)
    y = (x[:, -1, 0] > 0).astype(int)
    seen = []

    def trained(seed, input_seed=None):
        clf = minirnn.RNNClassifier([fc.sequence_numeric_column("x")], units=[3],
                                    config=minirnn.RunConfig(random_seed=seed))
        shuffled = numpy_input_fn({"x": x}, y, batch_size=8, num_epochs=None, shuffle=True, seed=input_seed)
        first = []

        def recording():
            batches = shuffled()
            features, labels = next(batches)
            first.append(features["x"][:, 0, 0].copy())
            yield features, labels
            yield from batches
        clf.train(recording, steps=6)
        seen.append(first[0])
        return clf.get_variable_value("rnn_model/logits/kernel")

    np.testing.assert_array_equal(trained(0), trained(0))
    np.testing.assert_array_equal(seen[0], seen[1])
    trained(5)
    assert not np.array_equal(seen[0], seen[2])                # another estimator seed: another order
    trained(0, input_seed=5)
    trained(7, input_seed=5)
    np.testing.assert_array_equal(seen[3], seen[4])            # the input_fn's own seed wins
    assert not np.array_equal(seen[0], seen[3])
