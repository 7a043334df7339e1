"""Predictions of a network for one batch: the estimators', the MPI runner's and the exported
bundle's (one definition, so that all of them answer the same).

TF2 estimators (``kind`` 'rnn') return their head's predictions (plus the mask with
``return_sequences``); TF1's DynamicRnnEstimator ('dynamic_rnn') returns ``classes`` (and
``probabilities``) or ``scores`` and its final states as ``rnn_cell_state_i``, and reads initial
states from features of those names.
"""

import numpy as np

from .heads import BinaryClassHead, MultiClassHead

__all__ = ["predict_batch", "initial_states_from_features", "state_features", "state_keys_and_values", "row_lengths",
           "single_examples"]


def row_lengths(mask):
    """Each row's length: its last valid step + 1 (0 for a row with none)."""
    T = mask.shape[1]
    return np.where(mask.any(axis=1), T - np.argmax(mask[:, ::-1], axis=1), 0)


def single_examples(preds, mask, return_sequences, trim_sequences=False):
    """One batch's prediction arrays as one dict per example; with ``trim_sequences`` per-step
    outputs are cut to each example's own length."""
    B, T = mask.shape
    per_step = {k for k, v in preds.items() if return_sequences and v.ndim >= 2 and v.shape[:2] == (B, T)
                and not k.startswith("all_")}
    lengths = row_lengths(mask)
    for b in range(B):
        yield {k: (v[b, :lengths[b]] if trim_sequences and k in per_step else v[b]) for k, v in preds.items()}


def state_keys_and_values(model):
    """TF1's ``rnn_cell_state_i`` outputs: the final states flattened depth first, an LSTM layer as
    (c, h) like TF1's LSTMStateTuple, other layers as h."""
    flat = []
    for layer, states in zip(model.layers, model.final_states):
        flat += [states[1], states[0]] if len(states) == 2 else list(states)
    return {f"rnn_cell_state_{i}": s for i, s in enumerate(flat)}


def state_features(layers, features):
    """The ``rnn_cell_state_i`` features for ``layers`` (TF1's depth-first order, an LSTM layer as
    c then h): all of them as a list of [batch, size] arrays, or None when there are none; some but
    not all, or a wrong shape, is a ValueError (TF1's message)."""
    sizes = [layer.units for layer in layers for _ in range(layer.n_states)]
    names = [f"rnn_cell_state_{i}" for i in range(len(sizes))]
    given = [name for name in names if features.get(name) is not None]
    if not given:
        return None
    if len(given) != len(sizes):
        raise ValueError(f"RNN state was partially specified.Expected zero or {len(sizes)} state Tensors; got "
                         f"{len(given)} ({given})")
    flat = []
    for name, size in zip(names, sizes):
        value = np.asarray(features[name])
        if value.ndim != 2 or value.shape[1] != size:
            raise ValueError(f"feature {name!r}: expected shape [batch, {size}], got {value.shape}")
        flat.append(value)
    return flat


def initial_states_from_features(model, features):
    """Per-layer initial states from ``rnn_cell_state_i`` features (all or none), else None."""
    count = sum(layer.n_states for layer in model.layers)
    extra = [k for k in features if k.startswith("rnn_cell_state_") and k not in
             {f"rnn_cell_state_{i}" for i in range(count)}]
    if extra:
        raise ValueError(f"features {extra}: the model has {count} state tensors (rnn_cell_state_0..{count - 1})")
    states = state_features(model.layers, features)
    if states is None:
        return None
    flat = [np.ascontiguousarray(s, dtype=model.dtype) for s in states]
    out, k = [], 0
    for layer in model.layers:
        if layer.n_states == 2:                        # TF1 order (c, h) -> the layer's [h, c]
            out.append([flat[k + 1], flat[k]])
        else:
            out.append(flat[k:k + layer.n_states])
        k += layer.n_states
    return out


def predict_batch(kind, head, network, features, mask_key="sequence_mask", options=None):
    """Prediction arrays for one batch (leading axis = examples) and the step mask."""
    options = options or {}
    initial = initial_states_from_features(network.model, features) if kind == "dynamic_rnn" else None
    logits, mask = network.forward(features, training=False, initial_states=initial)
    if kind != "dynamic_rnn":
        out = dict(head.predictions(logits))
        if network.model.return_sequences:
            out[mask_key] = mask
        return out, mask
    out = {}
    if network.model.return_sequences:           # TF1: per-step outputs at padded_length, the batch's
        longest = max(int(row_lengths(mask).max()), 1)     # longest sequence_length (or mask row)
        logits, mask = logits[:, :longest], mask[:, :longest]
    if isinstance(head, (BinaryClassHead, MultiClassHead)):
        p = head.predictions(logits)
        out["classes"] = p["class_ids"][..., 0]
        if options.get("predict_probabilities"):
            out["probabilities"] = p["probabilities"]
    else:
        out["scores"] = logits[..., 0]
    out.update(state_keys_and_values(network.model))
    return out, mask
