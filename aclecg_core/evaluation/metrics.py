"""Multi-label evaluation: macro AUROC/AUPRC with per-class values and bootstrap intervals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


@dataclass
class EvalResult:
    """Macro and per-class scores over the classes with positives and negatives in the test set.

    ``*_ci`` are percentile bootstrap 95 % intervals (test records resampled); ``skipped``
    lists the classes left out of the macro averages.
    """

    macro_auroc: float
    macro_auprc: float
    auroc_ci: tuple[float, float]
    auprc_ci: tuple[float, float]
    per_class_auroc: dict[str, float] = field(default_factory=dict)
    per_class_auprc: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    n_test: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluable(y_true: np.ndarray) -> np.ndarray:
    """Boolean (n_classes,): the columns with at least one positive and one negative."""
    positives = y_true.sum(axis=0)
    return (positives > 0) & (positives < len(y_true))


def _macro(y_true: np.ndarray, y_score: np.ndarray, columns: np.ndarray) -> tuple[float, float]:
    auroc = [roc_auc_score(y_true[:, c], y_score[:, c]) for c in columns]
    auprc = [average_precision_score(y_true[:, c], y_score[:, c]) for c in columns]
    return float(np.mean(auroc)), float(np.mean(auprc))


def evaluate(y_true: np.ndarray, y_score: np.ndarray, classes: list[str], seed: int = 0,
             n_bootstrap: int = 200) -> EvalResult:
    """Score multi-hot ``y_true`` (n, C) against ``y_score`` (n, C).

    Bootstrap replicates resample the n rows with replacement; a replicate's macro averages use
    the classes evaluable in that replicate (replicates with none are dropped).
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape or y_true.ndim != 2 or y_true.shape[1] != len(classes):
        raise ValueError(
            f"y_true {y_true.shape} and y_score {y_score.shape} must both be (n, {len(classes)})"
        )
    ok = evaluable(y_true)
    columns = np.flatnonzero(ok)
    if len(columns) == 0:
        raise ValueError("no class has both positives and negatives in the test set")
    macro_auroc, macro_auprc = _macro(y_true, y_score, columns)
    rng = np.random.default_rng(seed)
    boot: list[tuple[float, float]] = []
    for _ in range(n_bootstrap):
        rows = rng.integers(0, len(y_true), len(y_true))
        cols = columns[evaluable(y_true[rows][:, columns])]
        if len(cols):
            boot.append(_macro(y_true[rows], y_score[rows], cols))
    if boot:
        arr = np.asarray(boot)
        lo, hi = np.percentile(arr, [2.5, 97.5], axis=0)
        auroc_ci, auprc_ci = (float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1]))
    else:
        auroc_ci, auprc_ci = (macro_auroc, macro_auroc), (macro_auprc, macro_auprc)
    return EvalResult(
        macro_auroc=macro_auroc,
        macro_auprc=macro_auprc,
        auroc_ci=auroc_ci,
        auprc_ci=auprc_ci,
        per_class_auroc={
            classes[c]: float(roc_auc_score(y_true[:, c], y_score[:, c])) for c in columns
        },
        per_class_auprc={
            classes[c]: float(average_precision_score(y_true[:, c], y_score[:, c]))
            for c in columns
        },
        skipped=[classes[c] for c in np.flatnonzero(~ok)],
        n_test=len(y_true),
    )
