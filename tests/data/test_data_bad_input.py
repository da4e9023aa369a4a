"""Bad input made from real files: each problem gives its own clear rejection reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

from aclecg_core.data.cohort import DataError, RecordWarning
from aclecg_core.data.leads import CANONICAL_LEADS
from aclecg_core.data.loading import load_cohort, read_record
from aclecg_core.data.preprocess import MAX_FLAT_LEADS, PreprocessConfig
from aclecg_core.data.wfdb_io import read_wfdb

PTBXL_RECORD = "ptbxl/records100/00000/00001_lr"
CPSC_RECORD = "cinc/cpsc2018/A0001"


def _copy(shared: Path, record: str, folder: Path, name: str) -> Path:
    """Copy a real record into ``folder`` under ``name``; return its header path."""
    src = shared / record
    hea = (src.parent / (src.name + ".hea")).read_text()
    ext = ".mat" if (src.parent / (src.name + ".mat")).exists() else ".dat"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src.parent / (src.name + ext), folder / (name + ext))
    (folder / f"{name}.hea").write_text(hea.replace(src.name, name))
    (folder / f"{name}{ext}").chmod(0o644)
    return folder / f"{name}.hea"


def _write(folder: Path, name: str, signal: np.ndarray, fs: float,
           leads: list[str] | None = None) -> Path:
    """Write (n, leads) mV ``signal`` as a 16-bit WFDB record."""
    leads = leads or list(CANONICAL_LEADS)
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=fs, units=["mV"] * len(leads), sig_name=leads, p_signal=signal,
                fmt=["16"] * len(leads), adc_gain=[1000.0] * len(leads),
                baseline=[0] * len(leads), comments=["Dx: NSR"], write_dir=str(folder))
    return folder / f"{name}.hea"


def _real(shared: Path, record: str) -> np.ndarray:
    return wfdb.rdrecord(str(shared / record)).p_signal


def _edit_header(hea: Path, old: str, new: str, count: int = -1) -> None:
    text = hea.read_text()
    assert old in text
    hea.write_text(text.replace(old, new, count))


def _reason(hea: Path, max_flat_leads: int = MAX_FLAT_LEADS) -> str:
    with pytest.raises(DataError) as info:
        read_record(hea, layout="wfdb", max_flat_leads=max_flat_leads)
    message = str(info.value)
    assert str(hea) in message
    return message


def test_truncated_dat(shared_data: Path, tmp_path: Path) -> None:
    hea = _copy(shared_data, PTBXL_RECORD, tmp_path, "trunc")
    dat = hea.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:5000])
    assert "truncated signal file: trunc.dat has 5000 bytes" in _reason(hea)


def test_truncated_mat(shared_data: Path, tmp_path: Path) -> None:
    hea = _copy(shared_data, CPSC_RECORD, tmp_path, "A9001")
    mat = hea.with_suffix(".mat")
    mat.write_bytes(mat.read_bytes()[:1000])
    assert "truncated signal file: A9001.mat" in _reason(hea)


def test_missing_signal_file(shared_data: Path, tmp_path: Path) -> None:
    hea = _copy(shared_data, CPSC_RECORD, tmp_path, "A9002")
    hea.with_suffix(".mat").unlink()
    assert "signal file missing: A9002.mat" in _reason(hea)


def test_missing_header(tmp_path: Path) -> None:
    assert "header file missing" in _reason(tmp_path / "nothing.hea")


def test_corrupt_header(shared_data: Path, tmp_path: Path) -> None:
    hea = _copy(shared_data, PTBXL_RECORD, tmp_path, "corrupt")
    hea.write_text("corrupt twelve x y\n garbage line without fields\n")
    assert "malformed header" in _reason(hea)


def test_header_signal_mismatch(shared_data: Path, tmp_path: Path) -> None:
    hea = _copy(shared_data, PTBXL_RECORD, tmp_path, "short")
    _edit_header(hea, "100 1000", "100 900", 1)
    assert "header/signal mismatch" in _reason(hea)
    longer = _copy(shared_data, PTBXL_RECORD, tmp_path, "long")
    _edit_header(longer, "100 1000", "100 1100", 1)
    assert "truncated signal file" in _reason(longer)


def test_checksum_mismatch(shared_data: Path, tmp_path: Path) -> None:
    hea = _copy(shared_data, CPSC_RECORD, tmp_path, "A9003")
    _edit_header(hea, " -1716 ", " -1715 ", 1)
    assert "header/signal mismatch: checksum of lead I" in _reason(hea)


def test_unknown_leads(shared_data: Path, tmp_path: Path) -> None:
    hea = _copy(shared_data, PTBXL_RECORD, tmp_path, "leads")
    text = hea.read_text()
    for i in range(1, 7):
        text = text.replace(f" V{i}\n", f" X{i}\n")
    hea.write_text(text)
    reason = _reason(hea)
    assert "unusable leads" in reason and "V1" in reason


def test_nan_lead(shared_data: Path, tmp_path: Path) -> None:
    signal = _real(shared_data, PTBXL_RECORD)
    signal[100:200, 7] = np.nan
    reason = _reason(_write(tmp_path, "nan", signal, 100.0))
    assert "invalid samples" in reason and "V2" in reason


def test_flat_leads(shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Up to max-flat-leads dead leads: kept with a warning; more, or all, leads: rejected."""
    signal = _real(shared_data, PTBXL_RECORD)
    signal[:, 9] = 0.2
    one = _write(tmp_path / "data", "one", signal, 100.0)
    assert read_wfdb(one).warnings == ("flat leads: V4 (kept; max-flat-leads=3)",)
    assert read_wfdb(one, max_flat_leads=1).warnings == (
        "flat leads: V4 (kept; max-flat-leads=1)",)
    assert "flat leads: V4 (range below 0.01 mV; more than max-flat-leads=0)" in _reason(one, 0)
    signal[:, 6:9] = 0.0
    four = _write(tmp_path / "data", "four", signal, 100.0)
    assert ("flat leads: V1, V2, V3, V4 (range below 0.01 mV; more than max-flat-leads=3)"
            in _reason(four))
    assert read_wfdb(four, max_flat_leads=4).warnings == (
        "flat leads: V1, V2, V3, V4 (kept; max-flat-leads=4)",)
    dead = _write(tmp_path, "dead", np.zeros_like(signal), 100.0)
    assert "(range below 0.01 mV; all leads)" in _reason(dead, 12)
    clean = _copy(shared_data, PTBXL_RECORD, tmp_path / "data", "clean")
    assert read_wfdb(clean).warnings == ()
    with pytest.raises(ValueError, match=r"max_flat_leads must be 0\.\.12, got 13"):
        read_wfdb(clean, max_flat_leads=13)

    caplog.set_level("INFO", logger="aclecg_core")
    cohort = load_cohort([tmp_path / "data"], layout="wfdb", workers=1)
    assert [r.record_id for r in cohort.records] == ["clean", "one"]
    assert [Path(r.path).name for r in cohort.rejected] == ["four.hea"]
    assert cohort.warnings == [RecordWarning(str(one), "flat leads: V4 (kept; max-flat-leads=3)")]
    assert "kept with a warning 1 of 3 records: flat leads (1)" in caplog.text
    assert f"kept with a warning {one}: flat leads: V4" in caplog.text
    assert cohort.select_records(np.array([False, True])).warnings == cohort.warnings
    assert cohort.select_records(np.array([True, False])).warnings == []
    strict = load_cohort([tmp_path / "data"], layout="wfdb", workers=1,
                         preprocessing=PreprocessConfig(max_flat_leads=0))
    assert [r.record_id for r in strict.records] == ["clean"] and strict.warnings == []


