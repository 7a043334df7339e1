"""The public layer API: weights, initialisation, states, dtypes, errors, and the fast path."""

import numpy as np
import pytest

from minirnn import kernels
from minirnn.layers import GRU, LSTM, SimpleRNN

from _cells import FORM_IDS, FORMS, random_case

LAYERS = [(SimpleRNN, {}, 1), (LSTM, {}, 4), (GRU, {"reset_after": True}, 3), (GRU, {"reset_after": False}, 3)]
IDS = ["simple_rnn", "lstm", "gru", "gru_v1"]


def _x(B=4, T=5, D=3, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal((B, T, D)).astype(dtype)


@pytest.mark.parametrize("cls,opts,G", LAYERS, ids=IDS)
def test_weights_keras_layout_and_initialisers(cls, opts, G):
    layer = cls(6, seed=3, **opts)
    layer.forward(_x(D=5))
    kernel, recurrent, bias = layer.get_weights()
    assert kernel.shape == (5, G * 6) and recurrent.shape == (6, G * 6)
    assert bias.shape == ((2, G * 6) if opts.get("reset_after") else (G * 6,))
    limit = np.sqrt(6 / (5 + G * 6))                          # glorot_uniform
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.5 * limit
    r = recurrent.astype(np.float64)                           # Keras: orthonormal rows of [H, G*H]
    np.testing.assert_allclose(r @ r.T, np.eye(6), atol=1e-5)
    expected_bias = np.zeros_like(bias)
    if cls is LSTM:
        expected_bias[6:12] = 1.0                              # unit_forget_bias
    np.testing.assert_array_equal(bias, expected_bias)
    # same seed, same weights; set_weights round-trips
    again = cls(6, seed=3, **opts)
    again.build(5)
    for a, b in zip(again.get_weights(), layer.get_weights()):
        np.testing.assert_array_equal(a, b)
    new = [w + 1.0 for w in layer.get_weights()]
    layer.set_weights(new)
    for a, b in zip(layer.get_weights(), new):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,opts,G", LAYERS, ids=IDS)
def test_outputs_states_and_dtype(cls, opts, G, dtype):
    layer = cls(4, return_sequences=True, return_state=True, seed=0, **opts)
    x = _x(dtype=dtype)
    out, *states = layer.forward(x, lengths=[5, 3, 1, 0])
    assert out.shape == (4, 5, 4) and out.dtype == dtype
    assert len(states) == (2 if cls is LSTM else 1)
    # the final h state is the last valid output; a length-0 row keeps its (zero) initial state
    np.testing.assert_allclose(states[0][:3], out[[0, 1, 2], [4, 2, 0]], atol=1e-6)
    assert np.all(states[0][3] == 0) and np.all(out[3] == 0)
    # masked steps repeat the last output; return_sequences=False gives that last output
    np.testing.assert_array_equal(out[1, 3], out[1, 2])
    last = cls(4, seed=0, **opts).forward(x, lengths=[5, 3, 1, 0])
    np.testing.assert_allclose(last, out[:, -1], atol=1e-6)
    zero = cls(4, return_sequences=True, zero_output_for_mask=True, seed=0, **opts).forward(x, lengths=[5, 3, 1, 0])
    assert np.all(zero[1, 3:] == 0) and np.allclose(zero[1, :3], out[1, :3], atol=1e-6)


@pytest.mark.parametrize("cls,opts,G", LAYERS, ids=IDS)
def test_initial_state_continues_a_sequence(cls, opts, G):
    """Running 0..T in one call equals running 0..k and feeding the final state into k..T."""
    layer = cls(5, return_sequences=True, return_state=True, seed=1, **opts)
    x = _x(T=8, dtype=np.float64)
    full, *final = layer.forward(x)
    first, *mid = layer.forward(x[:, :3])
    second, *final2 = layer.forward(x[:, 3:], initial_state=mid)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), full, atol=1e-12)
    for a, b in zip(final, final2):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_stacked_layers_backprop():
    """Two layers chained: the first layer's dx path is what the model graph will use."""
    rng = np.random.default_rng(0)
    l1 = LSTM(4, return_sequences=True, seed=0, dtype="float64")
    l2 = GRU(3, seed=1, dtype="float64")
    x = rng.standard_normal((3, 6, 2))
    lengths = [6, 4, 2]
    w = rng.standard_normal((3, 3))

    def loss():
        return np.sum(l2.forward(l1.forward(x, lengths=lengths), lengths=lengths) * w)

    loss()
    d1, _ = l2.backward(w)
    dx, _ = l1.backward(d1)
    eps, i = 1e-6, (1, 2, 0)
    x[i] += eps
    up = loss()
    x[i] -= 2 * eps
    down = loss()
    x[i] += eps
    assert abs(dx[i] - (up - down) / (2 * eps)) < 1e-7


