"""The one training step (minirnn.step) and the training state (minirnn.state)."""

import copy

import numpy as np
import pytest

from minirnn import feature_column as fc
from minirnn import optimizers as O
from minirnn.heads import MultiClassHead, RegressionHead
from minirnn.network import Network
from minirnn.state import TrainState
from minirnn.step import gradients, prepare_labels, train_step

FEATURES = {"tok": [[1, 2, 3], [4], [5, 6]], "x": [np.ones((3, 2)), np.zeros((1, 2)), -np.ones((2, 2))],
            "w": np.array([1.0, 0.5, 2.0])}
LABELS = np.array([0, 2, 1])


def _network(seed=3, dropout=None):
    columns = [fc.embedding_column(fc.sequence_categorical_column_with_identity("tok", 10), 3),
               fc.sequence_numeric_column("x", shape=(2,))]
    return Network(columns, units=[4, 3], cell_type="gru", logits_dimension=3, seed=seed, dtype="float64",
                   dropout_keep_probabilities=dropout)


def _by_hand(net, optimizer, head):
    """The step written out: forward, loss, backward, update of the trainable parameters."""
    logits, mask = net.forward(FEATURES, training=True)
    result = head.loss(logits, LABELS, head.weights(FEATURES))
    grads = net.backward(result.d_logits)
    keep = net.trainable()
    optimizer.apply([p for p, k in zip(net.params(), keep) if k], [g for g, k in zip(grads, keep) if k])
    return result.loss


def test_train_step_is_forward_loss_backward_update():
    head = MultiClassHead(3, weight_column="w")
    state = TrainState(_network(dropout=[0.9, 0.8, 0.9]), O.Adam(0.05, global_clipnorm=0.5))
    net, optimizer = _network(dropout=[0.9, 0.8, 0.9]), O.Adam(0.05, global_clipnorm=0.5)
    for step in range(1, 4):
        loss = train_step(state, head, FEATURES, LABELS)
        assert loss == _by_hand(net, optimizer, head)
        assert state.global_step == step and state.optimizer.iterations == step
    for a, b in zip(state.network.params(), net.params()):
        np.testing.assert_array_equal(a, b)
    assert state.rng.bit_generator.state == net.model.rng.bit_generator.state


def test_a_non_finite_loss_stops_before_any_update():
    head = RegressionHead(3)
    state = TrainState(_network(), O.SGD(0.1))
    before = [p.copy() for p in state.network.params()]
    with pytest.raises(FloatingPointError, match="at step 1"), np.errstate(over="ignore"):
        train_step(state, head, FEATURES, np.full((3, 3), 1e200))     # the squared error overflows
    assert state.global_step == 0 and state.optimizer.iterations == 0
    for a, b in zip(state.network.params(), before):
        np.testing.assert_array_equal(a, b)


def test_a_reducer_gets_the_head_and_the_share_and_decides():
    head = MultiClassHead(3)
    state = TrainState(_network(), O.SGD(0.1))
    seen = {}

    def reduce(state_, head_, features, labels, compute):
        seen.update(state=state_, head=head_, features=features)
        result, grads = compute(features, labels, head_)
        return [2 * g if isinstance(g, np.ndarray) else g.scaled(2) for g in grads], result.loss

    reference = TrainState(_network(), O.SGD(0.2))            # twice the gradient = twice the rate for SGD
    loss = train_step(state, head, FEATURES, LABELS, reduce=reduce)
    assert seen["state"] is state and seen["head"] is head and seen["features"] is FEATURES
    assert loss == train_step(reference, head, FEATURES, LABELS)
    for a, b in zip(state.network.params(), reference.network.params()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert train_step(state, head, FEATURES, LABELS, reduce=lambda *args: None) is None   # no step taken
    assert state.global_step == 1


def test_a_device_runs_the_step_and_the_update():
    head = MultiClassHead(3)
    state = TrainState(_network(), O.SGD(0.1))
    calls = []

    class Device:                     # the network's protocol plus apply(), as cuda.DeviceTrainer
        def __init__(self, network):
            self.network, self.model = network, network.model

        def forward(self, features, training=False, initial_states=None):
            calls.append("forward")
            return self.network.forward(features, training=training, initial_states=initial_states)

        def backward(self, d_logits):
            calls.append("backward")
            return self.network.backward(d_logits)

        def trainable(self):
            return self.network.trainable()

        def apply(self, grads):
            calls.append("apply")
            state.apply(grads)

    train_step(state, head, FEATURES, LABELS, device=Device(state.network))
    assert calls == ["forward", "backward", "apply"] and state.global_step == 1


def test_gradients_skip_frozen_tables_and_read_states_from_features():
    frozen = fc.embedding_column(fc.sequence_categorical_column_with_identity("tok", 10), 3, trainable=False)
    net = Network([frozen, fc.sequence_numeric_column("x", shape=(2,))], units=[4], cell_type="lstm",
                  logits_dimension=3, seed=0, dtype="float64")
    asked = []
    result, grads = gradients(net, MultiClassHead(3), FEATURES, LABELS,
                              initial_states=lambda features: asked.append(features) or None)
    assert asked == [FEATURES] and np.isfinite(result.loss)
    assert len(grads) == len(net.params()) - 1 == sum(net.trainable())


def test_prepare_labels_pads_ragged_sequences_and_names_the_example():
    mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    np.testing.assert_array_equal(prepare_labels([[1, 2], [3, 4, 5]], mask, True), [[1, 2, 0], [3, 4, 5]])
    assert prepare_labels({"y": LABELS}, mask, False) is LABELS
    with pytest.raises(ValueError, match="example 0 has 1 labels but its sequence has 2 steps"):
        prepare_labels([[1], [3, 4, 5]], mask, True)
    with pytest.raises(ValueError, match="returned no labels"):
        prepare_labels(None, mask, False)


def test_state_round_trips_through_checkpoint_and_flat_forms():
    head = MultiClassHead(3)
    state = TrainState(_network(dropout=[0.9, 0.9, 0.9]), O.Adam(0.05))
    for _ in range(2):
        train_step(state, head, FEATURES, LABELS)
    variables, attributes = state.variables(), state.attributes()
    assert variables["global_step"] == 2 and attributes["optimizer"]["iterations"] == 2
    assert any(k.startswith("training/Adam/") and k.endswith("/m") for k in variables)

    restored = TrainState(_network(seed=99, dropout=[0.9, 0.9, 0.9]), O.Adam(0.05))
    for name, p in zip(restored.network.param_names(), restored.network.params()):
        p[...] = variables[name]
    restored.restore(variables, attributes)
    flat = TrainState(_network(seed=7, dropout=[0.9, 0.9, 0.9]), O.Adam(0.05))
    flat.load_flat(copy.deepcopy(state.meta()), np.concatenate([a.ravel() for a in state.arrays()]))
    for other in (restored, flat):
        assert other.global_step == 2 and not other.fresh
        # the next step is the same step: weights, slots, iteration count and dropout masks all came along
        assert train_step(other, head, FEATURES, LABELS) == train_step(copy.deepcopy(state), head, FEATURES, LABELS)