def test_implausible_amplitude(shared_data: Path, tmp_path: Path) -> None:
    signal = _real(shared_data, PTBXL_RECORD)
    signal[500, 0] = 30.0
    assert "implausible amplitude: " in _reason(_write(tmp_path, "amp", signal, 100.0))


def test_implausible_gain(shared_data: Path, tmp_path: Path) -> None:
    hea = _copy(shared_data, PTBXL_RECORD, tmp_path, "gain")
    _edit_header(hea, "1000.0(0)/mV", "0.001(0)/mV")
    assert "implausible gain" in _reason(hea)


@pytest.mark.parametrize(("fs", "expected"), [("50", "sampling rate too low: 50 Hz"),
                                              ("100000", "implausible sampling rate")])
def test_wrong_sampling_rate(shared_data: Path, tmp_path: Path, fs: str, expected: str) -> None:
    hea = _copy(shared_data, PTBXL_RECORD, tmp_path / "ok", "fs")
    _edit_header(hea, "12 100 1000", f"12 {fs} 1000")
    cohort = load_cohort([tmp_path / "ok", _copy(shared_data, CPSC_RECORD, tmp_path, "A9004")],
                         layout="wfdb", workers=1)
    assert [r.reason.startswith(expected) for r in cohort.rejected] == [True]


