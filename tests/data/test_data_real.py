"""All real records of ../shared/data: loading, labels, leads, amplitudes, cache, ``data check``."""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import aclecg_cli.data
from aclecg_core.data.cohort import Cohort
from aclecg_core.data.labels import PTBXL_SUPERCLASSES, UNKNOWN_PREFIX, vocabulary
from aclecg_core.data.leads import CANONICAL_LEADS
from aclecg_core.data.loading import load_cohort, read_record
from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.data.sources import discover

DEAD_LEAD_RECORDS = {"JS20004", "JS20008"}  # Ningbo records whose V2, V4, V6 are all zero
ARTEFACT_RECORD = "A0061"  # CPSC record whose V6 swings over 20 mV in its last seconds


@pytest.fixture(scope="module")
def real(shared_data: Path,
         tmp_path_factory: pytest.TempPathFactory) -> tuple[Cohort, Cohort, float]:
    """The cohort of all 550 records: cold ingest with cache, then a cached load."""
    cache_dir = tmp_path_factory.mktemp("cache")
    paths = [shared_data / "ptbxl", shared_data / "cinc"]
    cold = load_cohort(paths, cache_dir=cache_dir, workers=2)
    start = time.perf_counter()
    cached = load_cohort(paths, cache_dir=cache_dir, workers=2)
    return cold, cached, time.perf_counter() - start


def test_every_record_is_read(real: tuple[Cohort, Cohort, float]) -> None:
    cohort = real[0]
    assert len(cohort.records) == 550 and cohort.rejected == []
    assert Counter(r.source for r in cohort.records) == {"ptbxl": 350, "cinc": 200}
    sites = Counter(r.site for r in cohort.records)
    assert sites["CPSC"] == 150 and sites["Georgia"] == 20 and sites["Ningbo"] == 20
    assert sites["PTB-XL"] == 10
    assert sum(n for s, n in sites.items() if s.startswith("PTB-XL-")) == 350


def test_dead_leads_and_artefacts_are_kept_with_a_warning(
        real: tuple[Cohort, Cohort, float]) -> None:
    cohort = real[0]
    warnings = {Path(w.path).stem: w.message for w in cohort.warnings}
    assert len(warnings) == len(cohort.warnings) == 3
    assert warnings == {**dict.fromkeys(DEAD_LEAD_RECORDS,
                                        "flat leads: V2, V4, V6 (kept; max-flat-leads=3)"),
                        ARTEFACT_RECORD: "artefact: V6 20.5 mV at 8.65 s (range over 20 mV)"}
    warned = [i for i, r in enumerate(cohort.records) if r.record_id in warnings]
    assert {cohort.records[i].path for i in warned} == {w.path for w in cohort.warnings}
    warned = [i for i in warned if cohort.records[i].record_id in DEAD_LEAD_RECORDS]
    windows = np.isin(cohort.window_record, warned)
    dead = [CANONICAL_LEADS.index(lead) for lead in ("V2", "V4", "V6")]
    assert windows.any() and np.all(cohort.signals[windows][:, dead] == 0)
    live = np.setdiff1d(np.arange(12), dead)
    assert np.all(np.ptp(cohort.signals[windows][:, live], axis=2) > 0.05)


def test_windows_leads_and_amplitudes(real: tuple[Cohort, Cohort, float]) -> None:
    cohort = real[0]
    assert cohort.signals.shape[1:] == (12, 1000) and cohort.signals.dtype == np.float32
    assert cohort.fs == 100.0 and cohort.preprocessing == PreprocessConfig().to_dict()
    cpsc_windows = sum(1 for r in cohort.window_record if cohort.records[r].site == "CPSC")
    assert cpsc_windows > 150  # records longer than 20 s give several windows
    assert np.isfinite(cohort.signals).all()
    peak = np.abs(cohort.signals).max(axis=2)
    assert np.median(peak) > 0.05 and peak.max() < 25.0
    # canonical order: Einthoven's law III = II - I holds on the stored leads
    residual = cohort.signals[:, 2] - (cohort.signals[:, 1] - cohort.signals[:, 0])
    assert np.median(np.abs(residual)) < 0.02
    # aVR is the negative mean of I and II
    avr = -(cohort.signals[:, 0] + cohort.signals[:, 1]) / 2
    assert np.median(np.abs(cohort.signals[:, 3] - avr)) < 0.02


def test_rpeaks_are_plausible(real: tuple[Cohort, Cohort, float]) -> None:
    cohort = real[0]
    beats = (cohort.rpeaks >= 0).sum(axis=1)
    assert np.median(beats) >= 8 and np.percentile(beats, 5) >= 4  # 10 s windows
    valid = cohort.rpeaks[cohort.rpeaks >= 0]
    assert valid.max() < cohort.window_samples
    for row in cohort.rpeaks[:50]:
        peaks = row[row >= 0]
        assert np.all(np.diff(peaks) >= 25)  # at least 250 ms apart at 100 Hz


