"""The server's round bookkeeping without Flower: the probe (data loaded once), a round's
record and its console lines."""

from __future__ import annotations

import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import aclecg_core.fed.probe as probe_module
from aclecg_core.fed.arrays import to_numpy
from aclecg_core.fed.config import FederationConfig, load_config
from aclecg_core.fed.evidence import write_evidence
from aclecg_core.fed.probe import ProbeCohorts, ServerProbe
from aclecg_core.fed.roundlog import failure_lines, round_line
from aclecg_core.fed.roundrecord import RoundRecord
from aclecg_core.fed.rundir import RunFolder
from aclecg_core.fed.training import initial_model

ROOT = Path(__file__).resolve().parents[2]


def test_the_probe_loads_its_data_once_and_probes_the_rounds_asked_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    yaml = tmp_path / "sites.yaml"
    yaml.write_text(f"cohort:\n  sites: 2\n  records-per-site: 8\n  cache-dir: {tmp_path}/c\n"
                    "probe:\n  test-fraction: 0.5\n  val-fraction: 0.5\n")
    cfg = load_config({"config-file": str(yaml), "eval-every": 3, "num-server-rounds": 7,
                       "seed": 3}, ROOT)
    loads: list[ProbeCohorts] = []

    real = probe_module.load_probe_cohorts

    def counted(cfg: FederationConfig) -> ProbeCohorts:
        loads.append(real(cfg))
        return loads[-1]

    monkeypatch.setattr(probe_module, "load_probe_cohorts", counted)
    probe = ServerProbe(cfg)
    first = probe.cohorts()
    assert probe.cohorts() is first and len(loads) == 1
    assert first.classes and not ({r.patient_id for r in first.train.records}
                                  & {r.patient_id for r in first.test.records})
    for part in (first.train, first.val, first.test):  # whole records, as aclecg probe's
        assert part.preprocessing == {**cfg.preprocessing, "stride_s": None}
        assert np.bincount(part.window_record).min() >= 2  # 5 s windows of >= 10 s records
    assert [r for r in range(8) if probe.due(r)] == [0, 3, 6, 7]
    assert not probe.lacks_round0(0) and probe.lacks_round0(1)


def test_rounds_are_probed_on_a_fixed_share_of_a_reference_hold_out(tmp_path: Path) -> None:
    """probe.holdout-records: the hold-out site has that many records with the reference case
    mix; probe.round-records: every round sees the same share of each part of them."""
    yaml = tmp_path / "sites.yaml"
    yaml.write_text(f"cohort:\n  sites: 2\n  records-per-site: 4\n  cache-dir: {tmp_path}/c\n"
                    "probe:\n  holdout-records: 60\n  round-records: 30\n  val-fraction: 0.4\n")
    cfg = load_config({"config-file": str(yaml), "seed": 1}, ROOT)
    assert cfg.synthetic_dir().name == "seed-0-2x4+ref60"
    probe = ServerProbe(cfg)
    full, rounds = probe.cohorts(), probe.round_cohorts()
    assert full.records == 60 and rounds is probe.round_cohorts()
    labels = full.train.record_label_matrix(full.classes)
    assert labels[:, 1:].mean() > 0.08  # every abnormal class at ~13 %, not the sites' 3-10 %
    for part, share in zip((full.train, full.val, full.test),
                           (rounds.train, rounds.val, rounds.test), strict=True):
        ids = {r.record_id for r in share.records}
        assert ids <= {r.record_id for r in part.records}
        assert len(ids) == round(len(part.records) / 2)
    assert full.subset(0, 1) is full and full.subset(60, 1) is full


