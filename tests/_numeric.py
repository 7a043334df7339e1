"""Central differences, shared by the gradient tests."""

import numpy as np


def central_difference(f, arr, eps=1e-6):
    """d f() / d arr, perturbing ``arr`` in place one element at a time (restored after)."""
    grad = np.zeros_like(arr, dtype=np.float64)
    for i in np.ndindex(arr.shape):
        old = arr[i]
        arr[i] = old + eps
        up = f()
        arr[i] = old - eps
        down = f()
        arr[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad
