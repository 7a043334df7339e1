"""Recurrent layers with explicit ``forward`` and ``backward``: SimpleRNN, LSTM, GRU.

Weights use Keras's layout and order (``get_weights()`` returns ``[kernel, recurrent_kernel, bias]``),
so weights can be ported to and from Keras/TF. The maths lives in ``minirnn.kernels``; a layer
validates its input, owns its weights and gradients, and remembers what its last ``forward`` saved
for ``backward``.

Example
-------
>>> import numpy as np
>>> from minirnn.layers import LSTM
>>> layer = LSTM(8, seed=0)
>>> x = np.random.default_rng(0).standard_normal((4, 10, 3)).astype(np.float32)
>>> y = layer.forward(x, lengths=[10, 7, 3, 1])          # [4, 8]: output at each last valid step
>>> dx, dstates = layer.backward(np.ones_like(y))         # weight gradients in layer.grads
"""

import numpy as np

from . import kernels

__all__ = ["SimpleRNN", "LSTM", "GRU"]

_FLOATS = (np.float32, np.float64)


def glorot_uniform(rng, shape, dtype):
    """Keras's default kernel initialiser: U(-l, l), l = sqrt(6 / (fan_in + fan_out))."""
    limit = np.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def orthogonal(rng, shape, dtype):
    """Keras's default recurrent initialiser: a (semi-)orthogonal matrix from the QR of a normal one."""
    rows, cols = shape
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return np.ascontiguousarray(q[:rows, :cols], dtype=dtype)


def _as_float_array(name, value, dtype=None):
    arr = np.asarray(value)
    if arr.dtype.type not in _FLOATS:
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {arr.dtype}")
    if not arr.dtype.isnative:                   # e.g. big-endian data from HDF5 or np.load
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if dtype is not None and arr.dtype != dtype:
        raise TypeError(f"{name}: the layer computes in {np.dtype(dtype).name}, got {arr.dtype}; "
                        f"cast it explicitly (minirnn never changes a dtype silently)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or inf")
    return np.ascontiguousarray(arr)


