"""Linear probing of frozen encoder features (regularisation chosen on a validation part),
record-level aggregation and label-fraction subsets (the splits: :mod:`.splits`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import expit, log_expit
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from aclecg_core.data.cohort import Cohort
from aclecg_core.evaluation.metrics import EvalResult, column_scores, evaluable, evaluate
from aclecg_core.method.model import AclEcgModel

C_GRID: tuple[float, ...] = tuple(float(c) for c in np.logspace(-4, 1, 11))
"""Inverse regularisation strengths tried by the probe, ascending (1e-4 .. 10, half decades)."""


@dataclass
class ProbeResult(EvalResult):
    """:class:`~aclecg_core.evaluation.metrics.EvalResult` of a linear probe on the test part,
    plus the regularisation ``c`` chosen on the validation part (``val_auroc``: its validation
    macro AUROC; ``val_curve``: [C, validation macro AUROC] for every C tried), the part sizes
    and the classes that had no positives (or no negatives) in the training part
    (``constant``: they are predicted with the training prevalence)."""

    n_train: int = 0
    n_val: int = 0
    c: float = float("nan")
    val_auroc: float = float("nan")
    val_curve: list[list[float]] = field(default_factory=list)
    constant: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProbeData:
    """Record-level features (n, D) and multi-hot labels (n, C) of the train, validation and
    test parts of a linear probe."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    def __post_init__(self) -> None:
        parts = (("train", self.train_x, self.train_y), ("validation", self.val_x, self.val_y),
                 ("test", self.test_x, self.test_y))
        for name, x, y in parts:
            if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
                raise ValueError(f"{name} features {x.shape} and labels {y.shape} must be "
                                 "(n, D) and (n, C)")
            if not len(x):
                raise ValueError(f"the {name} part of the probe is empty")
            if not np.isfinite(x).all():
                raise ValueError(f"the {name} features of the probe are not all finite (a "
                                 "diverged encoder?)")
        if len({x.shape[1] for _, x, _ in parts}) != 1 or len({y.shape[1] for *_, y in parts}) != 1:
            raise ValueError("the train, validation and test parts differ in feature or class "
                             f"count: {[(x.shape, y.shape) for _, x, y in parts]}")

    def with_train_rows(self, keep: np.ndarray) -> ProbeData:
        """The same parts with only the training rows ``keep`` (boolean or indices)."""
        return replace(self, train_x=self.train_x[keep], train_y=self.train_y[keep])


@dataclass(frozen=True)
class ProbeFit:
    """A probe fitted on the training part with ``c`` chosen on the validation part; its
    probabilities on the test part (n_test, C) computed once, with the chosen ``c``."""

    c: float
    val_auroc: float
    val_curve: list[list[float]]
    test_scores: np.ndarray
    constant: list[int]


@torch.no_grad()
def extract_features(model: AclEcgModel, cohort: Cohort, device: str | torch.device = "cpu",
                     batch_size: int = 256) -> np.ndarray:
    """Global representations (n_windows, 12·D) of every window, in eval mode, as float32."""
    was_training = model.training
    model.to(device).eval()
    out = []
    for begin in range(0, len(cohort), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(cohort.signals[begin : begin + batch_size]))
        out.append(model.embed(x.to(device, torch.float32)).float().cpu().numpy())
    model.train(was_training)
    if not out:
        return np.zeros((0, model.embed_dim), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)


def aggregate_by_record(window_values: np.ndarray, window_record: np.ndarray,
                        n_records: int) -> np.ndarray:
    """Mean of the window rows of each record: (n_windows, F) -> (n_records, F)."""
    window_record = np.asarray(window_record, dtype=np.int64)
    sums = np.zeros((n_records, window_values.shape[1]), dtype=np.float64)
    np.add.at(sums, window_record, window_values)
    counts = np.bincount(window_record, minlength=n_records)
    if (counts == 0).any():
        raise ValueError(f"{int((counts == 0).sum())} records have no windows")
    return (sums / counts[:, None]).astype(np.float32)


def record_labels(cohort: Cohort, classes: list[str]) -> np.ndarray:
    """Multi-hot uint8 (n_records, C) of each record's labels."""
    return cohort.record_label_matrix(classes)


