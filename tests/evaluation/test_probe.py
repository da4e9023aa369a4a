"""Linear probe metrics, record aggregation, feature extraction and evaluation splits."""

from __future__ import annotations

import numpy as np
import pytest

from aclecg_core.data.cohort import Cohort, RecordInfo
from aclecg_core.evaluation.metrics import evaluate
from aclecg_core.evaluation.probe import (
    aggregate_by_record,
    extract_features,
    linear_probe,
    patient_split,
    probe_cohorts,
    ptbxl_split,
    site_split,
)
from aclecg_core.method.model import EncoderConfig, build_model

CLASSES = ["A", "B", "C"]


def _labels(n: int, rng: np.random.Generator) -> np.ndarray:
    y = (rng.random((n, 3)) < 0.4).astype(np.uint8)
    y[:, 2] = 0  # class C never occurs
    return y


def test_separable_features_give_auroc_near_one() -> None:
    rng = np.random.default_rng(0)
    y_train, y_test = _labels(200, rng), _labels(100, rng)
    x_train = np.hstack([y_train * 3.0, rng.standard_normal((200, 5))])
    x_test = np.hstack([y_test * 3.0, rng.standard_normal((100, 5))])
    result = linear_probe(x_train, y_train, x_test, y_test, CLASSES, n_bootstrap=50)
    assert result.macro_auroc > 0.99 and result.macro_auprc > 0.95
    assert result.skipped == ["C"] and result.constant == ["C"]
    assert set(result.per_class_auroc) == {"A", "B"}
    assert result.auroc_ci[0] <= result.macro_auroc <= result.auroc_ci[1]
    assert result.to_dict()["n_train"] == 200


def test_random_features_give_auroc_near_half_with_interval() -> None:
    rng = np.random.default_rng(1)
    y_train, y_test = _labels(300, rng), _labels(300, rng)
    result = linear_probe(rng.standard_normal((300, 8)), y_train, rng.standard_normal((300, 8)),
                          y_test, CLASSES, n_bootstrap=100)
    assert abs(result.macro_auroc - 0.5) < 0.1
    lo, hi = result.auroc_ci
    assert lo <= result.macro_auroc <= hi and lo < 0.5 < hi + 0.05


def test_evaluate_checks_shapes_and_degenerate_sets() -> None:
    with pytest.raises(ValueError, match="must both be"):
        evaluate(np.zeros((4, 2)), np.zeros((4, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="no class"):
        evaluate(np.zeros((4, 1)), np.zeros((4, 1)), ["a"])


def test_aggregate_by_record() -> None:
    feats = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]], dtype=np.float32)
    out = aggregate_by_record(feats, np.array([0, 0, 1]), 2)
    np.testing.assert_allclose(out, [[2.0, 1.0], [5.0, 5.0]])
    with pytest.raises(ValueError, match="no windows"):
        aggregate_by_record(feats, np.array([0, 0, 0]), 2)


def _cohort(n: int = 20) -> Cohort:
    rng = np.random.default_rng(0)
    records = [RecordInfo(f"r{i}", "", "t", f"s{i % 2}", f"p{i // 2}", i % 10 + 1, 100.0,
                          ("A",) if i % 2 else ("B",)) for i in range(n)]
    signals = rng.standard_normal((2 * n, 12, 100)).astype(np.float32)
    signals[np.repeat(np.arange(n), 2) % 2 == 1, :, 40:60] += 3.0  # class A: a bump
    return Cohort(signals, np.full((2 * n, 3), -1, np.int32), np.repeat(np.arange(n), 2),
                  records, 100.0, {})


def test_extract_features_and_probe_cohorts() -> None:
    cohort = _cohort()
    model = build_model(EncoderConfig(size="tiny"), seed=0)
    feats = extract_features(model, cohort, batch_size=7)
    assert feats.shape == (40, model.embed_dim) and feats.dtype == np.float32
    train, test = site_split(cohort, "s0")[0], cohort
    result = probe_cohorts(model, train.select_records(np.ones(10, bool)), test, ["A", "B"])
    assert result.n_train == 10 and result.n_test == 20


def test_splits() -> None:
    cohort = _cohort()
    train, val, test = ptbxl_split(cohort)
    assert {r.fold for r in val.records} == {9} and {r.fold for r in test.records} == {10}
    assert len(train.records) == 16
    rest, held = site_split(cohort, "s1")
    assert {r.site for r in held.records} == {"s1"} and {r.site for r in rest.records} == {"s0"}
    with pytest.raises(ValueError, match="site 'x'"):
        site_split(cohort, "x")
    a, b = patient_split(cohort, 0.3, seed=1)
    assert not {r.patient_id for r in a.records} & {r.patient_id for r in b.records}
    assert len(a.records) + len(b.records) == 20