class _Recurrent:
    """Common machinery; subclasses set ``cell``, ``n_gates`` and ``n_states``."""

    cell = None
    n_gates = 1
    n_states = 1

    def __init__(self, units, return_sequences=False, return_state=False,
                 zero_output_for_mask=False, dtype=None, seed=None, backend=None):
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units < 1:
            raise ValueError(f"units: expected a positive integer, got {units!r}")
        if backend not in (None,) + kernels.BACKENDS:
            raise ValueError(f"backend: expected one of {kernels.BACKENDS} or None, got {backend!r}")
        if dtype is not None and np.dtype(dtype).type not in _FLOATS:
            raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}")
        self.units = int(units)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.seed = seed
        self.backend = backend
        self.input_dim = None
        self.kernel = self.recurrent_kernel = self.bias = None
        self.grads = None
        self._saved = None
        self._workspace = kernels.Workspace()   # scratch reused by training steps (kernels.workspace)

    # ---- weights -------------------------------------------------------------------------

    def _bias_shape(self):
        return (self.n_gates * self.units,)

    def weight_shapes(self, input_dim):
        """Shapes of ``[kernel, recurrent_kernel, bias]`` for inputs with ``input_dim`` features."""
        G = self.n_gates * self.units
        return [(input_dim, G), (self.units, G), self._bias_shape()]

    def _init_bias(self):
        return np.zeros(self._bias_shape(), dtype=self.dtype)

    def build(self, input_dim, dtype=None):
        """Create the weights with Keras's initialisers (glorot_uniform, orthogonal, zeros)."""
        if self.dtype is None:
            self.dtype = np.dtype(dtype or np.float32)
        rng = np.random.default_rng(self.seed)
        k_shape, r_shape, _ = self.weight_shapes(input_dim)
        self.input_dim = int(input_dim)
        self.kernel = glorot_uniform(rng, k_shape, self.dtype)
        self.recurrent_kernel = orthogonal(rng, r_shape, self.dtype)   # Keras: one [H, G*H] matrix
        self.bias = self._init_bias()
        self.zero_grads()
        self._saved = None

    @property
    def built(self):
        return self.kernel is not None

    def get_weights(self):
        """``[kernel, recurrent_kernel, bias]`` (copies), Keras layout."""
        if not self.built:
            raise RuntimeError(f"{type(self).__name__} has no weights yet: call forward or set_weights")
        return [self.kernel.copy(), self.recurrent_kernel.copy(), self.bias.copy()]

    def set_weights(self, weights):
        """Set ``[kernel, recurrent_kernel, bias]`` in Keras layout; builds the layer if needed.

        The arrays are copied in the layer's dtype (the first weights' float dtype for a new layer,
        float32 for integer weights). Forgets what the last ``forward`` saved for ``backward``.
        """
        if len(weights) != 3:
            raise ValueError(f"set_weights: expected [kernel, recurrent_kernel, bias], got {len(weights)} arrays")
        kernel = np.asarray(weights[0])
        if kernel.ndim != 2:
            raise ValueError(f"set_weights: kernel must be 2-D [input_dim, {self.n_gates}*units], got shape {kernel.shape}")
        dtype = self.dtype or (np.dtype(kernel.dtype.type) if kernel.dtype.type in _FLOATS else np.dtype(np.float32))
        expected = self.weight_shapes(kernel.shape[0])
        names = ("kernel", "recurrent_kernel", "bias")
        arrays = []
        for name, w, shape in zip(names, weights, expected):
            w = np.asarray(w)
            if w.dtype.kind not in "fiu":
                raise TypeError(f"set_weights: {name} must hold real numbers, got dtype {w.dtype}")
            if w.shape != tuple(shape):
                raise ValueError(f"set_weights: {name} must have shape {tuple(shape)}, got {w.shape}")
            if not np.all(np.isfinite(w)):
                raise ValueError(f"set_weights: {name} contains NaN or inf")
            arrays.append(np.ascontiguousarray(w, dtype=dtype))
        self.dtype = np.dtype(dtype)
        self.input_dim = kernel.shape[0]
        self.kernel, self.recurrent_kernel, self.bias = arrays
        self.zero_grads()
        self._saved = None

    def zero_grads(self):
        """Reset the accumulated gradients ``grads`` (same order as ``get_weights``) to zero."""
        self.grads = [np.zeros_like(self.kernel), np.zeros_like(self.recurrent_kernel),
                      np.zeros_like(self.bias)]

    def _cell_options(self):
        return {}

    # ---- forward / backward ------------------------------------------------------------------

    def _prepare_mask(self, B, T, mask, lengths):
        if mask is not None and lengths is not None:
            raise ValueError("give either mask or lengths, not both")
        if lengths is not None:
            lengths = np.asarray(lengths)
            if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer):
                raise ValueError(f"lengths: expected {B} integers (one per row), got shape "
                                 f"{lengths.shape} dtype {lengths.dtype}")
            if lengths.min() < 0 or lengths.max() > T:
                raise ValueError(f"lengths: each must be in [0, {T}] (the time steps of x), got "
                                 f"min {lengths.min()} max {lengths.max()}")
            return np.arange(T)[None, :] < lengths[:, None]
        if mask is None:
            return np.ones((B, T), dtype=bool)
        mask = np.asarray(mask)
        if mask.shape != (B, T):
            raise ValueError(f"mask: expected shape [batch, time] = {(B, T)}, got {mask.shape}")
        if mask.dtype != bool:
            if not np.issubdtype(mask.dtype, np.number) or not np.all((mask == 0) | (mask == 1)):
                raise ValueError(f"mask: expected booleans (or 0/1), got dtype {mask.dtype}")
            mask = mask.astype(bool)
        return np.ascontiguousarray(mask)

    def _checked_input(self, x, mask=None, lengths=None):
        """(x, mask) validated and prepared for a kernel call: x a C-contiguous [B, T, D] float array
        of the layer's dtype, finite; mask [B, T] bool (from ``mask``, ``lengths`` or all valid)."""
        x = _as_float_array("x", x, self.dtype)
        if x.ndim != 3:
            raise ValueError(f"x: expected shape [batch, time, features], got {x.shape}")
        B, T, D = x.shape
        if B == 0 or T == 0:
            raise ValueError(f"x: empty batch or sequence (shape {x.shape}); need batch >= 1 and time >= 1")
        if self.built and D != self.input_dim:
            raise ValueError(f"x: the layer was built for {self.input_dim} features, got {D}")
        return x, self._prepare_mask(B, T, mask, lengths)

    def _checked_states(self, B, initial_state, dtype):
        """The initial states for a batch of B rows as a tuple of [B, units] arrays: zeros for None."""
        if initial_state is None:
            return tuple(np.zeros((B, self.units), dtype=dtype) for _ in range(self.n_states))
        if len(initial_state) != self.n_states:
            raise ValueError(f"initial_state: {type(self).__name__} has {self.n_states} state(s), "
                             f"got {len(initial_state)}")
        states0 = tuple(_as_float_array(f"initial_state[{k}]", s, dtype) for k, s in enumerate(initial_state))
        for k, s in enumerate(states0):
            if s.shape != (B, self.units):
                raise ValueError(f"initial_state[{k}]: expected shape {(B, self.units)}, got {s.shape}")
        return states0

    def forward(self, x, mask=None, initial_state=None, lengths=None, training=True):
        """Run the layer over a batch of sequences.

        Parameters
        ----------
        x : array [B, T, D], float32 or float64 (kept; the layer's dtype is fixed at its first call)
        mask : array [B, T] of bool, optional. True on valid steps; gaps are allowed.
        initial_state : list of arrays [B, H], optional (LSTM: [h0, c0]). Zeros when omitted.
        lengths : array [B] of ints, optional. Same as a mask of ``lengths[b]`` leading valid steps.
        training : keep what ``backward`` needs (default). False frees it after the call.

        Returns
        -------
        The output: [B, T, H] with ``return_sequences``, else [B, H]: the output at the last time
        step, i.e. each row's last valid output (zeros for a row that ends early when
        ``zero_output_for_mask``, as Keras).
        With ``return_state``, a list ``[output, *final_states]``.
        """
        self._saved = None
        x, mask = self._checked_input(x, mask, lengths)
        states0 = self._checked_states(x.shape[0], initial_state, x.dtype)
        if not self.built:                         # only once the whole call is known to be valid
            self.build(x.shape[2], x.dtype)
        forward, _ = kernels.load(self.cell, self.backend)
        # a training forward reuses the layer's scratch (what the last one saved was dropped above);
        # inference uses the calling thread's own, so several threads may predict with one layer at once
        workspace = self._workspace if training else self._workspace.inference()
        y, states, saved = forward(x, mask, states0, self.kernel, self.recurrent_kernel, self.bias,
                                   self.zero_output_for_mask, workspace=workspace, training=training,
                                   all_outputs=training or self.return_sequences, **self._cell_options())
        self._saved = (saved, y.shape, x.shape) if training else None
        out = y if self.return_sequences else np.ascontiguousarray(y[:, -1])
        return [out, *states] if self.return_state else out

    def backward(self, d_output, d_states=None, need_input_grad=True):
        """Backprop through the last ``forward``.

        Parameters
        ----------
        d_output : gradient of the loss w.r.t. the output ([B, T, H] or [B, H])
        d_states : list of [B, H] gradients w.r.t. the final states, optional
        need_input_grad : compute dx (skip it for a first layer fed by data)

        Returns
        -------
        (dx [B, T, D] or None, [d_initial_state, ...]). The weight gradients are added to
        ``self.grads`` (``[dkernel, drecurrent_kernel, dbias]``); call ``zero_grads()`` between steps.
        """
        if self._saved is None:
            raise RuntimeError("backward needs a preceding forward(..., training=True)")
        saved, y_shape, x_shape = self._saved
        B, T, H = y_shape
        d_output = _as_float_array("d_output", d_output, self.dtype)
        if self.return_sequences:
            if d_output.shape != y_shape:
                raise ValueError(f"d_output: expected shape {y_shape}, got {d_output.shape}")
            dy = d_output
        else:
            if d_output.shape != (B, H):
                raise ValueError(f"d_output: expected shape {(B, H)}, got {d_output.shape}")
            dy = np.zeros(y_shape, dtype=self.dtype)
            dy[:, -1] = d_output
        if d_states is None:
            d_states = tuple(np.zeros((B, H), dtype=self.dtype) for _ in range(self.n_states))
        else:
            if len(d_states) != self.n_states:
                raise ValueError(f"d_states: expected {self.n_states} array(s), got {len(d_states)}")
            d_states = tuple(_as_float_array(f"d_states[{k}]", d, self.dtype) for k, d in enumerate(d_states))
            for k, d in enumerate(d_states):
                if d.shape != (B, H):
                    raise ValueError(f"d_states[{k}]: expected shape {(B, H)}, got {d.shape}")
        _, backward = kernels.load(self.cell, self.backend)
        dx, dstates0 = backward(dy, d_states, saved, *self.grads, need_dx=need_input_grad)
        return dx, list(dstates0)


