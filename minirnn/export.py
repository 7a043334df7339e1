"""Exported inference bundles: what ``export_saved_model`` writes and :func:`load_exported` reads.

    <export_dir_base>/<unix seconds>/
      model.h5          the weights (HDF5 datasets named like TF's variables)
      spec.json         feature columns, vocabularies, head, network and signatures (JSON)
      assets/           vocabulary files of *_with_vocabulary_file columns (copies)
      assets.extra/     the files given as ``assets_extra``

The directory is written under a temporary name and renamed when complete. Loading reads arrays
and JSON only; it needs no estimator, optimizer or model_dir. Signatures are named as TF's:

=================  ===========================================  ====================================
head               ``serving_default``                          others
=================  ===========================================  ====================================
binary             classification: classes [N, 2], scores [N,2]  regression: outputs [N, 1]; predict
multi-class        classification: classes [N, n], scores [N,n]  predict
regression         regression: outputs [N, d]                   predict
DynamicRnn...      dynamic_rnn_output (single value) / predict  predict
=================  ===========================================  ====================================

A raw receiver (:func:`build_raw_serving_input_receiver_fn`) exports only ``predict``, as TF does.
Inputs are a features dict of a batch (any form :mod:`minirnn.inputs` accepts) or a list of
per-example dicts ``{feature: values}`` (what a tf.Example carries).
"""

import json
import os
import time

import numpy as np

from . import feature_column as fc
from .checkpoint import hdf5_image
from .heads import BinaryClassHead, MultiClassHead, head_from_config
from .predictions import initial_states_from_features, predict_batch

FORMAT = "minirnn-export-1"


# ---- serving input receivers ------------------------------------------------------------------

def build_parsing_serving_input_receiver_fn(feature_spec=None, default_batch_size=None):
    """Receiver for tf.Example-like inputs: every signature (classification/regression/predict).
    ``feature_spec`` (e.g. the feature names) is recorded; None means the columns' keys."""
    keys = None if feature_spec is None else sorted(feature_spec)
    return lambda: {"receiver": "parsing", "features": keys}


def build_raw_serving_input_receiver_fn(features, default_batch_size=None):
    """Receiver for raw feature tensors: only the ``predict`` signature, as TF."""
    return lambda: {"receiver": "raw", "features": sorted(features)}


def receiver_description(serving_input_receiver_fn):
    if serving_input_receiver_fn is None:
        return {"receiver": "parsing", "features": None}
    if not callable(serving_input_receiver_fn):
        raise TypeError("serving_input_receiver_fn: expected None or a callable from "
                        "build_parsing_serving_input_receiver_fn / build_raw_serving_input_receiver_fn")
    out = serving_input_receiver_fn()
    if not isinstance(out, dict) or out.get("receiver") not in ("parsing", "raw"):
        raise TypeError("serving_input_receiver_fn must come from minirnn.export.build_parsing_serving_input_"
                        f"receiver_fn or build_raw_serving_input_receiver_fn; it returned {out!r}")
    return out


# ---- columns from their spec ------------------------------------------------------------------

