"""ONNX export: an estimator's (or an exported bundle's) network as one ONNX graph that onnxruntime
serves, built with ``onnx.helper`` from ONNX's own ``RNN``, ``LSTM`` and ``GRU`` operators.

Needs the ``onnx`` extra (``pip install ".[onnx]"`` in the checkout: onnx and, to run the model,
onnxruntime); ``onnx`` is imported only when :func:`export_onnx` runs.

The graph
---------
::

    inputs (one per feature key, padded arrays) + sequence_length [batch]
    -> numeric columns (affine normalizer_fn as Mul/Add), embeddings (Gather + combiner),
       indicators (OneHot + sum), concatenated in column-name order  -> x [B, T, Ds]
    -> context columns [B, Dc], tiled over time (Expand) and appended -> x [B, T, Ds + Dc]
    -> RNN / LSTM / GRU per stacked layer (time-major, sequence_lens = sequence_length)
    -> each row's last valid output Y_h [B, H] (or every step [B, T, H] with return_sequences)
    -> dense logits -> the head's outputs

Weights are converted from Keras's layout to ONNX's: ``W = kernel^T``, ``R = recurrent_kernel^T``,
``B = [input bias, recurrent bias]``. LSTM gate blocks are reordered from Keras's i, f, c, o to
ONNX's i, o, f, c (bias in Wb, zeros in Rb). GRU keeps Keras's z, r, h order; ``reset_after=True``
(bias [2, 3H]: input row to Wb, recurrent row to Rb) is ``linear_before_reset=1``,
``reset_after=False`` (one bias [3H], in Wb) is ``linear_before_reset=0``. The default ONNX
activations (sigmoid gates, tanh) are Keras's.

Input contract (what a padded minirnn feature dict already is)
--------------------------------------------------------------
=====================================  ==========================================================
column                                 ONNX input ``<key>``
=====================================  ==========================================================
sequence_numeric_column                float32 [batch, time, width]
numeric_column (context)               float32 [batch, width] (shape (2, 3): fed flat, [batch, 6])
sequence categorical (embedding or     [batch, time, k]: k values per step (k = 1 for one id per
indicator)                             step), padding ``-1`` (integers) or ``''`` (strings)
context categorical                    [batch, k], same padding
identity                               int64 ids
vocabulary list/file, no OOV buckets   strings (or int64 for an integer vocabulary), looked up
                                       in the graph (ai.onnx.ml ``LabelEncoder``)
hash bucket, vocabulary with OOV       ids computed outside the graph: export with
buckets                                ``id_inputs=[key]`` and feed ``column.ids(values)``
                                       (int64, -1 = absent); ONNX has no FarmHash
bucketized (context)                   float32 [batch, width] of the source column
weighted categorical (context)         the ids as above, and float32 [batch, k] weights under
                                       ``weight_feature_key``
=====================================  ==========================================================

Plus ``sequence_length`` (the network's length key), int64 [batch]: the valid steps of each row
are its first ``sequence_length`` steps (0 <= length <= time). ONNX's ``sequence_lens`` has no
gaps; a minirnn mask with gaps (valid steps after a masked one) has no ONNX equivalent. A masked
step only carries the state over, so moving each row's valid steps to the front gives the same
final state and the same outputs at the valid steps: do that before feeding such rows.

A ``normalizer_fn`` is baked into the graph when it is affine elementwise (``(x - m) / s`` and
the like; checked numerically at export); any other normalizer is refused with an error naming the
column. minirnn raises on NaN inputs and on identity ids out of range with no default; the graph
cannot raise: NaN propagates, ids >= num_buckets make onnxruntime's Gather fail, and negative
ids other than the ``-1`` padding count as absent.

Outputs
-------
The head's prediction keys, as ``predict``: binary ``logits``, ``logistic``, ``probabilities``
[.., 2], ``class_ids`` (int64), ``classes`` (strings); multi-class ``logits``, ``probabilities``,
``class_ids``, ``classes``; regression ``predictions`` (TF's ``all_class_ids`` and ``all_classes``,
constants, are left out). With ``return_sequences`` they are per step [B, T, ...], and
``sequence_mask`` (bool [B, T]) marks the valid steps; at padded steps they repeat the row's last
valid step, exactly as minirnn does (ONNX's own ``Y`` is zero past ``sequence_lens``; the graph
gathers the last valid output instead), and an empty row gives the outputs of a zero state.
TF1's ``DynamicRnnEstimator`` gives its own keys: ``classes`` (and ``probabilities`` with
``predict_probabilities``) or ``scores``, and the final states ``rnn_cell_state_i`` (LSTM as
(c, h); ONNX's ``Y_h``/``Y_c``, the state after each row's last valid step, as minirnn's). Its
initial states are zeros (the ``rnn_cell_state_i`` features are not graph inputs), and its
``feature_engineering_fn`` is not in the graph: feed the engineered features.

The model is pinned to ONNX opset 17 (``opset=`` takes 14 and newer) and the lowest IR version the
opsets need (8 for opset 17), which onnxruntime has accepted since 1.13; ``ai.onnx.ml`` opset 2
is imported only for vocabulary lookups.
"""

import os

from .export import ExportedModel, load_exported
from .onnx_graph import DEFAULT_OPSET, MIN_OPSET, write_onnx

__all__ = ["export_onnx", "DEFAULT_OPSET", "MIN_OPSET"]


def _source(source, checkpoint_path, custom_objects):
    """(network, head, kind, options, description) of an estimator; (None, the ExportedModel) of an
    ExportedModel or an export dir."""
    if hasattr(source, "_inference_parts"):         # an estimator: this process reads it (MPI: rank 0)
        network, head, kind, options, step = source._inference_parts(checkpoint_path)
        return network, head, kind, options, f"{type(source).__name__} at global step {step}"
    if isinstance(source, (str, bytes, os.PathLike)):
        source = load_exported(source, custom_objects)
    if isinstance(source, ExportedModel):
        return None, source
    raise TypeError(f"source: expected a minirnn estimator, an ExportedModel or an export directory, "
                    f"got {type(source).__name__}")


def export_onnx(source, path, opset=None, id_inputs=(), checkpoint_path=None, custom_objects=None):
    """Write ``source``'s network and head as an ONNX model to ``path``; returns ``path``.

    Parameters
    ----------
    source : a minirnn estimator (its latest checkpoint, or ``checkpoint_path``), an
        :class:`~minirnn.export.ExportedModel`, or an export directory (loaded with
        ``custom_objects``, as :func:`minirnn.load_exported`)
    path : the .onnx file to write (replaced atomically)
    opset : ONNX opset of the default domain, >= 14 (default 17)
    id_inputs : feature keys whose categorical ids are computed outside the graph (int64, -1 =
        absent): needed for hash bucket columns and vocabularies with OOV buckets
    checkpoint_path, custom_objects : see above

    The input and output contract is in the module docstring. The model is checked with
    ``onnx.checker`` before it is written.

    Example
    -------
    >>> import numpy as np, onnxruntime                                      # doctest: +SKIP
    >>> clf.export_onnx("model.onnx")                                        # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession("model.onnx")                 # doctest: +SKIP
    >>> session.run(["probabilities"], {"x": np.zeros((1, 5, 3), np.float32),
    ...                                 "sequence_length": np.array([5])})   # doctest: +SKIP
    """
    parts = _source(source, checkpoint_path, custom_objects)
    if parts[0] is None:                             # an ExportedModel
        return parts[1].export_onnx(path, opset=opset, id_inputs=id_inputs)
    return write_onnx(*parts, path, opset, id_inputs)
