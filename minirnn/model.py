"""The layer graph between input features and logits, with explicit forward and backward.

    sequence input [B, T, Ds] ++ context [B, Dc] tiled over T    ->  x [B, T, Ds + Dc]   (as TF)
    dropout(keep_probabilities[0])  -> recurrent layer 1 -> dropout(keep[1]) -> ... layer n
    -> dropout(keep[n]) -> dense logits on each row's last valid output [B, k]
                           (or on every step with ``return_sequences``: [B, T, k])

This is TF's ``RNNModel``: ``units=[32, 16]`` stacks two cells, each layer's output sequence feeding
the next. Dropout follows TF1's ``dropout_keep_probabilities`` (len(units) + 1 keep probabilities:
before each layer and after the last), at training time only, with inverted scaling (kept values
divided by the keep probability). Initialisation is Keras's (glorot_uniform kernels, orthogonal
recurrent kernels, zero biases, LSTM forget bias 1); one ``seed`` drives initialisation and dropout,
so two models with the same seed and data compute bit-identical results on the CPU.

Parameters are named like TF's variables (``rnn_model/rnn/stacked_rnn_cells/lstm_cell/kernel``,
``rnn_model/logits/bias``); ``params()`` and ``grads()`` return them in one fixed order.
"""

import math

import numpy as np

from . import kernels
from .layers import GRU, LSTM, SimpleRNN, glorot_uniform

CELLS = {"simple_rnn": SimpleRNN, "lstm": LSTM, "gru": GRU}


def tile_context(sequence, context):
    """[B, T, Ds] and [B, Dc] (or None) -> [B, T, Ds + Dc]: the context repeated at every step."""
    if context is None:
        return sequence
    B, T, _ = sequence.shape
    return np.concatenate([sequence, np.broadcast_to(context[:, None, :], (B, T, context.shape[1]))], axis=2)


def stack_forward(layers, x, scales, dropout, cell_forward):
    """The recurrent stack over ``x``: before each layer its dropout (``dropout(x, k)``, where
    ``scales[k]`` is not None), then the layer's cell (``cell_forward(k, layer, x)`` -> (y, final
    states, what backward needs)). -> (the last layer's output, per-layer final states, per-layer
    saved). :class:`RNNModel` runs it on each row block of the host's arrays, the GPU runner
    (:class:`minirnn.cuda.DeviceModel`) on device arrays."""
    finals, saved = [], []
    for k, layer in enumerate(layers):
        if scales[k] is not None:
            x = dropout(x, k)                                  # inverted dropout before the layer
        x, states, kept = cell_forward(k, layer, x)
        finals.append(states)
        saved.append(kept)
    return x, finals, saved


def stack_backward(layers, dy, scales, dropout, cell_backward, need_input_grad):
    """Backward of :func:`stack_forward`, last layer first: the cell's backward
    (``cell_backward(k, layer, dy, need_dx)`` -> dx or None, adding the weight gradients), then
    the dropout's (``dropout(dx, k)``: the same scale). -> the input's gradient, or None."""
    for k in range(len(layers) - 1, -1, -1):
        dy = cell_backward(k, layers[k], dy, k > 0 or need_input_grad)
        if dy is not None and scales[k] is not None:
            dy = dropout(dy, k)
    return dy


class RNNModel:
    """Stacked recurrent layers and a dense logits layer.

    Parameters
    ----------
    units : int or list of ints, one per stacked layer
    cell_type : 'simple_rnn', 'lstm' or 'gru', or a list of them (one per layer, for mixed stacks)
    logits_dimension : outputs of the dense layer (1 for binary, n_classes, label_dimension)
    return_sequences : logits for every step [B, T, k] instead of the last valid one [B, k]
    dropout_keep_probabilities : None, or len(units) + 1 keep probabilities in (0, 1]
    seed : drives initialisation and dropout
    dtype : 'float32' (default) or 'float64'
    cell_options : extra layer arguments, e.g. ``{"reset_after": False}`` for GRU (or a list, per layer)
    backend : kernel backend, 'numba' (default) or 'numpy'
    """

    def __init__(self, units, cell_type="lstm", logits_dimension=1, return_sequences=False,
                 dropout_keep_probabilities=None, seed=None, dtype="float32", cell_options=None, backend=None):
        self._single_int = isinstance(units, (int, np.integer)) and not isinstance(units, bool)
        units = [units] if self._single_int else units
        if not isinstance(units, (list, tuple)) or not units or not all(
                isinstance(u, (int, np.integer)) and not isinstance(u, bool) and u > 0 for u in units):
            raise ValueError(f"units: expected a positive int or a non-empty list of them, got {units!r}")
        cell_types = list(cell_type) if isinstance(cell_type, (list, tuple)) else [cell_type] * len(units)
        options = list(cell_options) if isinstance(cell_options, (list, tuple)) else [cell_options] * len(units)
        if len(cell_types) != len(units) or len(options) != len(units):
            raise ValueError(f"cell_type / cell_options: give one per layer ({len(units)}), got "
                             f"{len(cell_types)} / {len(options)}")
        for kind in cell_types:
            if kind not in CELLS:
                raise ValueError(f"cell_type: expected one of {sorted(CELLS)}, got {kind!r}")
        if not isinstance(logits_dimension, (int, np.integer)) or logits_dimension < 1:
            raise ValueError(f"logits_dimension: expected a positive int, got {logits_dimension!r}")
        if dropout_keep_probabilities is not None:
            probs = list(dropout_keep_probabilities)
            if len(probs) != len(units) + 1:
                raise ValueError(f"dropout_keep_probabilities: expected {len(units) + 1} values "
                                 f"(len(units) + 1), got {len(probs)}")
            if not all(0.0 < p <= 1.0 for p in probs):
                raise ValueError(f"dropout_keep_probabilities: each must be in (0, 1], got {probs}")
            dropout_keep_probabilities = [float(p) for p in probs]
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}")
        for kind, opts in zip(cell_types, options):
            allowed = {"lstm": {"unit_forget_bias"}, "gru": {"reset_after"}, "simple_rnn": set()}[kind]
            unknown = set(opts or {}) - allowed
            if unknown:
                raise ValueError(f"cell_options: {sorted(unknown)} not accepted for cell_type {kind!r}; "
                                 f"allowed: {sorted(allowed)}")
        self.units = [int(u) for u in units]
        self.cell_types = cell_types
        self.cell_type = cell_types[0] if len(set(cell_types)) == 1 else list(cell_types)
        self.logits_dimension = int(logits_dimension)
        self.return_sequences = bool(return_sequences)
        self.keep = dropout_keep_probabilities
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self.cell_options = [dict(o or {}) for o in options]
        self.backend = backend
        seeds = np.random.SeedSequence(seed).spawn(len(self.units) + 2)
        self.layers = [CELLS[kind](n, return_sequences=True, return_state=True, dtype=self.dtype,
                                   seed=s.generate_state(1)[0], backend=backend, **opts)
                       for kind, n, opts, s in zip(cell_types, self.units, self.cell_options, seeds)]
        self._logits_seed = seeds[-2].generate_state(1)[0]
        self.rng = np.random.default_rng(seeds[-1])      # dropout masks
        self.logits_kernel = self.logits_bias = None
        self.input_dims = None
        self._cache = None
        self.final_states = None           # after forward: per layer, its final states ([h] or LSTM [h, c])

    # ---- parameters ---------------------------------------------------------------------------

    def build(self, sequence_dim, context_dim=0):
        """Create every weight for inputs of ``sequence_dim`` features plus ``context_dim`` context."""
        self.input_dims = (int(sequence_dim), int(context_dim))
        size = sum(self.input_dims)
        if size < 1:
            raise ValueError("build: the model needs at least one input feature")
        for layer in self.layers:
            layer.build(size, self.dtype)
            size = layer.units
        rng = np.random.default_rng(self._logits_seed)
        self.logits_kernel = glorot_uniform(rng, (size, self.logits_dimension), self.dtype)
        self.logits_bias = np.zeros(self.logits_dimension, dtype=self.dtype)
        self._logits_grads = [np.zeros_like(self.logits_kernel), np.zeros_like(self.logits_bias)]

    def weight_count(self, sequence_dim, context_dim=0):
        """How many weights :meth:`build` with these input sizes creates (nothing is allocated)."""
        size, count = int(sequence_dim) + int(context_dim), 0
        for layer in self.layers:
            count += sum(math.prod(shape) for shape in layer.weight_shapes(size))
            size = layer.units
        return count + (size + 1) * self.logits_dimension

    @property
    def built(self):
        return self.logits_kernel is not None

    def param_names(self):
        """TF-style variable names, in the order of :meth:`params`."""
        names, seen = [], {}
        for kind in self.cell_types:
            cell = f"{kind}_cell"
            count = seen[kind] = seen.get(kind, -1) + 1     # Keras numbers cells of one kind: x, x_1, ...
            if self._single_int:               # TF: units=int builds the fused Keras layer
                scope = f"rnn_model/{kind}/{cell}"
            elif len(self.layers) == 1:
                scope = f"rnn_model/rnn/{cell}"
            else:
                scope = f"rnn_model/rnn/stacked_rnn_cells/{cell}{'' if count == 0 else f'_{count}'}"
            names += [f"{scope}/kernel", f"{scope}/recurrent_kernel", f"{scope}/bias"]
        return names + ["rnn_model/logits/kernel", "rnn_model/logits/bias"]

    def params(self):
        """Every weight array (the live arrays: an optimizer updates them in place)."""
        self._require_built()
        out = []
        for layer in self.layers:
            out += [layer.kernel, layer.recurrent_kernel, layer.bias]
        return out + [self.logits_kernel, self.logits_bias]

    def grads(self):
        """Accumulated gradients, aligned with :meth:`params`."""
        self._require_built()
        out = []
        for layer in self.layers:
            out += layer.grads
        return out + self._logits_grads

    def zero_grads(self):
        """Reset the accumulated gradients to zero (nothing to do before the model is built)."""
        if not self.built:
            return
        for layer in self.layers:
            layer.zero_grads()
        for g in self._logits_grads:
            g[...] = 0

    def set_params(self, values):
        """Copy ``values`` (aligned with :meth:`params`) into the weights; shapes must match."""
        params = self.params()
        if len(values) != len(params):
            raise ValueError(f"set_params: expected {len(params)} arrays, got {len(values)}")
        for name, p, v in zip(self.param_names(), params, values):
            v = np.asarray(v)
            if v.shape != p.shape:
                raise ValueError(f"set_params: {name} has shape {p.shape}, got {v.shape}")
            p[...] = v

    def _require_built(self):
        if not self.built:
            raise RuntimeError("the model has no weights yet: call build(sequence_dim, context_dim) or forward")

    # ---- forward / backward -------------------------------------------------------------------

    def _dropout_scale(self, shape, k, training):
        """The inverted-dropout scale for dropout ``k`` on an input of ``shape``, or None (no dropout)."""
        if not training or self.keep is None or self.keep[k] >= 1.0:
            return None
        keep = self.keep[k]
        return (self.rng.random(shape) < keep).astype(self.dtype) / self.dtype.type(keep)

    def dropout_scales(self, B, T, D, training):
        """The inverted-dropout scales of a batch (None where a dropout keeps everything): before
        each layer [B, T, input width], and before the logits layer [B, T, H] or [B, H]. Drawn in
        this order from the model's generator, so a batch's masks do not depend on how it is run."""
        widths = [D] + self.units
        scales = [self._dropout_scale((B, T, widths[k]), k, training) for k in range(len(self.layers))]
        scales.append(self._dropout_scale((B, T, widths[-1]) if self.return_sequences else (B, widths[-1]),
                                          len(self.layers), training))
        return scales

    def checked_inputs(self, sequence, mask, context=None, initial_states=None):
        """Validate one batch for :meth:`forward`: -> (sequence, context, (B, T, Ds, Dc)), with errors
        naming the input and what was expected."""
        sequence = np.asarray(sequence)
        if sequence.ndim != 3:
            raise ValueError(f"sequence input: expected shape [batch, time, features], got {sequence.shape}")
        B, T, Ds = sequence.shape
        Dc = 0
        if context is not None:
            context = np.asarray(context)
            if context.ndim != 2 or context.shape[0] != B:
                raise ValueError(f"context input: expected shape [{B}, features], got {context.shape}")
            Dc = context.shape[1]
        for name, arr in (("sequence input", sequence), ("context input", context)):
            if arr is not None and arr.dtype != self.dtype:
                raise TypeError(f"{name}: the model computes in {self.dtype.name}, got {arr.dtype}")
        if mask is not None and np.shape(mask) != (B, T):
            raise ValueError(f"mask: expected shape [{B}, {T}], got {np.shape(mask)}")
        if self.built and (Ds, Dc) != self.input_dims:
            raise ValueError(f"inputs: the model was built for {self.input_dims[0]} sequence and "
                             f"{self.input_dims[1]} context features, got {Ds} and {Dc}")
        if initial_states is not None and len(initial_states) != len(self.layers):
            raise ValueError(f"initial_states: expected one list of states per layer ({len(self.layers)}), "
                             f"got {len(initial_states)}")
        return sequence, context, (B, T, Ds, Dc)

    def forward(self, sequence, mask, context=None, training=False, initial_states=None):
        """Logits for a batch.

        sequence [B, T, Ds] and context [B, Dc] (optional) in the model's dtype; mask [B, T] bool.
        ``initial_states``: None (zeros), or per layer a list of [B, units] arrays ([h] or LSTM
        [h, c]); they are inputs, not trained. The final states (masked steps carry the state, so
        they are each row's state after its last valid step) are left in ``self.final_states``.
        Returns [B, k] (each row's last valid step) or [B, T, k] with ``return_sequences``.
        """
        sequence, context, (B, T, Ds, Dc) = self.checked_inputs(sequence, mask, context, initial_states)
        if not self.built:                 # only once the call is known to be valid
            self.build(Ds, Dc)
        x = tile_context(sequence, context)
        backends = self._backends()
        bounds = self._row_blocks(B, T, backends)
        h, self.final_states, scales = self._forward_stack(x, mask, initial_states, training, bounds, backends)
        if scales[-1] is not None:
            h = h * scales[-1]
        logits = h @ self.logits_kernel + self.logits_bias
        self._cache = (h, scales, (B, T, Ds, Dc), bounds, backends) if training else None
        return logits

    def _backends(self):
        """Each layer's kernel backend (the default one read once)."""
        default = kernels.default_backend() if any(layer.backend is None for layer in self.layers) else None
        return [layer.backend or default for layer in self.layers]

    def _row_blocks(self, B, T, backends=None):
        """Row-block bounds ``[0, ..., B]`` for :meth:`_forward_stack`: one block per thread when the
        Numba kernels run a batch with enough work to split (``kernels._threads.split_rows``), else
        ``[0, B]``."""
        if all(backend == "numba" for backend in backends or self._backends()):
            from .kernels import _threads
            bounds = _threads.split_rows(B, T, [(layer.kernel, layer.recurrent_kernel) for layer in self.layers])
            if bounds is not None:
                return bounds
        return [0, B]

    def _forward_stack(self, x, mask, initial_states, training, bounds, backends):
        """The recurrent layers, run block by block: each row block of ``bounds`` goes through every
        layer (dropout, then the cell's kernel) in its own thread, so a split batch is handed to the
        worker threads once per forward rather than once per layer. One block runs here, with the
        BLAS threads the kernel's size calls for. The dropout scales are drawn for the whole batch
        first, in layer order, so the numbers do not depend on the split.
        -> (h: [B, T, H] or each row's last valid output [B, H], final states, dropout scales)."""
        from .kernels import _threads
        x, mask = self.layers[0]._checked_input(x, mask)
        B, T, _ = x.shape
        states0 = [layer._checked_states(B, None if initial_states is None else initial_states[k], self.dtype)
                   for k, layer in enumerate(self.layers)]
        scales = self.dropout_scales(B, T, x.shape[2], training)
        split = len(bounds) > 2
        # one block: the cell's own call, which picks its BLAS threads; blocks: the bare kernels
        calls = [(kernels.load(layer.cell, backend, split_rows=not split)[0], layer._cell_options())
                 for layer, backend in zip(self.layers, backends)]
        for layer in self.layers:
            layer._saved = None            # a training forward overwrites the layers' workspaces
        # training: the layers' own scratch; inference: the calling thread's (see kernels.workspace)
        spaces = [layer._workspace if training else layer._workspace.inference() for layer in self.layers]

        last = len(self.layers) - 1

        def block(b, b0, b1):
            def cell(k, layer, y):
                forward, options = calls[k]
                # inference keeps no state for backward, and only the outputs read later
                return forward(y, mask[b0:b1], tuple(s[b0:b1] for s in states0[k]), layer.kernel,
                               layer.recurrent_kernel, layer.bias, layer.zero_output_for_mask,
                               workspace=spaces[k].block(b) if split else spaces[k], training=training,
                               all_outputs=training or k < last or self.return_sequences, **options)
            y, finals, saved = stack_forward(self.layers, x[b0:b1], scales, lambda y, k: y * scales[k][b0:b1], cell)
            return (y if self.return_sequences else np.ascontiguousarray(y[:, -1])), finals, saved

        parts = _threads.run_blocks(block, bounds) if split else [block(0, 0, B)]
        h = np.concatenate([p[0] for p in parts]) if split else parts[0][0]
        final_states = [[np.concatenate([p[1][i][s] for p in parts]) if split else parts[0][1][i][s]
                         for s in range(layer.n_states)] for i, layer in enumerate(self.layers)]
        if training:                       # what each layer's own call would have saved
            for i, layer in enumerate(self.layers):
                kept = _threads.RowBlocks(bounds, [p[2][i] for p in parts]) if split else parts[0][2][i]
                layer._saved = (kept, (B, T, layer.units), (B, T, x.shape[2] if i == 0 else self.units[i - 1]))
        return h, final_states, scales

    def _backward_stack(self, d_h, scales, T, need_input_grad, bounds, backends):
        """Backward of :meth:`_forward_stack`, block by block. One block adds its weight gradients
        into the layers' own; split blocks each fill their own, summed in block order afterwards (the
        sums repeat bit for bit whatever the threads' timing). -> the input gradient or None."""
        from .kernels import _threads
        split = len(bounds) > 2
        calls = [kernels.load(layer.cell, backend, split_rows=not split)[1]
                 for layer, backend in zip(self.layers, backends)]

        def block(b, b0, b1):
            if self.return_sequences:
                dy = d_h[b0:b1]
            else:                          # the last layer returned y[:, -1]
                dy = np.zeros((b1 - b0, T, d_h.shape[-1]), dtype=self.dtype)
                dy[:, -1] = d_h[b0:b1]
            grads = [[np.zeros_like(g) for g in layer.grads] if split else layer.grads for layer in self.layers]

            def cell(k, layer, dy, need_dx):
                d_states = tuple(np.zeros((b1 - b0, layer.units), dtype=self.dtype) for _ in range(layer.n_states))
                saved = layer._saved[0].saved[b] if split else layer._saved[0]
                return calls[k](dy, d_states, saved, *grads[k], need_dx=need_dx)[0]
            dx = stack_backward(self.layers, dy, scales, lambda dy, k: dy * scales[k][b0:b1], cell, need_input_grad)
            return dx, grads

        parts = _threads.run_blocks(block, bounds) if split else [block(0, 0, d_h.shape[0])]
        if split:
            for _, grads in parts:         # fixed block order: the sums repeat bit for bit
                for layer, block_grads in zip(self.layers, grads):
                    for g, g_block in zip(layer.grads, block_grads):
                        g += g_block
        if not need_input_grad:
            return None
        return np.concatenate([p[0] for p in parts]) if split else parts[0][0]

    def backward(self, d_logits, need_input_grad=False):
        """Backprop ``d_logits`` through the last training ``forward``; gradients accumulate in
        :meth:`grads`. Returns (d_sequence, d_context) when ``need_input_grad``, else (None, None)."""
        if self._cache is None:
            raise RuntimeError("backward needs a preceding forward(..., training=True)")
        h, scales, (B, T, Ds, Dc), bounds, backends = self._cache
        expected = h.shape[:-1] + (self.logits_dimension,)
        if np.shape(d_logits) != expected:
            raise ValueError(f"d_logits: expected shape {expected}, got {np.shape(d_logits)}")
        d_logits = np.asarray(d_logits, dtype=self.dtype)
        k = self.logits_dimension
        h2, d2 = h.reshape(-1, h.shape[-1]), d_logits.reshape(-1, k)
        self._logits_grads[0] += h2.T @ d2
        self._logits_grads[1] += d2.sum(axis=0)
        d_h = d_logits @ self.logits_kernel.T
        if scales[-1] is not None:
            d_h = d_h * scales[-1]
        d_h = self._backward_stack(d_h, scales, T, need_input_grad, bounds, backends)
        if not need_input_grad:
            return None, None
        d_context = d_h[:, :, Ds:].sum(axis=1) if Dc else None
        return d_h[:, :, :Ds], d_context
