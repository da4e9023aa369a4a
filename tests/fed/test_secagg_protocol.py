"""SecAgg+ in-process (no simulation engine): the grid and the client mod around a toy handler.

Every site's "model" is one array; the real Flower workflow and client mod run in between, so
the sum, the dropouts at each stage and the error replies are checked in milliseconds.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
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
from flwr.clientapp import ClientApp
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from aclecg_core.fed.config import RunSettings
from client.secagg import secure_aggregation_mod
from server.secagg import NOT_UNMASKED, SecureAggregationGrid, quantization_range

WEIGHTS = {1: 4, 2: 6, 3: 10}  # node id -> num-examples
VALUES = {1: 0.5, 2: -1.0, 3: 2.0}  # node id -> every entry of its array
FAILING = 99  # a node whose training fails

toy = ClientApp()


@toy.train(mods=[secure_aggregation_mod])
def toy_train(msg: Message, context: Context) -> Message:
    node = context.node_id
    if node == FAILING:
        return Message(Error(1001, f"site{node}: DataError: no records"), reply_to=msg)
    received = msg.content.array_records["arrays"]["w"].numpy()
    assert msg.content.config_records["config"]["server-round"] == 1
    content = RecordDict({
        "arrays": ArrayRecord({"w": Array(received * 0 + np.float32(VALUES[node]))}),
        "metrics": MetricRecord({"num-examples": WEIGHTS.get(node, 1), "site-index": node,
                                 "loss": 1.0}),
    })
    return Message(content, reply_to=msg)


class ToyGrid(Grid):
    """Delivers each message to the toy ClientApp of its node; ``silent`` (node, stage) pairs
    never answer (stage "" = a plain message)."""

    def __init__(self, nodes: list[int], silent: Iterable[tuple[int, str]] = ()) -> None:
        self.contexts = {n: Context(run_id=1, node_id=n, node_config={}, state=RecordDict(),
                                    run_config={}) for n in nodes}
        self.silent = set(silent)
        self._run = Run.create_empty(1)

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id=dst_node_id, message_type=message_type)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError  # the workflow only uses send_and_receive

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        replies = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            configs = msg.content.config_records.get(RECORD_KEY_CONFIGS, {})
            if (node, str(configs.get(Key.STAGE, ""))) not in self.silent:
                # a copy, as over the network (the workflow sends one content to all nodes)
                replies.append(toy(copy.deepcopy(msg), self.contexts[node]))
        return replies

pytestmark = pytest.mark.usefixtures("task_identity")


def _round(grid: ToyGrid, settings: RunSettings | None = None) -> dict[int, Message]:
    secure = SecureAggregationGrid(grid, settings or RunSettings(secure_aggregation=True))
    messages = [Message(RecordDict({
        "arrays": ArrayRecord({"w": Array(np.zeros(4, np.float32))}),
        "config": ConfigRecord({"server-round": 1}),
    }), dst_node_id=n, message_type=MessageType.TRAIN) for n in grid.contexts]
    return {r.metadata.src_node_id: r for r in secure.send_and_receive(messages)}


def _mean(nodes: list[int]) -> float:
    return sum(WEIGHTS[n] * VALUES[n] for n in nodes) / sum(WEIGHTS[n] for n in nodes)


def _tolerance(nodes: list[int]) -> float:
    """Stochastic rounding: under one step of 2 x clipping range / levels per site, divided
    by the summed weight ratio (sum of num-examples / max-weight); one step of margin."""
    step = 2 * 8.0 / quantization_range(3) * 10000.0 / sum(WEIGHTS[n] for n in nodes)
    return (len(nodes) + 1) * step


def test_the_server_gets_the_weighted_mean_and_each_site_its_own_metrics() -> None:
    replies = _round(ToyGrid([1, 2, 3]))
    assert sorted(replies) == [1, 2, 3] and not any(r.has_error() for r in replies.values())
    for node, reply in replies.items():
        w = reply.content.array_records["arrays"]["w"].numpy()
        np.testing.assert_allclose(w, _mean([1, 2, 3]), atol=_tolerance([1, 2, 3]))
        assert reply.content.metric_records["metrics"]["site-index"] == node


@pytest.mark.parametrize("stage", ["collect_masked_vectors", "unmask"])
def test_one_site_dropping_out_within_the_threshold(stage: str) -> None:
    replies = _round(ToyGrid([1, 2, 3], silent=[(3, stage)]))
    # Dropped before sending its masked model: left out. After it: its model is in the sum.
    counted = [1, 2] if stage == "collect_masked_vectors" else [1, 2, 3]
    assert sorted(replies) == counted
    for reply in replies.values():
        np.testing.assert_allclose(reply.content.array_records["arrays"]["w"].numpy(),
                                   _mean(counted), atol=_tolerance(counted))


def test_a_failing_site_keeps_its_error_and_the_others_are_aggregated() -> None:
    replies = _round(ToyGrid([1, 2, FAILING]))
    assert replies[FAILING].has_error()
    assert replies[FAILING].error.reason == f"site{FAILING}: DataError: no records"
    np.testing.assert_allclose(replies[1].content.array_records["arrays"]["w"].numpy(),
                               _mean([1, 2]), atol=_tolerance([1, 2]))


def test_too_many_dropouts_stop_the_round_with_a_reason() -> None:
    replies = _round(ToyGrid([1, 2, 3], silent=[(2, "share_keys"), (3, "share_keys")]))
    assert list(replies) == [1]  # the silent sites are left to the round timeout
    assert replies[1].has_error() and replies[1].error.reason == NOT_UNMASKED


def test_an_update_outside_the_clipping_range_fails_the_site_instead_of_being_clipped() -> None:
    settings = RunSettings(secure_aggregation=True, secagg_clipping_range=1.0,
                           secagg_max_weight=10.0)
    replies = _round(ToyGrid([1, 2, 3]), settings)
    reason = replies[3].error.reason  # 2.0 * 10 / 10 > 1
    assert reason.startswith("site3: SecureAggregationError:") and "secagg-clipping-range" in reason
    assert not replies[1].has_error()


def test_plain_messages_pass_the_mod_untouched() -> None:
    grid = ToyGrid([1])
    msg = Message(RecordDict({"arrays": ArrayRecord({"w": Array(np.zeros(2, np.float32))}),
                              "config": ConfigRecord({"server-round": 1})}),
                  dst_node_id=1, message_type=MessageType.TRAIN)
    (reply,) = grid.send_and_receive([msg])
    assert set(reply.content.keys()) == {"arrays", "metrics"}
    assert float(cast(float, reply.content.array_records["arrays"]["w"].numpy()[0])) == 0.5


def test_a_site_that_requires_secure_aggregation_refuses_plain_rounds() -> None:
    grid = ToyGrid([1, 2])
    grid.contexts[1].node_config.update({"require-secure-aggregation": True, "site": "site1"})
    msg = Message(RecordDict({"arrays": ArrayRecord({"w": Array(np.zeros(2, np.float32))}),
                              "config": ConfigRecord({"server-round": 1})}),
                  dst_node_id=1, message_type=MessageType.TRAIN)
    (reply,) = grid.send_and_receive([msg])
    assert reply.has_error() and reply.error.reason.startswith("site1: refused:")
    replies = _round(grid)  # and takes part in a secure round
    assert not replies[1].has_error()
