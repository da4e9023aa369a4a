"""Cyclic weight transfer (strategy ``cyclic``): the visiting order, the chain of a round over a
grid, and what cannot be combined with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from aclecg_core.fed.arrays import select_keys, to_numpy
from aclecg_core.fed.config import load_config
from aclecg_core.fed.cyclic import visit_order
from aclecg_core.fed.probe import ServerProbe
from aclecg_core.fed.rundir import RunFolder
from aclecg_core.fed.training import initial_model, train_instructions
from aclecg_core.settings import ConfigError
from server.cyclic import CyclicStrategy
from server.recorder import RoundRecorder
from server.strategy import RecordingStrategy, build_strategy

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("task_identity")


def test_visit_order_is_a_seeded_permutation_of_the_nodes() -> None:
    nodes = [40, 7, 13, 99, 2]
    order = visit_order(nodes, seed=3, global_round=1)
    assert sorted(order) == sorted(nodes)
    assert visit_order(reversed(nodes), 3, 1) == order  # the node ids, not how they came
    assert len({tuple(visit_order(nodes, 3, r)) for r in range(1, 9)}) > 1  # rounds differ
    assert len({tuple(visit_order(nodes, seed, 1)) for seed in range(8)}) > 1  # seeds too


class _ChainGrid:
    """A grid whose nodes answer at once: node 2 with an error, node 3 with NaN weights, the
    others with the arrays they were sent plus 0.01 × their node id."""

    def __init__(self, nodes: list[int]) -> None:
        self.nodes, self.calls, self.carried = nodes, 0, []

    def get_node_ids(self) -> list[int]:
        return self.nodes

    def send_and_receive(self, messages: list[Message], *,
                         timeout: float | None = None) -> list[Message]:
        self.calls += 1
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            message.metadata.__dict__["_message_id"] = f"m{node}"  # as when pushed
            sent = {k: v.numpy() for k, v in message.content.array_records["arrays"].items()}
            self.carried.append((node, sent))
            if node == 2:
                replies.append(Message(Error(code=1, reason="site2: DataError: no records"),
                                       reply_to=message))
                continue
            shift = np.nan if node == 3 else 0.01 * node
            arrays = {k: (v + shift).astype(v.dtype) for k, v in sent.items()}
            content = RecordDict({
                "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
                "metrics": MetricRecord({"num-examples": 4, "site-index": node, "loss": 1.0,
                                         "seconds": 1.0, "samples-per-second": 4.0})})
            replies.append(Message(content, reply_to=message))
        return replies


def test_a_cyclic_round_chains_the_accepted_replies(tmp_path: Path) -> None:
    yaml = tmp_path / "sites.yaml"
    yaml.write_text(f"cohort:\n  sites: 2\n  records-per-site: 8\n  cache-dir: {tmp_path}/c\n"
                    "probe:\n  test-fraction: 0.5\n  val-fraction: 0.5\n  bootstrap: 10\n")
    cfg = load_config({"config-file": str(yaml), "eval-every": 0, "num-server-rounds": 5,
                       "seed": 3, "strategy": "cyclic"}, ROOT)
    template = to_numpy(initial_model(cfg).state_dict())
    recorder = RoundRecorder(cfg, RunFolder.create(tmp_path / "run", cfg), template, 0,
                             ServerProbe(cfg))
    glob = select_keys(template, cfg.run.aggregate)
    strategy = build_strategy(cfg, glob, recorder.on_replies)
    assert isinstance(strategy.inner, CyclicStrategy) and strategy.optimiser is None
    arrays = ArrayRecord({k: Array(v) for k, v in glob.items()})
    recorder.evaluate(0, arrays)
    grid = _ChainGrid([1, 2, 3, 4, 5])
    chain = strategy.inner.chain(cast(Grid, grid), strategy.accepts)
    config = ConfigRecord(train_instructions(cfg, server_round=1).encode())
    sent = list(strategy.configure_train(1, arrays, config, cast(Grid, grid)))
    replies = list(chain.send_and_receive(sent, timeout=5.0))

    order = visit_order([1, 2, 3, 4, 5], 3, 1)
    assert [node for node, _ in grid.carried] == order and grid.calls == 5  # one at a time
    expected, good = dict(glob), []
    for node, carried in grid.carried:  # each site starts from the last accepted reply
        for key, value in expected.items():
            np.testing.assert_array_equal(carried[key], value)
        if node not in (2, 3):
            expected = {k: (v + 0.01 * node).astype(v.dtype) for k, v in expected.items()}
            good.append(node)
    for node, carried in grid.carried:  # each message still holds what its site was sent
        message = next(m for m in sent if m.metadata.dst_node_id == node)
        for key, value in carried.items():
            np.testing.assert_array_equal(
                message.content.array_records["arrays"][key].numpy(), value)
    aggregated, metrics = strategy.aggregate_train(1, replies)
    assert aggregated is not None and metrics is not None
    for key, value in expected.items():  # the round's model: the last accepted reply's arrays
        np.testing.assert_array_equal(aggregated[key].numpy(), value)
    recorder.evaluate(1, aggregated)
    recorder.close()
    round1 = json.loads((recorder.folder.path / "metrics.json").read_text())["rounds"][1]
    assert [c["site"] for c in round1["clients"]] == [f"site{n}" for n in sorted(good)]
    failed = {f["site"]: f["error"] for f in round1["failures"]}
    assert set(failed) == {"site2", "site3"} and failed["site2"] == "DataError: no records"
    assert failed["site3"].startswith("update refused: non-finite values in encoder.")


def test_other_messages_pass_a_cyclic_grid_unchanged() -> None:
    grid = _ChainGrid([1])
    strategy = CyclicStrategy()
    chain = strategy.chain(cast(Grid, grid), lambda reply, sent: True)
    assert list(chain.send_and_receive([], timeout=1.0)) == []
    assert grid.calls == 1 and chain.final is None
    with pytest.raises(RuntimeError, match="grid of chain"):
        CyclicStrategy().aggregate_train(1, [])


@pytest.mark.parametrize(("extra", "problem"), [
    ({"secure-aggregation": True}, "cannot be combined with secure-aggregation or dp"),
    ({"dp": "fixed"}, "cannot be combined with secure-aggregation or dp"),
    ({"robust-aggregation": "median"}, "cannot be combined with strategy 'cyclic'"),
])
def test_cyclic_refuses_what_needs_a_sum_or_a_mean(extra: dict[str, object],
                                                    problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config({"strategy": "cyclic", "config-file": "", **extra}, ROOT)


def test_recording_strategy_checks_a_reply_against_what_its_message_carried() -> None:
    template = {"encoder.w": np.ones(4, np.float32)}
    cfg = load_config({"config-file": "", "strategy": "cyclic"}, ROOT)
    strategy = cast(RecordingStrategy, build_strategy(cfg, template, lambda *a: None))
    strategy.global_arrays = template
    far = {"encoder.w": np.full(4, 50.0, np.float32)}
    message = Message(RecordDict({"arrays": ArrayRecord({"encoder.w": Array(far["encoder.w"])}),
                                  "config": ConfigRecord()}), dst_node_id=1,
                      message_type="train")
    message.metadata.__dict__["_message_id"] = "m1"
    content = RecordDict({
        "arrays": ArrayRecord({"encoder.w": Array(np.full(4, 51.0, np.float32))}),
        "metrics": MetricRecord({"num-examples": 4, "site-index": 1, "loss": 1.0,
                                 "seconds": 1.0, "samples-per-second": 4.0})})
    reply = Message(content, reply_to=message)
    assert strategy.accepts(reply, message)  # 51 from 50: a small step from what it was sent
    assert strategy.check(reply).has_error()  # from the round's global model (1): too far
