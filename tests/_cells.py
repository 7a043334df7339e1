"""Helpers shared by the kernel tests: the four cell forms, random weights, one forward+backward."""

import numpy as np

from minirnn import kernels

# (name used in ids, kernel cell, cell options, gates, states)
FORMS = [
    ("simple_rnn", "simple_rnn", {}, 1, 1),
    ("lstm", "lstm", {}, 4, 2),
    ("gru", "gru", {"reset_after": True}, 3, 1),
    ("gru_v1", "gru", {"reset_after": False}, 3, 1),
]
FORM_IDS = [f[0] for f in FORMS]


def random_weights(form, D, H, dtype, rng, scale=0.5):
    _, cell, opts, G, _ = form
    kernel = (rng.standard_normal((D, G * H)) * scale).astype(dtype)
    recurrent = (rng.standard_normal((H, G * H)) * scale).astype(dtype)
    bias_shape = (2, G * H) if opts.get("reset_after") else (G * H,)
    bias = (rng.standard_normal(bias_shape) * scale).astype(dtype)
    return kernel, recurrent, bias


def random_case(form, B, T, D, H, dtype, rng, lengths=None, gaps=False):
    """x, mask, initial states, weights and upstream gradients for one random problem."""
    n_states = form[4]
    x = rng.standard_normal((B, T, D)).astype(dtype)
    if gaps:
        mask = rng.random((B, T)) < 0.6
    else:
        lengths = rng.integers(0, T + 1, size=B) if lengths is None else np.asarray(lengths)
        mask = np.arange(T)[None, :] < lengths[:, None]
    states0 = tuple((rng.standard_normal((B, H)) * 0.5).astype(dtype) for _ in range(n_states))
    weights = random_weights(form, D, H, dtype, rng)
    dy = rng.standard_normal((B, T, H)).astype(dtype)
    dstates = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in range(n_states))
    return x, np.ascontiguousarray(mask), states0, weights, dy, dstates


def run(form, backend, x, mask, states0, weights, dy, dstates, zero_output_for_mask=False):
    """Forward then backward; returns (y, states_T, dx, dstates0, [dkernel, drecurrent, dbias])."""
    _, cell, opts, _, _ = form
    forward, backward = kernels.load(cell, backend)
    y, states, saved = forward(x, mask, states0, *weights, zero_output_for_mask, **opts)
    grads = [np.zeros_like(w) for w in weights]
    dx, dstates0 = backward(dy, dstates, saved, *grads, need_dx=True)
    return y, states, dx, dstates0, grads


def loss(form, backend, x, mask, states0, weights, dy, dstates, zero_output_for_mask=False):
    """The scalar whose gradient ``run`` computes: sum(y * dy) + sum_k sum(state_k * dstates_k)."""
    _, cell, opts, _, _ = form
    forward, _ = kernels.load(cell, backend)
    y, states, _ = forward(x, mask, states0, *weights, zero_output_for_mask, **opts)
    return float(np.sum(y * dy) + sum(np.sum(s * d) for s, d in zip(states, dstates)))
