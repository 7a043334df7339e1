"""The kernel launches of device training and prediction, recorded under Numba's CUDA simulator,
against the kernel modules' ``launched_kernels(dtype)`` lists (which ``test_cuda_ptx.py`` compiles
for real GPUs): every kernel launched, with the argument types it is launched with, must be listed.
Inference (``DeviceNetwork``, the estimators' evaluate and predict with ``device='cuda'``, an
exported model loaded with ``device='cuda'``) must launch forward kernels only: no backward step,
no gradient reduction, no optimizer update.

Not collected on its own: ``test_cuda_ptx.py`` runs it in a subprocess with
``NUMBA_ENABLE_CUDASIM=1`` (see ``_cuda_subprocess.py``).
"""

import importlib
import json
import sys

import numpy as np
import pytest

from numba import config

if not config.ENABLE_CUDASIM:
    pytest.skip("records launches under NUMBA_ENABLE_CUDASIM=1 only", allow_module_level=True)
sys.setswitchinterval(1e-5)                       # the simulator's threads meet at every barrier

import numba  # noqa: E402
from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray  # noqa: E402
from numba.cuda.simulator.kernel import FakeCUDAKernel  # noqa: E402

from minirnn import feature_column as fc  # noqa: E402
from minirnn import optimizers as O  # noqa: E402
from minirnn.cuda import DeviceNetwork, DeviceTrainer  # noqa: E402
from minirnn.heads import MultiClassHead  # noqa: E402
from minirnn.kernels import cuda_common as cc  # noqa: E402
from minirnn.network import Network  # noqa: E402
from minirnn.state import TrainState  # noqa: E402
from minirnn.step import train_step  # noqa: E402

MODULES = ("cuda_common", "simple_rnn_cuda", "lstm_cuda", "gru_cuda", "updates_cuda")

FEATURES = {"tok": [[1, 2, 3, 2], [4, 5], [11]],
            "x": [np.arange(8.0).reshape(4, 2) / 8, np.ones((2, 2)), -np.ones((1, 2))]}
LABELS = np.array([0, 2, 1])


def _key(fn):
    return f"{fn.__module__}.{fn.__qualname__}"


def _type(arg):
    return numba.typeof(arg._ary if isinstance(arg, FakeCUDAArray) else arg)


@pytest.fixture
def launches(monkeypatch):
    """Record (kernel, argument types) of every kernel launch (not device-function calls)."""
    seen = set()
    real_call = FakeCUDAKernel.__call__

    def call(self, *args):
        if not self._device:
            seen.add((_key(self.fn), tuple(_type(a) for a in args)))
        return real_call(self, *args)

    monkeypatch.setattr(FakeCUDAKernel, "__call__", call)
    old = (cc.STEP_TILE, cc.MATMUL_TILE, cc.MATMUL_K, cc.MATMUL_RB)
    cc.STEP_TILE, cc.MATMUL_TILE, cc.MATMUL_K, cc.MATMUL_RB = 4, 8, 4, 2     # types do not depend on them
    yield seen
    cc.STEP_TILE, cc.MATMUL_TILE, cc.MATMUL_K, cc.MATMUL_RB = old


def _listed(dtype):
    listed = set()
    for name in MODULES:
        module = importlib.import_module(f"minirnn.kernels.{name}")
        listed |= {(_key(kernel.fn), tuple(types)) for kernel, types in module.launched_kernels(dtype)}
    return listed


def _assert_listed(seen, dtype):
    missing = seen - _listed(dtype)
    assert not missing, "launched but not in any launched_kernels(%s):\n%s" % (
        dtype, "\n".join(f"{name}{types}" for name, types in sorted(missing, key=str)))


TRAINING_ONLY = ("backward", "updates_cuda.", "col_sum", "_transpose")    # BPTT, dbias, U^T, the optimizer


def _training_only(seen):
    return sorted({name for name, _ in seen if any(part in name for part in TRAINING_ONLY)})


def _train(seq_cell, units, dtype, optimizer, embedding=True, steps=1):
    sequence = [fc.sequence_numeric_column("x", shape=(2,))]
    if embedding:                                # host gradients besides the device ones
        sequence.insert(0, fc.embedding_column(fc.sequence_categorical_column_with_identity("tok", 12), 2))
    options = [{"reset_after": False} if c == "gru_v1" else None for c in seq_cell]
    cells = ["gru" if c == "gru_v1" else c for c in seq_cell]
    net = Network(sequence, units=units, cell_type=cells, cell_options=options, logits_dimension=3, seed=1,
                  dropout_keep_probabilities=[0.9] + [0.8] * len(units), dtype=dtype)
    trainer = DeviceTrainer(net, optimizer)
    state = TrainState(net, optimizer)
    for _ in range(steps):
        train_step(state, MultiClassHead(3), FEATURES, LABELS, device=trainer)
    trainer.pull()
    x, mask = net.sequence.forward(FEATURES)
    trainer.model.forward(x, mask, training=False)                  # prediction


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_launch_is_listed(launches, dtype):
    _train(["simple_rnn", "lstm", "gru", "gru_v1"], [3, 2, 3, 2], dtype, O.Adam(0.01, clipnorm=1.0))
    for optimizer, embedding in [(O.SGD(0.1, global_clipnorm=1.0), False), (O.SGD(0.1, global_clipnorm=1.0), True),
                                 (O.Momentum(0.1, use_nesterov=True), False), (O.Adagrad(0.1), False),
                                 (O.RMSProp(0.01, momentum=0.5, centered=True), False), (O.Ftrl(0.1), False)]:
        _train(["simple_rnn"], [2], dtype, optimizer, embedding)
    _assert_listed(launches, dtype)
    trained = _training_only(launches)           # what the inference tests look for does exist
    assert all(any(part in name for name in trained) for part in TRAINING_ONLY), trained


