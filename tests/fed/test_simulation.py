"""End to end: a 2-site simulation with a tiny encoder, and resume equality."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from aclecg_core.fed.audit import verify_run
from aclecg_core.method.checkpoint import load_checkpoint
from simulation.run import simulate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("sim")
    yaml = tmp / "sites.yaml"
    yaml.write_text(f"cohort:\n  sites: 2\n  records-per-site: 6\n  cache-dir: {tmp}/cache\n"
                    "probe:\n  test-fraction: 0.5\n  bootstrap: 10\n")
    return {"config-file": str(yaml), "batch-size": 4, "encoder": "tiny", "seed": 3,
            "num-server-rounds": 2}


@pytest.fixture(scope="module")
def full_run(base: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate({**base, "run-dir": str(tmp_path_factory.mktemp("runs") / "full")})


def test_simulation_writes_the_run_folder(full_run: Path) -> None:
    metrics = json.loads((full_run / "metrics.json").read_text())
    assert metrics["run"]["status"] == "finished" and metrics["final_round"] == 2
    assert [r["round"] for r in metrics["rounds"]] == [0, 1, 2]
    for r in metrics["rounds"][1:]:
        assert sorted(c["site"] for c in r["clients"]) == ["site1", "site2"]
        assert r["failures"] == [] and r["probe"]["n_test"] > 0
    assert [s["site"] for s in metrics["sites"]] == ["site1", "site2"]
    assert metrics["best"]["round"] in (0, 1, 2)
    for name in ("round-0000", "round-0001", "round-0002", "best", "final"):
        state, meta = load_checkpoint(full_run / "checkpoints" / name)
        assert any(k.startswith("encoder.") for k in state) and "config" in meta
    assert json.loads((full_run / "config.json").read_text())["run"]["num-server-rounds"] == 2
    assert (full_run / "report.md").is_file() and (full_run / "report.html").is_file()
    audit = verify_run(full_run)
    assert audit.verified and audit.rounds == 3, audit.problems
    lines = [json.loads(line) for line in (full_run / "audit.jsonl").read_text().splitlines()]
    round2 = next(e for e in lines if e.get("round") == 2)
    assert [a["site"] for a in round2["sites_answered"]] == ["site1", "site2"]
    assert all(len(a["arrays_sha256"]) == 64 for a in round2["sites_answered"])


def test_resumed_run_ends_with_the_same_weights(base: dict[str, Any], full_run: Path,
                                                tmp_path: Path) -> None:
    run_dir = str(tmp_path / "resumed")
    simulate({**base, "run-dir": run_dir, "num-server-rounds": 1})
    simulate({**base, "run-dir": run_dir, "resume": True})
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [0, 1, 2]
    resumed, meta = load_checkpoint(Path(run_dir) / "checkpoints" / "final")
    uninterrupted, _ = load_checkpoint(full_run / "checkpoints" / "final")
    assert meta["round"] == 2 and resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key
    assert verify_run(Path(run_dir)).verified  # the chain continues across the resume
