"""Hypothesis properties of the masking semantics, and Numba == reference on random shapes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _cells import FORM_IDS, FORMS, random_case, run

SETTINGS = settings(max_examples=25, deadline=None)
dims = st.integers(1, 9)


def _case(form, B, T, D, H, seed, dtype=np.float64, gaps=False):
    return random_case(form, B, T, D, H, dtype, np.random.default_rng(seed), gaps=gaps)


def _assert_close(a, b, tol):
    for u, v in zip(a, b):
        if isinstance(u, (tuple, list)):
            _assert_close(u, v, tol)
        else:
            np.testing.assert_allclose(u, v, rtol=tol, atol=tol)


@pytest.mark.parametrize("steps", ["loop", "blas"])
@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
@SETTINGS
@given(B=dims, T=dims, D=dims, H=dims, seed=st.integers(0, 2**31), gaps=st.booleans(),
       zero_output=st.booleans())
def test_numba_equals_reference(form, steps, B, T, D, H, seed, gaps, zero_output):
    # lengths include 0 (a row with no valid step) and T = 1; the per-step products run through the
    # compiled matmul_bt / matmul_rows (H <= 9: the LSTM and GRU forward products take matmul_rows)
    # or through BLAS (the choice depends on the BLAS core: force each)
    from unittest import mock
    from minirnn.kernels import _threads
    case = _case(form, B, T, D, H, seed, gaps=gaps)
    with mock.patch.object(_threads, "_blas_small", steps == "blas"):
        fast = run(form, "numba", *case, zero_output_for_mask=zero_output)
    slow = run(form, "numpy", *case, zero_output_for_mask=zero_output)
    _assert_close(fast, slow, 1e-10)


@pytest.mark.parametrize("product", ["matmul_bt", "matmul_rows"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(max_examples=60, deadline=None)
@given(M=st.integers(1, 13), K=st.integers(1, 40), N=st.integers(1, 40), seed=st.integers(0, 2**31))
def test_per_step_products_equal_numpy(product, dtype, M, K, N, seed):
    """The compiled per-step products on every remainder of their blocks: matmul_bt's 4 x 4 blocks
    (it takes b transposed), matmul_rows's 4-row passes over 4 rows of b and its single rows'
    passes over 8 rows of b."""
    from minirnn.kernels import linalg
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    out = np.full((M, N), np.nan, dtype)
    getattr(linalg, product)(a, np.ascontiguousarray(b.T) if product == "matmul_bt" else b, out)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(out, a.astype(np.float64) @ b.astype(np.float64), rtol=tol, atol=tol * K)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(max_examples=40, deadline=None)
@given(M=st.integers(0, 13), K=st.one_of(st.integers(0, 40), st.sampled_from([511, 512, 513, 2100])),
       N=st.integers(1, 13), seed=st.integers(0, 2**31))
def test_long_products_equal_numpy(dtype, M, K, N, seed):
    """matmul_bt over a long K (a chunk's (step, row) columns, as the weight gradients use it) on
    every remainder of its 4 x 4 blocks; transpose_into on every remainder of its 8-row passes."""
    from minirnn.kernels import linalg
    rng = np.random.default_rng(seed)
    a, bt = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((N, K)).astype(dtype)
    out = np.full((M, N), np.nan, dtype)
    linalg.matmul_bt(a, bt, out)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(out, a.astype(np.float64) @ bt.T.astype(np.float64), rtol=tol,
                               atol=tol * max(K, 1) ** 0.5 * 4)
    dst = np.full((K, M), np.nan, dtype)
    linalg.transpose_into(a, dst)
    np.testing.assert_array_equal(dst, a.T)


@pytest.mark.parametrize("blas", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(max_examples=40, deadline=None)
@given(steps=st.integers(1, 5), B=st.integers(1, 9), D=st.integers(1, 11), H=st.integers(1, 11),
       N=st.one_of(st.integers(1, 13), st.sampled_from([63, 64, 65, 131])), col0=st.integers(0, 3),
       shared=st.booleans(), seed=st.integers(0, 2**31))
def test_accumulate_weight_grads_equals_numpy(blas, dtype, steps, B, D, H, N, col0, shared, seed):
    """The shared weight-gradient primitive on both of its paths (BLAS, and transposed copies into
    matmul_bt block by block of gradient columns), with one gradient for both products or one each,
    into a block of columns."""
    from minirnn.kernels import linalg
    rng = np.random.default_rng(seed)
    x, h = rng.standard_normal((steps, B, D)).astype(dtype), rng.standard_normal((steps, B, H)).astype(dtype)
    dz_x = rng.standard_normal((steps, B, N)).astype(dtype)
    dz_h = dz_x if shared else rng.standard_normal((steps, B, N)).astype(dtype)
    dW, dU = rng.standard_normal((D, N + 3)).astype(dtype), rng.standard_normal((H, N + 3)).astype(dtype)
    want_W, want_U = dW.astype(np.float64), dU.astype(np.float64)
    want_W[:, col0:col0 + N] += np.einsum("tbd,tbn->dn", x.astype(np.float64), dz_x.astype(np.float64))
    want_U[:, col0:col0 + N] += np.einsum("tbh,tbn->hn", h.astype(np.float64), dz_h.astype(np.float64))
    scratch = np.full(linalg.weight_grad_scratch(steps * B, max(D, H), N), np.nan, dtype)
    linalg.accumulate_weight_grads(x, dz_x, dW, h, dz_h, dU, col0, blas, scratch)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(dW, want_W, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(dU, want_U, rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
def test_numba_equals_reference_wide_input_projection(form):
    """Units wide enough that the input projection (all steps at once) takes matmul_rows rather than
    BLAS: at least INPUT_ROWS_MIN_COLUMNS gate columns. Odd B and T leave remainders in its 4-row
    passes; D = 7 leaves remainders in its passes over 4 rows of W."""
    from unittest import mock
    from minirnn.kernels import _threads, linalg
    H = -(-linalg.INPUT_ROWS_MIN_COLUMNS // form[3])   # form[3]: the gates, G * H columns
    case = _case(form, 5, 7, 7, H, seed=11, gaps=True)
    with mock.patch.object(_threads, "_blas_small", False):   # whatever core OpenBLAS picked
        fast = run(form, "numba", *case)
    _assert_close(fast, run(form, "numpy", *case), 1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("blas", [False, True])
@settings(max_examples=30, deadline=None)
@given(steps=st.integers(1, 4), B=st.integers(1, 5), K=st.integers(1, 20), N=st.sampled_from([1, 63, 64, 65, 100]),
       seed=st.integers(0, 2**31))
def test_products_of_every_step_equal_numpy(dtype, blas, steps, B, K, N, seed):
    """input_product on both of its paths (BLAS, or matmul_rows from 64 columns on), and
    input_grad_product on both of its (BLAS, or matmul_bt)."""
    from minirnn.kernels import linalg
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((steps, B, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    out = np.full((steps, B, N), np.nan, dtype)
    linalg.input_product(a, b, out, blas)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(out, a.astype(np.float64) @ b.astype(np.float64), rtol=tol, atol=tol * K)
    dz, W = rng.standard_normal((steps, B, N)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    dx = np.full((steps, B, K), np.nan, dtype)
    linalg.input_grad_product(dz, np.ascontiguousarray(W.T), W, dx, blas)
    np.testing.assert_allclose(dx, dz.astype(np.float64) @ W.T.astype(np.float64), rtol=tol, atol=tol * N)


@pytest.mark.parametrize("blas", [False, True])
@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
@settings(max_examples=25, deadline=None)
@given(B=dims, T=st.integers(1, 20), columns=st.integers(1, 40), seed=st.integers(0, 2**31),
       zero_output=st.booleans())
def test_gradient_chunks(form, blas, B, T, columns, seed, zero_output):
    """Backward in chunks of steps of every length (one step per chunk, a partial last chunk, one
    chunk for all), with gaps and zero-length rows, on both weight-gradient paths: the same
    gradients as the reference."""
    from unittest import mock
    from minirnn.kernels import _threads, linalg
    case = _case(form, B, T, 4, 3, seed, gaps=True)
    with mock.patch.object(linalg, "GRADIENT_CHUNK_COLUMNS", columns), \
            mock.patch.object(_threads, "_blas_small", blas):
        fast = run(form, "numba", *case, zero_output_for_mask=zero_output)
    _assert_close(fast, run(form, "numpy", *case, zero_output_for_mask=zero_output), 1e-10)


@pytest.mark.parametrize("chunks", ["several", "one"])
@pytest.mark.parametrize("blas", [False, True])
@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
def test_numba_equals_reference_long_sequences(form, blas, chunks):
    """A long sequence with gaps: several gradient chunks, or one chunk of all T * B (step, row)
    columns, on both weight-gradient paths."""
    from unittest import mock
    from minirnn.kernels import _threads, linalg
    B, T, D, H = 9, 2 * linalg.GRADIENT_CHUNK_COLUMNS // 9 + 5, 6, 5
    case = _case(form, B, T, D, H, seed=3, gaps=True)
    columns = linalg.GRADIENT_CHUNK_COLUMNS if chunks == "several" else B * T
    with mock.patch.object(linalg, "GRADIENT_CHUNK_COLUMNS", columns), \
            mock.patch.object(_threads, "_blas_small", blas):
        fast = run(form, "numba", *case)
    _assert_close(fast, run(form, "numpy", *case), 1e-10)


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
@SETTINGS
@given(B=dims, T=dims, D=dims, H=dims, seed=st.integers(0, 2**31))
def test_float32_numba_close_to_float64_reference(form, B, T, D, H, seed):
    # float32 uses a rational tanh/sigmoid; it must stay within float32 tolerance of the exact maths
    x, mask, s0, w, dy, ds = _case(form, B, T, D, H, seed, gaps=True)
    as32 = lambda arrs: tuple(a.astype(np.float32) for a in arrs)
    fast = run(form, "numba", x.astype(np.float32), mask, as32(s0), as32(w), dy.astype(np.float32), as32(ds))
    exact = run(form, "numpy", x, mask, s0, w, dy, ds)
    _assert_close(fast[:2], exact[:2], 2e-5)
    _assert_close(fast[2:], exact[2:], 2e-4)


def _plain_recurrence(form, x, states0, weights):
    """The cell's textbook recurrence with no masking machinery at all: outputs and final states."""
    kernel, U, bias = weights
    sig = lambda z: 1 / (1 + np.exp(-z))
    H = U.shape[0]
    states, ys = [s.copy() for s in states0], []
    for t in range(x.shape[1]):
        h = states[0]
        if form[0] == "simple_rnn":
            h = np.tanh(x[:, t] @ kernel + bias + h @ U)
        elif form[0] == "lstm":
            z = x[:, t] @ kernel + bias + h @ U
            c = sig(z[:, H:2 * H]) * states[1] + sig(z[:, :H]) * np.tanh(z[:, 2 * H:3 * H])
            h, states[1] = sig(z[:, 3 * H:]) * np.tanh(c), c
        elif form[0] == "gru":
            xw, rec = x[:, t] @ kernel + bias[0], h @ U + bias[1]
            z, r = sig(xw[:, :H] + rec[:, :H]), sig(xw[:, H:2 * H] + rec[:, H:2 * H])
            h = z * h + (1 - z) * np.tanh(xw[:, 2 * H:] + r * rec[:, 2 * H:])
        else:
            xw = x[:, t] @ kernel + bias
            z, r = sig(xw[:, :H] + h @ U[:, :H]), sig(xw[:, H:2 * H] + h @ U[:, H:2 * H])
            h = z * h + (1 - z) * np.tanh(xw[:, 2 * H:] + (r * h) @ U[:, 2 * H:])
        states[0] = h
        ys.append(h)
    return np.stack(ys, axis=1), states


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
@SETTINGS
@given(B=dims, T=dims, D=dims, H=dims, seed=st.integers(0, 2**31))
def test_all_ones_mask_equals_no_mask(form, B, T, D, H, seed):
    """No mask, an all-ones mask and full lengths all equal the plain unmasked recurrence."""
    from minirnn import layers
    x, _, s0, w, _, _ = _case(form, B, T, D, H, seed)
    cls = {"simple_rnn": layers.SimpleRNN, "lstm": layers.LSTM}.get(form[1], layers.GRU)
    layer = cls(H, return_sequences=True, return_state=True, **form[2])
    layer.set_weights(list(w))
    y_plain, states_plain = _plain_recurrence(form, x, s0, w)
    for kwargs in ({}, {"mask": np.ones((B, T), dtype=bool)}, {"lengths": np.full(B, T)}):
        out, *states = layer.forward(x, initial_state=list(s0), **kwargs)
        np.testing.assert_allclose(out, y_plain, rtol=1e-12, atol=1e-12)
        for a, b in zip(states, states_plain):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
@SETTINGS
@given(B=dims, T=dims, D=dims, H=dims, pad=st.integers(1, 5), seed=st.integers(0, 2**31),
       zero_output=st.booleans())
def test_appending_padded_steps_changes_nothing(form, backend, B, T, D, H, pad, seed, zero_output):
    x, mask, s0, w, dy, ds = _case(form, B, T, D, H, seed, gaps=True)
    rng = np.random.default_rng(seed + 1)
    x_pad = np.concatenate([x, rng.standard_normal((B, pad, D))], axis=1)   # junk in the padding
    mask_pad = np.concatenate([mask, np.zeros((B, pad), dtype=bool)], axis=1)
    dy_pad = np.concatenate([dy, np.zeros((B, pad, H))], axis=1)
    y, states, dx, ds0, grads = run(form, backend, x, mask, s0, w, dy, ds, zero_output)
    y2, states2, dx2, ds02, grads2 = run(form, backend, x_pad, mask_pad, s0, w, dy_pad, ds, zero_output)
    np.testing.assert_allclose(y2[:, :T], y, rtol=1e-12, atol=1e-12)
    if not zero_output:   # padded outputs repeat the last output: the sequence's "last" output is kept
        np.testing.assert_allclose(y2[:, -1], y[:, -1], rtol=1e-12, atol=1e-12)
    _assert_close((states2, ds02, grads2, dx2[:, :T]), (states, ds0, grads, dx), 1e-12)
    assert np.all(dx2[:, T:] == 0.0)


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
@SETTINGS
@given(B=st.integers(2, 9), T=dims, D=dims, H=dims, seed=st.integers(0, 2**31))
def test_rows_are_independent(form, B, T, D, H, seed):
    x, mask, s0, w, dy, ds = _case(form, B, T, D, H, seed, gaps=True)
    perm = np.random.default_rng(seed).permutation(B)
    y, states, dx, ds0, grads = run(form, "numba", x, mask, s0, w, dy, ds)
    pick = lambda arrs: tuple(np.ascontiguousarray(a[perm]) for a in arrs)
    y_p, states_p, dx_p, ds0_p, grads_p = run(form, "numba", x[perm], np.ascontiguousarray(mask[perm]),
                                              pick(s0), w, dy[perm], pick(ds))
    _assert_close((y_p, states_p, dx_p, ds0_p), (y[perm], pick(states), dx[perm], pick(ds0)), 1e-12)
    _assert_close(grads_p, grads, 1e-10)   # sums over rows: equal up to round-off


def _skip_without_thread_control():
    from minirnn.kernels import _threads
    if _threads._blas_controls() is None:
        pytest.skip("this BLAS exposes no thread control: calls are never split")


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
@SETTINGS
@given(B=st.integers(2, 9), T=dims, D=dims, H=dims, blocks=st.integers(2, 4), seed=st.integers(0, 2**31),
       zero_output=st.booleans())
def test_row_blocks_in_threads_equal_reference(form, B, T, D, H, blocks, seed, zero_output):
    """Large batches run as row blocks in parallel threads; force that path on small batches."""
    from unittest import mock
    from minirnn.kernels import _threads
    _skip_without_thread_control()
    case = _case(form, B, T, D, H, seed, gaps=True)
    with mock.patch.object(_threads, "MIN_ROWS", 1), mock.patch.object(_threads, "MIN_BLOCK_FLOPS", 0), \
            mock.patch.object(_threads, "available_threads", lambda: blocks):
        assert _threads.plan(B, 1.0, 1.0)[0] == min(blocks, B)
        fast = run(form, "numba", *case, zero_output_for_mask=zero_output)
    _assert_close(fast, run(form, "numpy", *case, zero_output_for_mask=zero_output), 1e-10)


@pytest.mark.parametrize("zero_output", [False, True], ids=["repeat", "zero"])
@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
def test_a_real_large_batch_equals_reference(form, zero_output):
    """B=40 has rows enough for the default plan to split it when two threads are available (its work
    rule is lowered here so that the batch stays small; test_layers checks that rule)."""
    from unittest import mock
    from minirnn.kernels import _threads
    case = _case(form, 40, 7, 3, 5, 0, gaps=True)
    with mock.patch.object(_threads, "MIN_BLOCK_FLOPS", 0):
        if _threads.available_threads() >= 2:
            assert _threads.plan(40, 1.0, 1.0)[0] >= 2
        fast = run(form, "numba", *case, zero_output_for_mask=zero_output)
    _assert_close(fast, run(form, "numpy", *case, zero_output_for_mask=zero_output), 1e-10)

