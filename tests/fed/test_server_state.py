"""The server optimiser's state (FedAvgM's momentum, FedAdam's moments) in the run folder: a run
resumed from a round's checkpoint and state file ends exactly as an uninterrupted one."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid

from aclecg_core.fed.audit import verify_run
from aclecg_core.fed.config import ConfigError, FederationConfig, load_config
from aclecg_core.fed.rundir import RunFolder
from aclecg_core.method.checkpoint import CheckpointError
from server.replies import arrays_of
from server.strategy import RecordingStrategy, build_strategy

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE: dict[str, np.ndarray] = {"encoder.w": np.arange(1, 7, dtype=np.float32).reshape(2, 3),
                                   "encoder.n": np.array([5], np.int64)}  # an integer buffer

pytestmark = pytest.mark.usefixtures("task_identity")


class _Nodes:
    """What FedAvg's node sampling asks of a grid."""

    def get_node_ids(self) -> list[int]:
        return [1, 2]


def _config(tmp_path: Path, strategy: str) -> FederationConfig:
    yaml = tmp_path / "sites.yaml"
    yaml.write_text("cohort:\n  sites: 2\n")
    return load_config({"config-file": str(yaml), "strategy": strategy, "num-server-rounds": 4},
                       ROOT)


def _reply(sent: dict[str, np.ndarray], global_round: int, site: int) -> Message:
    """Site ``site``'s update of ``sent`` in ``global_round``: a fixed random step."""
    rng = np.random.default_rng([global_round, site])
    step = rng.normal(scale=0.5, size=(2, 3)).astype(np.float32)
    arrays = {"encoder.w": sent["encoder.w"] + step,
              "encoder.n": np.asarray(sent["encoder.n"] + site)}
    content = RecordDict({
        "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
        "metrics": MetricRecord({"num-examples": 2 * site + 1, "site-index": site, "loss": 1.0,
                                 "seconds": 1.0, "samples-per-second": 1.0}),
    })
    return Message(content=content, dst_node_id=site, message_type=MessageType.TRAIN)


def _rounds(strategy: RecordingStrategy, arrays: ArrayRecord, rounds: range,
            folder: RunFolder | None = None) -> ArrayRecord:
    """Global ``rounds`` of one ``Strategy.start`` (Flower counts them from 1), each written
    to ``folder`` with the server optimiser's state when given."""
    for local, global_round in enumerate(rounds, start=1):
        list(strategy.configure_train(local, arrays, ConfigRecord(), cast(Grid, _Nodes())))
        sent = arrays_of(arrays)
        aggregated, _ = strategy.aggregate_train(
            local, [_reply(sent, global_round, site) for site in (1, 2)])
        assert aggregated is not None
        arrays = aggregated
        if folder is not None:
            folder.finish_round(global_round, arrays_of(arrays), 1.0, [], [], None,
                                server_state=strategy.server_state())
    return arrays


def _start(cfg: FederationConfig) -> tuple[RecordingStrategy, ArrayRecord]:
    strategy = build_strategy(cfg, TEMPLATE, lambda *_: None)
    return strategy, ArrayRecord({k: Array(v) for k, v in TEMPLATE.items()})


@pytest.mark.parametrize("name", ["fedavgm", "fedadam"])
def test_a_run_resumed_after_round_2_ends_with_the_weights_of_an_uninterrupted_one(
        tmp_path: Path, name: str) -> None:
    cfg = _config(tmp_path, name)
    strategy, start = _start(cfg)
    uninterrupted = arrays_of(_rounds(strategy, start, range(1, 5)))

    folder = RunFolder.create(tmp_path / "run", cfg)
    folder.finish_round(0, dict(TEMPLATE), 1.0, [], [], None)
    strategy, start = _start(cfg)
    _rounds(strategy, start, range(1, 3), folder)  # then the server stops

    resumed = RunFolder.resume(folder.path, cfg)
    state = ArrayRecord({k: Array(v) for k, v in resumed.load_round(2).items()})
    strategy, _ = _start(cfg)
    assert strategy.optimiser is not None
    strategy.optimiser.restore(resumed.load_server_state(2), state, 2)
    final = arrays_of(_rounds(strategy, state, range(3, 5), resumed))
    for key, value in uninterrupted.items():
        assert value.dtype == final[key].dtype and np.array_equal(value, final[key]), key
    audit = verify_run(folder.path)  # the state files are in the audit trail
    assert audit.verified and audit.rounds == 5, audit.problems

    strategy, _ = _start(cfg)  # the same resume without the optimiser's state ends elsewhere
    forgetful = arrays_of(_rounds(strategy, state, range(3, 5)))
    assert not np.array_equal(forgetful["encoder.w"], uninterrupted["encoder.w"])


def test_a_resume_without_the_state_file_names_it(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "fedavgm")
    folder = RunFolder.create(tmp_path / "run", cfg)
    folder.finish_round(0, dict(TEMPLATE), 1.0, [], [], None)
    strategy, start = _start(cfg)
    _rounds(strategy, start, range(1, 2), folder)
    state_file = folder.checkpoints / "round-0001.server-opt.safetensors"
    state_file.unlink()  # as in a run folder written before the state was saved
    with pytest.raises(ConfigError, match=r"cannot resume .*server optimiser state not found: "
                       rf"{state_file}; strategy 'fedavgm' continues exactly only from"):
        RunFolder.resume(folder.path, cfg).load_server_state(1)
    assert "round 1: checkpoints/round-0001.server-opt.safetensors is missing" in \
        verify_run(folder.path).problems


def test_a_state_file_of_another_model_is_refused(tmp_path: Path) -> None:
    strategy, start = _start(_config(tmp_path, "fedavgm"))
    assert strategy.optimiser is not None
    with pytest.raises(CheckpointError, match=r"state after round 3 does not fit the model"):
        strategy.optimiser.restore({"momentum/encoder.w": np.zeros((2, 3), np.float32)}, start, 3)


def test_strategies_without_a_server_optimiser_keep_no_state(tmp_path: Path) -> None:
    for name in ("fedavg", "fedprox"):
        strategy, _ = _start(_config(tmp_path, name))
        assert strategy.optimiser is None and strategy.server_state() is None
