"""Cyclic weight transfer (strategy ``cyclic``): the visiting order, the chain of a round over a
grid, and what cannot be combined with it."""

from __future__ import annotations

import json
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
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid

from aclecg_core.fed import protocol
from aclecg_core.fed.arrays import select_keys, to_numpy
from aclecg_core.fed.config import load_config
from aclecg_core.fed.cyclic import visit_order
from aclecg_core.fed.probe import ServerProbe
from aclecg_core.fed.rundir import RunFolder
from aclecg_core.fed.training import initial_model, train_instructions
from aclecg_core.settings import ConfigError
from client.app import make_client_app
from server.cyclic import CyclicStrategy
from server.recorder import RoundRecorder
from server.strategy import RecordingStrategy, build_strategy

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("task_identity")


def test_visit_order_is_a_seeded_permutation_of_the_sites() -> None:
    names = ["Georgia", "CPSC", "PTB-XL-0", "Ningbo", "CODE-15%"]
    sites = dict(zip([40, 7, 13, 99, 2], names, strict=True))
    order = visit_order(sites, seed=3, global_round=1)
    assert sorted(order) == sorted(sites)
    assert visit_order(dict(reversed(sites.items())), 3, 1) == order  # not how they came
    other_run = dict(zip([5, 81, 3, 12, 60], names, strict=True))  # new node ids, same sites
    assert [other_run[n] for n in visit_order(other_run, 3, 1)] == [sites[n] for n in order]
    assert len({tuple(visit_order(sites, 3, r)) for r in range(1, 9)}) > 1  # rounds differ
    assert len({tuple(visit_order(sites, seed, 1)) for seed in range(8)}) > 1  # seeds too
    twins = visit_order({4: "same", 1: "same", 9: "a"}, 0, 1)  # one name twice: by node id
    assert sorted(twins) == [1, 4, 9]


@pytest.mark.parametrize(("node_config", "name"), [
    ({"partition-id": 2, "num-partitions": 4}, "site3"),
    ({"site": "hospital-b", "data-dir": "/srv/ecg"}, "hospital-b"),
    ({"site-index": 5, "data-dir": "/srv/ecg"}, "site5"),
])
def test_a_site_answers_the_site_name_query(node_config: dict[str, int | str],
                                            name: str) -> None:
    query = Message(RecordDict(), dst_node_id=7, message_type=protocol.SITE_NAME_QUERY)
    query.metadata.__dict__["_message_id"] = "q7"  # as when pushed
    reply = make_client_app()(query, Context(run_id=1, node_id=7, node_config=node_config,
                                             state=RecordDict(), run_config={}))
    assert not reply.has_error(), reply.error
    assert reply.content.config_records[protocol.SITE][protocol.SITE_NAME_KEY] == name


NAMES = {1: "e", 2: "d", 3: "c", 5: "a"}  # node 4 does not answer the site-name query


class _ChainGrid:
    """A grid whose nodes answer at once: a site-name query with :data:`NAMES` (node 4 with an
    error); a train message: node 2 with an error, node 3 with NaN weights, the others with the
    arrays they were sent plus 0.01 × their node id."""

    def __init__(self, nodes: list[int]) -> None:
        self.nodes, self.calls, self.queried, self.carried = nodes, 0, [], []

    def get_node_ids(self) -> list[int]:
        return self.nodes

    def send_and_receive(self, messages: list[Message], *,
                         timeout: float | None = None) -> list[Message]:
        self.calls += 1
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            message.metadata.__dict__["_message_id"] = f"m{node}"  # as when pushed
            if message.metadata.message_type == protocol.SITE_NAME_QUERY:
                self.queried.append(node)
                replies.append(Message(Error(code=1, reason="no query handler"),
                                       reply_to=message) if node not in NAMES else
                               Message(RecordDict({protocol.SITE: ConfigRecord(
                                   {protocol.SITE_NAME_KEY: NAMES[node]})}), reply_to=message))
                continue
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

    assert sorted(grid.queried) == [1, 2, 3, 4, 5]  # each node's site name asked at once
    assert chain.sites == {**NAMES, 4: "node-4"}
    order = visit_order(chain.sites, 3, 1)
    assert [node for node, _ in grid.carried] == order and grid.calls == 6  # one at a time
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


def test_a_cyclic_grid_asks_each_node_its_site_name_once() -> None:
    grid = _ChainGrid([1, 4, 5])
    chain = CyclicStrategy().chain(cast(Grid, grid), lambda reply, sent: True)
    assert chain.site_names([5, 4], timeout=1.0) == {5: "a", 4: "node-4"}
    assert chain.site_names([1, 4, 5], timeout=1.0) == {1: "e", 4: "node-4", 5: "a"}
    assert sorted(grid.queried) == [1, 4, 5] and grid.calls == 2


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