def test_the_whole_hold_out_probes_round_0_the_best_and_the_final_encoder(
        tmp_path: Path) -> None:
    """A run folder written as the server writes it (no Flower): round 1 is the best by the
    rounds' validation score; the evidence pairs each later encoder with round 0 on all the
    test records, and the region probe of the final encoder with round 0's."""
    yaml = tmp_path / "sites.yaml"
    yaml.write_text(f"cohort:\n  sites: 2\n  records-per-site: 4\n  cache-dir: {tmp_path}/c\n"
                    "probe:\n  holdout-records: 60\n  round-records: 30\n  val-fraction: 0.4\n"
                    "  bootstrap: 20\n")
    cfg = load_config({"config-file": str(yaml), "seed": 1, "num-server-rounds": 2,
                       "device": "cpu"}, ROOT)
    folder = RunFolder.create(tmp_path / "run", cfg)
    state, rng = to_numpy(initial_model(cfg).state_dict()), np.random.default_rng(0)
    for r, val in enumerate((0.5, 0.9, 0.7)):
        folder.finish_round(r, state, 1.0, [], [], {"macro_auroc": 0.6, "val_auroc": val})
        state = {k: v + 0.05 * rng.standard_normal(v.shape).astype(v.dtype)
                 if v.dtype.kind == "f" else v for k, v in state.items()}
    holdout, regions = write_evidence(cfg, folder.path, ServerProbe(cfg))
    assert holdout is not None
    assert json.loads(json.dumps(holdout)) == json.loads((folder.path / "holdout.json").read_text())
    assert [(e["names"], e["round"]) for e in holdout["encoders"]] == [
        (["round 0"], 0), (["best"], 1), (["final"], 2)]
    n_test = holdout["n_test"]
    assert holdout["round_records"]["n_test"] < n_test == regions.n_test
    assert sum(holdout["positives"].values()) >= n_test  # every test record has a label
    first, *later = holdout["encoders"]
    assert first["vs_round0"] is None and len({e["macro_auroc"] for e in later}) == 2
    for e in later:
        assert e["vs_round0"]["n_test"] == n_test and e["vs_round0"]["auroc_b"] == \
            pytest.approx(first["macro_auroc"])
    saved = json.loads((folder.path / "regions.json").read_text())
    assert saved["round"] == 2 and saved["round0"]["n_test"] == n_test
    assert len(saved["vs_round0"]["auroc_diff"]) == len(saved["regions"])


def test_a_round_record_holds_the_entries_and_the_exchange() -> None:
    record = RoundRecord.asked([3, 1, 2], sent_sha256="abc", secure_aggregation=False)
    record.answer({"site": "site1", "loss": 1.0}, {"site": "site1", "records": None}, 1, "d1")
    record.fail({"site": "site2", "error": "DataError: no records"})
    record.no_reply([3], round_timeout=30.0)
    assert [c["site"] for c in record.clients] == ["site1"] and len(record.sites) == 1
    assert record.failures == [{"site": "site2", "error": "DataError: no records"},
                               {"site": "node-3", "error": "no reply within round-timeout "
                                                           "(30 s)"}]
    ex = record.exchange
    assert ex.asked == ["node-1", "node-2", "node-3"] and ex.sent_sha256 == "abc"
    assert ex.answered == [{"site": "site1", "node": 1, "arrays_sha256": "d1"}]
    assert ex.failed == record.failures
    assert RoundRecord().exchange.asked == []  # round 0: nothing exchanged


def test_round_lines() -> None:
    clients = [{"site": "site1", "loss": 1.23456}, {"site": "site2", "loss": 2.0}]
    probe = {"macro_auroc": 0.61234, "auroc_ci": [0.5, 0.7], "c": 0.01,
             "vs_round0": {"auroc_diff": 0.05, "auroc_diff_ci": [-0.01, 0.1]}}
    assert round_line(3, 5, clients, 12.345, probe) == (
        "[aclecg] round 3/5  loss site1=1.235 site2=2.000  probe AUROC 0.612 [0.500, 0.700] "
        "C=0.01 vs round 0 +0.050 [-0.010, +0.100]  12.3 s")
    assert round_line(0, 5, [], 1.0, {**probe, "vs_round0": None}) == (
        "[aclecg] round 0/5  loss -  probe AUROC 0.612 [0.500, 0.700] C=0.01  1.0 s")
    assert round_line(2, 5, clients[:1], 0.04, None) == (
        "[aclecg] round 2/5  loss site1=1.235  probe AUROC -  0.0 s")
    assert failure_lines(2, [{"site": "site2", "error": "no data"}]) == [
        "[aclecg] round 2: site2 failed: no data"]


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread niceness is Linux's")
def test_the_probe_thread_yields_the_cpu_and_only_it() -> None:
    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = niceness()
    with ThreadPoolExecutor(1, initializer=probe_module.yield_cpu_to_training) as worker:
        assert worker.submit(niceness).result() == max(before, probe_module.PROBE_NICENESS)
    assert niceness() == before