def test_gradients_accumulate_until_zeroed():
    layer = SimpleRNN(3, seed=0)
    x = _x(dtype=np.float64)
    y = layer.forward(x)
    layer.backward(np.ones_like(y))
    once = [g.copy() for g in layer.grads]
    layer.backward(np.ones_like(y))
    for a, b in zip(layer.grads, once):
        np.testing.assert_allclose(a, 2 * b)
    layer.zero_grads()
    assert all(np.all(g == 0) for g in layer.grads)


def test_numba_path_really_runs(monkeypatch):
    monkeypatch.delenv("MINIRNN_BACKEND", raising=False)
    from minirnn.kernels import lstm
    from minirnn.kernels._threads import small_products_in_blas
    assert kernels.default_backend() == "numba"
    layer = LSTM(3, seed=0)
    x = _x(dtype=np.float32)
    calls = []
    compiled = lstm.loops(small_products_in_blas())
    real = compiled.forward
    monkeypatch.setattr(compiled, "forward", lambda *a: calls.append(1) or real(*a))
    layer.forward(x)
    assert calls, "the layer did not call the Numba kernel"
    # and it is compiled machine code, not the Python function
    assert any(sig[0].dtype.name == "float32" for sig in real.signatures)
    assert real.overloads, "no compiled overload"


def test_backend_selection(monkeypatch):
    monkeypatch.setenv("MINIRNN_BACKEND", "numpy")
    assert kernels.default_backend() == "numpy"
    from minirnn.kernels import reference
    assert kernels.load("gru")[0] is reference.gru_forward
    monkeypatch.setenv("MINIRNN_BACKEND", "cuda-please")
    with pytest.raises(ValueError, match="MINIRNN_BACKEND"):
        kernels.default_backend()
    with pytest.raises(ValueError, match="unknown cell"):
        kernels.load("transformer", "numpy")
    with pytest.raises(ValueError, match="backend"):
        LSTM(3, backend="tpu")


