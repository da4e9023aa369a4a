"""The deepfake-ecg GAN source: API, WFDB files, determinism and realism against PTB-XL."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb
from scipy import signal

from aclecg_core.data import gan
from aclecg_core.data.gan import (
    GanUnavailableError,
    generate_gan_ecgs,
    site_generator,
    write_gan_cohort,
)
from aclecg_core.data.leads import CANONICAL_LEADS, LEAD_INDEX, to_canonical_order

SAMPLE = 32  # ECGs (and PTB-XL records) in the realism comparison
FS_PTBXL = 100


@pytest.fixture(scope="module")
def gan_sample() -> np.ndarray:
    return generate_gan_ecgs(SAMPLE, torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def ptbxl_sample(shared_data: Path) -> np.ndarray:
    records = []
    for i in range(1, SAMPLE + 1):
        values, fields = wfdb.rdsamp(str(shared_data / f"ptbxl/records100/00000/{i:05d}_lr"))
        records.append(to_canonical_order(values, fields["sig_name"]))
    return np.stack(records).astype(np.float64)


def _bandpass(x: np.ndarray, low: float, high: float, fs: float) -> np.ndarray:
    sos = signal.butter(2, [low, high], btype="band", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, x, axis=-1)


def _spatial_speed(x: np.ndarray, low: float, high: float, fs: float) -> np.ndarray:
    """Magnitude of the 12-lead derivative vector, (samples − 1,)."""
    return np.sqrt((np.diff(_bandpass(x, low, high, fs), axis=-1) ** 2).sum(axis=0))


def _rpeaks(x: np.ndarray, fs: float) -> np.ndarray:
    """QRS locations of one (12, samples) ECG from its smoothed 5–20 Hz spatial speed."""
    width = int(0.05 * fs)
    speed = np.convolve(_spatial_speed(x, 5, 20, fs), np.ones(width) / width, mode="same")
    peaks, _ = signal.find_peaks(
        speed, height=0.3 * np.percentile(speed, 99), distance=int(0.33 * fs)
    )
    return peaks


def _qrs_width_ms(x: np.ndarray, peaks: np.ndarray, fs: float) -> float:
    """Median duration of the spatial speed above 15 % of its beat maximum (±150 ms search)."""
    speed = _spatial_speed(x, 1, 40, fs)
    half = int(0.15 * fs)
    widths = []
    for peak in peaks:
        segment = speed[max(0, peak - half) : peak + half]
        top = int(np.argmax(segment))
        threshold = 0.15 * segment[top]
        left = right = top
        while left > 0 and segment[left - 1] > threshold:
            left -= 1
        while right < len(segment) - 1 and segment[right + 1] > threshold:
            right += 1
        widths.append((right - left + 1) * 1000 / fs)
    return float(np.median(widths))


def _qrs_peak_to_peak(x: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
    """Median QRS peak-to-peak amplitude (±60 ms around each beat) per lead, (12,) mV."""
    half = int(0.06 * fs)
    filtered = _bandpass(x, 0.5, 40, fs)
    inside = [p for p in peaks if half <= p < x.shape[1] - half]
    return np.median([np.ptp(filtered[:, p - half : p + half + 1], axis=-1) for p in inside], 0)


def _measure(ecgs: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heart rate (n,) bpm, QRS peak-to-peak (n, 12) mV and QRS width (n,) ms of each ECG."""
    rates, amplitudes, widths = [], [], []
    for x in ecgs:
        peaks = _rpeaks(x, fs)
        rates.append(60 * fs / np.median(np.diff(peaks)) if len(peaks) > 2 else np.nan)
        amplitudes.append(_qrs_peak_to_peak(x, peaks, fs))
        widths.append(_qrs_width_ms(x, peaks, fs))
    return np.array(rates), np.array(amplitudes), np.array(widths)


def test_generated_ecgs_have_canonical_leads_in_mv(gan_sample: np.ndarray) -> None:
    assert gan_sample.shape == (SAMPLE, 12, 5000)
    assert gan_sample.dtype == np.float32
    assert np.isfinite(gan_sample).all()
    lead = {name: gan_sample[:, LEAD_INDEX[name]] for name in CANONICAL_LEADS}
    np.testing.assert_allclose(lead["III"], lead["II"] - lead["I"], atol=1e-5)
    np.testing.assert_allclose(lead["aVR"], -(lead["I"] + lead["II"]) / 2, atol=1e-5)
    np.testing.assert_allclose(lead["aVF"], lead["II"] - lead["I"] / 2, atol=1e-5)
    # mV, not µV: tanh × 6 bounds the generated leads; a lead II QRS is around 1 mV.
    assert np.abs(gan_sample[:, [0, 1, 6, 7, 8, 9, 10, 11]]).max() <= 6.0
    median_ptp = np.median(np.ptp(lead["II"], axis=-1))
    assert 0.3 < median_ptp < 4.0


