"""Outputs, final states and every gradient against TensorFlow 2.15 Keras (tests/data)."""

import os

import numpy as np
import pytest

from minirnn.layers import GRU, LSTM, SimpleRNN

GOLDEN = np.load(os.path.join(os.path.dirname(__file__), "data", "keras_rnn_golden.npz"))
CASES = {
    "simple_rnn": lambda seq: SimpleRNN(3, return_sequences=seq, return_state=True),
    "lstm": lambda seq: LSTM(3, return_sequences=seq, return_state=True),
    "gru": lambda seq: GRU(3, reset_after=True, return_sequences=seq, return_state=True),
    "gru_v1": lambda seq: GRU(3, reset_after=False, return_sequences=seq, return_state=True),
}
TOL = {np.float64: 1e-9, np.float32: 1e-5}


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("mode", ["seq", "last"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_keras(case, mode, dtype, backend):
    g = {k.split("/", 2)[2]: GOLDEN[k] for k in GOLDEN.files if k.startswith(f"{case}/{mode}/")}
    layer = CASES[case](mode == "seq")
    layer.backend = backend
    layer.set_weights([g["kernel"].astype(dtype), g["recurrent_kernel"].astype(dtype),
                       g["bias"].astype(dtype)])
    out, *states = layer.forward(GOLDEN["x"].astype(dtype), mask=GOLDEN["mask"])
    assert out.dtype == dtype and all(s.dtype == dtype for s in states)
    tol = TOL[dtype]
    np.testing.assert_allclose(out, g["outputs"], rtol=0, atol=tol)
    for k, s in enumerate(states):
        np.testing.assert_allclose(s, g[f"state{k}"], rtol=0, atol=tol)
    # the golden loss is sum(outputs * out_weights) + sum_k sum(state_k * stateK_weights)
    loss = np.sum(out * g["out_weights"]) + sum(np.sum(s * g[f"state{k}_weights"]) for k, s in enumerate(states))
    assert abs(loss - g["loss"]) <= tol * 100
    dx, _ = layer.backward(g["out_weights"].astype(dtype),
                           [g[f"state{k}_weights"].astype(dtype) for k in range(len(states))])
    np.testing.assert_allclose(dx, g["grad_x"], rtol=0, atol=tol)
    for name, grad in zip(["grad_kernel", "grad_recurrent_kernel", "grad_bias"], layer.grads):
        np.testing.assert_allclose(grad, g[name], rtol=0, atol=tol, err_msg=name)