@pytest.mark.parametrize("bad,kwargs,error,message", [
    (np.zeros((2, 3), np.float32), {}, ValueError, r"x: expected shape \[batch, time, features\]"),
    (np.zeros((2, 3, 4), np.int64), {}, TypeError, "x: expected a float32 or float64"),
    (np.zeros((2, 3, 4), np.float64), {}, TypeError, "computes in float32"),
    (np.full((2, 3, 4), np.nan, np.float32), {}, ValueError, "x: contains NaN or inf"),
    (np.zeros((2, 3, 5), np.float32), {}, ValueError, "built for 4 features, got 5"),
    (np.zeros((0, 3, 4), np.float32), {}, ValueError, "empty batch or sequence"),
    (np.zeros((2, 0, 4), np.float32), {}, ValueError, "empty batch or sequence"),
    (np.zeros((2, 3, 4), np.float32), {"mask": np.ones((2, 4), bool)}, ValueError, r"mask: expected shape"),
    (np.zeros((2, 3, 4), np.float32), {"mask": np.full((2, 3), 0.5)}, ValueError, "mask: expected booleans"),
    (np.zeros((2, 3, 4), np.float32), {"lengths": [3, 4]}, ValueError, r"lengths: each must be in \[0, 3\]"),
    (np.zeros((2, 3, 4), np.float32), {"lengths": [3]}, ValueError, "lengths: expected 2 integers"),
    (np.zeros((2, 3, 4), np.float32), {"lengths": [3, 1], "mask": np.ones((2, 3), bool)}, ValueError, "either mask or lengths"),
    (np.zeros((2, 3, 4), np.float32), {"initial_state": [np.zeros((2, 5), np.float32)]}, ValueError, "has 2 state"),
    (np.zeros((2, 3, 4), np.float32), {"initial_state": [np.zeros((2, 4), np.float32)] * 2}, ValueError, r"initial_state\[0\]: expected shape"),
])
def test_bad_input_gets_a_clear_error(bad, kwargs, error, message):
    layer = LSTM(5, seed=0)
    layer.forward(np.zeros((2, 3, 4), np.float32))   # built: float32, 4 features
    before = layer.get_weights()
    with pytest.raises(error, match=message):
        layer.forward(bad, **kwargs)
    for a, b in zip(layer.get_weights(), before):    # nothing changed
        np.testing.assert_array_equal(a, b)


def test_constructor_and_weight_errors():
    with pytest.raises(ValueError, match="units"):
        LSTM(0)
    with pytest.raises(TypeError, match="dtype"):
        GRU(3, dtype="int32")
    layer = GRU(3, reset_after=True)
    with pytest.raises(ValueError, match=r"bias must have shape \(2, 9\)"):
        layer.set_weights([np.zeros((2, 9)), np.zeros((3, 9)), np.zeros(9)])
    with pytest.raises(ValueError, match="kernel contains NaN"):
        layer.set_weights([np.full((2, 9), np.nan), np.zeros((3, 9)), np.zeros((2, 9))])
    with pytest.raises(RuntimeError, match="no weights yet"):
        layer.get_weights()
    with pytest.raises(RuntimeError, match="preceding forward"):
        SimpleRNN(2).backward(np.zeros((1, 2)))
    layer = SimpleRNN(2, seed=0)
    y = layer.forward(_x(), training=False)
    with pytest.raises(RuntimeError, match="preceding forward"):
        layer.backward(np.zeros_like(y))
    layer.forward(_x())
    with pytest.raises(ValueError, match=r"d_output: expected shape \(4, 2\)"):
        layer.backward(np.zeros((4, 3), np.float32))


def test_float32_activations_over_the_whole_line():
    """The rational float32 tanh/sigmoid against exact float64, including extremes and NaN."""
    from numba import njit
    from minirnn.kernels.activations import sigmoid, tanh

    @njit
    def apply(x, t, s):
        for i in range(x.size):
            t[i] = tanh(x[i])
            s[i] = sigmoid(x[i])

    x = np.concatenate([np.linspace(-30, 30, 200001), [1e-30, -1e-30, 1e-8, 0.0, 1e4, -1e4, 3e38, -3e38],
                        [np.inf, -np.inf, np.nan]]).astype(np.float32)
    t, s = np.empty_like(x), np.empty_like(x)
    apply(x, t, s)
    x64 = x.astype(np.float64)
    finite = np.isfinite(x)
    assert np.abs(t[finite] - np.tanh(x64[finite])).max() < 1e-6
    with np.errstate(over="ignore"):
        assert np.abs(s[finite] - 1 / (1 + np.exp(-x64[finite]))).max() < 1e-6
    assert np.all(np.abs(t[finite]) <= 1) and np.all((s[finite] >= 0) & (s[finite] <= 1))
    tiny = np.abs(x64) < 1e-6                      # tanh(x) ~ x keeps its relative precision
    np.testing.assert_allclose(t[tiny], x64[tiny], rtol=1e-6)
    np.testing.assert_allclose([t[-3], t[-2], s[-3], s[-2]], [1, -1, 1, 0], atol=1e-6)   # +-inf saturate
    assert np.isnan(t[-1]) and np.isnan(s[-1])


