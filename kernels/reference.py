"""Every cell in plain NumPy, forward and backward: the readable version, to read first.

Each cell here is the textbook recurrence, one step at a time, with every step vectorised over the
batch: batch-major arrays, a Python loop over time, no workspaces, no threads, no blocked products.
The compiled kernels compute exactly this, equation for equation and in the same order, with the
machinery added around it (time-major arrays, one compiled time loop, batched products; see
``lstm.py``'s docstring):

=================================================  ==============================================
here                                               compiled twin (Numba)
=================================================  ==============================================
``simple_rnn_forward`` / ``simple_rnn_backward``   ``simple_rnn.forward`` / ``simple_rnn.backward``
``lstm_forward`` / ``lstm_backward``               ``lstm.forward`` / ``lstm.backward``
``gru_forward`` / ``gru_backward``                 ``gru.forward`` / ``gru.backward``
=================================================  ==============================================

It is also the test oracle (the kernels must agree with it to 1e-10 in float64) and the backend
without Numba (``kernels.load(cell, "numpy")``). The equations of each cell, forward and BPTT, head
its compiled module; the shape letters are B batch, T time, D input features, H units.

Masking (Keras semantics), shared by every cell through ``_forward`` / ``_backward``:

- a masked step keeps the states unchanged, and its input gets zero gradient;
- the output at a masked step repeats the previous output (zeros before a row's first valid step),
  or is zero with ``zero_output_for_mask=True``; so ``y[:, -1]`` is the output at each row's last
  valid step, Keras's ``return_sequences=False`` output; the gradient a repeated output receives
  flows back to the step whose output it repeats;
- a row with no valid step returns its initial states.

The forwards accept the Numba kernels' ``workspace`` argument, so that both backends have one
signature, and ignore it: the reference allocates as it goes.
"""

import numpy as np


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ---------------------------------------------------------------------------------------------
# The time loops shared by all cells. A cell supplies
#   step(xw_t, states) -> (new_states, output, cache)
#   step_back(dout, dnew_states, cache) -> (dxw_t, dstates_prev)   (adds recurrent weight grads)
# where xw_t = x_t @ kernel + input bias is precomputed for every step at once.
# ---------------------------------------------------------------------------------------------

def _forward(step, x, mask, states0, kernel, bias_in, zero_output_for_mask, training, all_outputs):
    B, T, _ = x.shape
    H = states0[0].shape[1]
    xw = x @ kernel + bias_in                      # input projection for all steps: [B, T, G*H]
    states = tuple(np.array(s, copy=True) for s in states0)
    y = np.zeros((B, T, H), dtype=x.dtype)
    y_prev = np.zeros((B, H), dtype=x.dtype)
    tape = []
    for t in range(T):
        m = mask[:, t, None]
        new_states, out, cache = step(xw[:, t], states)
        if training:                               # inference keeps no tape
            tape.append(cache)
        states = tuple(np.where(m, new, old) for new, old in zip(new_states, states))  # carry on masked
        y_prev = np.where(m, out, 0.0 if zero_output_for_mask else y_prev)
        y[:, t] = y_prev
    if not all_outputs:
        y = y[:, -1:].copy()                       # the last step's output only, [B, 1, H]
    saved = (tape, x, mask, kernel, zero_output_for_mask) if training else None
    return y, states, saved


def _backward(step_back, dy, dstates_T, saved, dkernel, dbias_in, need_dx):
    tape, x, mask, kernel, zero_output_for_mask = saved
    B, T, D = x.shape
    dstates = tuple(np.array(d, copy=True) for d in dstates_T)
    dy_carry = np.zeros_like(dstates[0])           # gradient of outputs repeated over masked steps
    dx = np.zeros_like(x) if need_dx else None
    for t in reversed(range(T)):
        m = mask[:, t, None]
        if zero_output_for_mask:
            dout = np.where(m, dy[:, t], 0.0)
        else:
            dout = np.where(m, dy[:, t] + dy_carry, 0.0)
            dy_carry = np.where(m, 0.0, dy_carry + dy[:, t])
        dxw, dstates_prev = step_back(dout, dstates, tape[t], m)
        dxw = np.where(m, dxw, 0.0)                # masked steps: no gradient into the input
        dstates = tuple(np.where(m, new, old) for new, old in zip(dstates_prev, dstates))
        dkernel += x[:, t].T @ dxw                 # dW += x_t^T dz
        dbias_in += dxw.sum(axis=0)                # db += sum_b dz
        if need_dx:
            dx[:, t] = dxw @ kernel.T              # dx_t = dz W^T
    return dx, dstates


