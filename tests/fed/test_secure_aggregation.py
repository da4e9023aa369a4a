"""Secure aggregation (SecAgg+) in a simulation: a site that drops out within the threshold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from aclecg_core.fed.arrays import select_keys, to_numpy
from aclecg_core.fed.audit import verify_run
from aclecg_core.fed.config import load_config
from aclecg_core.fed.sites import ensure_synthetic_cohort, simulated_site
from aclecg_core.fed.training import initial_model, train_instructions, train_site
from aclecg_core.method.checkpoint import load_checkpoint
from server.secagg import quantization_range
from simulation.run import simulate

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_a_site_dropping_out_within_the_threshold_leaves_the_fedavg_of_the_others(
        tmp_path: Path) -> None:
    yaml = tmp_path / "sites.yaml"
    yaml.write_text(f"cohort:\n  sites: 3\n  records-per-site: 8\n  cache-dir: {tmp_path}/cache\n"
                    "probe:\n  test-fraction: 0.5\n  val-fraction: 0.5\n  bootstrap: 10\n")
    settings = {"config-file": str(yaml), "batch-size": 4, "encoder": "tiny", "seed": 3,
                "num-server-rounds": 1, "secure-aggregation": True,
                "run-dir": str(tmp_path / "run")}
    cfg = load_config(settings, ROOT)
    shutil.rmtree(ensure_synthetic_cohort(cfg) / "site3")  # site3 fails in the training stage
    run_dir = simulate(settings)

    metrics = json.loads((run_dir / "metrics.json").read_text())
    (round1,) = [r for r in metrics["rounds"] if r["round"] == 1]
    assert [c["site"] for c in round1["clients"]] == ["site1", "site2"]
    assert [f["site"] for f in round1["failures"]] == ["site3"]
    assert "site3: no such file or folder" in round1["failures"][0]["error"]

    start = select_keys(to_numpy(initial_model(cfg).state_dict()), cfg.run.aggregate)
    updates = [train_site(train_instructions(cfg, server_round=1), simulated_site(cfg, i, 3),
                          start, site=i + 1) for i in (0, 1)]
    weights = [float(u.report.num_examples) for u in updates]
    state, _ = load_checkpoint(run_dir / "checkpoints" / "final")
    secure = select_keys(to_numpy(state), cfg.run.aggregate)
    # SecAgg+ rounds each weighted value to a step of 2 x clipping range / levels, and the
    # division by the summed weight ratio (sum of num-examples / secagg-max-weight) scales it.
    step = 2 * 8.0 / quantization_range(3) * 10000.0 / sum(weights)
    for key, value in secure.items():
        fedavg = sum(w * u.arrays[key] for w, u in zip(weights, updates, strict=True))
        fedavg = fedavg / sum(weights)
        np.testing.assert_allclose(value, fedavg, rtol=0, atol=3 * step + 1e-6, err_msg=key)

    audit = verify_run(run_dir)
    assert audit.verified, audit.problems
    lines = [json.loads(x) for x in (run_dir / "audit.jsonl").read_text().splitlines()]
    entry = next(e for e in lines if e.get("round") == 1)
    assert entry["secure_aggregation"] is True
    assert [a["arrays_sha256"] for a in entry["sites_answered"]] == [None, None]