def split_features(model: AclEcgModel, train: Cohort, val: Cohort, test: Cohort,
                   classes: list[str], device: str | torch.device = "cpu") -> ProbeData:
    """Record-level probe data: the mean window representation of every record of each part."""
    parts = []
    for cohort in (train, val, test):
        feats = extract_features(model, cohort, device)
        parts += [aggregate_by_record(feats, cohort.window_record, len(cohort.records)),
                  record_labels(cohort, classes)]
    return ProbeData(*parts)


def validation_columns(train_y: np.ndarray, val_y: np.ndarray) -> np.ndarray:
    """The classes that choose the probe's C: with positives and negatives in both the training
    and the validation part; ``ValueError`` if there are none."""
    columns = np.flatnonzero(evaluable(val_y) & evaluable(train_y))
    if len(columns) == 0:
        raise ValueError(f"no class has both positives and negatives in the training part "
                         f"({len(train_y)} records) and in the validation part ({len(val_y)} "
                         "records); the probe cannot choose its regularisation")
    return columns


def _fit_path(x: np.ndarray, y: np.ndarray, grid: list[float]) -> np.ndarray:
    """L2-penalised logistic regressions of every column of ``y`` (n, K) on ``x`` (n, D) for
    every C of ``grid``: weights (len(grid), K, D + 1), the intercept last and unpenalised.

    Minimises, per C, the mean log-loss + ||w||² / (2·C·n) (the minimiser of scikit-learn's
    ``C·Σ loss + ||w||²/2``) for all K columns at once with L-BFGS, warm-started from the
    previous C of the ascending grid. The penalised minimiser lies in the row space of ``x``,
    so the fit is over the coefficients of its right singular vectors (w = Vᵀa, ||w|| = ||a||:
    min(n, D) unknowns per column instead of D), each divided by the square root of its curvature
    bound s²/(4n) + 1/(C·n) (a diagonal preconditioner: the same minimiser, fewer iterations).
    """
    n, d = x.shape
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    keep = s > s[0] * 1e-10 if s.size else np.zeros(0, dtype=bool)
    u, s, vt = u[:, keep], s[keep], vt[keep]
    r, k = len(s), y.shape[1]
    design = np.hstack([u * s, np.ones((n, 1))])
    design_t = np.ascontiguousarray(design.T)
    y_t = np.ascontiguousarray(y.T, dtype=np.float64)
    coef = np.zeros((k, r + 1))
    path = np.zeros((len(grid), k, d + 1))
    for i, c in enumerate(grid):
        scale = np.append(1 / np.sqrt(s ** 2 / (4 * n) + 1 / (c * n)), 2.0)  # intercept: 1/4

        def objective(flat: np.ndarray, c: float = c, scale: np.ndarray = scale
                      ) -> tuple[float, np.ndarray]:
            coefs = flat.reshape(k, r + 1) * scale
            z = coefs @ design_t
            log_p = log_expit(z)  # -log σ(-z) = z - log σ(z)
            loss = float(((1 - y_t) * z - log_p).sum()) / n
            grad = (np.exp(log_p) - y_t) @ design / n
            penalised = coefs[:, :-1]
            grad[:, :-1] += penalised / (c * n)
            return (loss + float(np.vdot(penalised, penalised)) / (2 * c * n),
                    (grad * scale).ravel())

        coef = minimize(objective, (coef / scale).ravel(), jac=True, method="L-BFGS-B",
                        options={"maxiter": 1000, "gtol": 1e-6}).x.reshape(k, r + 1) * scale
        path[i, :, :-1] = coef[:, :-1] @ vt
        path[i, :, -1] = coef[:, -1]
    return path


