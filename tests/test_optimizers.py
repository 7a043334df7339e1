"""Optimizers against the published update formulas, computed by hand in NumPy."""

import math

import numpy as np
import pytest

from minirnn import kernels
from minirnn import optimizers as O


def _problem(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(5).astype(dtype)]
    grads = [[rng.standard_normal(p.shape).astype(dtype) for p in params] for _ in range(4)]
    return params, grads


def _by_hand(name, w, gs, lr, **h):
    """The textbook rule for one tensor over several steps (float64)."""
    w = w.astype(np.float64).copy()
    s1 = s2 = s3 = None
    for t, g in enumerate(gs, start=1):
        g = g.astype(np.float64)
        if name == "SGD":
            w = w - lr * g
        elif name == "Momentum":
            s1 = g if s1 is None else h["momentum"] * s1 + g
            w = w - lr * (g + h["momentum"] * s1 if h.get("use_nesterov") else s1)
        elif name == "Adagrad":
            s1 = (np.full_like(w, 0.1) if s1 is None else s1) + g * g
            w = w - lr * g / (np.sqrt(s1) + 1e-7)
        elif name == "Adam":
            s1 = (1 - 0.9) * g if s1 is None else 0.9 * s1 + 0.1 * g
            s2 = (1 - 0.999) * g * g if s2 is None else 0.999 * s2 + 0.001 * g * g
            lr_t = lr * math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
            w = w - lr_t * s1 / (np.sqrt(s2) + 1e-7)
        elif name == "RMSProp":
            rho, mom = 0.9, h.get("momentum", 0.0)
            s1 = (1 - rho) * g * g if s1 is None else rho * s1 + (1 - rho) * g * g
            denom = s1
            if h.get("centered"):
                s2 = (1 - rho) * g if s2 is None else rho * s2 + (1 - rho) * g
                denom = s1 - s2 * s2
            if mom:                                          # TF's ApplyRMSProp: eps inside the root
                step = lr * g / np.sqrt(denom + 1e-7)
                s3 = step if s3 is None else mom * s3 + step
                step = s3
            else:                                            # Keras: eps added to the root
                step = lr * g / (np.sqrt(denom) + 1e-7)
            w = w - step
        elif name == "Ftrl":
            l1, l2 = h.get("l1_regularization_strength", 0.0), h.get("l2_regularization_strength", 0.0)
            n = np.full_like(w, 0.1) if s1 is None else s1
            z = np.zeros_like(w) if s2 is None else s2
            n_new = n + g * g
            z = z + g - (np.sqrt(n_new) - np.sqrt(n)) / lr * w
            q = np.sqrt(n_new) / lr + 2 * l2
            w = np.where(np.abs(z) > l1, (np.sign(z) * l1 - z) / q, 0.0)
            s1, s2 = n_new, z
    return w


CASES = [("SGD", {}), ("Momentum", {"momentum": 0.9}), ("Momentum", {"momentum": 0.5, "use_nesterov": True}),
         ("Adagrad", {}), ("Adam", {}), ("RMSProp", {}), ("RMSProp", {"momentum": 0.8, "centered": True}),
         ("Ftrl", {}), ("Ftrl", {"l1_regularization_strength": 0.05, "l2_regularization_strength": 0.1})]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,hyper", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_updates_match_the_formulas(name, hyper, dtype):
    params, grads = _problem(dtype)
    expected = [_by_hand(name, p, [g[k] for g in grads], 0.05, **hyper) for k, p in enumerate(params)]
    opt = O.NAMES[name](learning_rate=0.05, **hyper)
    for g in grads:
        opt.apply(params, g)
    assert opt.iterations == len(grads)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for p, e in zip(params, expected):
        assert p.dtype == dtype
        np.testing.assert_allclose(p, e, rtol=tol, atol=tol)


RULE_HYPER = {"sgd": [0.05], "momentum": [0.05, 0.9, False], "adagrad": [0.05, 1e-7],
              "adam": [0.05, 0.9, 0.999, 1e-7], "rmsprop": [0.05, 0.9, 0.8, 1e-7, True],
              "ftrl": [0.05, 0.5, 0.05, 0.1, 0.0]}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(RULE_HYPER))
