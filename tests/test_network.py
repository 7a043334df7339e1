"""The estimators' network (feature layers -> RNNModel): gradients through embeddings and context
columns against central differences in float64, and the sparse embedding gradient."""

import numpy as np
import pytest

from minirnn import feature_column as fc
from minirnn.heads import BinaryClassHead, MultiClassHead
from minirnn.network import Network
from minirnn.optimizers import SparseRows

from _numeric import central_difference


def columns():
    sequence = [fc.embedding_column(fc.sequence_categorical_column_with_identity("tok", 12), 3, combiner="sum"),
                fc.sequence_numeric_column("x", shape=(2,))]
    context = [fc.embedding_column(fc.categorical_column_with_vocabulary_list("c", ["a", "b", "c"]), 2),
               fc.numeric_column("n")]
    return sequence, context


FEATURES = {"tok": [[1, 2, 3, 2], [4, 5], [11]],
            "x": [np.arange(8.0).reshape(4, 2) / 8, np.ones((2, 2)), -np.ones((1, 2))],
            "c": np.array(["a", "c", "b"]), "n": np.array([0.5, -1.0, 2.0])}


@pytest.mark.parametrize("cell_type, return_sequences", [("lstm", False), ("gru", True), ("simple_rnn", False)])
def test_gradients_match_central_differences(cell_type, return_sequences):
    sequence, context = columns()
    head = MultiClassHead(3) if not return_sequences else BinaryClassHead()
    net = Network(sequence, context, units=[4, 3], cell_type=cell_type, logits_dimension=head.logits_dimension,
                  return_sequences=return_sequences, seed=3, dtype="float64")
    labels = np.array([0, 2, 1]) if not return_sequences else np.array([[1, 0, 1, 1], [0, 1, 0, 0], [1, 0, 0, 0]])

    def loss():
        logits, mask = net.forward(FEATURES, training=True)
        return head.loss(logits, labels, mask=mask if return_sequences else None).loss

    logits, mask = net.forward(FEATURES, training=True)
    result = head.loss(logits, labels, mask=mask if return_sequences else None)
    grads = net.backward(result.d_logits)
    grads = [g.to_dense() if isinstance(g, SparseRows) else g.copy() for g in grads]
    for name, param, grad in zip(net.param_names(), net.params(), grads):
        np.testing.assert_allclose(grad, central_difference(loss, param), rtol=1e-5, atol=1e-8, err_msg=name)


def test_embedding_gradient_is_sparse_and_frozen_tables_are_not_trained():
    frozen = fc.embedding_column(fc.sequence_categorical_column_with_identity("tok", 12), 3, trainable=False)
    net = Network([frozen, fc.sequence_numeric_column("x", shape=(2,))], units=[4], cell_type="gru", seed=0)
    logits, _ = net.forward(FEATURES, training=True)
    grads = net.backward(np.ones_like(logits))
    assert isinstance(grads[0], SparseRows) and sorted(grads[0].rows) == [1, 2, 3, 4, 5, 11]
    assert net.trainable() == [False] + [True] * (len(net.params()) - 1)