def column_from_spec(spec, custom_objects=None):
    """Rebuild a feature column from its ``spec()``. A ``normalizer_fn`` is looked up by its recorded
    name (module.qualname) in ``custom_objects`` (never imported or evaluated from the file)."""
    kind, seq = spec["type"], spec.get("sequence", False)
    if kind == "numeric":
        fn = spec.get("normalizer_fn")
        if fn is not None:
            if not custom_objects or fn not in custom_objects:
                raise ValueError(f"feature {spec['key']!r} was normalised by {fn!r}: pass it as "
                                 f"custom_objects={{{fn!r}: function}}")
            fn = custom_objects[fn]
        norm = spec.get("normalizer")
        return fc.NumericColumn(spec["key"], tuple(spec["shape"]), spec["default_value"], "float32", fn, sequence=seq,
                                normalizer=None if norm is None else fc.Normalization(norm["mean"], norm["variance"]))
    if kind == "identity":
        return fc.IdentityColumn(spec["key"], spec["num_buckets"], spec["default_value"], sequence=seq)
    if kind == "hash_bucket":
        return fc.HashBucketColumn(spec["key"], spec["hash_bucket_size"], sequence=seq)
    if kind == "vocabulary":
        return fc.VocabularyColumn(spec["key"], spec["vocabulary"], spec["default_value"], spec["num_oov_buckets"],
                                   sequence=seq, file=spec.get("file"))
    if kind == "bucketized":
        return fc.BucketizedColumn(column_from_spec(spec["source"], custom_objects), spec["boundaries"])
    if kind == "weighted":
        return fc.WeightedCategoricalColumn(column_from_spec(spec["categorical"], custom_objects),
                                            spec["weight_feature_key"])
    if kind == "embedding":
        return fc.EmbeddingColumn(column_from_spec(spec["categorical"], custom_objects), spec["dimension"],
                                  spec["combiner"], None, spec["max_norm"], spec["trainable"])
    if kind == "indicator":
        return fc.IndicatorColumn(column_from_spec(spec["categorical"], custom_objects))
    raise ValueError(f"unknown feature column type {kind!r} in {spec!r}")


def signatures_for(kind, head, receiver, single_value=True):
    """Signature name -> {"method", "outputs": {output name: prediction key}}."""
    predict = {"method": "predict", "outputs": None}               # None: every prediction key
    if receiver == "raw":
        return {"predict": predict, "serving_default": predict}
    if kind == "dynamic_rnn":
        if single_value:
            out = {"method": "predict", "outputs": "no_state"}
            return {"dynamic_rnn_output": out, "predict": predict, "serving_default": out}
        return {"predict": predict, "serving_default": predict}
    if isinstance(head, BinaryClassHead):
        cls = {"method": "classify", "outputs": {"classes": "all_classes", "scores": "probabilities"}}
        return {"classification": cls, "regression": {"method": "regress", "outputs": {"outputs": "logistic"}},
                "predict": predict, "serving_default": cls}
    if isinstance(head, MultiClassHead):
        cls = {"method": "classify", "outputs": {"classes": "all_classes", "scores": "probabilities"}}
        return {"classification": cls, "predict": predict, "serving_default": cls}
    reg = {"method": "regress", "outputs": {"outputs": "predictions"}}
    return {"regression": reg, "predict": predict, "serving_default": reg}


def _select(signature, predictions):
    outputs = signature["outputs"]
    if outputs is None:
        return predictions
    if outputs == "no_state":
        return {k: v for k, v in predictions.items() if not k.startswith("rnn_cell_state_")}
    return {name: predictions[key] for name, key in outputs.items()}


# ---- writing and loading ----------------------------------------------------------------------

def export_network(export_dir_base, network, head, kind, spec, step, modes, columns, assets_extra=None,
                   as_text=False, training=None):
    """Write an estimator's network as a bundle: ``spec`` (the estimator's description) completed
    with the step, the exported ``modes`` ({'infer'|'eval'|'train': receiver fn}) and their
    signatures; the columns' vocabulary files become assets. ``training`` (mode 'train'): the
    optimizer's slot ``variables``, its ``optimizer`` attributes (config, iterations) and the
    dropout ``rng`` state, written with the weights. Returns the bundle's path (bytes, as TF)."""
    receiver = receiver_description(modes.get("infer", modes.get("eval", modes.get("train"))))
    spec = dict(spec, format=FORMAT, global_step=step, modes=sorted(modes), receiver=receiver,
                signatures=signatures_for(kind, head, receiver["receiver"], not network.model.return_sequences))
    spec["network"] = {k: v for k, v in spec["network"].items() if k != "backend"}
    variables = dict(zip(network.param_names(), network.params()))
    if training is not None:
        spec["training"] = {"optimizer": training["optimizer"], "rng": training["rng"]}
        variables.update(training["variables"])
    assets = []
    for col in columns:                       # every column and the columns it is built on
        while col is not None:
            if getattr(col, "file", None):
                assets.append(col.file)
            col = getattr(col, "categorical", None) or getattr(col, "source", None)
    return write_bundle(export_dir_base, spec, variables, assets, assets_extra, as_text)


