"""The synthetic cohort: determinism, lead physics, rates, regional infarcts, WFDB files, CLI."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import wfdb

from aclecg_cli.data_synth import register
from aclecg_core.data.labels import SYNTHETIC_CLASSES as PROJECT_CLASSES
from aclecg_core.data.leads import CANONICAL_LEADS, LEAD_INDEX
from aclecg_core.data.regions import CLINICAL_REGIONS
from aclecg_core.data.synth import (
    SYNTHETIC_CLASSES,
    generate_record,
    synthetic_site_spec,
    write_synthetic_cohort,
)
from aclecg_core.data.synth.leadfield import SOURCE_DIM, project
from aclecg_core.data.synth.writer import write_record, write_record_wfdb

L_I, L_II, L_III, AVR, AVL, AVF = (LEAD_INDEX[n] for n in ("I", "II", "III", "aVR", "aVL", "aVF"))


def _rates(labels: tuple[str, ...], n: int) -> list[np.ndarray]:
    spec = synthetic_site_spec(2)
    records = [generate_record(spec, k, labels=labels) for k in range(1, n + 1)]
    return [np.diff(r.rpeaks) / r.fs for r in records]


def test_classes_match_project_vocabulary() -> None:
    assert list(SYNTHETIC_CLASSES) == list(PROJECT_CLASSES)


def test_same_seed_same_record_other_seed_differs() -> None:
    spec = synthetic_site_spec(1, seed=3)
    a, b = generate_record(spec, 7, seed=3), generate_record(spec, 7, seed=3)
    assert np.array_equal(a.signal, b.signal) and a.labels == b.labels
    other = generate_record(synthetic_site_spec(1, seed=4), 7, seed=4)
    assert other.signal.shape != a.signal.shape or not np.allclose(other.signal, a.signal)


@pytest.mark.parametrize("site", [1, 2, 3, 4])
def test_limb_leads_obey_einthoven_and_goldberger(site: int) -> None:
    x = generate_record(synthetic_site_spec(site), 1).signal.astype(np.float64)
    assert x.shape[0] == 12 and np.abs(x).max() > 0.3
    np.testing.assert_allclose(x[L_III], x[L_II] - x[L_I], atol=1e-5)
    np.testing.assert_allclose(x[AVR] + x[AVL] + x[AVF], 0.0, atol=1e-5)
    np.testing.assert_allclose(x[AVF], x[L_II] - x[L_I] / 2, atol=1e-5)


def test_arm_reversal_inverts_lead_one_and_swaps_two_and_three() -> None:
    source = np.random.default_rng(0).standard_normal((SOURCE_DIM, 50))
    normal, swapped = project(source), project(source, swap_arms=True)
    np.testing.assert_allclose(swapped[L_I], -normal[L_I])
    np.testing.assert_allclose(swapped[L_II], normal[L_III])
    np.testing.assert_allclose(swapped[AVR], normal[AVL])
    np.testing.assert_allclose(swapped[6:], normal[6:])


def test_rate_labels_and_af_irregularity() -> None:
    assert all(60 / rr.mean() < 60 for rr in _rates(("SB",), 6))
    assert all(60 / rr.mean() > 100 for rr in _rates(("STach",), 6))
    assert all(60 <= 60 / rr.mean() <= 100 for rr in _rates(("NSR",), 6))
    assert min(rr.std() / rr.mean() for rr in _rates(("AF",), 6)) > 0.1
    assert max(rr.std() / rr.mean() for rr in _rates(("NSR",), 6)) < 0.05


def test_bundle_branch_blocks_widen_qrs() -> None:
    def qrs_ms(labels: tuple[str, ...]) -> float:
        spec = synthetic_site_spec(1)
        widths = []
        for k in range(1, 6):
            r = generate_record(spec, k, labels=labels, noise=False)
            beat = r.signal[:, r.rpeaks[2] - r.fs // 5:r.rpeaks[2] + r.fs // 5]
            energy = np.abs(np.diff(beat, axis=1)).sum(axis=0) * r.fs  # mV/s summed over leads
            active = np.flatnonzero(energy > 0.15 * energy.max())
            widths.append((active[-1] - active[0]) / r.fs * 1000)
        return float(np.median(widths))

    normal = qrs_ms(("NSR",))
    assert 70 < normal < 110
    assert qrs_ms(("LBBB",)) > 120 and qrs_ms(("RBBB",)) > 120


@pytest.mark.parametrize("label,region", [
    ("MI-INF", "inferior"), ("MI-SEP", "septal"), ("MI-ANT", "anterior"), ("MI-LAT", "lateral"),
])
def test_infarct_changes_its_own_region_most(label: str, region: str) -> None:
    spec = synthetic_site_spec(1)
    effect = []
    for k in range(1, 7):
        mi = generate_record(spec, k, labels=(label,), noise=False).signal
        healthy = generate_record(spec, k, labels=("NSR",), noise=False).signal
        diff = np.abs(mi - healthy).mean(axis=1)
        effect.append([diff[list(leads)].mean() for leads in CLINICAL_REGIONS.leads])
    per_patient = np.array(effect)
    own = CLINICAL_REGIONS.names.index(region)
    others = np.delete(per_patient, own, axis=1).max(axis=1)
    assert np.all(per_patient[:, own] > 1.2 * others)


def test_unknown_or_inconsistent_labels_raise() -> None:
    spec = synthetic_site_spec(1)
    with pytest.raises(ValueError, match="unknown"):
        generate_record(spec, 1, labels=("MI",))
    with pytest.raises(ValueError, match="NSR"):
        generate_record(spec, 1, labels=("NSR", "AF"))


def test_sites_differ_like_hospitals() -> None:
    specs = [synthetic_site_spec(k) for k in range(1, 5)]
    assert {s.fs for s in specs} == {100, 250, 500}
    assert len({s.gain for s in specs}) == 4 and {s.powerline_hz for s in specs} == {50, 60}
    assert specs[0].prevalence != specs[1].prevalence
    assert synthetic_site_spec(3, seed=1) == synthetic_site_spec(3, seed=1)


def test_fast_writer_is_byte_identical_to_wfdb(tmp_path: Path) -> None:
    spec = synthetic_site_spec(2)
    record = generate_record(spec, 5)
    (tmp_path / "fast").mkdir()
    (tmp_path / "ref").mkdir()
    write_record(record, tmp_path / "fast", spec.gain)
    write_record_wfdb(record, tmp_path / "ref", spec.gain)
    for suffix in (".hea", ".dat"):
        name = record.name + suffix
        assert (tmp_path / "fast" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()


def test_written_cohort_is_deterministic_and_readable(tmp_path: Path) -> None:
    a = write_synthetic_cohort(tmp_path / "a", sites=2, records_per_site=3, seed=5, workers=1)
    write_synthetic_cohort(tmp_path / "b", sites=2, records_per_site=3, seed=5, workers=2)
    write_synthetic_cohort(tmp_path / "c", sites=2, records_per_site=3, seed=6, workers=1)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert len(files) == 2 * 3 * 2 + 2 + 1
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    dat = Path("site1/S1_00001.dat")
    assert (tmp_path / "a" / dat).read_bytes() != (tmp_path / "c" / dat).read_bytes()

    assert a.records == 6 and sum(a.label_counts.values()) >= 6
    spec = synthetic_site_spec(1, seed=5)
    rec = wfdb.rdrecord(str(tmp_path / "a" / "site1" / "S1_00001"))
    assert rec.sig_name == list(CANONICAL_LEADS) and rec.units == ["mV"] * 12
    assert rec.fs == spec.fs and rec.adc_gain == [spec.gain] * 12 and rec.fmt == ["16"] * 12
    x = rec.p_signal.T
    assert np.abs(x[L_III] - (x[L_II] - x[L_I])).max() <= 1.5 / spec.gain
    assert np.abs(x[AVR] + x[AVL] + x[AVF]).max() <= 2.0 / spec.gain
    memory = generate_record(spec, 1, seed=5)
    assert np.abs(x - memory.signal).max() <= 0.5 / spec.gain + 1e-6
    assert rec.comments == [f"Dx: {','.join(memory.labels)}", "Site: site1",
                            "Patient: site1-p00001", f"Age: {memory.age}", f"Sex: {memory.sex}"]
    with open(tmp_path / "a" / "site1" / "labels.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["record"] for r in rows] == ["S1_00001", "S1_00002", "S1_00003"]
    assert rows[0]["labels"] == ",".join(memory.labels) and rows[0]["fs"] == str(spec.fs)
    manifest = json.loads((tmp_path / "a" / "cohort.json").read_text())
    assert manifest["seed"] == 5 and manifest["sites"] == 2 and manifest["generator"] == "physics"


def test_cli_writes_cohort(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["synth", str(tmp_path / "out"), "--sites", "1",
                              "--records-per-site", "2", "--seed", "1", "--workers", "1"])
    assert args.func(args) == 0
    assert sorted(p.name for p in (tmp_path / "out" / "site1").glob("*.hea")) == [
        "S1_00001.hea", "S1_00002.hea"]
    with pytest.raises(SystemExit):
        parser.parse_args(["synth", str(tmp_path), "--sites", "0"])
