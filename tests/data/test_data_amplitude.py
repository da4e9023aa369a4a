"""Wrong header gains made from real files: warnings, rejections, rescaling, standardisation."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from aclecg_core.data.amplitude import judge_amplitude, likely_factor, qrs_amplitude
from aclecg_core.data.check import check_sources
from aclecg_core.data.cohort import DataError
from aclecg_core.data.loading import load_cohort, read_record
from aclecg_core.data.preprocess import PreprocessConfig

# Real records with a typical QRS amplitude (0.9-1.0 mV) and their true gain, 1000/mV.
PTBXL_500HZ = "cinc/cinc2021/HR06005"
GEORGIA = "cinc/cinc2021/E07514"
PTBXL_100HZ = "ptbxl/records100/00000/00015_lr"


def _regain(shared: Path, record: str, folder: Path, gain: str) -> Path:
    """A copy of a real record whose header claims ``gain`` (e.g. "200") per mV."""
    src = shared / record
    signal = next(f for f in src.parent.glob(src.name + ".*") if f.suffix in (".dat", ".mat"))
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(signal, folder / signal.name)
    text, count = re.subn(r" 1000(\.0)?\(0\)/m[vV]", f" {gain}(0)/mV",
                          src.with_suffix(".hea").read_text())
    assert count == 12
    hea = folder / f"{src.name}.hea"
    hea.write_text(text)
    return hea


def _warnings(hea: Path) -> tuple[str, ...]:
    (record,) = check_sources([hea], workers=1).records
    assert record.reason is None
    return record.warnings


@pytest.mark.parametrize("record", [PTBXL_500HZ, GEORGIA, PTBXL_100HZ])
def test_true_gains_are_plausible(shared_data: Path, record: str) -> None:
    signal, fs, _ = read_record(shared_data / record)
    qrs = qrs_amplitude(signal, fs)
    assert qrs is not None and 0.9 < qrs < 1.1
    assert judge_amplitude(qrs, "1000/mV").message == ""
    assert _warnings(shared_data / f"{record}.hea") == ()


def test_gain_five_times_too_small(shared_data: Path, tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    hea = _regain(shared_data, PTBXL_500HZ, tmp_path, "200")
    (warning,) = _warnings(hea)
    assert re.fullmatch(r"amplitude: median QRS [45]\.\d\d mV: header gain 200/mV may be 5x too "
                        r"small \(plausible 0\.25-4 mV\)", warning), warning
    caplog.set_level("WARNING", logger="aclecg_core")
    assert load_cohort([hea], workers=1).warnings[0].message == warning
    assert f"kept with a warning {hea}: {warning}" in caplog.text


def test_gain_five_times_too_large(shared_data: Path, tmp_path: Path) -> None:
    (warning,) = _warnings(_regain(shared_data, GEORGIA, tmp_path, "4880"))
    assert re.fullmatch(r"amplitude: median QRS 0\.2\d mV: header gain 4880/mV may be 5x too "
                        r"large \(plausible 0\.25-4 mV\)", warning), warning


def test_gain_thousand_times_too_large_is_rejected_for_the_gain(shared_data: Path,
                                                                 tmp_path: Path) -> None:
    hea = _regain(shared_data, PTBXL_100HZ, tmp_path, "1000000")
    with pytest.raises(DataError) as info:
        read_record(hea)
    assert re.fullmatch(rf"{re.escape(str(hea))}: implausible amplitude: median QRS 0\.0009\d mV: "
                        r"header gain 1000000/mV may be 1000x too large \(plausible 0\.05-15 mV\)",
                        str(info.value)), str(info.value)
    (record,) = check_sources([hea], workers=1).records
    assert record.reason is not None and record.reason.startswith("implausible amplitude:")


def test_likely_factor() -> None:
    assert likely_factor(6.1) == 5.0 and likely_factor(0.19) == 0.2
    assert likely_factor(12.0) == 10.0 and likely_factor(0.0011) == pytest.approx(0.001)


def test_rescale_restores_the_true_amplitude(shared_data: Path, tmp_path: Path) -> None:
    true = _regain(shared_data, PTBXL_500HZ, tmp_path / "true", "1000")
    small = _regain(shared_data, PTBXL_500HZ, tmp_path / "small", "5000")
    large = _regain(shared_data, PTBXL_500HZ, tmp_path / "large", "200")
    cfg = PreprocessConfig(rescale_amplitude=True)
    cohorts = [load_cohort([path], preprocessing=cfg, workers=1) for path in (true, small, large)]
    for cohort in cohorts[1:]:
        np.testing.assert_allclose(cohort.signals, cohorts[0].signals, atol=2e-3)
        (warning,) = cohort.warnings
        assert warning.message.endswith(("(rescaled x5)", "(rescaled x0.2)"))
    assert cohorts[0].warnings == [] and cohorts[0].preprocessing["rescale_amplitude"] is True
    plain = load_cohort([large], workers=1)
    np.testing.assert_allclose(plain.signals, 5 * cohorts[0].signals, atol=1e-2)


def test_record_standardisation_is_amplitude_free(shared_data: Path, tmp_path: Path) -> None:
    true = _regain(shared_data, GEORGIA, tmp_path / "true", "1000")
    large = _regain(shared_data, GEORGIA, tmp_path / "large", "200")
    cfg = PreprocessConfig(normalization="record-zscore")
    a, b = (load_cohort([path], preprocessing=cfg, workers=1) for path in (true, large))
    np.testing.assert_allclose(a.signals, b.signals, atol=1e-4)
    per_lead = a.signals.transpose(1, 0, 2).reshape(12, -1)
    np.testing.assert_allclose(per_lead.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(per_lead.std(axis=1), 1.0, atol=1e-4)
    assert PreprocessConfig.from_dict(a.preprocessing) == cfg


# The code15/ records that ``aclecg data check`` rejects or warns about, with their verdicts
# (checked by hand, docs/data.md), and two clean ones.
CODE15_VERDICTS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "1000618": ("record too short: 4.82 s < minimum 5 s", ()),
    "1111834": ("record too short: 3.02 s < minimum 5 s", ()),
    "102780": ("implausible amplitude: 27.2 mV in lead V6 at 0.04 s (limit 25 mV)", ()),
    "919988": ("implausible amplitude: 29.3 mV in lead III at 0.23 s (limit 25 mV)", ()),
    "1111554": ("implausible amplitude: median QRS 15.5 mV: header gain 1000/mV may be 20x too "
                "small, or the leads carry noise (plausible 0.05-15 mV)", ()),
    "1111660": (None, ("amplitude: median QRS 4.66 mV: header gain 1000/mV may be 5x too small "
                       "(plausible 0.25-4 mV)",)),
    "1000078": (None, ("artefact: V6 31.2 mV at 0.14 s (range over 20 mV)",)),
    "1000001": (None, ()),
    "1000190": (None, ()),
}


def test_code15_verdicts(shared_data: Path) -> None:
    headers = [shared_data / "code15" / f"{name}.hea" for name in CODE15_VERDICTS]
    report = check_sources(headers, workers=1)
    assert {r.record_id: (r.reason, r.warnings) for r in report.records} == CODE15_VERDICTS


def test_a_folder_flags_the_high_voltage_record_under_its_wrong_gain(
        shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The Georgia case: a folder whose headers all claim 4880/mV (4.88x the true gain); three
    typical records are flagged on their own, a high-voltage one (true QRS 1.8 mV) is not."""
    folder = tmp_path / "georgia"
    for record in ("E07501", "E07502", "E07514"):
        _regain(shared_data, f"cinc/cinc2021/{record}", folder, "4880")
    high = _regain(shared_data, "cinc/cinc2021/JS20007", folder, "4880")
    _regain(shared_data, PTBXL_100HZ, tmp_path / "other", "4880")  # another folder: no vote
    report = check_sources([folder, tmp_path / "other"], workers=1)
    by_id = {r.record_id: r for r in report.records}
    assert all(r.reason is None for r in report.records)
    for record in ("E07501", "E07502", "E07514"):
        (own,) = by_id[record].warnings
        assert re.fullmatch(r"amplitude: median QRS 0\.2\d mV: header gain 4880/mV may be 5x "
                            r"too large \(plausible 0\.25-4 mV\)", own), own
    (shared,) = by_id["JS20007"].warnings
    assert shared == (f"amplitude: header gain 4880/mV may be 5x too large: so say 3 of the 4 "
                      f"records with this gain in {folder} (this record looks plausible, as a "
                      "high-voltage ECG would)")
    caplog.set_level("WARNING", logger="aclecg_core")
    cohort = load_cohort([folder], workers=1)
    assert [w.message for w in cohort.warnings if w.path == str(high)] == [shared]
    assert "kept with a warning 4 of 4 records: amplitude (4)" in caplog.text


def test_one_low_voltage_record_does_not_make_its_folder_suspect(shared_data: Path,
                                                                 tmp_path: Path) -> None:
    for record in ("E07503", "E07514", "JS20007"):  # true QRS 0.38, 0.98, 1.8 mV: / 2 here
        _regain(shared_data, f"cinc/cinc2021/{record}", tmp_path, "2000")
    warned = {r.record_id: r.warnings for r in check_sources([tmp_path], workers=1).records}
    assert warned["E07514"] == warned["JS20007"] == ()
    assert warned["E07503"][0].startswith("amplitude: median QRS 0.19 mV: header gain 2000/mV")