class SimpleRNN(_Recurrent):
    """Fully-connected RNN with tanh: ``h_t = tanh(x_t W + h_{t-1} U + b)``.

    Parameters
    ----------
    units : H, the size of the output and state
    return_sequences : output every step [B, T, H] instead of the last valid one [B, H]
    return_state : also return the final states
    zero_output_for_mask : zeros instead of the repeated last output at masked steps
    dtype : float32 or float64 (default: the first input's dtype)
    seed : seeds the weight initialisers
    backend : 'numba' (default) or 'numpy' (the reference, no compiler needed)
    """

    cell = "simple_rnn"


class LSTM(_Recurrent):
    """Long short-term memory layer, Keras gate order i, f, c, o; states [h, c].

    Same parameters as :class:`SimpleRNN`, plus ``unit_forget_bias`` (default True: the forget-gate
    bias starts at 1, as Keras).
    """

    cell = "lstm"
    n_gates = 4
    n_states = 2

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _init_bias(self):
        bias = super()._init_bias()
        if self.unit_forget_bias:
            bias[self.units:2 * self.units] = 1.0
        return bias


class GRU(_Recurrent):
    """Gated recurrent unit, Keras gate order z, r, h.

    Same parameters as :class:`SimpleRNN`, plus ``reset_after``: True (TF2 default, bias [2, 3H],
    reset applied after the recurrent product) or False (TF1 GRUCell form, bias [3H]).
    """

    cell = "gru"
    n_gates = 3

    def __init__(self, units, reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        G = 3 * self.units
        return (2, G) if self.reset_after else (G,)

    def _cell_options(self):
        return {"reset_after": self.reset_after}
