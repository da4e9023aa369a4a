"""Cyclic weight transfer on the server (``strategy = "cyclic"``): a round's train messages
go out one at a time, in :func:`~aclecg_core.fed.cyclic.visit_order` of the sites' names (asked
once per node with a site-name query), each carrying the arrays of the last accepted reply
before it; the round's model is the last accepted reply's arrays. Nothing is averaged; only
weights, metrics and site names travel."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from logging import INFO, WARNING
from typing import cast

from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from aclecg_core.fed import protocol
from aclecg_core.fed.cyclic import visit_order
from server.grids import ForwardingGrid

Accept = Callable[[Message, Message], bool]  # (reply, the train message it answers)


class CyclicGrid(ForwardingGrid):
    """Sends a round's train messages in turn: each waits for the previous reply (``timeout``
    per site) and carries the arrays of the last reply ``accept`` took; other messages pass
    through unchanged. ``final``: the arrays of the round's last accepted reply (None: none);
    ``sites``: node id -> site name, asked the first time a node is to be visited (a node that
    does not answer is named ``node-<id>``)."""

    def __init__(self, grid: Grid, accept: Accept) -> None:
        super().__init__(grid)
        self.accept = accept
        self.final: ArrayRecord | None = None
        self.sites: dict[int, str] = {}

    def site_names(self, nodes: Iterable[int], timeout: float | None) -> dict[int, str]:
        """``nodes``' site names, asking the nodes not asked before."""
        nodes = list(nodes)
        unknown = [node for node in nodes if node not in self.sites]
        if unknown:
            queries = [Message(RecordDict(), dst_node_id=node,
                               message_type=protocol.SITE_NAME_QUERY) for node in unknown]
            for reply in self.grid.send_and_receive(queries, timeout=timeout):
                record = None if reply.has_error() else \
                    reply.content.config_records.get(protocol.SITE)
                name = None if record is None else record.get(protocol.SITE_NAME_KEY)
                if isinstance(name, str) and name:
                    self.sites[reply.metadata.src_node_id] = name
        for node in unknown:
            if node not in self.sites:
                log(WARNING, "[aclecg] node %d did not answer the site-name query: it is "
                    "visited as node-%d", node, node)
                self.sites[node] = f"node-{node}"
        return {node: self.sites[node] for node in nodes}

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        if not messages or messages[0].metadata.message_type != MessageType.TRAIN:
            return self.grid.send_and_receive(messages, timeout=timeout)
        ins = protocol.TrainInstructions.decode(messages[0].content.config_records[protocol.CONFIG])
        by_node = {m.metadata.dst_node_id: m for m in messages}
        order = visit_order(self.site_names(by_node, timeout), ins.seed, ins.round)
        log(INFO, "[aclecg] round %d visits %s", ins.round,
            " -> ".join(self.sites[node] for node in order))
        self.final, replies = None, []
        for node in order:
            message = by_node[node]
            if self.final is not None:  # its own content: the strategy's messages share one
                message.content = RecordDict({**message.content, protocol.ARRAYS: self.final})
            for reply in self.grid.send_and_receive([message], timeout=timeout):
                replies.append(reply)
                if self.accept(reply, message):
                    self.final = reply.content.array_records[protocol.ARRAYS]
        return replies


class CyclicStrategy(FedAvg):
    """FedAvg's node sampling and metrics; the round's arrays are the chain's last accepted
    reply's (:class:`CyclicGrid`, made by :meth:`chain`)."""

    chained: CyclicGrid | None = None

    def chain(self, grid: Grid, accept: Accept) -> CyclicGrid:
        self.chained = CyclicGrid(grid, accept)
        return self.chained

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if self.chained is None:
            raise RuntimeError("strategy 'cyclic' trains only over the grid of chain()")
        valid = [r.content for r in replies if not r.has_error()]
        if not valid or self.chained.final is None:
            return None, None
        metrics = self.train_metrics_aggr_fn(cast(list[RecordDict], valid),
                                             self.weighted_by_key)
        return self.chained.final, metrics