def test_thread_plan_and_blas_setting_restored():
    from unittest import mock
    from minirnn.kernels import _threads
    if _threads._blas_controls() is None:
        pytest.skip("this BLAS exposes no thread control")
    assert _threads.plan(32, 1e6, 1e8, threads=2) == (2, 1)      # row blocks, one BLAS thread each
    assert _threads.plan(32, 1e6, 2e7, threads=2) == (1, 1)      # blocks too short to pay for the hand-off
    assert _threads.plan(8, 1e6, 1e9, threads=2) == (1, 1)       # blocks with too few rows
    assert _threads.plan(1, 1e6, 1e6, threads=2) == (1, 1)       # B=1, small product: one thread
    assert _threads.plan(1, 1e8, 1e10, threads=2) == (1, 2)      # B=1, large product: BLAS threads
    assert _threads.plan(64, 1e8, 1e10, threads=1) == (1, 1)
    # a model asks with its whole stack's forward work: 32 names of 15 characters (LSTM 64 over 16
    # inputs) stay one block, the same batch over 50 steps is split
    weights = [(np.empty((16, 256), np.float32), np.empty((64, 256), np.float32))]
    with mock.patch.object(_threads, "available_threads", lambda: 2):
        assert _threads.split_rows(32, 15, weights) is None
        assert _threads.split_rows(32, 50, weights) == [0, 16, 32]
    get = _threads._blas_controls()[0]
    before = get()
    with _threads.blas_threads(1):
        assert get() == 1
    assert get() == before


def test_numba_num_threads_caps_the_threads(monkeypatch):
    from minirnn.kernels import _threads
    if _threads._blas_controls() is None:
        pytest.skip("this BLAS exposes no thread control")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    assert _threads.available_threads() == 1
    assert _threads.plan(128, 1e8, 1e10) == (1, 1)


def test_set_weights_forgets_the_saved_forward():
    layer = LSTM(3, seed=0)
    y = layer.forward(_x(D=3))
    layer.set_weights([np.zeros((5, 12), np.float32), np.zeros((3, 12), np.float32), np.zeros(12, np.float32)])
    with pytest.raises(RuntimeError, match="preceding forward"):
        layer.backward(np.ones_like(y))


def test_kernels_refuse_gradient_buffers_that_do_not_fit():
    forward, backward = kernels.load("lstm", "numba")
    x, mask = _x(D=3), np.ones((4, 5), bool)
    w = [np.zeros((3, 8), np.float32), np.zeros((2, 8), np.float32), np.zeros(8, np.float32)]
    states = (np.zeros((4, 2), np.float32),) * 2
    y, states_T, saved = forward(x, mask, states, *w)
    bad = [np.zeros((5, 8), np.float32), np.zeros((2, 8), np.float32), np.zeros(8, np.float32)]
    with pytest.raises(ValueError, match=r"dkernel: expected a float32 buffer of shape \(3, 8\)"):
        backward(np.zeros_like(y), states_T, saved, *bad)


def test_non_native_byte_order_is_accepted():
    native = _x(dtype=np.float32)
    big = native.astype(">f4")
    a, b = LSTM(3, seed=0), LSTM(3, seed=0)
    np.testing.assert_array_equal(a.forward(native), b.forward(big))
    assert b.dtype == np.float32
    source = GRU(3, seed=0)
    source.build(3, np.float64)
    c = GRU(3)
    c.set_weights([w.astype(">f8") for w in source.get_weights()])
    assert c.dtype == np.float64 and c.forward(native.astype(np.float64)).dtype == np.float64
    with pytest.raises(TypeError, match="must hold real numbers"):
        GRU(3).set_weights([np.zeros((4, 9), complex), np.zeros((3, 9)), np.zeros((2, 9))])


