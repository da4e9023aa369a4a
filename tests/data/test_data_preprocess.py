"""Preprocessing: configuration, filters, windows, normalisation, R-peaks, synthetic headers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from aclecg_core.data.cohort import DataError
from aclecg_core.data.leads import CANONICAL_LEADS
from aclecg_core.data.loading import load_cohort
from aclecg_core.data.preprocess import (
    PreprocessConfig,
    filter_signal,
    normalize,
    resample,
    window_starts,
)
from aclecg_core.data.rpeaks import detect_rpeaks


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"target_fs": 0}, "target_fs"),
    ({"bandpass_hz": (40.0, 0.5)}, "bandpass_hz"),
    ({"bandpass_hz": (0.5, 60.0)}, "bandpass_hz"),
    ({"notch_hz": 50.0}, "notch_hz"),
    ({"window_s": -1.0}, "window_s"),
    ({"stride_s": 0.0}, "stride_s"),
    ({"short_policy": "drop"}, "short_policy"),
    ({"min_length_s": 20.0}, "min_length_s"),
    ({"normalization": "global"}, "normalization"),
    ({"max_flat_leads": -1}, r"max_flat_leads .* must be an integer 0\.\.12, got -1"),
    ({"max_flat_leads": 13}, r"max_flat_leads .* must be an integer 0\.\.12, got 13"),
    ({"max_flat_leads": True}, "max_flat_leads"),
    ({"max_flat_leads": 2.0}, "max_flat_leads"),
])
def test_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PreprocessConfig(**kwargs)  # type: ignore[arg-type]


def test_config_round_trip() -> None:
    cfg = PreprocessConfig(target_fs=250.0, notch_hz=50.0, stride_s=5.0)
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["bandpass_hz"] == [0.5, 40.0]
    with pytest.raises(ValueError, match="unknown preprocessing"):
        PreprocessConfig.from_dict({"speed": 1})
    assert cfg.to_dict()["max_flat_leads"] == 3  # part of the cache key


def test_resample_and_filter_keep_in_band_signal() -> None:
    t = np.arange(5000) / 500.0
    sine = np.tile(np.sin(2 * np.pi * 5 * t), (12, 1)) + 2.0 + np.sin(2 * np.pi * 120 * t)
    out = filter_signal(resample(sine.astype(np.float32), 500.0, 100.0), PreprocessConfig())
    assert out.shape == (12, 1000)
    reference = np.sin(2 * np.pi * 5 * np.arange(1000) / 100.0)
    np.testing.assert_allclose(out[0, 100:-100], reference[100:-100], atol=0.02)
    with pytest.raises(DataError, match="sampling rate too low"):
        resample(sine, 50.0, 100.0)


def test_windows_and_normalisation() -> None:
    cfg = PreprocessConfig()
    assert window_starts(2500, cfg) == [0, 1000]
    assert window_starts(2500, PreprocessConfig(stride_s=5.0)) == [0, 500, 1000, 1500]
    assert window_starts(700, cfg) == [0]
    with pytest.raises(DataError, match="record too short"):
        window_starts(700, PreprocessConfig(short_policy="reject"))
    x = np.random.default_rng(0).normal(3.0, 2.0, (2, 12, 1000)).astype(np.float32)
    z = normalize(x, "lead-zscore")
    np.testing.assert_allclose(z.mean(axis=2), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=2), 1, atol=1e-3)
    assert normalize(x, "none") is x


def test_rpeaks_on_a_spike_train() -> None:
    fs = 100.0
    beats = np.arange(40, 990, 83)
    x = np.zeros((12, 1000))
    for b in beats:
        x[:, b - 2:b + 3] += np.array([0.2, 0.6, 1.0, 0.6, 0.2])[None, :]
    x[5] *= -1  # an inverted lead does not disturb the detector
    x += np.random.default_rng(1).normal(0, 0.02, x.shape)
    peaks = detect_rpeaks(filter_signal(x.astype(np.float32), PreprocessConfig()), fs)
    assert len(peaks) == len(beats)
    assert np.abs(peaks - beats).max() <= 3


def test_synthetic_style_headers(shared_data: Path, tmp_path: Path) -> None:
    """``# Dx:`` abbreviations, ``# Site:`` and ``# Patient:`` comments, as the synthetic cohort
    writes them; ``normalization`` and rpeaks go through ``load_cohort``."""
    signal = wfdb.rdrecord(str(shared_data / "ptbxl/records100/00000/00001_lr")).p_signal
    wfdb.wrsamp("syn001", fs=100.0, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS),
                p_signal=signal, fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                comments=["Dx: MI-INF,LBBB", "Site: hospital-b", "Patient: p17"],
                write_dir=str(tmp_path))
    cohort = load_cohort([tmp_path], workers=1,
                         preprocessing=PreprocessConfig(normalization="lead-zscore"))
    info = cohort.records[0]
    assert (info.labels, info.site, info.patient_id) == (("LBBB", "MI-INF"), "hospital-b", "p17")
    assert cohort.preprocessing["normalization"] == "lead-zscore"
    np.testing.assert_allclose(cohort.signals.std(axis=2), 1, atol=1e-3)
    assert (cohort.rpeaks[0] >= 0).sum() >= 8
