"""Metrics against scikit-learn, and the paired bootstrap against a naive loop."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from aclecg_core.evaluation.metrics import (
    bootstrap_rows,
    column_intervals,
    column_scores,
    paired_bootstrap,
)


def _labels_and_scores(rng: np.random.Generator, n: int, k: int = 1
                       ) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random((n, 4)) < 0.3).astype(np.uint8)
    y[:3, 0], y[3:6, 0] = 1, 0  # column 0 always evaluable
    scores = np.round(rng.random((k, n, 4)) + 0.4 * y, 1)  # rounded: many ties
    scores[:, :, 3] = 0.5  # a constant scorer
    return y, scores


def test_column_scores_match_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    for n in (7, 30, 61):
        y, scores = _labels_and_scores(rng, n)
        y[:, 2] = 0  # no positives: nan
        auroc, ap = column_scores(y, scores[0])
        for c in (0, 1, 3):
            if 0 < y[:, c].sum() < n:
                assert auroc[c] == pytest.approx(roc_auc_score(y[:, c], scores[0, :, c]))
                assert ap[c] == pytest.approx(average_precision_score(y[:, c], scores[0, :, c]))
        assert np.isnan(auroc[2]) and np.isnan(ap[2])


def _naive_macro(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    cols = [c for c in range(y.shape[1]) if 0 < y[:, c].sum() < len(y)]
    return (float(np.mean([roc_auc_score(y[:, c], s[:, c]) for c in cols])),
            float(np.mean([average_precision_score(y[:, c], s[:, c]) for c in cols])))


def test_paired_bootstrap_matches_a_naive_loop() -> None:
    rng = np.random.default_rng(1)
    y, a = _labels_and_scores(rng, 40, k=2)
    b = np.round(rng.random((3, *y.shape)) + 0.2 * y, 1)  # another number of draws
    result = paired_bootstrap(y, a, b, seed=5, n_bootstrap=20)
    diffs = []
    for rows in bootstrap_rows(len(y), 20, seed=5):  # the same records for A and B
        macro_a = np.mean([_naive_macro(y[rows], draw[rows]) for draw in a], axis=0)
        macro_b = np.mean([_naive_macro(y[rows], draw[rows]) for draw in b], axis=0)
        diffs.append(macro_a - macro_b)
    lo, hi = np.percentile(diffs, [2.5, 97.5], axis=0)
    assert result.auroc_diff_ci == pytest.approx((lo[0], hi[0]))
    assert result.auprc_diff_ci == pytest.approx((lo[1], hi[1]))
    point_a = np.mean([_naive_macro(y, draw) for draw in a], axis=0)
    point_b = np.mean([_naive_macro(y, draw) for draw in b], axis=0)
    assert (result.auroc_a, result.auprc_a) == pytest.approx(tuple(point_a))
    assert result.auroc_diff == pytest.approx(point_a[0] - point_b[0])
    assert result.n_test == 40 and result.n_bootstrap == 20


def test_paired_bootstrap_of_a_scoring_against_itself_is_exactly_zero() -> None:
    y, a = _labels_and_scores(np.random.default_rng(2), 25)
    same = paired_bootstrap(y, a[0], a[0], n_bootstrap=30)
    assert same.auroc_diff == 0 and same.auroc_diff_ci == (0.0, 0.0)
    with pytest.raises(ValueError, match="must both be"):
        paired_bootstrap(y, a[0], a[0][:, :2])


def test_column_intervals_match_a_naive_loop() -> None:
    """Each class's AUROC interval, and the paired interval of a difference, resample the same
    records for every column (and for both scorings)."""
    rng = np.random.default_rng(3)
    y, s = _labels_and_scores(rng, 50, k=2)
    y[:, 2] = 0  # not evaluable: None
    single = column_intervals(y, s[0], seed=4, n_bootstrap=25)
    paired = column_intervals(y, s[0], s[1], seed=4, n_bootstrap=25)
    assert single[2] is None and paired[2] is None
    for c in (0, 1):
        values, diffs = [], []
        for rows in bootstrap_rows(len(y), 25, seed=4):
            if 0 < y[rows, c].sum() < len(rows):
                auc = [roc_auc_score(y[rows, c], draw[rows, c]) for draw in s]
                values.append(auc[0])
                diffs.append(auc[0] - auc[1])
        assert single[c] == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])))
        assert paired[c] == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))