def write_bundle(export_dir_base, spec, variables, asset_files=(), assets_extra=None, as_text=False):
    """Write a bundle under ``export_dir_base/<unix seconds>`` atomically; returns its path (bytes, as TF)."""
    import shutil
    bad = [name for name, value in variables.items() if not np.all(np.isfinite(value))]
    if bad:
        raise ValueError(f"export: variable {bad[0]!r} holds NaN or inf; a diverged model is not exported")
    os.makedirs(export_dir_base, exist_ok=True)
    stamp = int(time.time())
    while os.path.exists(os.path.join(export_dir_base, str(stamp))):
        stamp += 1
    final = os.path.join(export_dir_base, str(stamp))
    tmp = os.path.join(export_dir_base, f"temp-{stamp}-{os.getpid()}")
    os.makedirs(tmp)
    try:
        def fill(f):
            f.attrs["format"] = FORMAT
            group = f.create_group("variables")
            for name, value in variables.items():
                group.create_dataset(name, data=np.asarray(value))
        with open(os.path.join(tmp, "model.h5"), "wb") as f:          # built in memory: a full disk gives
            f.write(hdf5_image(fill))                                  # an OSError, never an HDF5 crash
        if asset_files:
            os.makedirs(os.path.join(tmp, "assets"))
            for path in asset_files:
                shutil.copyfile(path, os.path.join(tmp, "assets", os.path.basename(path)))
        for dest, source in (assets_extra or {}).items():
            target = os.path.normpath(os.path.join(tmp, "assets.extra", dest))
            if not target.startswith(os.path.join(tmp, "assets.extra") + os.sep):
                raise ValueError(f"assets_extra: destination {dest!r} must be a relative path inside assets.extra")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(source, target)
        with open(os.path.join(tmp, "spec.json"), "w", encoding="utf-8") as f:
            json.dump(spec, f, indent=2 if as_text else None, sort_keys=bool(as_text))
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return os.fsencode(final)