def test_labels(real: tuple[Cohort, Cohort, float]) -> None:
    cohort = real[0]
    ptbxl = [r for r in cohort.records if r.source == "ptbxl"]
    assert all(r.fold in range(1, 11) and r.patient_id.startswith("ptbxl-") for r in ptbxl)
    matrix = cohort.label_matrix(PTBXL_SUPERCLASSES)
    is_ptbxl = np.array([cohort.records[r].source == "ptbxl" for r in cohort.window_record])
    assert matrix[is_ptbxl].sum(axis=0).min() > 10  # every superclass occurs
    assert matrix[is_ptbxl].sum(axis=1).min() >= 0 and matrix[is_ptbxl].any(axis=1).mean() > 0.9
    first = next(r for r in ptbxl if r.record_id == "ptbxl-00001")
    assert {"NORM", "NSR"} <= set(first.labels)
    cinc = [r for r in cohort.records if r.source == "cinc"]
    assert all(r.labels for r in cinc)
    labels = {label for r in cinc for label in r.labels}
    assert not any(label.startswith(UNKNOWN_PREFIX) for label in labels)
    assert labels <= vocabulary()
    assert {"NSR", "AF", "IAVB", "RBBB", "LBBB", "PAC", "PVC", "STD", "STE"} <= labels


def test_cache_hit_is_identical(real: tuple[Cohort, Cohort, float]) -> None:
    cold, cached, _ = real
    for name in ("signals", "rpeaks", "window_record"):
        np.testing.assert_array_equal(getattr(cached, name), getattr(cold, name))
    assert cached.records == cold.records and cached.rejected == cold.rejected
    assert cached.warnings == cold.warnings and len(cold.warnings) == 3
    assert cached.preprocessing == cold.preprocessing and cached.fs == cold.fs


def test_auto_layout_detects_each_folder(shared_data: Path) -> None:
    folders = ["ptbxl", "ptbxl-more", "cinc", "code15"]
    sources = discover([shared_data / name for name in folders])
    per_folder = Counter((s.header.relative_to(shared_data).parts[0], s.layout) for s in sources)
    assert per_folder == {("ptbxl", "ptbxl"): 350, ("ptbxl-more", "ptbxl"): 1499,
                          ("cinc", "cinc"): 200, ("code15", "cinc"): 489}
    assert all("records500" not in str(s.header) for s in sources)
    more = [s for s in sources if s.header.parts[-4] == "ptbxl-more"]
    assert Counter(s.fold for s in more)[9] == 164 and Counter(s.fold for s in more)[10] == 189
    assert all(s.patient_id.startswith("ptbxl-") and s.site.startswith("PTB-XL-") for s in more)
    first = next(s for s in more if s.record_id == "ptbxl-00503")  # v1.0.3 codes age > 89 as 300
    assert (first.age, first.sex, first.fold, first.patient_id) == (90.0, "M", 5, "ptbxl-7535")


@pytest.mark.parametrize(("name", "labels", "site", "patient", "age", "sex"), [
    ("1000001", (), "CODE-15%", "1000001", 22.0, "F"),
    ("1000190", ("Chagas",), "CODE-15%", "1000190", 77.0, "M"),
    ("100726", ("Chagas",), "SaMi-Trop", "100726", 64.0, "M"),
    ("111102", ("Chagas",), "CODE-15%", "1331343", 66.0, "F"),  # no # Source: an exam
])
def test_challenge_2025_metadata(shared_data: Path, name: str, labels: tuple[str, ...],
                                 site: str, patient: str, age: float, sex: str) -> None:
    signal, fs, info = read_record(shared_data / "code15" / f"{name}.hea")
    assert fs == 400.0 and signal.shape[0] == 12 and 7 * 400 <= signal.shape[1] <= 10.3 * 400
    assert (info.labels, info.site, info.patient_id, info.age, info.sex) == (
        labels, site, patient, age, sex)
    assert set(labels) <= vocabulary()


def _data_command(argv: list[str]) -> int:
    """Run ``aclecg data ...`` through the data module's own parser."""
    parser = argparse.ArgumentParser(prog="aclecg")
    aclecg_cli.data.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_data_check_cli(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = shared_data / "cinc" / "cinc2021"
    code = _data_command(["data", "check", str(folder), "--json", "--workers", "1"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["summary"] == {
        "records": 50, "ok": 50, "rejected": 0, "warnings": 2, "reasons": {}}
    warned = {r["record_id"]: r["warnings"] for r in report["records"] if r["warnings"]}
    assert warned == {name: ["flat leads: V2, V4, V6 (kept; max-flat-leads=3)"]
                      for name in DEAD_LEAD_RECORDS}
    assert all(r["ok"] for r in report["records"])

    assert _data_command(["data", "check", str(folder), "--workers", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "50 records: 50 OK (2 with warnings), 0 rejected"
    assert sum("(warning: flat leads: V2, V4, V6 (kept" in line for line in lines) == 2
    assert all(line.startswith("OK    ") for line in lines[:-1])

    code = _data_command(["data", "check", str(folder), "--json", "--max-flat-leads", "0",
                          "--workers", "1"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["summary"] == {
        "records": 50, "ok": 48, "rejected": 2, "warnings": 0, "reasons": {"flat leads": 2}}
    assert {r["record_id"] for r in report["records"] if not r["ok"]} == DEAD_LEAD_RECORDS

    assert _data_command(["data", "check", str(folder), "--max-flat-leads", "13"]) == 2
    assert "max_flat_leads" in capsys.readouterr().err
