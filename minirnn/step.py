"""The one training step: features -> network -> head loss -> backward -> (reduce) -> clip -> update.

Every trainer runs it: the estimators and ``DynamicRnnEstimator`` (:mod:`minirnn.estimator`), the
scikit-learn wrappers (:mod:`minirnn.sklearn`), the MPI runner (:mod:`minirnn.distributed`, which
supplies ``reduce``: the gradient Allreduce) and the GPU runner (:mod:`minirnn.cuda`, which supplies
``device``: a model whose weights, gradients and update live on the GPU). A fix to labels, masks,
clipping or non-finite losses lands here once.
"""

import numpy as np

from .inputs import SparseInput
from .predictions import row_lengths

__all__ = ["train_step", "gradients", "prepare_labels", "check_finite"]


def prepare_labels(labels, mask, return_sequences):
    """The labels of a batch as the head takes them: a one-entry dict unwrapped, and with
    ``return_sequences`` ragged per-example label sequences padded to the batch's [B, T]."""
    if labels is None:
        raise ValueError("labels: the input_fn returned no labels; training and evaluation need (features, labels)")
    if isinstance(labels, dict):
        if len(labels) != 1:
            raise ValueError(f"labels: a dict of labels must have one entry, got keys {sorted(labels)}")
        labels = next(iter(labels.values()))
    if isinstance(labels, SparseInput) or not (return_sequences and isinstance(labels, (list, tuple))
                                               and any(np.ndim(row) == 1 for row in labels)):
        return labels
    B, T = mask.shape
    if len(labels) != B:
        raise ValueError(f"labels: {len(labels)} label sequences for {B} examples")
    lengths = row_lengths(mask)
    rows = [np.asarray(r) for r in labels]
    dtype = object if any(r.dtype.kind in "USO" for r in rows) else np.result_type(*[r.dtype for r in rows])
    padded = np.zeros((B, T), dtype=dtype) if dtype != object else np.full((B, T), "", dtype=object)
    for b, r in enumerate(rows):
        if r.shape == (T,):                       # already padded to the batch length
            padded[b] = r
            continue
        if r.shape != (lengths[b],):
            raise ValueError(f"labels: example {b} has {r.shape[0] if r.ndim else 'a scalar'} labels but "
                             f"its sequence has {lengths[b]} steps")
        padded[b, :lengths[b]] = r
    return padded


def check_finite(loss, step):
    """Raise FloatingPointError for a non-finite loss, before the update that would spread it."""
    if not np.isfinite(loss):
        raise FloatingPointError(f"loss is {loss} at step {step}: training diverged (lower the learning rate or "
                                 "clip gradients); the weights were not updated")


def gradients(network, head, features, labels, weights=None, initial_states=None, step=None):
    """Forward, loss and backward of one batch: -> (the head's LossResult, gradients of the
    trainable parameters).

    network : forward(features, training, initial_states) -> (logits, mask), backward(d_logits) ->
        gradients aligned with params(), trainable() (a Network, a cuda.DeviceTrainer, or the
        scikit-learn wrappers' array network)
    weights : example weights; None reads the head's weight_column from ``features``
    initial_states : None, or a callable(features) -> per-layer initial states
    step : the step's number, for the error when the loss is not finite (raised before backward)
    """
    states = None if initial_states is None else initial_states(features)
    logits, mask = network.forward(features, training=True, initial_states=states)
    return_sequences = network.model.return_sequences
    y = prepare_labels(labels, mask, return_sequences)
    w = head.weights(features) if weights is None else weights
    result = head.loss(logits, y, w, mask if return_sequences else None)
    check_finite(result.loss, step)
    grads = network.backward(result.d_logits)
    return result, [g for g, keep in zip(grads, network.trainable()) if keep]


def train_step(state, head, features, labels, *, weights=None, initial_states=None, reduce=None, device=None):
    """One training step of ``state`` (a :class:`~minirnn.state.TrainState`); returns the loss, or
    None when ``reduce`` says that no step was taken (every MPI rank's input ended, or a stop).

    reduce : None (one process), or ``reduce(state, head, features, labels, compute)`` ->
        (gradients, loss) or None, where ``compute(features, labels, head)`` -> :func:`gradients`
        of this process's share: the MPI runner's Allreduce
    device : None (the CPU), or a device model with the network's forward/backward/trainable and
        ``apply(gradients)``, updating the weights where they live (``cuda.DeviceTrainer``)

    A non-finite loss raises FloatingPointError before any weight changes.
    """
    network = state.network if device is None else device

    def compute(features, labels, loss_head):
        return gradients(network, loss_head, features, labels, weights, initial_states, state.global_step + 1)

    if reduce is None:
        result, grads = compute(features, labels, head)
        loss = result.loss
    else:
        reduced = reduce(state, head, features, labels, compute)
        if reduced is None:
            return None
        grads, loss = reduced
    check_finite(loss, state.global_step + 1)
    (state if device is None else device).apply(grads)
    state.global_step += 1
    state.fresh = False
    return loss
