"""The CUDA kernels (``kernels/*_cuda.py``) against the NumPy reference, forward and backward.

Not collected on its own (the name does not start with ``test_``): ``test_cuda_kernels.py`` runs it
in a subprocess with ``NUMBA_ENABLE_CUDASIM=1``, because Numba reads that variable once, when it is
first imported, and the rest of the suite imports Numba first. On a machine with a GPU it also runs
directly: ``pytest tests/_cuda_kernels_sim.py``.

Shapes are tiny and the block sizes are shrunk (``small_blocks``) so that every kernel runs several
blocks with ragged edges: the simulator runs each CUDA thread as a Python thread.
"""

import os
import sys

import numpy as np
import pytest

from numba import config

if not config.ENABLE_CUDASIM:
    from numba import cuda
    if not cuda.is_available():
        pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 or a CUDA GPU", allow_module_level=True)
else:
    # the simulator's threads wait on each other at every syncthreads: switch between them quickly
    sys.setswitchinterval(1e-5)

from minirnn.kernels import cuda_common as cc, gru_cuda, lstm_cuda, reference, simple_rnn_cuda  # noqa: E402

from _cells import FORM_IDS, FORMS, random_case  # noqa: E402

MODULES = {"simple_rnn": simple_rnn_cuda, "lstm": lstm_cuda, "gru": gru_cuda}
SIZES = ("STEP_TILE", "MATMUL_TILE", "MATMUL_K", "MATMUL_RB")


@pytest.fixture
def small_blocks():
    """4 x 4 step tiles, 4 x 4 output tiles of 2 x 2 per thread, depth-2 stages."""
    old = {k: getattr(cc, k) for k in SIZES}
    cc.STEP_TILE, cc.MATMUL_TILE, cc.MATMUL_K, cc.MATMUL_RB = 4, 4, 2, 2
    yield
    for k, v in old.items():
        setattr(cc, k, v)


@pytest.fixture
def one_block():
    """Block sizes larger than the problems: a single block per launch (the other edge case)."""
    old = {k: getattr(cc, k) for k in SIZES}
    cc.STEP_TILE, cc.MATMUL_TILE, cc.MATMUL_K, cc.MATMUL_RB = 8, 16, 4, 4
    yield
    for k, v in old.items():
        setattr(cc, k, v)


def _mask_with_gaps(B, T, rng):
    mask = rng.random((B, T)) < 0.6
    mask[0] = True                      # a full row
    mask[1] = False                     # a zero-length row: returns its initial states
    mask[2, :] = [(t % 2 == 1) for t in range(T)]   # gaps, starting masked
    return mask


def _run_both(form, B, T, D, H, dtype, zero_output, seed):
    """Forward and backward through the CUDA kernel and the reference on one random problem."""
    name, cell, opts, _, _ = form
    rng = np.random.default_rng(seed)
    x, _, states0, weights, dy, dstates = random_case(form, B, T, D, H, dtype, rng)
    mask = _mask_with_gaps(B, T, rng)
    module = MODULES[cell]
    y, states, saved = module.forward(x, mask, states0, *weights, zero_output, **opts)
    y_ref, states_ref, saved_ref = getattr(reference, cell + "_forward")(x, mask, states0, *weights, zero_output,
                                                                         **opts)
    # parameter gradients accumulate (+=): start both from the same non-zero buffers
    grads = [np.full_like(w, 0.25) for w in weights]
    grads_ref = [np.full_like(w, 0.25) for w in weights]
    dx, d0 = module.backward(dy, dstates, saved, *grads)
    dx_ref, d0_ref = getattr(reference, cell + "_backward")(dy, dstates, saved_ref, *grads_ref)
    return (y, states, dx, d0, grads), (y_ref, states_ref, dx_ref, d0_ref, grads_ref), (x, mask, states0)


