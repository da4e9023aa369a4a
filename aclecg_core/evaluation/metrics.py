"""Multi-label evaluation: macro AUROC/AUPRC with per-class values and bootstrap intervals, and
the paired bootstrap of the difference between two scorings of the same test records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

_CHUNK_VALUES = 2_000_000  # scores handled at once while bootstrapping (bounds the memory)


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


@dataclass
class PairedDifference:
    """Macro AUROC/AUPRC of scoring A minus scoring B on the same test records, with percentile
    95 % intervals of a paired bootstrap (each replicate resamples the records once, for both).

    With several draws (e.g. label-fraction subsets) the scores are means over the draws.
    """

    auroc_a: float
    auroc_b: float
    auroc_diff: float
    auroc_diff_ci: tuple[float, float]
    auprc_a: float
    auprc_b: float
    auprc_diff: float
    auprc_diff_ci: tuple[float, float]
    n_test: int
    n_bootstrap: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluable(y_true: np.ndarray) -> np.ndarray:
    """Boolean (n_classes,): the columns with at least one positive and one negative."""
    positives = y_true.sum(axis=0)
    return (positives > 0) & (positives < len(y_true))


def _weighted_column_scores(y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUROC and average precision of every scoring and column, with record weights.

    Args:
        y_true: binary (n, C); scores: (k, n, C); weights: (R, n) non-negative record counts
            (a bootstrap replicate: how often each record was drawn).
    Returns:
        auroc, ap: (R, k, C), ``nan`` where a column has no positive or no negative weight;
        evaluable: (R, C).
    Ties count half for AUROC; average precision steps over distinct thresholds (both as in
    scikit-learn on the records repeated by their weights). Each scoring and column is sorted
    once; the replicates only re-weight the sorted records.
    """
    k, n, c = scores.shape
    problems = scores.transpose(0, 2, 1).reshape(k * c, n)  # (J, n), J = k·C
    order = np.argsort(-problems, axis=1, kind="stable")
    s_sorted = np.take_along_axis(problems, order, axis=1)
    y_sorted = np.take_along_axis(np.tile(y_true.T.astype(np.float64), (k, 1)), order, axis=1)
    index = np.broadcast_to(np.arange(n), s_sorted.shape)
    new_score = np.diff(s_sorted, axis=1) != 0
    edge = np.ones((k * c, 1), dtype=bool)
    starts = np.maximum.accumulate(np.where(np.hstack([edge, new_score]), index, 0), axis=1)
    ends = np.where(np.hstack([new_score, edge]), index, n)
    ends = np.flip(np.minimum.accumulate(np.flip(ends, axis=1), axis=1), axis=1)
    rows = np.arange(k * c)[:, None]
    w = weights.astype(np.float64)[:, order]  # (R, J, n)
    positive = w * y_sorted
    tp = np.cumsum(positive, axis=2)
    fp = np.cumsum(w - positive, axis=2)
    n_pos, n_neg = tp[..., -1], fp[..., -1]
    tp_through_tie, fp_through_tie = tp[:, rows, ends], fp[:, rows, ends]
    fp_above_tie = (fp - (w - positive))[:, rows, starts]
    wins = n_neg[..., None] - (fp_through_tie + fp_above_tie) / 2
    precision = tp_through_tie / np.maximum(tp_through_tie + fp_through_tie, 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        auroc = (positive * wins).sum(axis=2) / (n_pos * n_neg)
        ap = (positive * precision).sum(axis=2) / n_pos
    ok = (n_pos > 0) & (n_neg > 0)
    shape = (len(weights), k, c)
    return (np.where(ok, auroc, np.nan).reshape(shape), np.where(ok, ap, np.nan).reshape(shape),
            ok.reshape(shape)[:, 0])


def column_scores(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AUROC, average precision) of every column of (n, C) arrays, each (C,); ``nan`` for
    columns without positives or without negatives. Ties as in scikit-learn."""
    y_score = np.asarray(y_score, dtype=np.float64)
    auroc, ap, _ = _weighted_column_scores(np.asarray(y_true), y_score[None],
                                           np.ones((1, len(y_score))))
    return auroc[0, 0], ap[0, 0]


def bootstrap_rows(n: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """(n_bootstrap, n) record indices drawn with replacement: replicate ``r`` is row ``r``."""
    return np.random.default_rng(seed).integers(0, n, (n_bootstrap, n))


def _replicate_weights(rows: np.ndarray, n: int, values: int) -> Iterator[np.ndarray]:
    """The replicates ``rows`` (R, n) as record counts (r, n), in chunks that keep ``values``
    scores per replicate within the memory bound."""
    chunk = max(1, _CHUNK_VALUES // max(1, values))
    for begin in range(0, len(rows), chunk):
        r = rows[begin : begin + chunk]
        weights = np.zeros((len(r), n))
        np.add.at(weights, (np.repeat(np.arange(len(r)), n), r.ravel()), 1.0)
        yield weights


def column_intervals(y_true: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray | None = None,
                     seed: int = 0, n_bootstrap: int = 200) -> list[tuple[float, float] | None]:
    """Each column's bootstrap 95 % interval of the AUROC of ``scores_a`` (n, C) or, with
    ``scores_b``, of the paired difference a − b (both scored on the same resampled records);
    ``None`` for a column without positives or negatives."""
    y = np.asarray(y_true)
    s = np.stack([np.asarray(x, dtype=np.float64) for x in (scores_a, scores_b) if x is not None])
    if s.shape[1:] != y.shape:
        raise ValueError(f"scores {s.shape[1:]} must be {y.shape}, as y_true")
    values = [np.zeros((0, y.shape[1]))]
    for weights in _replicate_weights(bootstrap_rows(len(y), n_bootstrap, seed), len(y), s.size):
        a, _, keep = _weighted_column_scores(y, s, weights)
        values.append(np.where(keep, a[:, 0] - a[:, 1] if len(s) == 2 else a[:, 0], np.nan))
    replicates = np.concatenate(values)
    point = column_scores(y, s[0])[0] - (column_scores(y, s[1])[0] if len(s) == 2 else 0)
    return [_interval(replicates[:, c], float(point[c])) if ok else None
            for c, ok in enumerate(evaluable(y))]


def _replicate_macros(y_true: np.ndarray, scores: np.ndarray, columns: np.ndarray,
                      rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Macro (AUROC, AUPRC) per replicate and scoring: scores (k, n, C) -> two (R, k) arrays,
    over the ``columns`` evaluable in each replicate (``nan`` for replicates with none);
    ``rows`` None: the records themselves (one replicate)."""
    y, s = y_true[:, columns], scores[..., columns]
    n = len(y)
    if rows is None:
        rows = np.arange(n)[None]
    auroc, auprc = [np.zeros((0, len(s)))], [np.zeros((0, len(s)))]
    for weights in _replicate_weights(rows, n, s.size):
        a, p, keep = _weighted_column_scores(y, s, weights)
        count = keep.sum(axis=1)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            auroc.append(np.where(keep[:, None], a, 0).sum(axis=2) / count)
            auprc.append(np.where(keep[:, None], p, 0).sum(axis=2) / count)
    return np.concatenate(auroc), np.concatenate(auprc)


def _check(y_true: np.ndarray, y_score: np.ndarray, classes: list[str]) -> None:
    if y_true.shape != y_score.shape or y_true.ndim != 2 or y_true.shape[1] != len(classes):
        raise ValueError(
            f"y_true {y_true.shape} and y_score {y_score.shape} must both be (n, {len(classes)})"
        )


def _interval(values: np.ndarray, fallback: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if not len(values):
        return fallback, fallback
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def _columns(y_true: np.ndarray) -> np.ndarray:
    columns = np.flatnonzero(evaluable(y_true))
    if len(columns) == 0:
        raise ValueError("no class has both positives and negatives in the test set")
    return columns


def evaluate(y_true: np.ndarray, y_score: np.ndarray, classes: list[str], seed: int = 0,
             n_bootstrap: int = 200) -> EvalResult:
    """Score multi-hot ``y_true`` (n, C) against ``y_score`` (n, C).

    Bootstrap replicates resample the n rows with replacement (:func:`bootstrap_rows`); a
    replicate's macro averages use the classes evaluable in that replicate (replicates with none
    are dropped).
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    _check(y_true, y_score, classes)
    columns = _columns(y_true)
    auroc, auprc = column_scores(y_true[:, columns], y_score[:, columns])
    macro_auroc, macro_auprc = float(auroc.mean()), float(auprc.mean())
    rows = bootstrap_rows(len(y_true), n_bootstrap, seed)
    boot_auroc, boot_auprc = _replicate_macros(y_true, y_score[None], columns, rows)
    return EvalResult(
        macro_auroc=macro_auroc,
        macro_auprc=macro_auprc,
        auroc_ci=_interval(boot_auroc[:, 0], macro_auroc),
        auprc_ci=_interval(boot_auprc[:, 0], macro_auprc),
        per_class_auroc={classes[c]: float(v) for c, v in zip(columns, auroc, strict=True)},
        per_class_auprc={classes[c]: float(v) for c, v in zip(columns, auprc, strict=True)},
        skipped=[classes[c] for c in np.flatnonzero(~evaluable(y_true))],
        n_test=len(y_true),
    )


def paired_bootstrap(y_true: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray,
                     seed: int = 0, n_bootstrap: int = 1000) -> PairedDifference:
    """Macro AUROC/AUPRC of ``scores_a`` minus ``scores_b`` with a paired bootstrap interval.

    Args:
        y_true: multi-hot (n, C).
        scores_a, scores_b: (n, C), or (k_a, n, C) and (k_b, n, C) for several draws (the
            difference of the means over draws, e.g. label-fraction subsets, or several
            random initialisations of a reference).
    Every replicate resamples the n records once (:func:`bootstrap_rows`) and scores A and B on
    the same records and the same evaluable classes; the interval is the 2.5/97.5 percentiles.
    """
    y_true = np.asarray(y_true)
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    a, b = (s[None] if s.ndim == 2 else s for s in (a, b))
    if a.ndim != 3 or b.ndim != 3 or not y_true.shape == a.shape[1:] == b.shape[1:]:
        raise ValueError(f"scores {np.shape(scores_a)} and {np.shape(scores_b)} must both be "
                         f"(n, C) or (k, n, C) with (n, C) = {y_true.shape}")
    columns = _columns(y_true)
    both = np.concatenate([a, b])
    k = len(a)
    point_auroc, point_auprc = (m[0] for m in _replicate_macros(y_true, both, columns, None))
    rows = bootstrap_rows(len(y_true), n_bootstrap, seed)
    boot_auroc, boot_auprc = _replicate_macros(y_true, both, columns, rows)
    diff_auroc = boot_auroc[:, :k].mean(axis=1) - boot_auroc[:, k:].mean(axis=1)
    diff_auprc = boot_auprc[:, :k].mean(axis=1) - boot_auprc[:, k:].mean(axis=1)
    auroc_a, auroc_b = float(point_auroc[:k].mean()), float(point_auroc[k:].mean())
    auprc_a, auprc_b = float(point_auprc[:k].mean()), float(point_auprc[k:].mean())
    return PairedDifference(
        auroc_a=auroc_a, auroc_b=auroc_b, auroc_diff=auroc_a - auroc_b,
        auroc_diff_ci=_interval(diff_auroc, auroc_a - auroc_b),
        auprc_a=auprc_a, auprc_b=auprc_b, auprc_diff=auprc_a - auprc_b,
        auprc_diff_ci=_interval(diff_auprc, auprc_a - auprc_b),
        n_test=len(y_true), n_bootstrap=n_bootstrap,
    )