def test_short_record_policy(shared_data: Path, tmp_path: Path) -> None:
    signal = _real(shared_data, PTBXL_RECORD)
    _write(tmp_path / "short", "six", signal[:600], 100.0)
    _write(tmp_path / "short", "three", signal[:300], 100.0)
    padded = load_cohort([tmp_path / "short"], workers=1)
    assert [r.record_id for r in padded.records] == ["six"]
    assert "record too short: 3.00 s < minimum 5 s" in padded.rejected[0].reason
    assert np.all(padded.signals[0, :, 600:] == 0) and padded.window_samples == 1000
    with pytest.raises(DataError, match="no usable records"):
        load_cohort([tmp_path / "short"], workers=1,
                    preprocessing=PreprocessConfig(short_policy="reject"))


def test_strict_names_file_and_empty_input(shared_data: Path, tmp_path: Path) -> None:
    _copy(shared_data, PTBXL_RECORD, tmp_path / "mixed", "good")
    bad = _copy(shared_data, CPSC_RECORD, tmp_path / "mixed", "A9005")
    bad.with_suffix(".mat").unlink()
    lenient = load_cohort([tmp_path / "mixed"], workers=1)
    assert len(lenient.records) == 1 and lenient.rejected[0].path == str(bad)
    with pytest.raises(DataError, match=r"A9005\.hea: signal file missing"):
        load_cohort([tmp_path / "mixed"], workers=1, strict=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no WFDB records found"):
        load_cohort([tmp_path / "empty"])
    with pytest.raises(DataError, match="no such file"):
        load_cohort([tmp_path / "missing"])


def test_lead_derivation(shared_data: Path, tmp_path: Path) -> None:
    full, _, _ = read_record(shared_data / (CPSC_RECORD + ".hea"))
    keep = [0, 1, *range(6, 12)]
    hea = _write(tmp_path, "eight", full[keep].T.astype(float), 500.0,
                 [CANONICAL_LEADS[i] for i in keep])
    derived, fs, _ = read_record(hea)
    assert fs == 500.0
    lead_i, lead_ii = full[0], full[1]
    expected = {2: lead_ii - lead_i, 3: -(lead_i + lead_ii) / 2, 4: lead_i - lead_ii / 2,
                5: lead_ii - lead_i / 2}
    for index, values in expected.items():
        np.testing.assert_allclose(derived[index], values, atol=2e-3)
    np.testing.assert_allclose(derived[keep], full[keep], atol=1e-3)


def test_lead_aliases(shared_data: Path, tmp_path: Path) -> None:
    full, _, _ = read_record(shared_data / (PTBXL_RECORD + ".hea"))
    names = ["DI", "lead II", "DIII", "AVR", "AVL", "AVF", "v1", "V2", "V3", "V4", "V5", "V6"]
    hea = _write(tmp_path, "alias", full.T.astype(float), 100.0, names)
    aliased, _, _ = read_record(hea)
    np.testing.assert_allclose(aliased, full, atol=1e-3)


def test_other_signal_formats(shared_data: Path, tmp_path: Path) -> None:
    """Formats other than interleaved 16-bit go through wfdb's reader and agree with it."""
    full, _, _ = read_record(shared_data / (PTBXL_RECORD + ".hea"))
    wfdb.wrsamp("fmt212", fs=100.0, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS),
                p_signal=full.T.astype(float), fmt=["212"] * 12, adc_gain=[200.0] * 12,
                baseline=[0] * 12, write_dir=str(tmp_path))
    signal, fs, info = read_record(tmp_path / "fmt212.hea")
    np.testing.assert_allclose(signal, full, atol=5e-3)
    assert (fs, info.record_id, info.labels) == (100.0, "fmt212", ())
