"""The ONNX graph of a network and its head (the builder behind :mod:`minirnn.onnx_export`, whose
docstring holds the input and output contract)."""


import os

import numpy as np

from . import feature_column as fc
from .errors import install_hint
from .heads import BinaryClassHead, MultiClassHead, RegressionHead

__all__ = ["write_onnx", "DEFAULT_OPSET", "MIN_OPSET"]

DEFAULT_OPSET = 17
MIN_OPSET = 14
ML_OPSET = 2


def _onnx():
    try:
        import onnx
    except ImportError as error:               # the extra is not installed
        raise ImportError(f"export_onnx needs the 'onnx' package: {install_hint('onnx', 'onnx onnxruntime')}") \
            from error
    return onnx


# ---- graph building ----------------------------------------------------------------------------

class _Graph:
    """Nodes, initializers, inputs and outputs of one graph; internal names are ``minirnn/...``."""

    def __init__(self, onnx):
        self.onnx, self.helper, self.tp = onnx, onnx.helper, onnx.TensorProto
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []
        self.uses_ml = False
        self._count = 0
        self._input_types = {}

    def name(self, hint):
        self._count += 1
        return f"minirnn/{hint}_{self._count}"

    def const(self, value, hint="const", dtype=None):
        array = np.asarray(value, dtype=dtype)
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type, inputs, hint=None, n_out=1, out=None, domain="", **attributes):
        """Add a node; returns its output name (or the list of them when ``n_out > 1``)."""
        outs = [out] if out is not None else [self.name(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs, name=self.name(f"{op_type}_node"),
                                                domain=domain, **attributes))
        return outs[0] if n_out == 1 else outs

    def input(self, key, elem_type, shape, doc):
        """The graph input ``key`` (created once; a second column of the same key must agree on type)."""
        if key in self._input_types:
            if self._input_types[key] != (elem_type, len(shape)):
                raise ValueError(f"feature {key!r}: two columns read it as different ONNX inputs "
                                 f"({self._input_types[key]} and {(elem_type, len(shape))})")
            return key
        self._input_types[key] = (elem_type, len(shape))
        info = self.helper.make_tensor_value_info(key, elem_type, shape)
        info.doc_string = doc
        self.inputs.append(info)
        return key

    def output(self, key, value, elem_type, shape):
        if key in self._input_types:
            raise ValueError(f"feature {key!r} has the name of an ONNX output; rename the feature")
        self.op("Identity", [value], out=key)
        self.outputs.append(self.helper.make_tensor_value_info(key, elem_type, shape))

    # small helpers
    def i64(self, values):
        return self.const(np.asarray(values, dtype=np.int64), "i64")

    def f32(self, values):
        return self.const(np.asarray(values, dtype=np.float32), "f32")

    def unsqueeze(self, x, axis):
        return self.op("Unsqueeze", [x, self.i64([axis])])

    def squeeze(self, x, axis):
        return self.op("Squeeze", [x, self.i64([axis])])

    def reduce_sum(self, x, axis, keepdims):
        return self.op("ReduceSum", [x, self.i64([axis])], keepdims=int(keepdims))


# ---- normalizers --------------------------------------------------------------------------------

def _affine(column):
    """(scale, shift) with normalizer_fn(x) == scale * x + shift elementwise, or raise.

    A sequence column's normalizer gets the flat valid values (1-D), so its scale and shift are
    scalars; a context column's gets the batch [N, *shape], so they may differ per feature."""
    fn, key = column.normalizer_fn, column.key
    shape = (7,) if column.sequence else (7,) + tuple(column.shape)
    probe = np.random.default_rng(0).uniform(0.25, 4.0, size=shape)     # positive: log, sqrt... are defined

    def call(x):
        try:
            with np.errstate(all="ignore"):
                y = np.asarray(fn(x), dtype=np.float64)
        except Exception as error:
            raise ValueError(f"feature {key!r}: its normalizer_fn failed on a probe array of shape {x.shape} "
                             f"({error}); ONNX export bakes in only elementwise affine normalizers") from error
        if y.shape != x.shape:
            raise ValueError(f"feature {key!r}: its normalizer_fn changed the shape {x.shape} -> {y.shape}; "
                             "ONNX export bakes in only elementwise affine normalizers")
        return y

    shift = call(np.zeros(shape))[0]
    scale = call(np.ones(shape))[0] - shift
    expected = probe * scale + shift
    got = call(probe)
    tolerance = 1e-9 * (1 + np.abs(expected).max())
    if not (np.all(np.isfinite(got)) and np.allclose(got, expected, rtol=1e-6, atol=tolerance)):
        raise ValueError(f"feature {key!r}: its normalizer_fn is not an elementwise affine map (a * x + b), "
                         "which is all ONNX export can bake into the graph; apply it outside and export a "
                         "column without normalizer_fn")
    return scale, shift


