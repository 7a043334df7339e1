"""The CUDA kernels, device training and device inference on a real GPU, at sizes the simulator
cannot run.

Skipped unless Numba sees a real CUDA GPU (the simulator does not count). Default block sizes;
float32 against the float64 NumPy reference.
"""

import numpy as np
import pytest

from minirnn.cuda import gpu_available

if not gpu_available()[0]:
    pytest.skip("needs a real CUDA GPU", allow_module_level=True)

from minirnn.cuda import DeviceModel  # noqa: E402
from minirnn.kernels import cuda_common as cc, gru_cuda, lstm_cuda, reference, simple_rnn_cuda  # noqa: E402
from minirnn.model import RNNModel  # noqa: E402

from _cells import FORM_IDS, FORMS, random_case  # noqa: E402

MODULES = {"simple_rnn": simple_rnn_cuda, "lstm": lstm_cuda, "gru": gru_cuda}


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
def test_kernels_match_reference_at_training_sizes(form):
    name, cell, opts, _, _ = form
    rng = np.random.default_rng(0)
    B, T, D, H = 70, 37, 33, 130                      # ragged against every tile size
    x, _, states0, weights, dy, dstates = random_case(form, B, T, D, H, np.float32, rng, gaps=True)
    weights = tuple(w * np.float32(0.3) for w in weights)
    mask = rng.random((B, T)) < 0.8
    mask[0] = False
    y, states, saved = MODULES[cell].forward(x, mask, states0, *weights, False, **opts)
    as64 = lambda a: a.astype(np.float64)             # noqa: E731
    y_r, states_r, saved_r = getattr(reference, cell + "_forward")(
        as64(x), mask, tuple(map(as64, states0)), *map(as64, weights), False, **opts)
    np.testing.assert_allclose(y, y_r, rtol=1e-4, atol=1e-4)
    for s, s_r in zip(states, states_r):
        np.testing.assert_allclose(s, s_r, rtol=1e-4, atol=1e-4)
    grads = [np.zeros_like(w) for w in weights]
    grads_r = [np.zeros_like(as64(w)) for w in weights]
    dx, d0 = MODULES[cell].backward(dy, dstates, saved, *grads)
    dx_r, d0_r = getattr(reference, cell + "_backward")(as64(dy), tuple(map(as64, dstates)), saved_r, *grads_r)
    np.testing.assert_allclose(dx, dx_r, rtol=1e-3, atol=1e-3)
    for d, d_r in zip(d0, d0_r):
        np.testing.assert_allclose(d, d_r, rtol=1e-3, atol=1e-3)
    for g, g_r in zip(grads, grads_r):
        scale = np.abs(g_r).max()
        np.testing.assert_allclose(g / scale, g_r / scale, atol=1e-4)


def test_large_matmul_matches_numpy():
    from numba import cuda
    rng = np.random.default_rng(1)
    A = rng.standard_normal((12800, 128)).astype(np.float32)
    Bm = rng.standard_normal((12800, 512)).astype(np.float32)
    out = cuda.to_device(np.zeros((128, 512), np.float32))
    cc.matmul(cuda.to_device(A), cuda.to_device(Bm), out, trans_a=True, accumulate=True)   # split-K path
    want = A.astype(np.float64).T @ Bm.astype(np.float64)
    np.testing.assert_allclose(out.copy_to_host(), want, rtol=1e-3, atol=1e-2)


def test_device_model_matches_cpu_model_float32():
    rng = np.random.default_rng(2)
    kwargs = dict(units=[64, 32], cell_type=["lstm", "gru"], logits_dimension=4, seed=3)
    cpu, host = RNNModel(**kwargs), RNNModel(**kwargs)
    cpu.build(16)
    host.build(16)
    device = DeviceModel(host)
    x = rng.standard_normal((48, 25, 16)).astype(np.float32)
    mask = np.arange(25)[None, :] < rng.integers(0, 26, size=48)[:, None]
    logits = cpu.forward(x, mask, training=True)
    np.testing.assert_allclose(device.forward(x, mask, training=True), logits, rtol=1e-4, atol=1e-4)
    d_logits = rng.standard_normal(logits.shape).astype(np.float32)
    cpu.zero_grads()
    cpu.backward(d_logits)
    device.backward(d_logits)
    for g, g_d in zip(cpu.grads(), device.grads()):
        scale = max(np.abs(g).max(), 1e-6)
        np.testing.assert_allclose(g_d.copy_to_host() / scale, g / scale, atol=1e-4)


@pytest.mark.parametrize("return_sequences", [False, True])
def test_device_network_matches_cpu_network_float32(return_sequences):
    from minirnn import feature_column as fc
    from minirnn.cuda import DeviceNetwork
    from minirnn.network import Network
    rng = np.random.default_rng(4)
    B, T = 48, 25
    lengths = rng.integers(1, T + 1, size=B)
    features = {"x": [rng.standard_normal((n, 16)).astype(np.float32) for n in lengths]}
    net = Network([fc.sequence_numeric_column("x", shape=16)], units=[64, 32], cell_type=["lstm", "gru"],
                  logits_dimension=4, return_sequences=return_sequences, dropout_keep_probabilities=[0.8] * 3,
                  seed=5)
    logits, mask = net.forward(features)
    final = [list(s) for s in net.model.final_states]
    on_device = DeviceNetwork(net)
    logits_d, mask_d = on_device.forward(features)
    np.testing.assert_array_equal(mask_d, mask)
    np.testing.assert_allclose(logits_d, logits, rtol=1e-4, atol=1e-4)
    for states, states_d in zip(final, net.model.final_states):
        for s, s_d in zip(states, states_d):
            np.testing.assert_allclose(s_d, s, rtol=1e-4, atol=1e-4)
