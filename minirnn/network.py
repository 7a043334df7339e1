"""The whole trainable network of an estimator: feature layers -> recurrent model -> logits.

    features dict --SequenceFeatures--> x [B, T, Ds], mask [B, T]
                  --ContextFeatures---> c [B, Dc]           (optional, tiled over T by the model)
    RNNModel(x, mask, c)              -> logits [B, k] or [B, T, k]

``backward(d_logits)`` runs the model's backward with the input gradient and passes it on to the
embedding tables, whose gradients are sparse (:class:`minirnn.optimizers.SparseRows`).
Parameters are named as TF names its variables (``sequence_features/<col>_embedding/
embedding_weights``, ``dense_features/...``, ``rnn_model/...``).
"""

import numpy as np

from .features import ContextFeatures, SequenceFeatures, layer_size
from .model import RNNModel


class Network:
    """Feature layers and an :class:`~minirnn.model.RNNModel`, built at once (weights exist after
    ``__init__``).

    Parameters
    ----------
    sequence_columns, context_columns : feature columns (context may be None or empty)
    units, cell_type, logits_dimension, return_sequences, dropout_keep_probabilities, cell_options :
        as :class:`~minirnn.model.RNNModel`
    seed : drives every initialisation and the dropout masks
    dtype : 'float32' (default) or 'float64' (for gradient checks)
    sequence_mask_key, length_key : batch features that give the valid steps of padded arrays
    sparse_length : a SparseInput sequence's steps: 'indices' (TF2: each row's highest index + 1)
        or 'dense_shape' (TF1: every step of its dense_shape, then sequence_length masks)
    max_parameters : refuse (ValueError, before allocating anything) a network with more weights
        than this; None: no bound. For networks described by untrusted files.
    """

    def __init__(self, sequence_columns, context_columns=None, units=(32,), cell_type="lstm", logits_dimension=1,
                 return_sequences=False, dropout_keep_probabilities=None, seed=None, cell_options=None,
                 sequence_mask_key="sequence_mask", length_key="sequence_length", backend=None, dtype="float32",
                 max_parameters=None, sparse_length="indices"):
        if max_parameters is not None:
            model = RNNModel(units, cell_type, logits_dimension, return_sequences, dropout_keep_probabilities,
                             cell_options=cell_options, dtype=dtype)
            widths = [layer_size(sequence_columns, True)] + ([layer_size(context_columns, False)]
                                                             if context_columns else [])
            count = sum(tables for _, tables in widths) + model.weight_count(*(w for w, _ in widths))
            if count > max_parameters:
                raise ValueError(f"the network declares {count:,} weights, more than max_parameters="
                                 f"{max_parameters:,}")
        seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(3)]
        self.sequence = SequenceFeatures(sequence_columns, seed=seeds[0], dtype=dtype, mask_key=sequence_mask_key,
                                         length_key=length_key, sparse_length=sparse_length)
        self.context = ContextFeatures(context_columns, seed=seeds[1], dtype=dtype) if context_columns else None
        self.model = RNNModel(units, cell_type, logits_dimension, return_sequences, dropout_keep_probabilities,
                              seed=seeds[2], dtype=dtype, cell_options=cell_options, backend=backend)
        self.model.build(self.sequence.output_dim, self.context.output_dim if self.context else 0)
        self._feature_layers = [self.sequence] + ([self.context] if self.context else [])

    # ---- parameters ---------------------------------------------------------------------------

    def param_names(self):
        names = []
        for layer in self._feature_layers:
            names += layer.param_names()
        return names + self.model.param_names()

    def params(self):
        """Every weight array (live: optimizers update them in place), aligned with param_names()."""
        out = []
        for layer in self._feature_layers:
            out += layer.params()
        return out + self.model.params()

    def trainable(self):
        """One bool per parameter: False for embedding_column(trainable=False) tables."""
        out = []
        for layer in self._feature_layers:
            out += layer.embeddings.trainable()
        return out + [True] * len(self.model.params())

    # ---- forward / backward -------------------------------------------------------------------

    def forward(self, features, training=False, initial_states=None, model=None):
        """(logits, mask): logits [B, k] (or [B, T, k] with return_sequences), mask [B, T]: the steps
        the head scores (the valid steps, or the batch's own ``sequence_mask``: see
        :meth:`~minirnn.features.SequenceFeatures.head_mask`).

        ``model``: run the recurrent part on this model instead of ``self.model`` (one with the
        same forward/backward/zero_grads/grads, e.g. a :class:`minirnn.cuda.DeviceModel`)."""
        x, mask = self.sequence.forward(features)
        head_mask = self.sequence.head_mask(features, mask, self.model.return_sequences)
        context = self.context.forward(features) if self.context else None
        if context is not None and context.shape[0] != x.shape[0]:
            raise ValueError(f"context features have {context.shape[0]} examples, sequence features {x.shape[0]}")
        logits = (model or self.model).forward(x, mask, context, training=training, initial_states=initial_states)
        return logits, head_mask

    def backward(self, d_logits, model=None):
        """Gradients aligned with params(): SparseRows for embedding tables, arrays for the rest
        (``model``'s, as in :meth:`forward`). The dense ones are the model's gradient buffers,
        cleared and refilled by every call: apply them before the next backward."""
        model = model or self.model
        need_input = any(layer.embeddings.columns for layer in self._feature_layers)
        model.zero_grads()
        d_sequence, d_context = model.backward(d_logits, need_input_grad=need_input)
        grads = []
        if need_input:
            grads += self.sequence.backward(d_sequence)
            if self.context:
                grads += self.context.backward(d_context)
        return grads + model.grads()