def _numeric(g, column, dims):
    """A numeric column's float input, normalised: [*dims, width]."""
    x = g.input(column.key, g.tp.FLOAT, list(dims) + [column.width],
                f"numeric feature {column.key!r}: float32 {list(dims) + [column.width]}")
    if column.normalizer_fn is None and column.normalizer is None:
        return x
    scale, shift = _affine(column) if column.normalizer_fn is not None else (1.0, 0.0)
    scale, shift = (np.broadcast_to(v, column.shape).reshape(-1) for v in (scale, shift))   # [width]
    norm = column.normalizer
    if norm is not None:                   # then (y - mean) / std per feature of the last axis
        mean, std = (np.broadcast_to(v, column.shape).reshape(-1) for v in
                     (norm.mean, np.maximum(np.sqrt(norm.variance), norm.EPSILON)))
        scale, shift = scale / std, (shift - mean) / std
    return g.op("Add", [g.op("Mul", [x, g.f32(scale)]), g.f32(shift)], hint=f"{column.key}_normalized")


# ---- categorical columns: ids and presence -------------------------------------------------------

def _ids(g, cat, dims, id_inputs):
    """(ids int64 >= 0, present bool) of a categorical column, both [*dims, k]."""
    key, shape = cat.key, list(dims) + [f"{cat.key}_k"]
    if isinstance(cat, fc.WeightedCategoricalColumn):
        return _ids(g, cat.categorical, dims, id_inputs)
    if isinstance(cat, fc.BucketizedColumn):
        return _bucketized(g, cat, dims)
    if key in id_inputs:
        ids = g.input(key, g.tp.INT64, shape, f"ids of {key!r} computed outside: int64 {shape}, -1 = absent "
                                              f"(column.ids(values))")
    elif isinstance(cat, fc.IdentityColumn):
        raw = g.input(key, g.tp.INT64, shape, f"identity ids of {key!r}: int64 {shape}, -1 = padding")
        ids = raw
        if cat.default_value is not None:     # out of range (but not the -1 padding) -> default_value
            bad = g.op("Or", [g.op("Less", [raw, g.i64(0)]), g.op("GreaterOrEqual", [raw, g.i64(cat.num_buckets)])])
            bad = g.op("And", [bad, g.op("Not", [g.op("Equal", [raw, g.i64(-1)])])])
            ids = g.op("Where", [bad, g.i64(cat.default_value), raw])
    elif isinstance(cat, fc.VocabularyColumn):
        ids = _vocabulary(g, cat, shape)
    elif isinstance(cat, fc.HashBucketColumn):
        raise ValueError(f"feature {key!r}: a hash bucket column needs FarmHash, which ONNX lacks; export with "
                         f"id_inputs=[{key!r}] and feed the ids from column.ids(values)")
    else:
        raise ValueError(f"feature {key!r}: ONNX export does not support {type(cat).__name__}")
    present = g.op("GreaterOrEqual", [ids, g.i64(0)], hint=f"{key}_present")
    safe = g.op("Where", [present, ids, g.i64(0)], hint=f"{key}_ids")
    return safe, present


def _vocabulary(g, cat, shape):
    key = cat.key
    if cat.num_oov_buckets:
        raise ValueError(f"feature {key!r}: a vocabulary with num_oov_buckets={cat.num_oov_buckets} hashes "
                         f"out-of-vocabulary values with FarmHash, which ONNX lacks; export with "
                         f"id_inputs=[{key!r}] and feed the ids from column.ids(values)")
    g.uses_ml = True
    if cat._numeric:                           # integer vocabulary: -1 is padding
        raw = g.input(key, g.tp.INT64, shape, f"values of {key!r}: int64 {shape}, -1 = padding")
        table = {int(v): i for i, v in enumerate(cat.vocabulary)}
        table[-1] = -1
        keys = {"keys_int64s": list(table)}
    else:                                      # strings; only str entries can match (as minirnn)
        raw = g.input(key, g.tp.STRING, shape, f"values of {key!r}: strings {shape}, '' = padding")
        table = {v: i for i, v in enumerate(cat.vocabulary) if isinstance(v, str)}
        table[""] = -1
        keys = {"keys_strings": list(table)}
    return g.op("LabelEncoder", [raw], hint=f"{key}_lookup", domain="ai.onnx.ml", values_int64s=list(table.values()),
                default_int64=int(cat.default_value), **keys)