def test_compiled_loops_equal_the_numpy_rules(name, dtype):
    """The compiled loop (updates_cpu) and the NumPy fallback run the same rule: equal results. A NaN
    or inf gradient must reach the parameter in both (fastmath may turn an inf slot into NaN)."""
    from minirnn.kernels import updates
    rng = np.random.default_rng(3)
    n = 1003                                             # not a multiple of any vector width
    hyper = [dtype(h) if isinstance(h, float) else h for h in RULE_HYPER[name]]
    runs = []
    for update in (kernels.load_update(name), updates.in_place(name)):
        rng = np.random.default_rng(3)
        w = rng.standard_normal(n).astype(dtype)
        slots = [np.abs(rng.standard_normal(n)).astype(dtype) + dtype(0.1) for _ in range(updates.SLOTS[name])]
        if name == "rmsprop":
            slots[1][:] = 0                              # mg: keep ms - mg^2 positive
        for step in range(3):
            g = rng.standard_normal(n).astype(dtype)
            g[:2] = [np.nan, np.inf]
            with np.errstate(invalid="ignore"):
                update(w, g, *slots, *hyper)
        runs.append([w] + slots)
    from minirnn.kernels import updates_cpu
    assert kernels.load_update(name) is updates_cpu.LOOPS[name]   # the first run was the compiled loop
    tol = 1e-12 if dtype == np.float64 else 2e-5         # float32: Ftrl's n'^-p - n^-p cancels
    for compiled, reference in zip(*runs):
        assert compiled.dtype == dtype
        np.testing.assert_array_equal(np.isfinite(compiled), np.isfinite(reference))
        np.testing.assert_allclose(compiled[2:], reference[2:], rtol=tol, atol=tol)
    nonfinite = ~np.isfinite(np.stack(runs[0]))         # [w and slots, n]: Ftrl keeps them in its slots
    assert nonfinite[:, :2].any(axis=0).all() and not nonfinite[:, 2:].any()


def test_sum_squares_compiled_equals_numpy():
    from minirnn.kernels import updates
    g = np.random.default_rng(0).standard_normal(5000).astype(np.float32) * 1e3
    expected = float(np.sum(g.astype(np.float64) ** 2))
    assert abs(kernels.load_update("sum_squares")(g) - expected) <= 1e-12 * expected
    assert abs(updates.sum_squares(g) - expected) <= 1e-12 * expected


def test_clipping_takes_any_float_array():
    """Big-endian (e.g. read from a file) and non-contiguous gradients clip like native ones."""
    native = np.array([[3.0, 0.0], [4.0, 0.0]])
    for g in (native.astype(">f8"), native.astype(np.float32)[:, 0], native.T):
        (clipped,) = O.clip_by_norm([g], 2.5)
        np.testing.assert_allclose(np.linalg.norm(clipped), 2.5, rtol=1e-6)


def test_compiled_rule_is_numba():
    from minirnn.kernels import updates
    O.Adam().apply([np.zeros(3)], [np.ones(3)])
    assert hasattr(kernels.load_update("adam"), "signatures") and kernels.load_update("adam").signatures


def test_clipping_per_tensor_and_global():
    a, b = np.array([3.0, 4.0]), np.array([0.0, 12.0])            # norms 5 and 12, global 13
    ca, cb = O.clip_by_norm([a, b], 6.0)
    np.testing.assert_allclose(ca, a)
    np.testing.assert_allclose(np.linalg.norm(cb), 6.0)
    ga, gb = O.clip_by_global_norm([a, b], 6.5)
    np.testing.assert_allclose([np.linalg.norm(ga), np.linalg.norm(gb)], [2.5, 6.0])
    # through an optimizer: SGD with lr 1 moves by exactly the clipped gradient
    w = [np.zeros(2), np.zeros(2)]
    O.SGD(1.0, global_clipnorm=6.5).apply(w, [a, b])
    np.testing.assert_allclose(w[0], -ga)
    w = [np.zeros(2), np.zeros(2)]
    O.SGD(1.0, clipnorm=6.0).apply(w, [a, b])
    np.testing.assert_allclose(w[1], -cb)


def test_learning_rate_schedules():
    decay = O.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert decay(0) == 0.1 and math.isclose(decay(10), 0.05) and math.isclose(decay(5), 0.1 * 0.5 ** 0.5)
    stairs = O.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert stairs(9) == 0.1 and stairs(10) == 0.05
    w = [np.zeros(1)]
    opt = O.SGD(learning_rate=lambda step: 1.0 / (step + 1))
    for _ in range(3):
        opt.apply(w, [np.ones(1)])
    np.testing.assert_allclose(w[0], [-(1 + 1 / 2 + 1 / 3)])


