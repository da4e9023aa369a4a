"""The checks of a site's reply before aggregation: keys, shapes, dtypes, finite values, size."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aclecg_core.fed.updates import check_arrays, check_metrics, nonfinite_keys, update_ratio

TEMPLATE = {"encoder.w": np.ones((2, 2), np.float32), "encoder.b": np.zeros(2, np.float32)}
GOOD = {"encoder.w": np.full((2, 2), 1.5, np.float32), "encoder.b": np.ones(2, np.float32)}
METRICS = {"loss": 1.2, "num-examples": 8, "seconds": 0.5, "samples-per-second": 16.0,
           "site-index": 1}


def test_update_ratio_is_the_relative_l2_distance() -> None:
    # ‖Δ‖² = 4 × 0.5² + 2 × 1² = 3; ‖global‖² = 4
    assert update_ratio(GOOD, TEMPLATE) == pytest.approx(math.sqrt(3 / 4))
    assert update_ratio(TEMPLATE, TEMPLATE) == 0.0
    zeros = {"encoder.w": np.zeros(3, np.float32)}
    assert update_ratio({"encoder.w": np.ones(3, np.float32)}, zeros) == math.inf


def test_a_fitting_finite_update_is_accepted() -> None:
    assert check_arrays(GOOD, TEMPLATE, TEMPLATE, max_ratio=1.0) is None
    assert check_metrics(METRICS) is None


@pytest.mark.parametrize(("change", "reason"), [
    ({"encoder.b": None}, "missing arrays encoder.b"),
    ({"encoder.x": np.zeros(1, np.float32)}, "unexpected arrays encoder.x"),
    ({"encoder.b": np.zeros(3, np.float32)}, "encoder.b has shape (3,), the model's is (2,)"),
    ({"encoder.b": np.zeros(2, np.float64)}, "encoder.b has dtype float64, the model's is float32"),
    ({"encoder.b": np.array(["a", "b"])}, "encoder.b has dtype <U1, the model's is float32"),
    ({"encoder.w": np.full((2, 2), np.nan, np.float32), "encoder.b": np.array([1, np.inf],
                                                                            np.float32)},
     "non-finite values in encoder.b, encoder.w"),
])
def test_an_update_that_does_not_fit_is_refused_with_its_reason(
        change: dict[str, np.ndarray | None], reason: str) -> None:
    arrays = {**GOOD, **change}
    update = {k: v for k, v in arrays.items() if v is not None}
    assert check_arrays(update, TEMPLATE, TEMPLATE) == reason


def test_secure_aggregation_replies_may_change_the_float_dtype() -> None:
    dequantised = {k: v.astype(np.float64) for k, v in GOOD.items()}
    assert check_arrays(dequantised, TEMPLATE, same_dtypes=False) is None


def test_an_update_far_larger_than_the_global_model_is_refused() -> None:
    huge = {k: v + 1000 * (GOOD[k] - v) for k, v in TEMPLATE.items()}
    reason = check_arrays(huge, TEMPLATE, TEMPLATE, max_ratio=10.0)
    assert reason == "update 866 × the size of the global model (max-update-ratio 10)"
    assert check_arrays(huge, TEMPLATE, None, max_ratio=10.0) is None  # no reference: no bound


def test_nonfinite_keys_ignore_integer_arrays() -> None:
    arrays = {"n": np.array(3), "x": np.array([np.nan], np.float32), "y": np.ones(1)}
    assert nonfinite_keys(arrays) == ["x"]


@pytest.mark.parametrize(("change", "reason"), [
    ({"seconds": None, "loss": None}, "metrics lack loss, seconds"),
    ({"label-count/MI": 3}, "unexpected metrics label-count/MI"),
    ({"loss": math.nan}, "metric loss is nan, not a finite number"),
    ({"num-examples": True}, "metric num-examples is True, not a finite number"),
    ({"num-examples": 0}, "metric num-examples is 0, not positive"),
])
def test_unusable_training_scalars_are_refused(change: dict[str, object], reason: str) -> None:
    metrics = {k: v for k, v in {**METRICS, **change}.items() if v is not None}
    assert check_metrics(metrics) == reason