def _bucketized(g, cat, dims):
    """ids [B, width]: the bucket of each source value (count of boundaries <= x), offset per element."""
    x = _numeric(g, cat.source, dims)                                    # [B, width]
    bounds = g.f32(np.asarray(cat.boundaries, dtype=np.float32))
    above = g.op("GreaterOrEqual", [g.unsqueeze(x, -1), bounds])          # [B, width, nb]
    bucket = g.reduce_sum(g.op("Cast", [above], to=g.tp.INT64), -1, keepdims=False)
    offsets = g.i64((len(cat.boundaries) + 1) * np.arange(cat.source.width))
    ids = g.op("Add", [bucket, offsets])
    return ids, g.op("GreaterOrEqual", [ids, g.i64(0)])


def _weights(g, cat, present, dims):
    """Per-id weights [*dims, k] (float, zero where absent)."""
    w = g.op("Cast", [present], to=g.tp.FLOAT)
    if isinstance(cat, fc.WeightedCategoricalColumn):
        shape = list(dims) + [f"{cat.key}_k"]
        given = g.input(cat.weight_key, g.tp.FLOAT, shape, f"weights of {cat.key!r}: float32 {shape}")
        w = g.op("Mul", [w, given])
    return w


def _embedding(g, column, table, dims, id_inputs):
    """[*dims, dimension]: the ids' table rows (max_norm-clipped), combined with the column's combiner."""
    ids, present = _ids(g, column.categorical, dims, id_inputs)
    w = _weights(g, column.categorical, present, dims)                   # [..., k]
    vectors = g.op("Gather", [g.const(table.astype(np.float32), f"{column.name}/embedding_weights"), ids])
    if column.max_norm is not None:                                      # v * min(1, max_norm / |v|)
        norm = g.op("Sqrt", [g.reduce_sum(g.op("Mul", [vectors, vectors]), -1, keepdims=True)])
        ratio = g.op("Div", [g.f32(column.max_norm), g.op("Max", [norm, g.f32(1e-30)])])
        vectors = g.op("Mul", [vectors, g.op("Min", [ratio, g.f32(1.0)])])
    if column.combiner == "sum":
        coef = w
    else:
        total = g.reduce_sum(w if column.combiner == "mean" else g.op("Mul", [w, w]), -1, keepdims=True)
        total = g.op("Where", [g.op("Greater", [total, g.f32(0.0)]), total, g.f32(1.0)])
        coef = g.op("Div", [w, total if column.combiner == "mean" else g.op("Sqrt", [total])])
    return g.reduce_sum(g.op("Mul", [g.unsqueeze(coef, -1), vectors]), -2, keepdims=False)


def _indicator(g, column, dims, id_inputs):
    """[*dims, num_buckets]: counts (or summed weights) of each id."""
    ids, present = _ids(g, column.categorical, dims, id_inputs)
    w = _weights(g, column.categorical, present, dims)
    one_hot = g.op("OneHot", [ids, g.i64([column.width]), g.f32([0.0, 1.0])], axis=-1)
    return g.reduce_sum(g.op("Mul", [one_hot, g.unsqueeze(w, -1)]), -2, keepdims=False)


def _features(g, layer, dims, id_inputs):
    """The feature layer's output: each column's dense values, concatenated in column-name order."""
    parts = []
    for column in layer.columns:
        if isinstance(column, fc.NumericColumn):
            parts.append(_numeric(g, column, dims))
        elif isinstance(column, fc.EmbeddingColumn):
            parts.append(_embedding(g, column, layer.embeddings.tables[column.name], dims, id_inputs))
        else:
            parts.append(_indicator(g, column, dims, id_inputs))
    return parts[0] if len(parts) == 1 else g.op("Concat", parts, axis=-1)


# ---- the recurrent layers ------------------------------------------------------------------------

