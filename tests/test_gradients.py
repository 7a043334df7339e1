"""Central-difference gradient checks in float64: x, every weight and the initial states."""

import numpy as np
import pytest

from _cells import FORM_IDS, FORMS, loss, random_case, run
from _numeric import central_difference

@pytest.mark.parametrize("zero_output_for_mask", [False, True], ids=["repeat", "zero"])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
def test_gradients_match_central_differences(form, backend, zero_output_for_mask):
    rng = np.random.default_rng(7)
    B, T, D, H = 3, 6, 2, 3
    x, mask, states0, weights, dy, dstates = random_case(form, B, T, D, H, np.float64, rng, gaps=True)
    mask[0] = [False, True, False, True, True, False]   # gaps, a masked first and last step
    mask[1] = False                                      # a row with no valid step
    mask[2] = True
    args = (x, mask, states0, weights, dy, dstates, zero_output_for_mask)
    _, _, dx, dstates0, grads = run(form, backend, *args)

    def f():
        return loss(form, backend, *args)

    checks = [("x", x, dx)] + [(f"state{k}", s, d) for k, (s, d) in enumerate(zip(states0, dstates0))]
    checks += [(name, w, g) for name, w, g in zip(["kernel", "recurrent_kernel", "bias"], weights, grads)]
    for name, arr, analytic in checks:
        np.testing.assert_allclose(analytic, central_difference(f, arr), rtol=1e-6, atol=1e-8, err_msg=name)
    # masked inputs get exactly zero gradient; a row with no valid step passes its state gradient on
    assert np.all(dx[~mask] == 0.0)
    for d_T, d_0 in zip(dstates, dstates0):
        np.testing.assert_array_equal(d_0[1], d_T[1])