class ExportedModel:
    """A loaded bundle: ``predict(features)``, ``classify``/``regress`` (as the signatures allow) or
    ``signature(name)(features)``. ``signatures`` lists the names; ``spec`` is the JSON spec.
    ``device`` is where predictions and ``evaluate`` run the recurrent model: 'cpu' or 'cuda' (see
    :func:`load_exported`)."""

    def __init__(self, path, spec, network, head, state=None, predictor=None):
        self.path, self.spec, self._network, self._head, self._state = path, spec, network, head, state
        self.signatures = sorted(spec["signatures"])
        self.device = "cpu" if predictor is None else "cuda"
        # (global step, the network on the device): its weights are copied again after train() changed them
        self._on_device = None if predictor is None else (self.global_step, predictor(network))

    def _serving_network(self):
        """The network predictions run: the host one, or its copy on the device (current weights)."""
        if self._on_device is None:
            return self._network
        step, on_device = self._on_device
        if step != self.global_step:
            on_device.push()
            self._on_device = (self.global_step, on_device)
        return on_device

    def __repr__(self):
        return (f"ExportedModel({self.path!r}, estimator={self.spec.get('estimator')!r}, "
                f"global_step={self.global_step}, signatures={self.signatures}, modes={self.spec.get('modes')})")

    def _features(self, inputs):
        if isinstance(inputs, (list, tuple)):                 # per-example dicts (tf.Example-like)
            if not inputs or not all(isinstance(e, dict) for e in inputs):
                raise TypeError("inputs: expected a features dict of a batch or a non-empty list of per-example dicts")
            keys = set().union(*inputs)
            missing = [(i, k) for i, e in enumerate(inputs) for k in keys if k not in e]
            if missing:
                raise KeyError(f"example {missing[0][0]} has no feature {missing[0][1]!r}")
            return {k: [e[k] for e in inputs] if self._is_sequence(k) else np.asarray([e[k] for e in inputs])
                    for k in keys}
        if not isinstance(inputs, dict):
            raise TypeError(f"inputs: expected a features dict or a list of per-example dicts, got {type(inputs).__name__}")
        return inputs

    def _is_sequence(self, key):
        return any(c.key == key for c in self._network.sequence.columns)

    def signature(self, name="serving_default"):
        if name not in self.spec["signatures"]:
            raise KeyError(f"signature {name!r} not in this export; it has {self.signatures}")
        sig = self.spec["signatures"][name]

        def call(inputs):
            features = self._features(inputs)
            preds, _ = predict_batch(self.spec["kind"], self._head, self._serving_network(), features,
                                     self.spec.get("sequence_mask", "sequence_mask"), self.spec.get("options"))
            return _select(sig, preds)
        return call

    def predict(self, inputs):
        """Every prediction key, batch arrays (the ``predict`` signature)."""
        return self.signature("predict")(inputs)

    def classify(self, inputs):
        return self.signature("classification")(inputs)

    def evaluate(self, inputs, labels):
        """The head's metrics for one batch (exports that include the 'eval' mode). Per-step labels
        are a padded array [B, T]; example weights come from the weight feature, as in training."""
        if "eval" not in self.spec.get("modes", []):
            raise ValueError("this export has no 'eval' mode: export it with experimental_export_all_saved_models("
                             "base, {'infer': None, 'eval': None})")
        features = self._features(inputs)
        net = self._serving_network()
        initial = initial_states_from_features(net.model, features) if self.spec["kind"] == "dynamic_rnn" else None
        logits, mask = net.forward(features, training=False, initial_states=initial)
        evaluator = self._head.metrics()
        evaluator.update(logits, labels, self._head.weights(features), mask if net.model.return_sequences else None)
        metrics = evaluator.result()
        if self.spec["kind"] == "dynamic_rnn":
            metrics = {k: v for k, v in metrics.items() if k in ("accuracy", "loss")}
        return {k: np.float32(v) for k, v in metrics.items()}

    def train(self, inputs, labels):
        """One training step on a batch (exports that include the 'train' mode, which hold the
        optimizer's state), on the CPU: the weights and optimizer state change in memory, and
        predictions use them (on the device too: it gets the new weights). Returns the step's loss."""
        if self._state is None:
            raise ValueError("this export has no 'train' mode: export it with export_saved_model(base, "
                             "experimental_mode='train')")
        from .step import train_step
        initial = initial_states_from_features if self.spec["kind"] == "dynamic_rnn" else None
        return float(train_step(self._state, self._head, self._features(inputs), labels,
                                initial_states=None if initial is None else
                                (lambda features: initial(self._network.model, features))))

    @property
    def global_step(self):
        """The step of the checkpoint exported, plus the steps :meth:`train` took."""
        return self._state.global_step if self._state is not None else self.spec["global_step"]

    def regress(self, inputs):
        return self.signature("regression")(inputs)

    def export_onnx(self, path, opset=None, id_inputs=()):
        """This bundle as an ONNX file served by onnxruntime; returns ``path``. Needs the ``onnx``
        extra; see :func:`minirnn.onnx_export.export_onnx`."""
        from .onnx_graph import write_onnx
        spec = self.spec
        return write_onnx(self._network, self._head, spec.get("kind", "rnn"), spec.get("options") or {},
                          f"{spec.get('estimator', 'export')} export {self.path}", path, opset, id_inputs)


MAX_BYTES = 2 ** 31


def load_exported(path, custom_objects=None, max_bytes=MAX_BYTES, device="cpu"):
    """Load an exported bundle (the path ``export_saved_model`` returned) into an :class:`ExportedModel`.

    The bundle is untrusted: model.h5's variables are listed (not read) first and must total at most
    ``max_bytes`` (default 2 GiB), the network spec.json describes may have no more weights than
    model.h5 holds, and every variable's shape is checked before its values are read.

    ``device``: where predictions (and ``evaluate``) run the recurrent model. 'cpu' (the default);
    'cuda', an NVIDIA GPU through Numba (:mod:`minirnn.cuda`): the weights are copied there once,
    and a RuntimeError, raised before the bundle is read, says when there is no usable GPU; 'auto',
    the GPU when Numba sees one, else the CPU with one log line. The feature columns and the head
    run on the host; the predictions equal the CPU's within float rounding. ``train`` runs on the CPU.

    Example
    -------
    >>> model = load_exported(path, device="auto")          # the GPU if there is one
    >>> model.predict(features)                             # a features dict of a batch
    """
    predictor = None
    if device != "cpu":
        from .cuda import predictor_for                 # numba.cuda is imported only for a GPU
        predictor = predictor_for(device)
    import h5py
    from .network import Network
    path = os.fsdecode(path)
    spec_file, weights_file = os.path.join(path, "spec.json"), os.path.join(path, "model.h5")
    if not os.path.isfile(spec_file):
        raise ValueError(f"{path!r} is not a minirnn export (no spec.json)")
    with h5py.File(weights_file, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path!r}: model.h5 is not a minirnn export")
        declared = []                 # (weights, bytes) of each dataset, from its header alone
        f["variables"].visititems(lambda name, obj: declared.append((obj.size, obj.size * obj.dtype.itemsize))
                                  if isinstance(obj, h5py.Dataset) else None)
    weights, size = (sum(column) for column in zip(*declared)) if declared else (0, 0)
    if size > max_bytes:
        raise ValueError(f"{weights_file!r} declares {size:,} bytes of weights, more than "
                         f"max_bytes={max_bytes:,}: pass a larger max_bytes to load_exported if it is genuine")
    try:                              # an untrusted file: every way it can be malformed is one error naming it
        with open(spec_file, encoding="utf-8") as f:
            spec = json.load(f)
        if not isinstance(spec, dict) or spec.get("format") != FORMAT:
            raise ValueError(f"unknown export format {spec.get('format') if isinstance(spec, dict) else spec!r}")
        head = head_from_config(spec["head"])
        network = Network([column_from_spec(c, custom_objects) for c in spec["sequence_columns"]],
                          [column_from_spec(c, custom_objects) for c in spec["context_columns"]] or None,
                          **dict(spec["network"]), max_parameters=weights)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as error:
        raise ValueError(f"{spec_file!r} is not a valid minirnn export spec ({type(error).__name__}: {error})") \
            from error
    state = None
    params = dict(zip(network.param_names(), network.params()))
    with h5py.File(weights_file, "r") as f:
        for name, value in _variables(path, f, {n: p.shape for n, p in params.items()}, required=True).items():
            params[name][...] = value
        if "train" in spec.get("modes", []):
            state = _training_state(path, f, spec, network)
    return ExportedModel(path, spec, network, head, state, predictor)


def _variables(path, f, shapes, required):
    """{name: value} of model.h5's variables named in ``shapes``, each shape checked before its
    values are read; a missing one is an error when ``required``, else left out."""
    out = {}
    for name, shape in shapes.items():
        if name not in f["variables"]:
            if required:
                raise ValueError(f"{path!r}: model.h5 lacks variable {name!r}")
            continue
        dataset = f["variables"][name]
        if dataset.shape != tuple(shape):
            raise ValueError(f"{path!r}: variable {name!r} has shape {dataset.shape}, the spec needs {tuple(shape)}")
        out[name] = dataset[()]
        if not np.all(np.isfinite(out[name])):
            raise ValueError(f"{path!r}: variable {name!r} holds NaN or inf")
    return out


def _training_state(path, f, spec, network):
    """The TrainState of a 'train' export: its weights, and the optimizer its spec and slots describe."""
    from .optimizers import from_config
    from .state import TrainState
    try:
        training = spec["training"]
        state = TrainState(network, from_config(training["optimizer"]["config"]), spec["global_step"])
        state.restore(_variables(path, f, state.slot_shapes(), required=False),
                      {"global_step": spec["global_step"], "optimizer": training["optimizer"], "rng": training["rng"]})
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path!r}: its 'train' mode is incomplete ({type(error).__name__}: {error})") from error
    return state