def test_generation_is_deterministic_and_leaves_global_rng_alone() -> None:
    gan._load_network.cache_clear()  # constructing the network must not draw from the global RNG
    global_state = torch.get_rng_state()
    first = generate_gan_ecgs(5, torch.Generator().manual_seed(11), batch_size=2)
    assert torch.equal(torch.get_rng_state(), global_state)
    again = generate_gan_ecgs(5, torch.Generator().manual_seed(11), batch_size=2)
    other = generate_gan_ecgs(5, torch.Generator().manual_seed(12), batch_size=2)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert len({first[i].tobytes() for i in range(5)}) == 5


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        generate_gan_ecgs(2, torch.Generator(), batch_size=0)
    with pytest.raises(ValueError, match="sites"):
        write_gan_cohort(tmp_path, sites=0, records_per_site=1, seed=0)


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "deepfakeecg", None)  # makes `import deepfakeecg` fail
    with pytest.raises(GanUnavailableError, match=r"pip install 'aclecg\[gan\]'"):
        generate_gan_ecgs(1, torch.Generator())
    with pytest.raises(GanUnavailableError, match=r"pip install 'aclecg\[gan\]'"):
        write_gan_cohort(tmp_path / "cohort", sites=1, records_per_site=1, seed=0)
    assert not (tmp_path / "cohort").exists()


def test_written_cohort_reads_back(tmp_path: Path) -> None:
    out = tmp_path / "gan"
    write_gan_cohort(out, sites=2, records_per_site=3, seed=5, workers=1, batch_size=2)
    parameters = json.loads((out / "cohort.json").read_text())
    assert parameters["sites"] == 2 and parameters["records_per_site"] == 3
    assert parameters["seed"] == 5 and parameters["labeled"] is False
    assert sorted(p.name for p in out.iterdir()) == ["cohort.json", "site1", "site2"]
    for site in (1, 2):
        names = sorted(p.stem for p in (out / f"site{site}").glob("*.hea"))
        assert names == [f"G{site}_{i:05d}" for i in (1, 2, 3)]
        expected = generate_gan_ecgs(3, site_generator(5, site), batch_size=2)
        for i, name in enumerate(names):
            record = wfdb.rdrecord(str(out / f"site{site}" / name))
            assert record.fs == 500 and record.sig_len == 5000
            assert record.sig_name == list(CANONICAL_LEADS)
            assert record.units == ["mV"] * 12 and record.fmt == ["16"] * 12
            assert record.p_signal is not None
            # Half an ADC step (1 µV), plus float noise: thread counts change the last float bits.
            np.testing.assert_allclose(record.p_signal.T, expected[i], rtol=0, atol=0.51e-3)
            comments = dict(c.split(":", 1) for c in record.comments)
            assert comments["Dx"].strip() == ""
            assert comments["Site"].strip() == f"site{site}"
            assert comments["Patient"].strip() == f"gan-site{site}-{i + 1:05d}"
            assert comments["Source"].strip().startswith("deepfake-ecg ")


def test_same_seed_writes_identical_files_with_any_worker_count(tmp_path: Path) -> None:
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.*"))}

    write_gan_cohort(tmp_path / "a", sites=2, records_per_site=2, seed=9, workers=1)
    write_gan_cohort(tmp_path / "b", sites=2, records_per_site=2, seed=9, workers=2)
    write_gan_cohort(tmp_path / "c", sites=2, records_per_site=2, seed=10, workers=1)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert (tmp_path / "a/site2/G2_00002.dat").read_bytes() != (
        tmp_path / "c/site2/G2_00002.dat"
    ).read_bytes()
    assert (tmp_path / "a/site1/G1_00001.dat").read_bytes() != (
        tmp_path / "a/site2/G2_00001.dat"
    ).read_bytes()


def test_heart_rate_is_physiological(gan_sample: np.ndarray) -> None:
    rates, _, _ = _measure(gan_sample, 500)
    assert np.mean((rates >= 40) & (rates <= 150)) >= 0.8, rates


def test_qrs_amplitude_and_width_match_ptbxl(
    gan_sample: np.ndarray, ptbxl_sample: np.ndarray
) -> None:
    resampled = signal.resample_poly(gan_sample.astype(np.float64), 1, 5, axis=-1)
    _, gan_amplitude, gan_width = _measure(resampled, FS_PTBXL)
    ptb_rates, ptb_amplitude, ptb_width = _measure(ptbxl_sample, FS_PTBXL)
    assert np.mean((ptb_rates >= 40) & (ptb_rates <= 150)) >= 0.9  # the detector works on real ECGs
    gan_lead = np.median(gan_amplitude, axis=0)
    ptb_lead = np.median(ptb_amplitude, axis=0)
    ratio_ii = gan_lead[LEAD_INDEX["II"]] / ptb_lead[LEAD_INDEX["II"]]
    assert 0.5 <= ratio_ii <= 2.0, ratio_ii
    assert np.all((gan_lead / ptb_lead >= 1 / 3) & (gan_lead / ptb_lead <= 3)), gan_lead / ptb_lead
    assert np.corrcoef(gan_lead, ptb_lead)[0, 1] > 0.8  # same shape across leads (V2–V4 largest)
    width_ratio = np.median(gan_width) / np.median(ptb_width)
    assert 1 / 1.5 <= width_ratio <= 1.5, (np.median(gan_width), np.median(ptb_width))