# ---- inference ------------------------------------------------------------------------------

def _check_inference(seen, dtype):
    assert seen, "nothing was launched: inference did not run on the device"
    _assert_listed(seen, dtype)
    assert not _training_only(seen), f"inference launched training kernels: {_training_only(seen)}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inference_launches_are_listed_and_forward_only(launches, dtype):
    sequence = [fc.embedding_column(fc.sequence_categorical_column_with_identity("tok", 12), 2),
                fc.sequence_numeric_column("x", shape=(2,))]
    for return_sequences in (False, True):
        net = Network(sequence, units=[3, 2, 3, 2], cell_type=["simple_rnn", "lstm", "gru", "gru"],
                      cell_options=[None, None, None, {"reset_after": False}], logits_dimension=3, seed=1,
                      dropout_keep_probabilities=[0.9] * 5, return_sequences=return_sequences, dtype=dtype)
        on_device = DeviceNetwork(net)
        on_device.forward(FEATURES)
        states = [[np.ones((3, n), dtype)] * k for n, k in zip([3, 2, 3, 2], [1, 2, 1, 1])]
        on_device.forward(FEATURES, initial_states=states)
        assert on_device.device_model._grads is None               # no gradient buffers allocated
    _check_inference(launches, dtype)


def test_estimator_and_export_inference_launches_are_forward_only(launches, tmp_path):
    import minirnn
    from minirnn.export import load_exported
    from minirnn.inputs import numpy_input_fn
    x = FEATURES["x"]

    def estimator(device):
        return minirnn.RNNClassifier([fc.sequence_numeric_column("x", shape=2)], n_classes=3, units=[2],
                                     cell_type="lstm", model_dir=tmp_path / "m",
                                     config=minirnn.RunConfig(random_seed=0, device=device, save_summary_steps=None))
    cpu = estimator("cpu")
    cpu.train(numpy_input_fn({"x": x}, LABELS, shuffle=False, num_epochs=None), steps=1)
    path = cpu.export_saved_model(str(tmp_path / "export"))
    assert not launches                                            # trained on the CPU
    gpu = estimator("cuda")
    gpu.evaluate(numpy_input_fn({"x": x}, LABELS, shuffle=False))
    list(gpu.predict(numpy_input_fn({"x": x}, shuffle=False)))
    assert gpu._session._on_device[2].device_model._grads is None
    load_exported(path, device="cuda").predict({"x": x})
    _check_inference(launches, "float32")


def test_the_command_lines_device_flag_runs_train_evaluate_and_predict_on_the_device(launches, tmp_path, capsys):
    from minirnn import cli
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 5, 2)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x, lengths=rng.integers(2, 6, 12), y=(x[:, 0, 0] > 0).astype(np.int64))
    data = str(tmp_path / "data.npz")

    def run(*args):
        assert cli.main([*args, "-q"]) == 0
        return capsys.readouterr().out

    outputs = {}
    for device in ("cpu", "cuda"):
        launches.clear()
        model_dir = str(tmp_path / device)
        run("train", data, "--model-dir", model_dir, "--steps", "2", "--units", "3", "--device", device)
        trained = set(launches)
        launches.clear()
        metrics = json.loads(run("evaluate", data, "--model-dir", model_dir, "--device", device))
        predicted = run("predict", data, "--model-dir", model_dir, "--output-format", "jsonl", "--device", device)
        if device == "cpu":
            assert not trained and not launches                    # the CPU flag launches nothing
        else:
            assert any("backward" in name for name, _ in trained) and _training_only(trained)
            _check_inference(launches, "float32")                  # evaluate and predict: forward kernels only
        outputs[device] = metrics, [json.loads(line) for line in predicted.splitlines()]
    (cpu_metrics, cpu_rows), (gpu_metrics, gpu_rows) = outputs["cpu"], outputs["cuda"]
    assert cpu_metrics.keys() == gpu_metrics.keys()
    assert gpu_metrics["loss"] == pytest.approx(cpu_metrics["loss"], abs=1e-4)
    for cpu_row, gpu_row in zip(cpu_rows, gpu_rows, strict=True):
        assert cpu_row["class"] == gpu_row["class"]
        assert gpu_row["probabilities"] == pytest.approx(cpu_row["probabilities"], abs=1e-4)
