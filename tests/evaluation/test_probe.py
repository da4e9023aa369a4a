"""Linear probe (C chosen on validation only), record aggregation, feature extraction, splits."""

from __future__ import annotations

import numpy as np
import pytest

from aclecg_core.data.cohort import Cohort
from aclecg_core.evaluation.metrics import evaluate
from aclecg_core.evaluation.probe import (
    C_GRID,
    ProbeData,
    aggregate_by_record,
    extract_features,
    fit_probe,
    linear_probe,
    probe_cohorts,
)
from aclecg_core.method.model import EncoderConfig, build_model

CLASSES = ["A", "B", "C"]


def _labels(n: int, rng: np.random.Generator) -> np.ndarray:
    y = (rng.random((n, 3)) < 0.4).astype(np.uint8)
    y[:, 2] = 0  # class C never occurs
    return y


def _data(rng: np.random.Generator, signal: float, sizes: tuple[int, int, int] = (200, 80, 100),
          noise_dims: int = 5) -> ProbeData:
    parts = []
    for n in sizes:
        y = _labels(n, rng)
        parts += [np.hstack([y * signal, rng.standard_normal((n, noise_dims))]), y]
    return ProbeData(*parts)


def test_separable_features_give_auroc_near_one() -> None:
    data = _data(np.random.default_rng(0), 3.0)
    result = linear_probe(data, CLASSES, n_bootstrap=50)
    assert result.macro_auroc > 0.99 and result.macro_auprc > 0.95
    assert result.skipped == ["C"] and result.constant == ["C"]
    assert set(result.per_class_auroc) == {"A", "B"}
    assert result.auroc_ci[0] <= result.macro_auroc <= result.auroc_ci[1]
    d = result.to_dict()
    assert d["n_train"] == 200 and d["n_val"] == 80 and d["c"] in C_GRID
    assert [c for c, _ in d["val_curve"]] == sorted(C_GRID)
    assert d["val_auroc"] == max(v for _, v in d["val_curve"])


def test_random_features_give_auroc_near_half_with_interval() -> None:
    result = linear_probe(_data(np.random.default_rng(1), 0.0, (300, 100, 300), 8), CLASSES,
                          n_bootstrap=100)
    assert abs(result.macro_auroc - 0.5) < 0.1
    lo, hi = result.auroc_ci
    assert lo <= result.macro_auroc <= hi and lo < 0.5 < hi + 0.05


def test_c_is_chosen_on_validation_only_and_the_test_labels_are_never_read() -> None:
    rng = np.random.default_rng(2)
    data = _data(rng, 0.4, (120, 60, 50), noise_dims=40)
    fit = fit_probe(data)
    flipped = ProbeData(data.train_x, data.train_y, data.val_x, data.val_y, data.test_x,
                        1 - data.test_y)
    again = fit_probe(flipped)
    assert again.c == fit.c and again.val_curve == fit.val_curve
    np.testing.assert_array_equal(again.test_scores, fit.test_scores)
    # the validation labels decide: a validation part whose labels carry the signal picks a
    # C at least as large as one whose labels are noise
    noisy_val = ProbeData(data.train_x, data.train_y, data.val_x,
                          rng.permutation(data.val_y), data.test_x, data.test_y)
    assert fit_probe(noisy_val).val_curve != fit.val_curve
    assert fit.c == max(fit.val_curve, key=lambda cv: (round(cv[1], 10), -cv[0]))[0]


def test_probe_checks_its_parts() -> None:
    rng = np.random.default_rng(3)
    data = _data(rng, 1.0)
    with pytest.raises(ValueError, match="validation part of the probe is empty"):
        ProbeData(data.train_x, data.train_y, data.val_x[:0], data.val_y[:0], data.test_x,
                  data.test_y)
    with pytest.raises(ValueError, match="differ in feature"):
        ProbeData(data.train_x, data.train_y, data.val_x[:, :3], data.val_y, data.test_x,
                  data.test_y)
    one_class_val = np.zeros_like(data.val_y)
    with pytest.raises(ValueError, match="cannot choose its regularisation"):
        fit_probe(ProbeData(data.train_x, data.train_y, data.val_x, one_class_val,
                            data.test_x, data.test_y))


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


def test_extract_features_and_probe_cohorts(tiny_cohort: tuple[Cohort, Cohort, Cohort]) -> None:
    train, val, cohort = tiny_cohort
    model = build_model(EncoderConfig(size="tiny"), seed=0)
    feats = extract_features(model, cohort, batch_size=7)
    assert feats.shape == (40, model.embed_dim) and feats.dtype == np.float32
    result = probe_cohorts(model, train, val, cohort, ["A", "B"], n_bootstrap=20)
    assert result.n_train == 10 and result.n_val == 10 and result.n_test == 20


@pytest.mark.parametrize("n, d", [(120, 30), (40, 90)])  # more records than features, and fewer
def test_c_path_matches_scikit_learn(n: int, d: int) -> None:
    """Every C of the path is scikit-learn's L2 logistic regression of each column (one-vs-rest),
    including when there are fewer records than features (the fit then runs in the records'
    span)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from aclecg_core.evaluation.probe import _fit_path

    rng = np.random.default_rng(3)
    x = StandardScaler().fit_transform(rng.standard_normal((n, d)) + rng.standard_normal(d))
    y = (x[:, :2] @ rng.standard_normal((2, 3)) + rng.standard_normal((n, 3)) > 0.3)
    grid = [0.01, 0.1, 1.0]
    path = _fit_path(x, y.astype(np.uint8), grid)
    for i, c in enumerate(grid):
        for k in range(y.shape[1]):
            ref = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(x, y[:, k])
            np.testing.assert_allclose(x @ path[i, k, :-1] + path[i, k, -1],
                                       ref.decision_function(x), atol=2e-3, rtol=2e-3)
