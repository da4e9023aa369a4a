"""The report's whole-hold-out section: the probes of round 0, the best and the final encoder,
each class's positives, and the summary's verdict taken from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aclecg_core.report import ReportError, load_holdout_evidence, write_report

CLASSES = ["NSR", "MI-ANT"]


def _probe(auroc: float, diff: float | None = None) -> dict[str, Any]:
    return {"macro_auroc": auroc, "macro_auprc": auroc - 0.3, "auroc_ci": [auroc - 0.05,
                                                                           auroc + 0.04],
            "auprc_ci": [auroc - 0.4, auroc - 0.2], "per_class_auroc": {"NSR": auroc,
                                                                      "MI-ANT": auroc - 0.1},
            "per_class_auprc": {}, "skipped": [], "n_test": 360, "n_val": 350, "c": 0.1,
            "vs_round0": None if diff is None else {
                "auroc_a": auroc, "auroc_b": 0.7, "auroc_diff": diff,
                "auroc_diff_ci": [diff - 0.03, diff + 0.03], "auprc_a": 0.5, "auprc_b": 0.4,
                "auprc_diff": 0.1, "auprc_diff_ci": [0.05, 0.15], "n_test": 360,
                "n_bootstrap": 200}}


def holdout_json(best_is_final: bool = False) -> dict[str, Any]:
    encoders = [{"names": ["round 0"], "round": 0, **_probe(0.7)},
                {"names": ["final"], "round": 30, **_probe(0.85, 0.15)}]
    if best_is_final:
        encoders[1]["names"] = ["best", "final"]
    else:
        encoders.insert(1, {"names": ["best"], "round": 21, **_probe(0.86, 0.16)})
    return {"classes": CLASSES, "n_train": 480, "n_val": 350, "n_test": 360,
            "positives": {"NSR": 60, "MI-ANT": 29}, "val_positives": {"NSR": 70, "MI-ANT": 41},
            "round_records": {"n_train": 120, "n_val": 88, "n_test": 90}, "encoders": encoders}


def run_folder(tmp_path: Path, holdout: dict[str, Any] | None) -> Path:
    probe = _probe(0.8, 0.1) | {"n_test": 90}
    metrics = {"run": {"name": "r", "status": "finished"}, "sites": [], "final_round": 30,
               "rounds": [{"round": 30, "wall_seconds": 1.0, "clients": [], "failures": [],
                           "probe": probe}]}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    if holdout is not None:
        (tmp_path / "holdout.json").write_text(json.dumps(holdout))
    return tmp_path


def test_the_report_shows_the_whole_hold_out(tmp_path: Path) -> None:
    text = write_report(run_folder(tmp_path, holdout_json()))[0].read_text()
    assert "## Evidence on the whole hold-out" in text
    assert "fixed share of the hold-out (90 of its 360 test records)" in text
    assert "480 train, 350 validation (chooses C), 360 test records" in text
    assert "fixed share of it (120 train, 88 validation, 90 test records" in text
    assert "| best round | 21 | 0.860 [0.810–0.900] |" in text
    assert "| final | 30 | 0.850 [0.800–0.890] | 0.550 [0.450–0.650] | +0.150 [+0.120, +0.180] |" \
        in text
    assert "| MI-ANT | 29 | 41 | 0.600 | 0.760 | 0.750 |" in text
    assert "fewer than 30 positive test records (their AUROC is weak evidence): MI-ANT (29)" \
        in text
    # the summary's verdict is the whole hold-out's, not the per-round probe's 90 records
    assert "On the whole hold-out the final encoder (round 30) beats the random-init" in text
    assert "also on the whole hold-out (360 test records)" in text
    # the headline's final and best encoders are the whole hold-out's, the best chosen on the
    # per-round probe's validation records
    assert "**Final macro AUROC**: 0.850 (95 % CI 0.800–0.890 · round 30 · whole hold-out)" \
        in text
    assert "**Best round's macro AUROC**: 0.860 (round 21 (AUPRC 0.560) · whole hold-out)" in text


def test_one_encoder_may_be_the_best_and_the_final(tmp_path: Path) -> None:
    folder = run_folder(tmp_path, holdout_json(best_is_final=True))
    evidence = load_holdout_evidence(folder)
    assert evidence is not None and evidence.named("best") is evidence.named("final")
    assert "| best round = final | 30 |" in write_report(folder)[0].read_text()


def test_runs_without_the_file_have_no_section_and_bad_files_are_named(tmp_path: Path) -> None:
    assert "whole hold-out" not in write_report(run_folder(tmp_path, None))[0].read_text()
    bad = holdout_json()
    bad["encoders"][0]["round"] = -1
    (tmp_path / "holdout.json").write_text(json.dumps(bad))
    with pytest.raises(ReportError, match=r"holdout\.json: encoders\[0\]\.round"):
        write_report(tmp_path)
