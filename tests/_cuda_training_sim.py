"""The device training path (``minirnn.cuda``) against CPU training, and the device optimizer
updates against ``kernels/updates.py``.

Not collected on its own: ``test_cuda_training.py`` runs it in a subprocess with
``NUMBA_ENABLE_CUDASIM=1`` (see ``_cuda_subprocess.py``); on a GPU machine it also runs directly.
"""

import copy
import logging
import sys

import numpy as np
import pytest

from numba import config

if not config.ENABLE_CUDASIM:
    from numba import cuda
    if not cuda.is_available():
        pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 or a CUDA GPU", allow_module_level=True)
else:
    sys.setswitchinterval(1e-5)                   # the simulator's threads meet at every barrier

from numba import cuda  # noqa: E402

from minirnn import feature_column as fc  # noqa: E402
from minirnn import optimizers as O  # noqa: E402
from minirnn.cuda import DeviceModel, DeviceTrainer, select_device  # noqa: E402
from minirnn.heads import BinaryClassHead, MultiClassHead  # noqa: E402
from minirnn.state import TrainState  # noqa: E402
from minirnn.step import train_step  # noqa: E402
from minirnn.kernels import cuda_common as cc, updates, updates_cuda  # noqa: E402
from minirnn.model import RNNModel  # noqa: E402
from minirnn.network import Network  # noqa: E402


@pytest.fixture(autouse=True)
def small_blocks():
    old = (cc.STEP_TILE, cc.MATMUL_TILE, cc.MATMUL_K, cc.MATMUL_RB)
    cc.STEP_TILE, cc.MATMUL_TILE, cc.MATMUL_K, cc.MATMUL_RB = 4, 8, 4, 2
    yield
    cc.STEP_TILE, cc.MATMUL_TILE, cc.MATMUL_K, cc.MATMUL_RB = old


# ---- select_device --------------------------------------------------------------------------

def test_select_device_rules_under_the_simulator(caplog):
    assert select_device("cpu") == "cpu"
    assert select_device("CUDA") == "cuda"             # asked for explicitly: the simulator counts
    with caplog.at_level(logging.INFO, logger="minirnn.cuda"):
        assert select_device("auto") == "cpu"           # never for 'auto'
    assert len([r for r in caplog.records if "training on the CPU" in r.getMessage()]) == 1
    for bad in ("gpu", None, 1):
        with pytest.raises(ValueError, match="device"):
            select_device(bad)


# ---- optimizer updates ----------------------------------------------------------------------

RULE_CASES = [
    ("sgd", (), (0.1,)),
    ("momentum", ("accum",), (0.1, 0.9, False)),
    ("momentum", ("accum",), (0.1, 0.9, True)),
    ("adagrad", ("accum",), (0.1, 1e-7)),
    ("adam", ("m", "v"), (0.01, 0.9, 0.999, 1e-7)),
    ("rmsprop", ("ms", "mg", "mom"), (0.01, 0.9, 0.0, 1e-7, False)),
    ("rmsprop", ("ms", "mg", "mom"), (0.01, 0.9, 0.5, 1e-7, True)),
    ("ftrl", ("accum", "linear"), (0.1, -0.5, 0.01, 0.02, 0.1)),
]