# ---------------------------------------------------------------------------------------------
# simple RNN:  h_t = tanh(x_t W + b + h_{t-1} U)
# ---------------------------------------------------------------------------------------------

def simple_rnn_forward(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False,
                       workspace=None, training=True, all_outputs=True):
    """h_t = tanh(x_t W + h_{t-1} U + b). Compiled twin: :func:`simple_rnn.forward`."""
    U = recurrent_kernel

    def step(xw_t, states):
        (h,) = states
        h_new = np.tanh(xw_t + h @ U)              # h_t = tanh(x_t W + b + h_{t-1} U)
        return (h_new,), h_new, (h, h_new)

    y, states, saved = _forward(step, x, mask, states0, kernel, bias, zero_output_for_mask, training, all_outputs)
    return y, states, saved and (saved, U)


def simple_rnn_backward(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """BPTT through :func:`simple_rnn_forward`; adds the weight gradients. Compiled twin:
    :func:`simple_rnn.backward`."""
    saved, U = saved

    def step_back(dout, dstates, cache, m):
        h_prev, h = cache
        dh = dstates[0] + dout
        da = dh * (1.0 - h * h)                    # backprop through tanh
        da = np.where(m, da, 0.0)
        drecurrent_kernel[...] += h_prev.T @ da    # dU += h_{t-1}^T da (dW, db: in _backward)
        return da, (da @ U.T,)                     # dh_{t-1} = da U^T

    return _backward(step_back, dy, dstates_T, saved, dkernel, dbias, need_dx)


# ---------------------------------------------------------------------------------------------
# LSTM (Keras gate order i, f, c, o)
# ---------------------------------------------------------------------------------------------

def lstm_forward(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False, workspace=None,
                 training=True, all_outputs=True):
    """LSTM, Keras gate order i, f, c, o. Compiled twin: :func:`lstm.forward`."""
    U = recurrent_kernel
    H = U.shape[0]

    def step(xw_t, states):
        h, c = states
        z = xw_t + h @ U                           # z = x_t W + b + h_{t-1} U
        i = _sigmoid(z[:, :H])
        f = _sigmoid(z[:, H:2 * H])
        g = np.tanh(z[:, 2 * H:3 * H])
        o = _sigmoid(z[:, 3 * H:])
        c_new = f * c + i * g                      # c_t = f c_{t-1} + i g
        tc = np.tanh(c_new)
        h_new = o * tc                             # h_t = o tanh(c_t)
        return (h_new, c_new), h_new, (h, c, i, f, g, o, tc)

    y, states, saved = _forward(step, x, mask, states0, kernel, bias, zero_output_for_mask, training, all_outputs)
    return y, states, saved and (saved, U)


def lstm_backward(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """BPTT through :func:`lstm_forward`; adds the weight gradients. Compiled twin: :func:`lstm.backward`."""
    saved, U = saved

    def step_back(dout, dstates, cache, m):
        h_prev, c_prev, i, f, g, o, tc = cache
        dh = dstates[0] + dout
        do = dh * tc
        dc = dstates[1] + dh * o * (1.0 - tc * tc)  # through h = o * tanh(c)
        di, df, dg = dc * g, dc * c_prev, dc * i   # through c = f * c_prev + i * g
        dz = np.concatenate([di * i * (1.0 - i), df * f * (1.0 - f),   # through the activations
                             dg * (1.0 - g * g), do * o * (1.0 - o)], axis=1)
        dz = np.where(m, dz, 0.0)
        drecurrent_kernel[...] += h_prev.T @ dz    # dU += h_{t-1}^T dz (dW, db: in _backward)
        return dz, (dz @ U.T, dc * f)              # dh_{t-1} = dz U^T, dc_{t-1} = dc f

    return _backward(step_back, dy, dstates_T, saved, dkernel, dbias, need_dx)


# ---------------------------------------------------------------------------------------------
# GRU (Keras gate order z, r, h). reset_after=True: bias [2, 3H] (input row, recurrent row);
# reset_after=False: bias [3H], reset applied to h_{t-1} before the recurrent product.
# ---------------------------------------------------------------------------------------------

def gru_forward(x, mask, states0, kernel, recurrent_kernel, bias, zero_output_for_mask=False,
                reset_after=True, workspace=None, training=True, all_outputs=True):
    """GRU, Keras gate order z, r, h, both forms (``reset_after``). Compiled twin: :func:`gru.forward`."""
    U = recurrent_kernel
    H = U.shape[0]
    bias_in = bias[0] if reset_after else bias

    def step(xw_t, states):
        (h,) = states
        if reset_after:
            rec = h @ U + bias[1]
            z = _sigmoid(xw_t[:, :H] + rec[:, :H])
            r = _sigmoid(xw_t[:, H:2 * H] + rec[:, H:2 * H])
            rec_h = rec[:, 2 * H:]
            hh = np.tanh(xw_t[:, 2 * H:] + r * rec_h)
        else:
            rec = h @ U[:, :2 * H]
            z = _sigmoid(xw_t[:, :H] + rec[:, :H])
            r = _sigmoid(xw_t[:, H:2 * H] + rec[:, H:])
            rec_h = (r * h) @ U[:, 2 * H:]
            hh = np.tanh(xw_t[:, 2 * H:] + rec_h)
        h_new = z * h + (1.0 - z) * hh
        return (h_new,), h_new, (h, z, r, hh, rec_h)

    y, states, saved = _forward(step, x, mask, states0, kernel, bias_in, zero_output_for_mask, training,
                                all_outputs)
    return y, states, saved and (saved, U, reset_after)


def gru_backward(dy, dstates_T, saved, dkernel, drecurrent_kernel, dbias, need_dx=True):
    """BPTT through :func:`gru_forward`; adds the weight gradients. Compiled twin: :func:`gru.backward`."""
    saved, U, reset_after = saved
    H = U.shape[0]

    def step_back(dout, dstates, cache, m):
        h_prev, z, r, hh, rec_h = cache
        dh = dstates[0] + dout
        dhh = dh * (1.0 - z)                       # through h = z * h_prev + (1 - z) * hh
        da_h = dhh * (1.0 - hh * hh)               # through tanh
        da_z = dh * (h_prev - hh) * z * (1.0 - z)
        if reset_after:
            dr = da_h * rec_h
            da_r = dr * r * (1.0 - r)
            drec = np.where(m, np.concatenate([da_z, da_r, da_h * r], axis=1), 0.0)
            drecurrent_kernel[...] += h_prev.T @ drec
            dbias[1] += drec.sum(axis=0)
            dh_prev = dh * z + drec @ U.T
        else:
            drh = da_h @ U[:, 2 * H:].T            # gradient of (r * h_prev)
            da_r = drh * h_prev * r * (1.0 - r)
            dzr = np.where(m, np.concatenate([da_z, da_r], axis=1), 0.0)
            da_h = np.where(m, da_h, 0.0)
            drecurrent_kernel[:, :2 * H] += h_prev.T @ dzr
            drecurrent_kernel[:, 2 * H:] += (r * h_prev).T @ da_h
            dh_prev = dh * z + drh * r + dzr @ U[:, :2 * H].T
        dxw = np.concatenate([da_z, da_r, da_h], axis=1)
        return dxw, (dh_prev,)

    dbias_in = dbias[0] if reset_after else dbias
    return _backward(step_back, dy, dstates_T, saved, dkernel, dbias_in, need_dx)
