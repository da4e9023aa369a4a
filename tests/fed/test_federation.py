"""Flower apps without the simulation engine: aggregation, message audit, failing sites."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.supercore.task_identity import TaskIdentity

from aclecg_core.fed.arrays import select_keys, to_numpy
from aclecg_core.fed.config import FederationConfig, load_config, read_pyproject_defaults
from aclecg_core.fed.disclosure import TRAINING_METRICS, suppress_small
from aclecg_core.fed.sites import ensure_synthetic_cohort
from aclecg_core.fed.training import initial_model, train_instructions
from client.app import train as client_train
from server.app import build_strategy, client_entry, failure_entry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def task_identity() -> Iterator[None]:
    """Messages can only be built inside a task (the simulation engine sets this)."""
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


@pytest.fixture(scope="module")
def run_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | int]:
    tmp = tmp_path_factory.mktemp("fed")
    yaml = tmp / "sites.yaml"
    yaml.write_text(f"cohort:\n  sites: 2\n  records-per-site: 6\n  cache-dir: {tmp}/cache\n")
    return {"config-file": str(yaml), "batch-size": 4}


@pytest.fixture(scope="module")
def cfg(run_config: dict[str, str | int]) -> FederationConfig:
    return load_config(run_config, ROOT)


def _reply(arrays: dict[str, np.ndarray], n: int, site: int) -> Message:
    content = RecordDict({
        "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
        "metrics": MetricRecord({"num-examples": n, "site-index": site, "loss": 1.0}),
    })
    return Message(content=content, dst_node_id=site, message_type=MessageType.TRAIN)


def _train_message(cfg: FederationConfig, server_round: int = 1) -> Message:
    arrays = select_keys(to_numpy(initial_model(cfg).state_dict()), cfg.run.aggregate)
    content = RecordDict({
        "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
        "config": ConfigRecord(train_instructions(cfg, server_round=server_round).encode()),
    })
    return Message(content=content, dst_node_id=1, message_type=MessageType.TRAIN)


def _context(node_config: dict[str, bool | float | int | str],
             run_config: dict[str, bool | float | int | str] | None = None) -> Context:
    return Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(),
                   run_config=run_config or {})


def test_fedavg_weighted_mean_keeps_integer_dtypes(cfg: FederationConfig) -> None:
    template: dict[str, np.ndarray] = {"encoder.w": np.zeros(2, np.float32),
                                       "encoder.n": np.zeros((), np.int64)}
    seen: list[tuple[int, int, int]] = []
    strategy = build_strategy(
        cfg, template, lambda r, replies, silent: seen.append((r, len(replies), len(silent))))
    replies = [
        _reply({"encoder.w": np.array([5, 6], np.float32), "encoder.n": np.array(4)}, 3, 2),
        _reply({"encoder.w": np.array([1, 2], np.float32), "encoder.n": np.array(3)}, 1, 1),
    ]
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert arrays is not None and metrics is not None
    out = {k: v.numpy() for k, v in arrays.items()}
    np.testing.assert_allclose(out["encoder.w"], [4.0, 5.0])  # (1*[1,2] + 3*[5,6]) / 4
    assert out["encoder.w"].dtype == np.float32
    assert out["encoder.n"].dtype == np.int64 and int(out["encoder.n"]) == 4  # rint(3.75)
    assert seen == [(1, 2, 0)]


def test_reply_under_the_deployment_default_reveals_arrays_and_training_scalars_only(
        cfg: FederationConfig) -> None:
    """A real reply of a deployed site (node config ``data-dir``) under the pyproject defaults."""
    defaults = load_config(read_pyproject_defaults(ROOT / "pyproject.toml"), ROOT)
    assert not defaults.run.share_site_stats
    site_dir = ensure_synthetic_cohort(cfg) / "site1"
    reply = client_train(_train_message(cfg), _context({"data-dir": str(site_dir),
                                                         "site-index": 1}))
    assert not reply.has_error(), reply.error
    content = reply.content
    assert set(content.keys()) == {"arrays", "metrics"}
    assert not content.config_records
    model_state = initial_model(cfg).state_dict()
    arrays = content.array_records["arrays"]
    assert list(arrays) == list(select_keys(model_state, cfg.run.aggregate))
    metrics = content.metric_records["metrics"]
    n_windows = int(cast(int, metrics["num-examples"]))
    for key, array in arrays.items():
        assert tuple(array.shape) == tuple(model_state[key].shape)
        assert n_windows not in array.shape  # nothing per-sample
    assert set(metrics) == set(TRAINING_METRICS)
    assert all(isinstance(v, int | float) for v in metrics.values())
    client, site = client_entry(reply)
    assert client["site"] == "site1" and site["windows"] == n_windows
    assert site["records"] is None and site["fs"] is None and site["label_counts"] == {}


def test_site_stats_leave_only_when_asked_with_small_counts_suppressed(
        cfg: FederationConfig, run_config: dict[str, str | int]) -> None:
    asked = replace(cfg, run=replace(cfg.run, share_site_stats=True))
    reply = client_train(_train_message(asked), _context({"partition-id": 0,
                                                           "num-partitions": 2}, run_config))
    assert not reply.has_error(), reply.error
    stats = reply.content.config_records["site-stats"]
    assert stats["records"] == 6 and stats["fs"] == 100.0
    counts = {k: v for k, v in stats.items() if k.startswith("label-count/")}
    assert counts and all(v == 0 or v == "<5" or (isinstance(v, int) and v >= 5)
                          for v in counts.values())
    _, site = client_entry(reply)
    assert site["records"] == 6 and "<5" in site["label_counts"].values()


def test_small_counts_are_suppressed() -> None:
    assert [suppress_small(n) for n in (0, 1, 4, 5, 17)] == [0, "<5", "<5", 5, 17]


def test_failing_site_answers_with_an_error_and_aggregation_continues(
        cfg: FederationConfig, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-site"
    bad = client_train(_train_message(cfg), _context({"data-dir": str(missing), "site-index": 7}))
    assert bad.has_error()
    failure = failure_entry(bad)
    assert failure["site"] == "site7" and "DataError" in failure["error"]
    assert str(missing) in failure["error"]

    template = {"encoder.w": np.zeros(1, np.float32)}
    log: list[list[Message]] = []
    strategy = build_strategy(cfg, template, lambda r, replies, silent: log.append(replies))
    error_reply = Message(error=Error(code=1, reason=bad.error.reason), reply_to=_reply(
        {"encoder.w": np.zeros(1, np.float32)}, 1, 7))
    good = _reply({"encoder.w": np.array([2.0], np.float32)}, 5, 1)
    arrays, _ = strategy.aggregate_train(1, [error_reply, good])
    assert arrays is not None and float(arrays["encoder.w"].numpy()[0]) == 2.0
    assert [m.has_error() for m in log[0]] == [False, True]


def test_a_node_the_superlink_reports_unreachable_counts_once(cfg: FederationConfig) -> None:
    template = {"encoder.w": np.zeros(1, np.float32)}
    silent: list[list[int]] = []
    strategy = build_strategy(cfg, template, lambda r, replies, s: silent.append(s))
    sent = [_reply(template, 1, node) for node in (5, 6)]
    for k, message in enumerate(sent):
        message.metadata.__dict__["_message_id"] = f"m{k}"  # as the grid sets it when pushing
    strategy.sent = sent
    good = Message(content=_reply({"encoder.w": np.ones(1, np.float32)}, 2, 5).content,
                   reply_to=sent[0])
    unreachable = Message(error=Error(code=1, reason="Node Unavailable"), reply_to=sent[1])
    unreachable.metadata.__dict__["_src_node_id"] = 1  # written by the SuperLink, not node 6
    strategy.aggregate_train(1, [good, unreachable])
    assert silent == [[]]  # node 6 answered (with an error): not also "no reply"