def fit_probe(data: ProbeData, c_grid: tuple[float, ...] = C_GRID) -> ProbeFit:
    """One-vs-rest logistic regression on standardised features (scaler fitted on train only).

    Every C of ``c_grid`` is fitted on the training part; the C with the best validation macro
    AUROC (the smallest C on ties) is kept, and only its model scores the test part. Classes
    that are constant in the training part get the training prevalence and are left out of the
    validation score.
    """
    grid = sorted(float(c) for c in c_grid)
    if not grid or grid[0] <= 0:
        raise ValueError(f"the C grid must hold positive values, got {c_grid}")
    scaler = StandardScaler().fit(data.train_x)
    train_y = np.asarray(data.train_y)
    constant = ~evaluable(train_y)
    columns = validation_columns(train_y, np.asarray(data.val_y))
    fitted = np.flatnonzero(~constant)
    # small products: BLAS threads only add overhead (BLAS only: torch's threads are untouched)
    with threadpool_limits(limits=1, user_api="blas"):
        path = _fit_path(scaler.transform(data.train_x), train_y[:, fitted], grid)
        val_x = scaler.transform(data.val_x)
        val_y = np.asarray(data.val_y)
        curve = []
        for weights in path:
            scores = np.zeros(val_y.shape)
            scores[:, fitted] = val_x @ weights[:, :-1].T + weights[:, -1]
            curve.append(float(np.mean(column_scores(val_y[:, columns], scores[:, columns])[0])))
        best = int(np.argmax(np.round(curve, 10)))
        test_scores = np.tile(train_y.mean(axis=0), (len(data.test_x), 1))
        test_scores[:, fitted] = expit(scaler.transform(data.test_x) @ path[best, :, :-1].T
                                       + path[best, :, -1])
    return ProbeFit(c=grid[best], val_auroc=curve[best],
                    val_curve=[[c, v] for c, v in zip(grid, curve, strict=True)],
                    test_scores=test_scores, constant=np.flatnonzero(constant).tolist())


def probe_result(data: ProbeData, fit: ProbeFit, classes: list[str], seed: int = 0,
                 n_bootstrap: int = 200) -> ProbeResult:
    """The test metrics of ``fit`` (bootstrap intervals) with its choice of C."""
    result = evaluate(np.asarray(data.test_y), fit.test_scores, classes, seed=seed,
                      n_bootstrap=n_bootstrap)
    return ProbeResult(**result.to_dict(), n_train=len(data.train_x), n_val=len(data.val_x),
                       c=fit.c, val_auroc=fit.val_auroc, val_curve=fit.val_curve,
                       constant=[classes[i] for i in fit.constant])


def linear_probe(data: ProbeData, classes: list[str], seed: int = 0, n_bootstrap: int = 200,
                 c_grid: tuple[float, ...] = C_GRID) -> ProbeResult:
    """:func:`fit_probe` then :func:`probe_result`."""
    if data.train_y.shape[1] != len(classes):
        raise ValueError(f"labels have {data.train_y.shape[1]} columns for {len(classes)} classes")
    return probe_result(data, fit_probe(data, c_grid), classes, seed, n_bootstrap)


def probe_cohorts(model: AclEcgModel, train: Cohort, val: Cohort, test: Cohort,
                  classes: list[str], device: str | torch.device = "cpu", seed: int = 0,
                  n_bootstrap: int = 200, c_grid: tuple[float, ...] = C_GRID) -> ProbeResult:
    """Record-level linear probe: fitted on ``train``, C chosen on ``val``, scored on ``test``."""
    return linear_probe(split_features(model, train, val, test, classes, device), classes,
                        seed, n_bootstrap, c_grid)


def label_fraction_mask(y: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean (n,): a seeded ``fraction`` of the rows of multi-hot ``y`` (n, C), stratified on
    the label combination.

    Each label-combination group contributes ``fraction`` of its rows (largest remainders,
    random ties, so the total is ``round(fraction * n)``, at least 1). Then, for every class with
    positives in ``y`` but none chosen, one random positive row is added.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    n = len(y)
    if fraction == 1 or n == 0:
        return np.ones(n, dtype=bool)
    rng = np.random.default_rng(seed)
    _, group = np.unique(y, axis=0, return_inverse=True)
    group = group.reshape(-1)
    sizes = np.bincount(group)
    quota = fraction * sizes
    take = np.floor(quota).astype(int)
    remaining = max(1, round(fraction * n)) - take.sum()
    if remaining > 0:
        tie_break = rng.random(len(sizes))
        order = np.lexsort((tie_break, -(quota - take)))
        take[order[:remaining]] += 1
    keep = np.zeros(n, dtype=bool)
    for g, k in enumerate(take):
        members = np.flatnonzero(group == g)
        keep[rng.choice(members, k, replace=False)] = True
    for c in range(y.shape[1]):
        positives = np.flatnonzero(y[:, c] == 1)
        if len(positives) and not keep[positives].any():
            keep[rng.choice(positives)] = True
    return keep