def _onnx_weights(layer):
    """(W [1, G*H, D], R [1, G*H, H], B [1, 2*G*H]) in ONNX's gate order from the Keras layout."""
    H = layer.units
    kernel, recurrent, bias = (np.asarray(a, dtype=np.float32)
                               for a in (layer.kernel, layer.recurrent_kernel, layer.bias))
    if layer.cell == "lstm":                   # Keras i, f, c, o -> ONNX i, o, f, c
        def reorder(m):
            return np.concatenate([m[..., k * H:(k + 1) * H] for k in (0, 3, 1, 2)], axis=-1)
        kernel, recurrent, bias = reorder(kernel), reorder(recurrent), reorder(bias)
    if layer.cell == "gru" and layer.reset_after:
        wb, rb = bias[0], bias[1]              # input bias, recurrent bias (inside r * (h U + b_r))
    else:
        wb, rb = bias, np.zeros_like(bias)
    return kernel.T[None], recurrent.T[None], np.concatenate([wb, rb])[None]


def _recurrent(g, layer, x, lengths):
    """One layer over time-major x [T, B, D]: (Y [T, B, H], final states [B, H] ([h] or LSTM [h, c]))."""
    W, R, B = _onnx_weights(layer)
    op = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[layer.cell]
    attributes = {"linear_before_reset": int(layer.reset_after)} if layer.cell == "gru" else {}
    n_out = 3 if layer.cell == "lstm" else 2
    outs = g.op(op, [x, g.const(W, f"{layer.cell}/W"), g.const(R, f"{layer.cell}/R"), g.const(B, f"{layer.cell}/B"),
                     lengths], hint=layer.cell, n_out=n_out, hidden_size=layer.units, **attributes)
    y = g.squeeze(outs[0], 1)                                          # [T, 1, B, H] -> [T, B, H]
    return y, [g.squeeze(s, 0) for s in outs[1:]]                      # [1, B, H] -> [B, H]


# ---- the whole graph ------------------------------------------------------------------------------

def _build(onnx, network, head, kind, options, id_inputs):
    g = _Graph(onnx)
    model = network.model
    seq, ctx = network.sequence, network.context
    lengths_in = g.input(seq.length_key, g.tp.INT64, ["batch"],
                         "valid steps of each row (its first sequence_length steps), int64 [batch]")
    # features -> x [B, T, D]
    x = _features(g, seq, ["batch", "time"], id_inputs)
    if ctx is not None:                                                # context tiled over time, appended
        c = g.unsqueeze(_features(g, ctx, ["batch"], id_inputs), 1)     # [B, 1, Dc]
        target = g.op("Concat", [g.op("Slice", [g.op("Shape", [x]), g.i64([0]), g.i64([2])]),
                                 g.i64([ctx.output_dim])], axis=0)
        x = g.op("Concat", [x, g.op("Expand", [c, target])], axis=-1)
    # the stacked recurrent layers, time-major
    lengths = g.op("Cast", [lengths_in], to=g.tp.INT32)
    y = g.op("Transpose", [x], perm=[1, 0, 2])
    finals = []
    for layer in model.layers:
        y, states = _recurrent(g, layer, y, lengths)
        finals.append(states)
    valid = None
    if model.return_sequences:
        # ONNX zeroes Y past each row's length; minirnn repeats the last valid output there (zeros
        # for an empty row): gather y[b, min(t, length_b - 1)], then zero the empty rows
        y = g.op("Transpose", [y], perm=[1, 0, 2])                    # [B, T, H]
        steps = g.op("Range", [g.i64(0), g.op("Gather", [g.op("Shape", [y]), g.i64(1)]), g.i64(1)])
        last = g.unsqueeze(g.op("Sub", [lengths_in, g.i64(1)]), 1)     # [B, 1]
        index = g.op("Max", [g.op("Min", [g.unsqueeze(steps, 0), last]), g.i64(0)])   # [B, T]
        index = g.op("Expand", [g.unsqueeze(index, -1), g.op("Shape", [y])])
        nonempty = g.op("Cast", [g.op("Greater", [last, g.i64(-1)])], to=g.tp.FLOAT)
        h = g.op("Mul", [g.op("GatherElements", [y, index], axis=1), g.unsqueeze(nonempty, -1)])
        valid = g.op("Less", [g.unsqueeze(steps, 0), g.unsqueeze(lengths_in, 1)])           # [B, T]
    else:
        h = finals[-1][0]                                              # Y_h: each row's last valid output
    logits = g.op("Add", [g.op("MatMul", [h, g.f32(model.logits_kernel)]), g.f32(model.logits_bias)])
    _outputs(g, head, kind, options, model, logits, finals, valid, network.sequence.mask_key)
    return g


