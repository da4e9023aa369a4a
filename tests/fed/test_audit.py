"""Audit trail: hash chain, re-hashing of checkpoints, tampering caught, `aclecg audit`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aclecg_cli.main import main as aclecg
from aclecg_core.fed.arrays import select_keys, to_numpy
from aclecg_core.fed.audit import (
    GENESIS,
    RoundExchange,
    array_digest,
    sha256_bytes,
    verify_run,
)
from aclecg_core.fed.config import FederationConfig, load_config
from aclecg_core.fed.rundir import RunFolder
from aclecg_core.fed.training import initial_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A two-round run folder written the way the server writes it (no Flower involved)."""
    cfg: FederationConfig = load_config({"num-server-rounds": 2}, ROOT)
    folder = RunFolder.create(tmp_path / "run", cfg)
    state = to_numpy(initial_model(cfg).state_dict())
    folder.finish_round(0, state, 1.0, [], [], None)
    for r in (1, 2):
        sent = array_digest(select_keys(state, cfg.run.aggregate))
        state = {k: v + 0.01 if v.dtype.kind == "f" else v for k, v in state.items()}
        exchange = RoundExchange(asked=["node-7", "node-9"], sent_sha256=sent,
                                 answered=[{"site": "site1", "node": 7, "arrays_sha256": "ab"}],
                                 failed=[{"site": "node-9", "error": "no reply"}])
        folder.finish_round(r, state, 1.0, [], [], None, exchange)
    folder.finish("finished")
    return folder.path


def _lines(run_dir: Path) -> list[bytes]:
    return (run_dir / "audit.jsonl").read_bytes().splitlines()


def test_every_line_carries_the_hash_of_the_line_before(run_dir: Path) -> None:
    lines = _lines(run_dir)
    entries = [json.loads(line) for line in lines]
    assert [e["event"] for e in entries] == ["start", "round", "round", "round", "finish"]
    assert entries[0]["prev"] == GENESIS
    for before, entry in zip(lines, entries[1:], strict=False):
        assert entry["prev"] == sha256_bytes(before)
    round1 = entries[2]
    assert round1["round"] == 1 and round1["time"].endswith("+00:00")
    assert round1["sites_asked"] == ["node-7", "node-9"]
    assert round1["sites_failed"] == [{"site": "node-9", "error": "no reply"}]
    assert round1["global_sent_sha256"] == entries[1]["aggregate_sha256"]
    assert set(round1["checkpoint"]) == {"round-0001.safetensors", "round-0001.json"}
    assert len(round1["config_sha256"]) == 64 and "source-sha256" in round1["code"]
    result = verify_run(run_dir)
    assert result.verified and result.rounds == 3 and result.head == sha256_bytes(lines[-1])


def test_a_changed_checkpoint_is_caught_with_its_round_and_file(run_dir: Path) -> None:
    tensors = run_dir / "checkpoints" / "round-0001.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 0xFF
    tensors.write_bytes(bytes(data))
    problems = verify_run(run_dir).problems
    assert any(p.startswith("round 1: checkpoints/round-0001.safetensors differs")
               for p in problems), problems


def test_a_changed_line_is_caught(run_dir: Path) -> None:
    lines = _lines(run_dir)
    entry = json.loads(lines[2])
    entry["sites_failed"] = []  # hide the failure of round 1
    lines[2] = json.dumps(entry, sort_keys=True).encode()
    (run_dir / "audit.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    problems = verify_run(run_dir).problems
    assert problems and "line 4 (round 2)" in problems[0] and "line 3 was changed" in problems[0]


def test_a_removed_round_and_a_swapped_final_checkpoint_are_caught(run_dir: Path) -> None:
    lines = _lines(run_dir)
    (run_dir / "audit.jsonl").write_bytes(b"\n".join(lines[:2] + lines[3:]) + b"\n")
    for suffix in (".safetensors", ".json"):
        (run_dir / "checkpoints" / f"final{suffix}").write_bytes(
            (run_dir / "checkpoints" / f"round-0000{suffix}").read_bytes() + b" ")
    problems = verify_run(run_dir).problems
    assert any("line 3 (round 2)" in p for p in problems)
    assert "checkpoints/round-0001.safetensors is not in the audit trail" in problems
    assert "checkpoints/final.safetensors matches no audited round" in problems
    assert any("round 2: the global arrays sent are not round 1's" in p for p in problems)


def test_aclecg_audit_command(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert aclecg(["audit", str(run_dir)]) == 0
    assert capsys.readouterr().out.startswith("verified:")
    (run_dir / "checkpoints" / "round-0002.json").write_text("{}\n")
    assert aclecg(["audit", str(run_dir)]) == 1
    out = capsys.readouterr().out
    assert "NOT verified" in out and "round 2: checkpoints/round-0002.json differs" in out


def test_array_digest_ignores_key_order_but_not_dtype() -> None:
    a = {"x": np.arange(3, dtype=np.float32), "y": np.ones(2)}
    assert array_digest(a) == array_digest(dict(reversed(list(a.items()))))
    assert array_digest(a) != array_digest({**a, "x": a["x"].astype(np.float64)})


def test_a_run_stopped_in_round_1_resumes_from_round_0_with_a_recorded_lr_change(
        tmp_path: Path) -> None:
    cfg = load_config({"lr": 100000.0}, ROOT)
    folder = RunFolder.create(tmp_path / "run", cfg)
    folder.finish_round(0, to_numpy(initial_model(cfg).state_dict()), 1.0, [], [], None)
    folder.finish("failed", error="FederationError: round 1: no site succeeded")
    finish = json.loads(_lines(folder.path)[-1])
    assert finish["status"] == "failed" and finish["error"].endswith("no site succeeded")
    resumed = RunFolder.resume(folder.path, load_config({"lr": 0.001}, ROOT))
    assert resumed.last_round == 0 and resumed.metrics["rounds"] == []
    assert resumed.metrics["run"]["changes"] == [{"after_round": 0,
                                                  "changed": {"lr": [100000.0, 0.001]}}]
    assert "error" not in resumed.metrics["run"]
