"""The report's 'Federated vs pooled' section from ``pooled.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aclecg_core.report import ReportError, load_pooled_evidence
from aclecg_core.report.blocks import Table
from aclecg_core.report.pooled import pooled_section


def _comparison(fraction: float, fed: float, pooled: float, ci: list[float]) -> dict[str, Any]:
    return {"fraction": fraction, "draws": 5 if fraction < 1 else 1,
            "federated": {"auroc": {"mean": fed}, "auprc": {"mean": fed - 0.2}},
            "pooled": {"auroc": {"mean": pooled}, "auprc": {"mean": pooled - 0.2}},
            "difference": {"auroc_diff": fed - pooled, "auroc_diff_ci": ci,
                           "auprc_diff": fed - pooled, "auprc_diff_ci": ci}}


def _write(run_dir: Path, **changes: Any) -> None:
    content = {"epochs": 30, "records": 2068, "windows": 2173,
               "n_train": 479, "n_val": 361, "n_test": 360,
               "comparisons": [_comparison(0.1, 0.809, 0.818, [-0.017, -0.003]),
                               _comparison(1.0, 0.852, 0.856, [-0.012, 0.005])], **changes}
    (run_dir / "pooled.json").write_text(json.dumps(content))


def test_the_section_reads_each_fraction_by_its_interval_and_the_tolerance(
        tmp_path: Path) -> None:
    assert load_pooled_evidence(tmp_path) is None
    _write(tmp_path)
    section = pooled_section(load_pooled_evidence(tmp_path))
    assert section is not None and section.title == "Federated vs pooled"
    table = next(b for b in section.blocks if isinstance(b, Table))
    assert table.rows[0][:4] == ["10% of the labels (5 draws)", "0.809", "0.818",
                                 "-0.009 [-0.017, -0.003]"]
    reading = str(section.blocks[-1])
    assert ("10% of the labels (5 draws): federated is measurably behind pooled (the "
            "interval's verdict) and not within 0.005") in reading
    assert ("100% of the labels: federated is not distinguishable from pooled (the interval's "
            "verdict) and within 0.005") in reading
    assert "2 173 windows, those the sites reported) for 30 epochs" in str(section.blocks[0])


def test_a_malformed_file_is_named(tmp_path: Path) -> None:
    bad = _comparison(1.0, 0.85, 0.86, [-0.01, 0.0])
    bad["difference"]["auroc_diff_ci"] = "wide"
    _write(tmp_path, comparisons=[bad])
    with pytest.raises(ReportError, match=r"pooled\.json: comparisons\[0\]\.difference"):
        load_pooled_evidence(tmp_path)
