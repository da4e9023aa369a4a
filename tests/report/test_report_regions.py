"""The report's per-region panel: heat map, one-line reading, the regional-infarct statement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aclecg_core.report import ReportError, load_region_evidence, write_report
from aclecg_core.report.regions import expectation, reading

REGIONS = ["inferior", "septal", "anterior", "lateral"]
CLASSES = ["NSR", "MI-INF", "MI-SEP", "AF"]


def regions_json(holds: bool = True) -> dict[str, Any]:
    """A ``RegionProbeResult.to_dict()``-shaped file; MI-SEP's best region is septal or not."""
    auroc = [[0.70, 0.95, 0.60, None], [0.72, 0.61, 0.91 if holds else 0.70, None],
             [0.74, 0.58, 0.80, None], [0.75, 0.62, 0.55, None]]
    return {"round": 5, "regions": REGIONS,
            "region_leads": {"inferior": ["II", "III"], "septal": ["V1", "V2"],
                             "anterior": ["V3", "V4"], "lateral": ["V5", "V6"]},
            "classes": CLASSES, "auroc": auroc, "n_train": 70, "n_test": 30,
            "expected": {"MI-INF": "inferior", "MI-SEP": "septal"},
            "best": {"NSR": ["lateral"], "MI-INF": ["inferior"],
                     "MI-SEP": ["septal" if holds else "anterior"]},
            "holds": {"MI-INF": True, "MI-SEP": holds},
            "positives": {"NSR": 42, "MI-INF": 36, "MI-SEP": 35, "AF": 0}}


def run_folder(tmp_path: Path, regions: dict[str, Any] | None) -> Path:
    metrics = {"run": {"name": "r", "status": "finished"}, "sites": [], "final_round": 5,
               "rounds": [{"round": 5, "wall_seconds": 1.0, "clients": [], "failures": [],
                           "probe": None}]}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    if regions is not None:
        (tmp_path / "regions.json").write_text(json.dumps(regions))
    return tmp_path


def test_report_shows_the_region_panel(tmp_path: Path) -> None:
    md, html = write_report(run_folder(tmp_path, regions_json()))
    text = md.read_text()
    assert "## Per-region evidence" in text and "region-auroc.png" in text
    assert (tmp_path / "plots" / "region-auroc.png").read_bytes()[:4] == b"\x89PNG"
    assert "MI-INF inferior (0.95)" in text and "MI-SEP septal (0.91)" in text
    assert "holds for this run (2 of 2" in text and "Weak evidence" not in text
    assert "Per-region evidence" in html.read_text()


def test_the_statement_says_when_a_region_expectation_fails(tmp_path: Path) -> None:
    evidence = load_region_evidence(run_folder(tmp_path, regions_json(holds=False)))
    assert evidence is not None
    assert "holds only in part" in expectation(evidence)
    assert "MI-SEP from anterior instead of septal ✗" in expectation(evidence)
    assert "the regions differ most for MI-INF (AUROC range 0.37)" in reading(evidence)
    tied = regions_json()
    tied["auroc"][2][2] = 0.91  # anterior ties with septal for MI-SEP, which has 2 positives
    tied.update(best={**tied["best"], "MI-SEP": ["septal", "anterior"]},
                positives={**tied["positives"], "MI-SEP": 2})
    (tmp_path / "regions.json").write_text(json.dumps(tied))
    evidence = load_region_evidence(tmp_path)
    assert evidence is not None and "holds for this run" in expectation(evidence)
    assert "MI-SEP from septal ✓ (tied with anterior)" in expectation(evidence)
    assert "Weak evidence: fewer than 30 positive test records (MI-SEP 2)" in expectation(evidence)
    assert "MI-SEP septal/anterior (0.91)" in reading(evidence)
    no_regional = {**regions_json(), "expected": {}, "holds": {}}
    (tmp_path / "regions.json").write_text(json.dumps(no_regional))
    evidence = load_region_evidence(tmp_path)
    assert evidence is not None and "cannot show" in expectation(evidence)


def test_runs_without_regions_have_no_panel_and_bad_files_are_named(tmp_path: Path) -> None:
    md, _ = write_report(run_folder(tmp_path, None))
    assert "Per-region evidence" not in md.read_text()
    (tmp_path / "regions.json").write_text(json.dumps({**regions_json(), "auroc": [[0.5]]}))
    with pytest.raises(ReportError, match=r"regions\.json: auroc"):
        write_report(tmp_path)


def test_the_panel_sets_the_final_encoder_against_round_0(tmp_path: Path) -> None:
    """With round 0's probe: its own verdict, each regional infarct's AUROC, margin over the best
    other region and change from round 0 with intervals, and the reading that follows."""
    final = {**regions_json(), "auroc_ci": [[[0.6, 0.8], [0.9, 0.99], [0.5, 0.7], None]] * 4,
             "margin": {"MI-INF": {"region": "inferior", "other": "lateral", "diff": 0.33,
                                   "ci": [0.2, 0.45]}}}
    start = {**regions_json(), "round": 0}
    diff = [[0.0, 0.12, -0.05, None]] * 4
    diff_ci = [[[-0.1, 0.1], [0.04, 0.2], [-0.15, 0.04], None]] * 4
    folder = run_folder(tmp_path, {**final, "round0": start,
                                   "vs_round0": {"auroc_diff": diff, "auroc_diff_ci": diff_ci}})
    evidence = load_region_evidence(folder)
    assert evidence is not None and evidence.round0 is not None
    assert evidence.margin["MI-INF"].ci == (0.2, 0.45)
    text = write_report(folder)[0].read_text()
    assert "holds for the final encoder (2 of 2: MI-INF from inferior ✓ by +0.330 " \
           "[+0.200, +0.450]" in text
    assert "holds for round 0's random-init encoder (2 of 2" in text
    assert "| MI-INF | inferior | 36 | 0.950 [0.900–0.990] | +0.330 [+0.200, +0.450] | 0.950 |" \
           in text and "+0.120 [+0.040, +0.200]" in text
    assert "already detects 2 of 2 regional infarcts best from their own region" in text
    start["holds"] = {"MI-INF": False, "MI-SEP": False}
    (tmp_path / "regions.json").write_text(json.dumps({**final, "round0": start}))
    assert "detects 0 of 2 regional infarcts best from their own region, the final one 2" in \
        write_report(folder)[0].read_text()
    (tmp_path / "regions.json").write_text(json.dumps(
        {**final, "round0": start, "vs_round0": {"auroc_diff": [[0.1]]}}))
    with pytest.raises(ReportError, match="auroc_diff: expected 4 rows of 4 values"):
        write_report(folder)