def _assert_close(got, want, tol, what):
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=what)


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
def test_multi_block_float64_matches_reference(form, small_blocks):
    (y, states, dx, d0, grads), (y_r, states_r, dx_r, d0_r, grads_r), (x, mask, states0) = \
        _run_both(form, B=6, T=5, D=3, H=6, dtype=np.float64, zero_output=False, seed=1)
    assert cc.step_grid(6, 6)[0] == (2, 2)           # really several blocks per step
    _assert_close(y, y_r, 1e-12, "y")
    for k, (s, s_r) in enumerate(zip(states, states_r)):
        _assert_close(s, s_r, 1e-12, f"states[{k}]")
    np.testing.assert_array_equal(states[0][1], states0[0][1])   # zero-length row: initial state
    _assert_close(dx, dx_r, 1e-12, "dx")
    assert np.all(dx[~mask] == 0)                     # masked steps: no gradient into the input
    for k, (d, d_r) in enumerate(zip(d0, d0_r)):
        _assert_close(d, d_r, 1e-12, f"dstates0[{k}]")
    for name, g, g_r in zip(("dkernel", "drecurrent_kernel", "dbias"), grads, grads_r):
        _assert_close(g, g_r, 1e-12, name)


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
def test_one_block_float32_zero_output_matches_reference(form, one_block):
    (y, states, dx, d0, grads), (y_r, states_r, dx_r, d0_r, grads_r), (_, mask, _) = \
        _run_both(form, B=5, T=6, D=4, H=5, dtype=np.float32, zero_output=True, seed=2)
    assert y.dtype == np.float32 and dx.dtype == np.float32
    assert np.all(y[~mask] == 0)                      # zero_output_for_mask
    _assert_close(y, y_r, 2e-5, "y")
    for s, s_r in zip(states, states_r):
        _assert_close(s, s_r, 2e-5, "states")
    _assert_close(dx, dx_r, 1e-4, "dx")
    for d, d_r in zip(d0, d0_r):
        _assert_close(d, d_r, 1e-4, "dstates0")
    for name, g, g_r in zip(("dkernel", "drecurrent_kernel", "dbias"), grads, grads_r):
        _assert_close(g, g_r, 1e-4, name)


def test_all_rows_empty_return_initial_states_and_no_gradient(small_blocks):
    form = FORMS[1]                                   # LSTM: two states
    rng = np.random.default_rng(3)
    x, _, states0, weights, dy, dstates = random_case(form, 3, 4, 2, 5, np.float64, rng)
    mask = np.zeros((3, 4), dtype=bool)
    y, states, saved = lstm_cuda.forward(x, mask, states0, *weights)
    assert np.all(y == 0)
    for s, s0 in zip(states, states0):
        np.testing.assert_array_equal(s, s0)
    grads = [np.zeros_like(w) for w in weights]
    dx, d0 = lstm_cuda.backward(dy, dstates, saved, *grads)
    assert np.all(dx == 0) and all(np.all(g == 0) for g in grads)
    for d, d_T in zip(d0, dstates):
        np.testing.assert_array_equal(d, d_T)         # the state gradient passes straight through


def test_need_dx_false_skips_the_input_gradient(small_blocks):
    form = FORMS[2]
    rng = np.random.default_rng(4)
    x, mask, states0, weights, dy, dstates = random_case(form, 3, 3, 2, 4, np.float64, rng)
    _, _, saved = gru_cuda.forward(x, mask, states0, *weights, reset_after=True)
    grads = [np.zeros_like(w) for w in weights]
    dx, _ = gru_cuda.backward(dy, dstates, saved, *grads, need_dx=False)
    assert dx is None
    assert np.any(grads[0] != 0)


@pytest.mark.parametrize("trans_a, trans_b, accumulate, with_bias, split_k", [
    (False, False, False, True, 1), (True, False, True, False, None), (False, True, False, False, 1),
    (True, True, True, False, 3)])