@pytest.mark.parametrize("rule, slot_names, hyper", RULE_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(RULE_CASES)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_update_kernels_match_the_host_rules(rule, slot_names, hyper, dtype):
    rng = np.random.default_rng(0)
    n = 300                                             # more than one block of 256 threads
    w = rng.standard_normal(n).astype(dtype)
    slots = [np.abs(rng.standard_normal(n)).astype(dtype) + dtype(0.1) for _ in slot_names]
    if "mg" in slot_names:                              # keep ms - mg^2 positive, as real training does
        slots[slot_names.index("mg")][:] = 0
    w_d, slots_d = cuda.to_device(w), [cuda.to_device(s) for s in slots]
    scales = cuda.to_device(np.array([1.0, 0.5], dtype=dtype))
    cast = [dtype(h) if isinstance(h, float) else h for h in hyper]
    for step in range(3):
        g = rng.standard_normal(n).astype(dtype)
        updates.in_place(rule)(w, g * dtype(0.5), *slots, *cast)          # the host rule, gradient halved
        updates_cuda.launch(rule, w_d, cuda.to_device(g), scales, 1, *slots_d, *cast)   # scales[1] = 0.5
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(w_d.copy_to_host(), w, rtol=tol, atol=tol)
    for s, s_d in zip(slots, slots_d):
        np.testing.assert_allclose(s_d.copy_to_host(), s, rtol=tol, atol=tol)


@pytest.mark.parametrize("per_tensor", [True, False])
def test_device_clipping_matches_tf_clipping(per_tensor):
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(s) * f for s, f in (((4, 3), 3.0), ((5,), 0.1), ((2, 2), 10.0))]
    sumsq = cc.zeros((3,), np.float64)
    for k, g in enumerate(grads):
        updates_cuda.sum_squares(cuda.to_device(g.reshape(-1)), sumsq, k)
    scales = cuda.to_device(np.ones(3))
    updates_cuda.clip_scales(sumsq, scales, 2.0, per_tensor)
    want = O.clip_by_norm(grads, 2.0) if per_tensor else O.clip_by_global_norm(grads, 2.0)
    for g, s, w in zip(grads, scales.copy_to_host(), want):
        np.testing.assert_allclose(g * s, w, rtol=1e-12)


# ---- the model on the device ------------------------------------------------------------------

