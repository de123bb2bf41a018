"""The speed work keeps the math: one fixed step matches the summary of the code before it.

`tests/data/golden_step.json` was written by `python -m tests.golden_step` at commit
3efce5b (before issue 10's speed work). Dropout is 0 and every random draw (the simulated
shift, the decoupling's sampling) comes from one seeded stream, so a step is a
deterministic function of the code: a change to a loss, a layer's math or the order of
random draws moves these numbers by far more than the tolerance, while reordered float
arithmetic (fused softmax, batched passes) stays within it.
"""

import json

import numpy as np
import pytest

from tests import golden_step

RTOL, ATOL = 2e-4, 1e-6


@pytest.fixture(scope="module")
def golden():
    with open(golden_step.GOLDEN_PATH) as f:
        return json.load(f)


@pytest.mark.parametrize("case", sorted(golden_step.CASES))
def test_fixed_step_matches_the_code_before_the_speed_work(case, golden):
    expected, actual = golden[case], golden_step.step_summary(case)
    for mode in ("train", "eval"):
        for term, value in expected[mode].items():
            np.testing.assert_allclose(
                actual[mode][term], value, rtol=RTOL, atol=ATOL, err_msg=f"{case} {mode} {term}"
            )
    np.testing.assert_allclose(actual["prediction"], expected["prediction"], rtol=RTOL, atol=ATOL)
    assert [shape for shape, _ in actual["gradient_norms"]] == [
        shape for shape, _ in expected["gradient_norms"]
    ]
    for index, ((_, norm), (shape, actual_norm)) in enumerate(
        zip(expected["gradient_norms"], actual["gradient_norms"])
    ):
        if norm is None:
            assert actual_norm is None, (index, shape)
        else:
            np.testing.assert_allclose(
                actual_norm, norm, rtol=1e-3, atol=1e-6, err_msg=f"weight {index} {shape}"
            )