def _outputs(g, head, kind, options, model, logits, finals, valid, mask_key):
    k = model.logits_dimension
    lead = ["batch", "time"] if model.return_sequences else ["batch"]
    F, I64 = g.tp.FLOAT, g.tp.INT64
    classify = isinstance(head, (BinaryClassHead, MultiClassHead))
    if classify:
        if isinstance(head, BinaryClassHead):
            logistic = g.op("Sigmoid", [logits])
            probabilities = g.op("Concat", [g.op("Sigmoid", [g.op("Neg", [logits])]), logistic], axis=-1)
            class_ids = g.op("Cast", [g.op("Greater", [logits, g.f32(0.0)])], to=I64)
        else:
            probabilities = g.op("Softmax", [logits], axis=-1)
            class_ids = g.op("ArgMax", [logits], axis=-1, keepdims=1)
    if kind == "dynamic_rnn":                                         # TF1's keys
        if classify:
            g.output("classes", g.squeeze(class_ids, -1), I64, lead)
            if options.get("predict_probabilities"):
                g.output("probabilities", probabilities, F, lead + [head.n_classes])
        else:
            g.output("scores", g.squeeze(logits, -1), F, lead)
        flat = []
        for states in finals:                                         # LSTM as TF1's (c, h)
            flat += [states[1], states[0]] if len(states) == 2 else states
        sizes = [layer.units for layer in model.layers for _ in range(layer.n_states)]
        for i, (state, size) in enumerate(zip(flat, sizes)):
            g.output(f"rnn_cell_state_{i}", state, F, ["batch", size])
        return
    if classify:
        g.output("logits", logits, F, lead + [k])
        if isinstance(head, BinaryClassHead):
            g.output("logistic", logistic, F, lead + [1])
        g.output("probabilities", probabilities, F, lead + [head.n_classes])
        g.output("class_ids", class_ids, I64, lead + [1])
        names = g.const(np.array(list(head.class_names()), dtype=object), "class_names")
        g.output("classes", g.op("Gather", [names, class_ids]), g.tp.STRING, lead + [1])
    elif isinstance(head, RegressionHead):
        g.output("predictions", logits, F, lead + [k])
    if valid is not None:
        g.output(mask_key, valid, g.tp.BOOL, ["batch", "time"])



# ---- writing ------------------------------------------------------------------------------------

def write_onnx(network, head, kind, options, description, path, opset=None, id_inputs=()):
    """Write ``network`` and ``head`` as an ONNX model to ``path`` (the contract and the arguments:
    :func:`minirnn.onnx_export.export_onnx`); returns ``path``."""
    onnx = _onnx()
    opset = DEFAULT_OPSET if opset is None else opset
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, (int, np.integer)) or isinstance(opset, bool) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset: expected an int in [{MIN_OPSET}, {newest}] (the installed onnx's newest), "
                         f"got {opset!r}")
    if isinstance(id_inputs, str):
        id_inputs = [id_inputs]
    id_inputs = set(id_inputs or ())
    known = {c.key for layer in filter(None, (network.sequence, network.context)) for c in layer.columns
             if not isinstance(c, fc.NumericColumn)}
    unknown = sorted(id_inputs - known)
    if unknown:
        raise ValueError(f"id_inputs: {unknown} are not keys of categorical columns of this model; "
                         f"those are {sorted(known)}")
    g = _build(onnx, network, head, kind, options, id_inputs)
    helper = onnx.helper
    opsets = [helper.make_opsetid("", int(opset))]
    if g.uses_ml:
        opsets.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    graph = helper.make_graph(g.nodes, "minirnn", g.inputs, g.outputs, initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=opsets, producer_name="minirnn",
                              doc_string=f"minirnn {description}: see minirnn.onnx_export for the input contract")
    model.ir_version = max(8, helper.find_min_ir_version_for(opsets))
    from . import __version__
    helper.set_model_props(model, {"minirnn_version": __version__, "sequence_length": network.sequence.length_key,
                                   "kind": kind})
    onnx.checker.check_model(model, full_check=True)
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        onnx.save(model, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