@pytest.mark.parametrize("return_sequences", [False, True])
def test_device_model_forward_backward_match_the_cpu(return_sequences):
    rng = np.random.default_rng(2)
    B, T, Ds, Dc = 3, 4, 2, 1
    kwargs = dict(units=[5, 3], cell_type=["lstm", "gru"], logits_dimension=2, return_sequences=return_sequences,
                  dropout_keep_probabilities=[0.8, 1.0, 0.7], seed=4, dtype="float64",
                  cell_options=[None, {"reset_after": False}])
    cpu, dev_host = RNNModel(**kwargs), RNNModel(**kwargs)
    cpu.build(Ds, Dc)
    dev_host.build(Ds, Dc)
    device = DeviceModel(dev_host)
    seq, ctx = rng.standard_normal((B, T, Ds)), rng.standard_normal((B, Dc))
    mask = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0]], dtype=bool)     # gaps, an empty row
    init = [[rng.standard_normal((B, 5)), rng.standard_normal((B, 5))], [rng.standard_normal((B, 3))]]
    logits = cpu.forward(seq, mask, ctx, training=True, initial_states=init)
    logits_d = device.forward(seq, mask, ctx, training=True, initial_states=init)
    np.testing.assert_allclose(logits_d, logits, rtol=1e-12, atol=1e-12)
    for states, states_d in zip(cpu.final_states, device.final_states()):
        for s, s_d in zip(states, states_d):
            np.testing.assert_allclose(s_d, s, rtol=1e-12, atol=1e-12)
    d_logits = rng.standard_normal(logits.shape)
    cpu.zero_grads()
    d_seq, d_ctx = cpu.backward(d_logits, need_input_grad=True)
    d_seq_d, d_ctx_d = device.backward(d_logits, need_input_grad=True)
    np.testing.assert_allclose(d_seq_d, d_seq, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(d_ctx_d, d_ctx, rtol=1e-11, atol=1e-12)
    for name, g, g_d in zip(cpu.param_names(), cpu.grads(), device.grads()):
        np.testing.assert_allclose(g_d.copy_to_host(), g, rtol=1e-11, atol=1e-12, err_msg=name)


def test_device_model_refuses_bad_inputs():
    model = RNNModel(4, "gru", seed=0)
    model.build(2)
    device = DeviceModel(model)
    x = np.zeros((2, 3, 2), np.float32)
    with pytest.raises(TypeError, match="float32"):
        device.forward(x.astype(np.float64), None)
    with pytest.raises(ValueError, match="features"):
        device.forward(np.zeros((2, 3, 5), np.float32), None)
    with pytest.raises(ValueError, match="mask"):
        device.forward(x, np.ones((2, 2), bool))
    with pytest.raises(RuntimeError, match="forward"):
        device.backward(np.zeros((2, 1), np.float32))
    device.forward(x, None, training=True)
    with pytest.raises(ValueError, match="d_logits"):
        device.backward(np.zeros((2, 3), np.float32))


# ---- training steps ---------------------------------------------------------------------------

FEATURES = {"tok": [[1, 2, 3, 2], [4, 5], [11]],
            "x": [np.arange(8.0).reshape(4, 2) / 8, np.ones((2, 2)), -np.ones((1, 2))],
            "c": np.array(["a", "c", "b"]), "n": np.array([0.5, -1.0, 2.0])}
LABELS = np.array([0, 2, 1])


def _network(cell_type, dtype):
    sequence = [fc.embedding_column(fc.sequence_categorical_column_with_identity("tok", 12), 3, combiner="sum"),
                fc.sequence_numeric_column("x", shape=(2,))]
    context = [fc.embedding_column(fc.categorical_column_with_vocabulary_list("c", ["a", "b", "c"]), 2),
               fc.numeric_column("n")]
    return Network(sequence, context, units=[4, 3], cell_type=cell_type, logits_dimension=3, seed=7,
                   dropout_keep_probabilities=[0.9, 0.8, 1.0], dtype=dtype)


def _cpu_step(net, optimizer, head):
    logits, mask = net.forward(FEATURES, training=True)
    result = head.loss(logits, LABELS)
    grads = net.backward(result.d_logits)
    keep = net.trainable()
    optimizer.apply([p for p, k in zip(net.params(), keep) if k], [g for g, k in zip(grads, keep) if k])
    return result.loss


@pytest.mark.parametrize("cell_type, optimizer, dtype, tol", [
    ("lstm", O.Adam(0.05, clipnorm=0.5), "float64", 1e-10),
    ("gru", O.Adagrad(0.1, global_clipnorm=1.0), "float64", 1e-10),
    ("simple_rnn", O.SGD(0.1), "float32", 2e-5),
    ("gru", O.get("Adam"), "float32", 2e-5),                 # TF's estimator defaults: lr 0.05, clipnorm 5
])
def test_device_training_steps_match_cpu_training(cell_type, optimizer, dtype, tol):
    head = MultiClassHead(3)
    net_cpu, net_dev = _network(cell_type, dtype), _network(cell_type, dtype)
    opt_cpu, opt_dev = copy.deepcopy(optimizer), copy.deepcopy(optimizer)
    trainer = DeviceTrainer(net_dev, opt_dev)
    state = TrainState(net_dev, opt_dev)
    for step in range(3):
        loss = _cpu_step(net_cpu, opt_cpu, head)
        loss_d = train_step(state, head, FEATURES, LABELS, device=trainer)
        assert loss_d == pytest.approx(loss, rel=tol, abs=tol)
    assert opt_dev.iterations == opt_cpu.iterations == 3
    trainer.pull()                                           # weights and slots back to the host
    for name, p, p_d in zip(net_cpu.param_names(), net_cpu.params(), net_dev.params()):
        np.testing.assert_allclose(p_d, p, rtol=tol, atol=tol, err_msg=name)
    state, state_d = opt_cpu.state(), opt_dev.state()
    for k, (s, s_d) in enumerate(zip(state["slots"], state_d["slots"])):
        for slot in s:
            np.testing.assert_allclose(s_d[slot], s[slot], rtol=tol, atol=tol, err_msg=f"param {k} slot {slot}")
    # the dropout generator advanced exactly as on the CPU: a checkpoint's rng state is the same
    assert net_dev.model.rng.bit_generator.state == net_cpu.model.rng.bit_generator.state
    # trained on the device, predicted on the CPU: the same logits as the device's own forward
    logits_cpu, _ = net_dev.forward(FEATURES, training=False)
    x, mask = net_dev.sequence.forward(FEATURES)
    logits_dev = trainer.model.forward(x, mask, net_dev.context.forward(FEATURES), training=False)
    np.testing.assert_allclose(logits_dev, logits_cpu, rtol=tol, atol=tol)


def test_trainer_resumes_from_host_state_and_refuses_custom_optimizers():
    head = BinaryClassHead()
    net = Network([fc.sequence_numeric_column("x", shape=(2,))], units=[3], cell_type="lstm", seed=1,
                  dtype="float64")
    labels = np.array([1, 0, 1])
    opt = O.Momentum(0.1, momentum=0.9)
    trainer = DeviceTrainer(net, opt)
    train_step(TrainState(net, opt), head, FEATURES, labels, device=trainer)
    trainer.pull()
    # a second trainer (a later train() call) starts from the host weights and slots
    net_cpu = copy.deepcopy(net)
    opt_cpu = copy.deepcopy(opt)
    trainer2 = DeviceTrainer(net, opt)
    train_step(TrainState(net, opt), head, FEATURES, labels, device=trainer2)
    trainer2.pull()
    logits, _ = net_cpu.forward(FEATURES, training=True)
    grads = net_cpu.backward(head.loss(logits, labels).d_logits)
    opt_cpu.apply(net_cpu.params(), grads)
    for p, p_d in zip(net_cpu.params(), net.params()):
        np.testing.assert_allclose(p_d, p, rtol=1e-10, atol=1e-12)

    class Custom(O.SGD):
        pass

    with pytest.raises(ValueError, match="supports the optimizers"):
        DeviceTrainer(net, Custom(0.1))


# ---- the estimator: RunConfig(device='cuda') ------------------------------------------------

def test_estimator_trains_on_the_device_and_its_checkpoints_serve_the_cpu(tmp_path):
    """Train on the (simulated) GPU and on the CPU from the same seed: same checkpoints within
    float32 rounding; a CPU estimator resumes the GPU's model_dir and predicts as the GPU model."""
    import minirnn
    from minirnn.inputs import numpy_input_fn
    rng = np.random.default_rng(3)
    x = [rng.normal(size=(int(n), 2)).astype(np.float32) for n in rng.integers(1, 6, 12)]
    y = np.array([int(s[:, 0].sum() > 0) for s in x])
    col = fc.sequence_numeric_column("x", shape=2)

    def train(device, model_dir):
        est = minirnn.RNNClassifier([col], units=[3], cell_type="lstm", optimizer="Adam", model_dir=model_dir,
                                    config=minirnn.RunConfig(random_seed=0, device=device, save_summary_steps=None))
        est.train(numpy_input_fn({"x": x}, y, batch_size=6, shuffle=False, num_epochs=None), steps=3)
        return est

    gpu, cpu = train("cuda", tmp_path / "gpu"), train("cpu", tmp_path / "cpu")
    assert gpu._session.device is None                          # dropped at the end of train()
    assert gpu.latest_checkpoint().endswith("model.ckpt-3.h5")
    for name in gpu.get_variable_names():
        np.testing.assert_allclose(gpu.get_variable_value(name), cpu.get_variable_value(name), rtol=1e-4,
                                   atol=1e-5, err_msg=name)
    resumed = minirnn.RNNClassifier([col], units=[3], cell_type="lstm", optimizer="Adam", model_dir=tmp_path / "gpu",
                                    config=minirnn.RunConfig(random_seed=0, save_summary_steps=None))
    features = numpy_input_fn({"x": x}, shuffle=False)
    p_gpu = next(gpu.predict(features, yield_single_examples=False))["probabilities"]
    p_cpu = next(resumed.predict(features, yield_single_examples=False))["probabilities"]
    np.testing.assert_allclose(p_gpu, p_cpu, atol=1e-6)
    resumed.train(numpy_input_fn({"x": x}, y, batch_size=6, shuffle=False, num_epochs=None), steps=1)
    assert resumed.latest_checkpoint().endswith("model.ckpt-4.h5")


# ---- evaluation and prediction on the device ------------------------------------------------

def test_device_network_forward_matches_the_cpu_and_has_no_gradient_buffers():
    from minirnn.cuda import DeviceNetwork
    sequence = [fc.embedding_column(fc.sequence_categorical_column_with_identity("tok", 12), 3),
                fc.sequence_numeric_column("x", shape=(2,))]
    net = Network(sequence, [fc.numeric_column("n")], units=[4, 3], cell_type=["lstm", "gru"], logits_dimension=2,
                  return_sequences=True, dropout_keep_probabilities=[0.5, 0.5, 0.5], seed=2, dtype="float64")
    on_device = DeviceNetwork(net)
    assert on_device.model is net.model and on_device.device_model._grads is None
    rng = np.random.default_rng(0)
    init = [[rng.standard_normal((3, 4)), rng.standard_normal((3, 4))], [rng.standard_normal((3, 3))]]
    rng_state = net.model.rng.bit_generator.state
    for states in (None, init):
        logits, mask = net.forward(FEATURES, initial_states=states)
        final = net.model.final_states
        net.model.final_states = None
        logits_d, mask_d = on_device.forward(FEATURES, initial_states=states)
        np.testing.assert_allclose(logits_d, logits, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(mask_d, mask)
        for s, s_d in zip(sum(final, []), sum(net.model.final_states, [])):
            np.testing.assert_allclose(s_d, s, rtol=1e-12, atol=1e-12)
    assert net.model.rng.bit_generator.state == rng_state            # inference draws no dropout mask
    with pytest.raises(ValueError, match="inference only"):
        on_device.forward(FEATURES, training=True)
    with pytest.raises(RuntimeError, match="gradients=False"):
        on_device.device_model.forward(*net.sequence.forward(FEATURES), net.context.forward(FEATURES), training=True)
    with pytest.raises(RuntimeError, match="gradients=False"):
        on_device.device_model.backward(np.zeros((3, 4, 2)))
    with pytest.raises(RuntimeError, match="gradients=False"):
        on_device.device_model.grads()
    with pytest.raises(ValueError, match="DeviceModel of network.model"):
        DeviceNetwork(net, DeviceModel(_network("gru", "float64").model, gradients=False))


def _sequences(n, seed=3):
    rng = np.random.default_rng(seed)
    x = [rng.normal(size=(int(k), 2)).astype(np.float32) for k in rng.integers(1, 5, n)]
    return x, np.array([int(s[:, 0].sum() > 0) for s in x])


def _classifier(model_dir, device, **kwargs):
    import minirnn
    return minirnn.RNNClassifier([fc.sequence_numeric_column("x", shape=2)], units=[3], cell_type="gru",
                                 optimizer="Adam", model_dir=model_dir,
                                 config=minirnn.RunConfig(random_seed=0, device=device, save_summary_steps=None,
                                                          log_step_count_steps=None), **kwargs)


def _probabilities(est, x, **kwargs):
    from minirnn.inputs import numpy_input_fn
    return np.concatenate([p["probabilities"] for p in est.predict(numpy_input_fn({"x": x}, batch_size=3,
                                                                                  shuffle=False),
                                                                   yield_single_examples=False, **kwargs)])


def test_estimator_evaluates_and_predicts_on_the_device_never_with_stale_weights(tmp_path):
    """evaluate/predict with RunConfig(device='cuda') equal the CPU's, from the first call and after
    the weights changed: trained by another estimator (a newer checkpoint), trained on the device,
    and trained while a predict generator is open."""
    from minirnn.inputs import numpy_input_fn
    x, y = _sequences(6)
    train_fn = numpy_input_fn({"x": x}, y, batch_size=3, shuffle=False, num_epochs=None)
    eval_fn = numpy_input_fn({"x": x}, y, batch_size=3, shuffle=False)
    cpu, gpu = _classifier(tmp_path, "cpu"), _classifier(tmp_path, "cuda")
    cpu.train(train_fn, steps=1)

    def same(step):
        metrics, metrics_d = cpu.evaluate(eval_fn), gpu.evaluate(eval_fn)
        assert metrics_d["global_step"] == metrics["global_step"] == step
        for key in metrics:
            assert metrics_d[key] == pytest.approx(metrics[key], rel=1e-5, abs=1e-6), key
        np.testing.assert_allclose(_probabilities(gpu, x), _probabilities(cpu, x), rtol=1e-5, atol=1e-6)

    same(1)
    on_device = gpu._session._on_device[2]
    assert type(on_device).__name__ == "DeviceNetwork"
    cpu.train(train_fn, steps=1)                       # a newer checkpoint, written by another estimator
    same(2)
    assert gpu._session._on_device[2] is on_device       # the same device buffers, the new weights pushed
    gpu.train(train_fn, steps=1)                        # trained on the device
    same(3)
    stream = gpu.predict(numpy_input_fn({"x": x}, batch_size=3, shuffle=False), yield_single_examples=False)
    first = next(stream)["probabilities"]
    gpu.train(train_fn, steps=1)                        # the next batch uses the newer weights, as on the CPU
    second = next(stream)["probabilities"]
    np.testing.assert_allclose(second, _probabilities(cpu, x)[3:], rtol=1e-5, atol=1e-6)
    same(4)
    # a checkpoint_path is loaded into a network of its own, on the device too
    np.testing.assert_allclose(_probabilities(gpu, x, checkpoint_path=str(tmp_path / "model.ckpt-2.h5")),
                               _probabilities(cpu, x, checkpoint_path=str(tmp_path / "model.ckpt-2.h5")),
                               rtol=1e-5, atol=1e-6)


def test_evaluation_during_device_training_uses_the_device_weights(tmp_path):
    """A hook evaluating while train() runs on the GPU (EarlyStoppingHook's _evaluate_in_memory)
    sees the weights of the steps taken, which live on the device until the next checkpoint."""
    from minirnn.hooks import SessionRunHook
    from minirnn.inputs import numpy_input_fn
    x, y = _sequences(6)
    eval_fn = numpy_input_fn({"x": x}, y, batch_size=6, shuffle=False)

    class Record(SessionRunHook):
        def __init__(self):
            self.losses = []

        def begin(self, estimator):
            self.estimator = estimator

        def after_step(self, step, loss):
            self.losses.append(float(self.estimator._evaluate_in_memory(eval_fn)["loss"]))

    losses = {}
    for device in ("cpu", "cuda"):
        hook = Record()
        _classifier(tmp_path / device, device).train(numpy_input_fn({"x": x}, y, batch_size=3, shuffle=False,
                                                                    num_epochs=None), steps=2, hooks=[hook])
        losses[device] = hook.losses
    assert losses["cuda"][0] != losses["cuda"][1]
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-5)


def test_dynamic_rnn_predictions_and_states_on_the_device(tmp_path):
    import minirnn
    from minirnn.contrib import DynamicRnnEstimator, PredictionType, ProblemType
    x = [np.random.default_rng(k).normal(size=k + 2).astype(np.float32) for k in range(4)]

    def make(device):
        return DynamicRnnEstimator(ProblemType.LINEAR_REGRESSION, PredictionType.SINGLE_VALUE,
                                   [fc.sequence_numeric_column("x")], num_units=[3, 2], cell_type="lstm",
                                   model_dir=str(tmp_path), config=minirnn.RunConfig(random_seed=0, device=device))
    cpu, gpu = make("cpu"), make("cuda")
    cpu.fit(x=x, y=np.array([s.mean() for s in x]), steps=1)
    want, got = cpu.predict(x=x, as_iterable=False), gpu.predict(x=x, as_iterable=False)
    assert sorted(got) == sorted(want) == ["rnn_cell_state_0", "rnn_cell_state_1", "rnn_cell_state_2",
                                           "rnn_cell_state_3", "scores"]
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6, err_msg=key)
    states = {k: v for k, v in want.items() if k.startswith("rnn_cell_state_")}     # fed back: initial states
    fed_cpu = cpu.predict(input_fn=lambda: {"x": x, **states}, as_iterable=False)
    fed_gpu = gpu.predict(input_fn=lambda: {"x": x, **states}, as_iterable=False)
    assert not np.allclose(fed_cpu["scores"], want["scores"])
    for key in fed_cpu:
        np.testing.assert_allclose(fed_gpu[key], fed_cpu[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_exported_model_predicts_on_the_device(tmp_path):
    from minirnn.export import load_exported
    from minirnn.inputs import numpy_input_fn
    x, y = _sequences(4)
    est = _classifier(tmp_path / "m", "cpu")
    est.train(numpy_input_fn({"x": x}, y, batch_size=4, shuffle=False, num_epochs=None), steps=1)
    path = est.export_saved_model(str(tmp_path / "export"), experimental_mode="train")
    cpu, gpu = load_exported(path), load_exported(path, device="cuda")
    assert (cpu.device, gpu.device) == ("cpu", "cuda")
    features = {"x": x}
    for _ in range(2):
        want, got = cpu.predict(features), gpu.predict(features)
        assert sorted(got) == sorted(want)
        for key in ("logits", "probabilities"):
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6, err_msg=key)
        np.testing.assert_array_equal(got["classes"], want["classes"])
        for model in (cpu, gpu):                         # on the CPU; the device gets the new weights
            model.train(features, y)
    assert gpu.global_step == cpu.global_step == 3