def test_failed_first_call_does_not_build_the_layer():
    layer = LSTM(3)
    with pytest.raises(ValueError, match="mask"):
        layer.forward(_x(dtype=np.float64), mask=np.ones((9, 9), bool))
    assert not layer.built
    assert layer.forward(_x(dtype=np.float32)).dtype == np.float32


@pytest.mark.parametrize("cls,opts,G", LAYERS, ids=IDS)
def test_skipping_the_input_gradient_changes_nothing_else(cls, opts, G):
    layer = cls(4, seed=0, return_sequences=True, **opts)
    x = _x(B=20, dtype=np.float64)                       # 20 rows: two row blocks on 2 threads
    y = layer.forward(x, lengths=np.arange(20) % 6)
    dx, ds = layer.backward(np.ones_like(y))
    full = [g.copy() for g in layer.grads]
    layer.zero_grads()
    y = layer.forward(x, lengths=np.arange(20) % 6)
    none, ds2 = layer.backward(np.ones_like(y), need_input_grad=False)
    assert dx is not None and none is None
    for a, b in zip(full, layer.grads):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(ds, ds2):
        np.testing.assert_array_equal(a, b)


def test_forked_child_can_run_split_batches():
    import multiprocessing
    layer = LSTM(4, seed=0)
    x = _x(B=32)
    expected = layer.forward(x)                          # the parent's thread pool now exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=lambda: queue.put(layer.forward(x)))
    child.start()
    child.join(120)
    assert child.exitcode == 0, "the forked child did not finish (thread pool inherited without threads?)"
    np.testing.assert_array_equal(queue.get(timeout=10), expected)


def test_blas_setting_restored_after_overlapping_calls():
    from minirnn.kernels import _threads
    controls = _threads._blas_controls()
    if controls is None:
        pytest.skip("this BLAS exposes no thread control")
    configured = _threads._configured_threads()
    first, second = _threads.blas_threads(1), _threads.blas_threads(1)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)                     # out of order: the other call is still running
    assert controls[0]() == 1
    second.__exit__(None, None, None)
    assert controls[0]() == configured and _threads.available_threads() >= 1


def test_row_blocks_wait_for_every_block_then_raise_the_first_error():
    from minirnn.kernels import _threads
    ran = []

    def block(k, b0, b1):
        ran.append(b0)
        if b0 == 0:                                      # a worker's block fails
            raise FloatingPointError("block 0")
        return b0

    with pytest.raises(FloatingPointError, match="block 0"):
        _threads._map(block, [0, 4, 8, 12])
    assert sorted(ran) == [0, 4, 8]
    assert _threads._map(lambda k, b0, b1: (k, b0, b1), [0, 4, 8, 12]) == [(0, 0, 4), (1, 4, 8), (2, 8, 12)]


def test_kernel_calls_from_several_python_threads_agree_with_serial_calls():
    # one caller at a time uses the worker threads; another runs its row blocks itself
    import threading
    rng = np.random.default_rng(5)
    layer = LSTM(8, return_sequences=True)
    xs = [rng.standard_normal((32, 6, 3)).astype(np.float32) for _ in range(4)]
    layer.build(3, np.float32)
    expected = [layer.forward(x, training=False) for x in xs]
    results = [[None] * 20 for _ in xs]

    def call(k):
        for r in range(20):
            results[k][r] = layer.forward(xs[k], training=False)

    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for k, x in enumerate(xs):
        for got in results[k]:
            np.testing.assert_array_equal(got, expected[k])


def _poison(workspace):
    """Fill every buffer of a layer's workspace (row blocks included) with NaN; return the bytes."""
    filled = 0
    for buf in workspace._buffers.values():
        buf.fill(np.nan)
        filled += buf.nbytes
    return filled + sum(_poison(block) for block in workspace._blocks)