def test_matmul_matches_numpy(trans_a, trans_b, accumulate, with_bias, split_k, small_blocks):
    from numba import cuda
    rng = np.random.default_rng(5)
    M, K, N = 7, 9, 5                                 # ragged against the 4 x 4 tiles and depth 2
    A = rng.standard_normal((K, M) if trans_a else (M, K))
    Bm = rng.standard_normal((N, K) if trans_b else (K, N))
    bias = rng.standard_normal(N)
    start = rng.standard_normal((M, N + 3))           # out is a strided view: columns 1..N of it
    out_d = cuda.to_device(start)
    cc.matmul(cuda.to_device(A), cuda.to_device(Bm), out_d[:, 1:N + 1], trans_a=trans_a, trans_b=trans_b,
              accumulate=accumulate, bias=cuda.to_device(bias) if with_bias else None, split_k=split_k)
    want = (A.T if trans_a else A) @ (Bm.T if trans_b else Bm) + (bias if with_bias else 0)
    if accumulate:
        want = want + start[:, 1:N + 1]
    got = out_d.copy_to_host()
    np.testing.assert_allclose(got[:, 1:N + 1], want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got[:, 0], start[:, 0])          # outside the view: untouched
    np.testing.assert_array_equal(got[:, N + 1:], start[:, N + 1:])


def test_col_sum_adds_column_sums():
    from numba import cuda
    rng = np.random.default_rng(6)
    A = rng.standard_normal((600, 7))                 # more rows than one block reduces
    out = cuda.to_device(np.ones(7))
    cc.col_sum(cuda.to_device(A), out)
    np.testing.assert_allclose(out.copy_to_host(), 1.0 + A.sum(axis=0), rtol=1e-12)


def test_bad_inputs_are_refused_with_clear_errors():
    rng = np.random.default_rng(7)
    form = FORMS[1]
    x, mask, states0, (W, U, b), dy, dstates = random_case(form, 2, 3, 2, 3, np.float32, rng)
    with pytest.raises(ValueError, match="kernel"):
        lstm_cuda.forward(x, mask, states0, W[:, :-1], U, b)
    with pytest.raises(ValueError, match="bias"):
        lstm_cuda.forward(x, mask, states0, W, U, b[:-1])
    with pytest.raises(TypeError, match="recurrent_kernel"):
        lstm_cuda.forward(x, mask, states0, W, U.astype(np.float64), b)
    with pytest.raises(TypeError, match="x"):
        lstm_cuda.forward(x.astype(np.int32), mask, states0, W, U, b)
    with pytest.raises(ValueError, match="mask"):
        lstm_cuda.forward(x, mask[:, :2], states0, W, U, b)
    with pytest.raises(ValueError, match="states0"):
        lstm_cuda.forward(x, mask, states0[:1], W, U, b)
    with pytest.raises(ValueError, match="x"):
        lstm_cuda.forward(x[:, :2, :][:, :, :, None], mask, states0, W, U, b)
    _, _, saved = lstm_cuda.forward(x, mask, states0, W, U, b)
    with pytest.raises(ValueError, match="dkernel"):
        lstm_cuda.backward(dy, dstates, saved, np.zeros((3, 3), np.float32), np.zeros_like(U), np.zeros_like(b))
    with pytest.raises(ValueError, match="dy"):
        lstm_cuda.backward(dy[:, :2], dstates, saved, np.zeros_like(W), np.zeros_like(U), np.zeros_like(b))
    with pytest.raises(ValueError, match="bias"):
        gru_cuda.forward(x, mask, states0[:1], rng.standard_normal((2, 9)).astype(np.float32),
                         rng.standard_normal((3, 9)).astype(np.float32), np.zeros(9, np.float32), reset_after=True)


def test_simulator_is_what_runs_here():
    # the module really exercised the CUDA target (simulated or real), not a CPU fallback
    from numba import cuda
    assert cc.is_device_array(cuda.to_device(np.zeros(2)))
    assert bool(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1") == bool(config.ENABLE_CUDASIM)
