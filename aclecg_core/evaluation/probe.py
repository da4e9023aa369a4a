"""Linear probing of frozen encoder features, record-level aggregation and evaluation splits."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from aclecg_core.data.cohort import Cohort
from aclecg_core.evaluation.metrics import EvalResult, evaluate
from aclecg_core.method.model import AclEcgModel


@dataclass
class ProbeResult(EvalResult):
    """:class:`~aclecg_core.evaluation.metrics.EvalResult` of a linear probe, plus ``n_train``
    and the classes that had no positives (or no negatives) in the training part (``constant``: they
    are predicted with the training prevalence)."""

    n_train: int = 0
    constant: list[str] = field(default_factory=list)


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


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray, classes: list[str], seed: int = 0,
                 n_bootstrap: int = 200) -> ProbeResult:
    """One-vs-rest logistic regression on standardised features (scaler fitted on train only).

    Args:
        train_x, test_x: (n, D) features; train_y, test_y: multi-hot (n, C) with C = len(classes).
    """
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"feature shapes {train_x.shape} and {test_x.shape} do not match")
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError("features and labels must have the same number of rows")
    scaler = StandardScaler().fit(train_x)
    xs_train, xs_test = scaler.transform(train_x), scaler.transform(test_x)
    scores = np.zeros((len(test_x), len(classes)))
    constant = []
    for c, name in enumerate(classes):
        y = np.asarray(train_y)[:, c]
        if y.min() == y.max():
            constant.append(name)
            scores[:, c] = float(y.mean())
            continue
        clf = LogisticRegression(max_iter=2000, random_state=seed)
        scores[:, c] = clf.fit(xs_train, y).predict_proba(xs_test)[:, 1]
    result = evaluate(np.asarray(test_y), scores, classes, seed=seed, n_bootstrap=n_bootstrap)
    return ProbeResult(**result.to_dict(), n_train=len(train_x), constant=constant)


def probe_cohorts(model: AclEcgModel, train: Cohort, test: Cohort, classes: list[str],
                  device: str | torch.device = "cpu", seed: int = 0,
                  n_bootstrap: int = 200) -> ProbeResult:
    """Record-level linear probe: mean window features per record, train on ``train``."""
    xs = []
    for cohort in (train, test):
        feats = extract_features(model, cohort, device)
        xs.append(aggregate_by_record(feats, cohort.window_record, len(cohort.records)))
    return linear_probe(xs[0], record_labels(train, classes), xs[1], record_labels(test, classes),
                        classes, seed=seed, n_bootstrap=n_bootstrap)


def ptbxl_split(cohort: Cohort) -> tuple[Cohort, Cohort, Cohort]:
    """The PTB-XL reference split by ``strat_fold``: 1–8 train, 9 validation, 10 test."""
    folds = np.array([-1 if r.fold is None else r.fold for r in cohort.records])
    if (folds < 0).any():
        missing = [r.record_id for r in cohort.records if r.fold is None][:3]
        raise ValueError(f"records without a fold (e.g. {missing}); use a site or patient split")
    parts = ((folds >= 1) & (folds <= 8), folds == 9, folds == 10)
    for name, keep in zip(("train (1-8)", "validation (9)", "test (10)"), parts, strict=True):
        if not keep.any():
            raise ValueError(f"the PTB-XL {name} part is empty")
    train, val, test = (cohort.select_records(keep) for keep in parts)
    return train, val, test


def site_split(cohort: Cohort, site: str) -> tuple[Cohort, Cohort]:
    """(the other sites, the held-out ``site``)."""
    sites = np.array([r.site for r in cohort.records])
    held = sites == site
    if not held.any() or held.all():
        raise ValueError(f"site {site!r} must hold some but not all records; sites: "
                         f"{sorted(set(sites.tolist()))}")
    return cohort.select_records(~held), cohort.select_records(held)


def patient_split(cohort: Cohort, test_fraction: float = 0.2,
                  seed: int = 0) -> tuple[Cohort, Cohort]:
    """(train, test) with no patient in both: a seeded random ``test_fraction`` of patients."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    patients = np.array([r.patient_id for r in cohort.records])
    unique = np.unique(patients)
    if len(unique) < 2:
        raise ValueError("a patient split needs at least two patients")
    rng = np.random.default_rng(seed)
    n_test = min(max(1, round(test_fraction * len(unique))), len(unique) - 1)
    test_patients = rng.choice(unique, n_test, replace=False)
    held = np.isin(patients, test_patients)
    return cohort.select_records(~held), cohort.select_records(held)
