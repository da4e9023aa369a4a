"""The synthetic labels are learnable across sites by a linear model on median beats."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from aclecg_core.data.synth import (
    SYNTHETIC_CLASSES,
    SyntheticRecord,
    generate_site,
    synthetic_site_spec,
)

GRID_S = np.arange(-0.3, 0.5, 0.02)  # median-beat sample times around R (50 Hz)


def beat_features(record: SyntheticRecord) -> np.ndarray:
    """Median beat of every lead on a common 50 Hz grid (baseline 80 ms before R) + RR stats."""
    fs, x = record.fs, record.signal.astype(np.float64)
    t = np.arange(x.shape[1]) / fs
    peaks = record.rpeaks[(record.rpeaks > 0.35 * fs) & (record.rpeaks < x.shape[1] - 0.55 * fs)]
    baseline = int(np.argmin(np.abs(GRID_S + 0.08)))
    beats = []
    for peak in peaks:
        beat = np.stack([np.interp(peak / fs + GRID_S, t, lead) for lead in x])
        beats.append(beat - beat[:, [baseline]])
    rr = np.diff(record.rpeaks) / fs
    rhythm = [rr.mean(), rr.std() / rr.mean(), np.abs(np.diff(rr)).mean() / rr.mean()]
    return np.concatenate([np.median(beats, axis=0).ravel(), rhythm])


def test_held_out_site_macro_auroc() -> None:
    sites = {k: generate_site(synthetic_site_spec(k), 120) for k in range(1, 5)}
    features = {k: np.stack([beat_features(r) for r in rs]) for k, rs in sites.items()}
    targets = {k: np.array([[c in r.labels for c in SYNTHETIC_CLASSES] for r in rs], dtype=int)
               for k, rs in sites.items()}
    held_out = 4  # the noisiest site, with the longest records
    train_x = np.vstack([features[k] for k in sites if k != held_out])
    train_y = np.vstack([targets[k] for k in sites if k != held_out])
    scaler = StandardScaler().fit(train_x)
    aucs = []
    for j in range(len(SYNTHETIC_CLASSES)):
        test_y = targets[held_out][:, j]
        if test_y.min() == test_y.max() or train_y[:, j].min() == train_y[:, j].max():
            continue
        model = LogisticRegression(C=0.05, max_iter=2000).fit(scaler.transform(train_x),
                                                              train_y[:, j])
        scores = model.predict_proba(scaler.transform(features[held_out]))[:, 1]
        aucs.append(roc_auc_score(test_y, scores))
    assert len(aucs) >= 9
    assert np.mean(aucs) > 0.85