@pytest.mark.parametrize("name,hyper", CASES[:8], ids=[n for n, _ in CASES[:8]])
def test_state_round_trip_continues_identically(name, hyper):
    params, grads = _problem()
    opt = O.NAMES[name](learning_rate=0.05, **hyper)
    for g in grads[:2]:
        opt.apply(params, g)
    saved_params, state = [p.copy() for p in params], opt.state()
    for g in grads[2:]:
        opt.apply(params, g)
    resumed = O.NAMES[name](learning_rate=0.05, **hyper)
    resumed.load_state(state)
    for g in grads[2:]:
        resumed.apply(saved_params, g)
    for a, b in zip(saved_params, params):
        np.testing.assert_array_equal(a, b)


def test_get_by_name_and_errors():
    opt = O.get("Adagrad")
    assert isinstance(opt, O.Adagrad) and opt.learning_rate == 0.05 and opt.clipnorm == 5.0
    mine = O.Adam(0.1)
    assert O.get(mine) is mine and O.get(lambda: mine) is mine
    with pytest.raises(ValueError, match="Unsupported optimizer name: Bogus"):
        O.get("Bogus")
    with pytest.raises(ValueError, match="optimizer: expected"):
        O.get(42)
    with pytest.raises(ValueError, match="learning_rate"):
        O.Adam(learning_rate=-1)
    with pytest.raises(ValueError, match="beta_1"):
        O.Adam(beta_1=1.0)
    opt = O.SGD()
    with pytest.raises(ValueError, match="gradient 0 has shape"):
        opt.apply([np.zeros(2)], [np.zeros(3)])
    adam = O.Adam()
    adam.apply([np.zeros(2)], [np.zeros(2)])
    with pytest.raises(ValueError, match="do not match"):
        adam.apply([np.zeros(3)], [np.zeros(3)])
    with pytest.raises(ValueError, match="slots"):
        O.Adam().load_state({"iterations": 1, "slots": [{"accumulator": np.zeros(2)}]})


def test_rmsprop_momentum_puts_epsilon_inside_the_root():
    """TF's ApplyRMSProp: mom = lr g / sqrt(ms + eps); visible with tiny gradients."""
    w = [np.zeros(1)]
    O.RMSProp(0.001, momentum=0.9).apply(w, [np.array([1e-4])])
    ms = 0.1 * 1e-8
    np.testing.assert_allclose(w[0], [-0.001 * 1e-4 / np.sqrt(ms + 1e-7)], rtol=1e-12)
    w = [np.zeros(1)]
    O.RMSProp(0.001).apply(w, [np.array([1e-4])])
    np.testing.assert_allclose(w[0], [-0.001 * 1e-4 / (np.sqrt(ms) + 1e-7)], rtol=1e-12)


def test_more_input_checks():
    with pytest.raises(ValueError, match="at most one of clipnorm"):
        O.SGD(clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        O.SGD(global_clipnorm=1.0).apply([np.zeros(2)], [np.array([np.inf, 0.0])])
    with pytest.raises(TypeError, match="float array"):
        O.SGD(0.5).apply([np.zeros(2, dtype=int)], [np.ones(2)])
    with pytest.raises(ValueError, match="learning rate at step 0"):
        O.SGD(lambda step: float("nan")).apply([np.zeros(2)], [np.ones(2)])
    with pytest.raises(ValueError, match="decay_rate must be positive"):
        O.ExponentialDecay(0.1, 10, -0.5)
    with pytest.raises(ValueError, match=r"rows must be in \[0, 4\)"):
        O.SparseRows([-1], np.ones((1, 2)), (4, 2))
    with pytest.raises(TypeError, match="rows must be a 1-D array of integers"):
        O.SparseRows([1.7], np.ones((1, 2)), (4, 2))
    opt = O.Momentum(0.1)
    opt.load_state({"iterations": 1, "slots": [{"momentum": np.asfortranarray(np.ones((2, 3)))}]})
    w = [np.zeros((2, 3))]
    opt.apply(w, [np.ones((2, 3))])
    opt.apply(w, [np.ones((2, 3))])
    np.testing.assert_allclose(opt.state()["slots"][0]["momentum"], 0.9 * (0.9 * 1 + 1) + 1)
    with pytest.raises(ValueError, match="do not match"):
        bad = O.Adam()
        bad.load_state({"iterations": 1, "slots": [{"m": np.zeros(2), "v": np.zeros(3)}]})
        bad.apply([np.zeros(2)], [np.ones(2)])