@pytest.mark.parametrize("cls,opts,G", LAYERS, ids=IDS)
def test_training_steps_reuse_scratch_and_nothing_leaks_between_steps(cls, opts, G):
    # training steps reuse the layer's workspace: fill it with NaN between steps, change the batch
    # (and so the row-block split) and the length, put gaps in the mask: each step must give exactly
    # what a new layer with the same weights gives
    rng = np.random.default_rng(11)
    layer = cls(5, return_sequences=True, **opts)
    for B, T in ((32, 6), (32, 6), (3, 9), (40, 4), (32, 6)):
        x = rng.standard_normal((B, T, 3)).astype(np.float32)
        mask = rng.random((B, T)) < 0.6
        dy = rng.standard_normal((B, T, 5)).astype(np.float32)
        if layer.built:
            assert _poison(layer._workspace) > 0
        layer.zero_grads()
        y = layer.forward(x, mask=mask)
        dx, dstates = layer.backward(dy)
        new = cls(5, return_sequences=True, **opts)
        new.set_weights(layer.get_weights())
        np.testing.assert_array_equal(new.forward(x, mask=mask), y)
        new_dx, new_dstates = new.backward(dy)
        np.testing.assert_array_equal(new_dx, dx)
        for got, want in zip(dstates + layer.grads, new_dstates + new.grads):
            assert np.all(np.isfinite(got))
            np.testing.assert_array_equal(got, want)


def test_inference_leaves_the_workspace_alone():
    # inference uses the calling thread's own workspace, not the training one that backward reads
    rng = np.random.default_rng(12)
    x, other = (rng.standard_normal((32, 7, 3)).astype(np.float32) for _ in range(2))
    layer = LSTM(4, seed=0)
    layer.forward(x)
    layer.backward(np.ones((32, 4), np.float32))
    before = layer._workspace.nbytes()
    assert _poison(layer._workspace) == before > 0
    layer.forward(other, training=False)
    assert layer._workspace.nbytes() == before
    buffers = [buf for block in [layer._workspace, *layer._workspace._blocks] for buf in block._buffers.values()]
    assert buffers and all(np.isnan(buf).all() for buf in buffers)     # untouched


@pytest.mark.parametrize("cls,opts,G", LAYERS, ids=IDS)
def test_inference_reuses_its_scratch_and_nothing_leaks_between_calls(cls, opts, G):
    # the thread's inference workspace, filled with NaN between calls of other batch sizes (and so
    # row-block splits), lengths and masks: each call gives exactly what a new layer gives
    rng = np.random.default_rng(13)
    layer = cls(5, return_sequences=True, **opts)
    for B, T in ((32, 6), (32, 6), (3, 9), (40, 4), (1, 5), (32, 6)):
        x = rng.standard_normal((B, T, 3)).astype(np.float32)
        mask = rng.random((B, T)) < 0.6
        if layer.built:
            assert _poison(layer._workspace.inference()) > 0
        y = layer.forward(x, mask=mask, training=False)
        new = cls(5, return_sequences=True, **opts)
        new.set_weights(layer.get_weights())
        np.testing.assert_array_equal(new.forward(x, mask=mask, training=False), y)
        assert np.all(np.isfinite(y))
    assert layer._workspace.nbytes() == 0                              # training scratch: none


def test_each_thread_predicts_in_its_own_workspace():
    import threading
    layer = LSTM(3)
    spaces = []
    thread = threading.Thread(target=lambda: spaces.append(layer._workspace.inference()))
    thread.start()
    thread.join(10)
    assert spaces[0] is not layer._workspace.inference() is layer._workspace.inference()


