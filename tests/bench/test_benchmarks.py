"""The benchmarks' --quick modes: output structure and value ranges (never timings)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks import quality, scale, speed


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _check_scores(block: dict[str, Any]) -> None:
    for metric in ("auroc", "auprc"):
        value = block[f"macro_{metric}"]
        low, high = block[f"{metric}_ci"]
        assert 0 <= low <= high <= 1, block
        assert 0 <= value <= 1


@pytest.fixture(scope="module")
def quick_quality(tmp_path_factory: pytest.TempPathFactory,
                  shared_data: Path) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("quality") / "quality.json"
    quality.main(["--quick", "--out", str(out)])
    return dict(json.loads(out.read_text()))


def test_quality_quick_writes_every_section(quick_quality: dict[str, Any]) -> None:
    q = quick_quality
    for key in ("date", "commit", "machine", "load_average_start", "load_average_end"):
        assert key in q
    assert all(_finite(v) for v in q["load_average_start"] + q["load_average_end"])
    assert q["mode"] == "quick" and q["seeds"] == [0]
    variants = {(r["section"], r["variant"]) for r in q["runs"]}
    for method in ("random", "simclr", "clocs", "acl"):
        assert ("probe", method) in variants
    for name in ("acl-intra", "acl-inter", "acl-simclr-views"):
        assert ("ablation", name) in variants
    assert {("size", "small-random"), ("size", "small-acl")} <= variants
    assert ("federated", "federated-acl") in variants
    assert ("scaling", "acl-real+gan") in variants
    assert {r["variant"] for r in q["finetune"]} == {"acl@10%", "supervised@100%",
                                                     "supervised@10%"}
    summary = q["summary"]
    for name in ("acl vs random", "simclr vs random", "clocs vs random", "acl vs clocs",
                 "acl vs acl-intra", "small-acl vs acl", "federated-acl vs acl"):
        assert set(summary[name]) == {"seeds", "100%", "10%"}, name


def test_quality_quick_scores_are_in_range(quick_quality: dict[str, Any]) -> None:
    data = quick_quality["data"]
    assert data["corpus"]["records"] > data["train"]["records"] > 0
    assert data["small_corpus"]["records"] < data["corpus"]["records"]
    for run in quick_quality["runs"]:
        for setting, block in run["probe"].items():
            for metric in ("auroc", "auprc"):
                assert 0 <= block[metric]["min"] <= block[metric]["mean"] <= block[metric]["max"]
            assert all(c > 0 for c in block["c"])
            assert len(block["c"]) == (1 if setting == "100%" else 2)
        if run["variant"] not in ("random", "small-random"):
            assert run["pretrain"]["samples_seen"] > 0
            assert all(_finite(v) for v in run["pretrain"]["losses"])
    for comparison in quick_quality["summary"].values():
        for setting in ("100%", "10%"):
            low, high = comparison[setting]["auroc_diff_ci"]
            assert -1 <= low <= comparison[setting]["auroc_diff"] <= high <= 1
    for row in quick_quality["finetune"]:
        _check_scores(row)


def test_equal_budget(quick_quality: dict[str, Any]) -> None:
    """Every pretrained encoder of the probe section sees the same number of samples."""
    seen = {r["pretrain"]["samples_seen"] for r in quick_quality["runs"]
            if r["section"] in ("probe", "ablation") and r["variant"] != "random"}
    assert len(seen) == 1


def test_speed_bare_epoch_and_rounds() -> None:
    cohort = speed._pooled(4)
    model = speed.build_model(speed.EncoderConfig(size="tiny"), seed=0)
    seconds, aug, seen = speed.bare_epoch(model, cohort, "acl", 8, torch.device("cpu"), 0)
    assert seen == len(cohort) and 0 < aug < seconds
    rounds = speed.measure_rounds({"device": "cpu", "encoder": "tiny", "records": 4,
                                   "site_records": 3, "rounds": 4})
    assert len(rounds["rss_mib"]) == 4 and all(v > 0 for v in rounds["rss_mib"])
    assert _finite(rounds["slope_mib_per_round"])


def test_speed_verdicts_compare_against_targets() -> None:
    results = {"step": {"acl": {"ratio": 0.9, "augmentation_share": 0.01}},
               "federation": {"ratio": 1.1}, "main_job": {"ratio": 1.2},
               "rounds": {"slope_mib_per_round": 0.5}}
    v = speed.verdicts(results)
    assert [v[k]["pass"] for k in speed.TARGETS] == [False, True, True, False, False]
    del results["federation"], results["main_job"]
    v = speed.verdicts(results)
    assert v["federated_vs_centralized_wall_ratio"]["pass"] is None
    assert v["main_job_vs_pooled_wall_ratio"]["pass"] is None


def test_round_breakdown_splits_the_exchange_into_compute_and_waiting() -> None:
    rounds = [{"round": 0, "wall_seconds": 0.0, "clients": [], "timing": {"probe_s": 1.0}}] + [
        {"round": r, "wall_seconds": 3.0, "clients": [{"seconds": 2.0}, {"seconds": 2.0}],
         "timing": {"exchange_s": 2.9, "aggregation_s": 0.1, "probe_s": 0.5, "write_s": 0.01}}
        for r in (1, 2, 3)]
    b = speed.round_breakdown({"rounds": rounds}, slots=2)
    assert b == {"site_compute_s": 2.0, "waiting_s": 0.9, "aggregation_s": 0.1,
                 "critical_path_s": 3.0, "probe_s_beside": 0.5,
                 "checkpoint_audit_s_beside": 0.01}


def test_scale_summary_fits_round_time_and_memory_slope() -> None:
    def arm(rounds: int, sites: int, mib: float) -> dict[str, Any]:
        per_round = [{"round": r, "wall_s": 0.2 + 0.1 * sites, "sites": sites,
                      "driver_rss_mib": 500.0, "ray_pss_mib": mib + 0.01 * r}
                     for r in range(rounds + 1)]
        return {"rounds": rounds, "per_round": per_round}

    summary = scale.summarize(arm(30, 5, 900.0), [arm(8, 10, 900.0), arm(8, 20, 900.0)])
    assert summary["memory_slope_mib_per_round"] == pytest.approx(0.01)
    assert summary["round_s_fit"]["per_site_s"] == pytest.approx(0.1)
    assert summary["round_time_linear_r2"] == pytest.approx(1.0)
    assert summary["round_s_median_by_sampled_sites"] == {5: 0.7, 10: 1.2, 20: 2.2}
    verdicts = scale.verdicts(summary)
    assert verdicts["memory_slope_mib_per_round"]["pass"] is True
    assert verdicts["round_time_linear_r2"]["pass"] is True


def test_scale_quick_runs_the_simulation_it_measures(tmp_path: Path, shared_data: Path) -> None:
    """8 sites x 6 rounds and the two linearity arms: every round recorded, memory sampled
    (a sampler polls the run folder: a fast round can pass unsampled)."""
    out = tmp_path / "scale.json"
    result = scale.main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text())["mode"] == "quick"
    for arm in (result["main"], *result["linearity"]):
        rounds = [r["round"] for r in arm["per_round"]]
        assert rounds == list(range(arm["rounds"] + 1))
        assert all(r["failures"] == 0 for r in arm["per_round"])
        sampled = [r for r in arm["per_round"] if "ray_processes" in r]
        assert sampled and all(r["ray_processes"] > 0 and r["ray_pss_mib"] > 0 for r in sampled)
        assert all(r["sites"] > 0 for r in arm["per_round"][1:])
    assert set(result["targets"]) == {"memory_slope_mib_per_round", "round_time_linear_r2"}