@pytest.mark.parametrize("copy", ["pickle", "deepcopy"])
def test_pickled_and_copied_layers_leave_their_scratch_behind(copy):
    # scratch is not state: a copy is as small as its weights and computes the same
    import copy as copying
    import pickle
    rng = np.random.default_rng(14)
    x = rng.standard_normal((32, 20, 3)).astype(np.float32)
    layer = LSTM(16, seed=0)
    layer.forward(x)
    layer.backward(np.ones((32, 16), np.float32))
    layer.forward(x, training=False)
    layer._saved = None                                                # what a fitted estimator drops
    held = layer._workspace.nbytes() + layer._workspace.inference().nbytes()
    weights = sum(w.nbytes for w in layer.get_weights())
    assert held > 20 * weights
    if copy == "pickle":
        data = pickle.dumps(layer)
        assert len(data) < 3 * weights + 20000
        twin = pickle.loads(data)
    else:
        twin = copying.deepcopy(layer)
    assert twin._workspace.nbytes() == twin._workspace.inference().nbytes() == 0
    np.testing.assert_array_equal(twin.forward(x, training=False), layer.forward(x, training=False))
    np.testing.assert_array_equal(twin.forward(x), layer.forward(x))


def test_scratch_arrays_are_aligned_disjoint_and_reused():
    from minirnn.kernels.workspace import Workspace, scratch
    shapes = ((3, 5), (7,), (2, 2, 2))
    ws = Workspace()
    first = scratch(ws, "forward", np.float32, *shapes)
    assert [a.shape for a in first] == list(shapes)
    for k, a in enumerate(first):
        assert a.ctypes.data % 64 == 0 and a.flags.c_contiguous
        a.fill(k)
    for k, a in enumerate(first):                  # no array overlaps another
        assert np.all(a == k)
    again = scratch(ws, "forward", np.float32, *shapes)
    assert all(np.shares_memory(a, b) for a, b in zip(first, again))
    assert not np.shares_memory(scratch(ws, "backward", np.float32, (3, 5))[0], first[0])
    assert not np.shares_memory(scratch(None, "forward", np.float32, (3, 5))[0], first[0])
    big = scratch(ws, "forward", np.float32, (100, 100))[0]        # grows
    assert not np.shares_memory(big, first[0])
    assert np.shares_memory(scratch(ws, "forward", np.float32, (3, 5))[0], big)   # fits: reused
    wide = scratch(ws, "forward", np.float64, (3, 5))[0]           # another dtype: a new buffer
    assert wide.dtype == np.float64 and wide.ctypes.data % 64 == 0
    assert not np.shares_memory(wide, big)
    assert ws.nbytes() >= wide.nbytes + scratch(ws, "backward", np.float32, (3, 5))[0].nbytes


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_prediction_forward_gives_the_training_forwards_outputs_and_states(form, backend, dtype):
    # training=False keeps two states instead of T + 1 and all_outputs=False only the last output:
    # the same outputs and final states, bit for bit, for masks with gaps, rows with no valid step,
    # zero_output_for_mask, one step, and batches split into row blocks
    _, cell, opts, _, _ = form
    forward, _ = kernels.load(cell, backend)
    rng = np.random.default_rng(21)
    for B, T, gaps in ((3, 7, True), (2, 1, False), (1, 6, False), (40, 5, True), (4, 8, False)):
        x, mask, states0, weights, _, _ = random_case(form, B, T, 3, 5, dtype, rng, gaps=gaps)
        if B > 2:
            mask[0] = False                                        # a row with no valid step
        for zero_output in (False, True):
            y, states, saved = forward(x, mask, states0, *weights, zero_output, **opts)
            assert saved is not None
            for all_outputs in (True, False):
                y_p, states_p, saved_p = forward(x, mask, states0, *weights, zero_output, **opts,
                                                 training=False, all_outputs=all_outputs)
                assert saved_p is None
                np.testing.assert_array_equal(y_p, y if all_outputs else y[:, -1:])
                for s, s_p in zip(states, states_p, strict=True):
                    np.testing.assert_array_equal(s_p, s)
