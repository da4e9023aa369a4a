"""Opt-in secure aggregation: Flower's SecAgg+ under this project's Message-API strategies.

Flower 1.41 ships SecAgg+ as a legacy workflow (``SecAggPlusWorkflow``: it needs a
``LegacyContext``, a legacy ``flwr.server.strategy.Strategy`` and FitIns/FitRes messages), not
as something ``flwr.serverapp.strategy`` strategies can use. :class:`SecureAggregationGrid`
bridges the two: handed to ``Strategy.start`` in place of the grid, it turns each training
round's messages into one run of Flower's own ``SecAggPlusWorkflow`` (four message exchanges:
keys, encrypted key shares, masked weighted arrays, mask shares) and answers the strategy with
one reply per site that completed the protocol: the site's own scalar metrics plus the
unmasked *aggregate* (the weighted mean of the sites' arrays) in place of the site's arrays,
the same hand-off the legacy workflow makes to ``aggregate_fit``. Any strategy that needs only
the weighted mean (FedAvg, FedProx, FedAvgM, FedAdam) therefore ends where it would without
secure aggregation, up to SecAgg+'s quantisation; per-update defences (Krum, medians,
server-side DP clipping) cannot work and are refused by the config. The client side is
``client/secagg.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import cast
from uuid import uuid4

from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MessageType,
    RecordDict,
)
from flwr.common import FitIns, FitRes, Parameters, Scalar, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common.recorddict_compat import arrayrecord_to_parameters
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.serverapp import Grid

from aclecg_core.fed import protocol
from aclecg_core.fed.config import RunSettings
from server.grids import ForwardingGrid

SECAGG_FAILED_CODE = 1002
NOT_UNMASKED = ("secure aggregation stopped: too few sites kept up to rebuild the masks "
                "(secagg-threshold); the round is not aggregated")


class _Relay(LegacyFedAvg):
    """The legacy strategy the workflow drives: it hands out the Message-API strategy's
    training instructions and keeps the unmasked aggregate the workflow hands back."""

    def __init__(self, instructions: list[tuple[ClientProxy, FitIns]]) -> None:
        super().__init__(min_fit_clients=2, min_available_clients=2)
        self.instructions = instructions
        self.aggregate: Parameters | None = None

    def configure_fit(self, server_round: int, parameters: Parameters,
                      client_manager: ClientManager) -> list[tuple[ClientProxy, FitIns]]:
        return self.instructions

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                      failures: list[tuple[ClientProxy, FitRes] | BaseException],
                      ) -> tuple[Parameters | None, dict[str, Scalar]]:
        # SecAgg+ gives every result the same unmasked aggregate as its parameters.
        if results:
            self.aggregate = results[0][1].parameters
        return self.aggregate, {}


def quantization_range(num_sites: int) -> int:
    """The finest SecAgg+ quantisation whose sum over ``num_sites`` sites cannot wrap around
    Flower's 2**32 modulus (and whose values fit its int32 rounding): 2**30 for 2-3 sites,
    2**22 (Flower's default) for 1000."""
    return 2 ** min(30, 32 - math.ceil(math.log2(num_sites + 1)))


def build_workflow(run: RunSettings, num_sites: int) -> SecAggPlusWorkflow:
    """Flower's SecAgg+ server workflow with the run's settings for ``num_sites`` sites."""
    return SecAggPlusWorkflow(num_shares=run.secagg_shares,
                              reconstruction_threshold=run.secagg_threshold,
                              max_weight=run.secagg_max_weight,
                              clipping_range=run.secagg_clipping_range,
                              quantization_range=quantization_range(num_sites),
                              timeout=run.round_timeout)


class SecureAggregationGrid(ForwardingGrid):
    """``grid`` with each training round run as SecAgg+ (everything else passes through)."""

    def __init__(self, grid: Grid, run: RunSettings) -> None:
        super().__init__(grid)
        self.settings = run
        self.stage_replies: list[list[Message]] = []

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        if any(RECORD_KEY_CONFIGS in m.content.config_records for m in messages):
            replies = list(self.grid.send_and_receive(messages, timeout=timeout))
            self.stage_replies.append(replies)  # one protocol stage, sent by the workflow
            return replies
        if not messages or messages[0].metadata.message_type != MessageType.TRAIN:
            return self.grid.send_and_receive(messages, timeout=timeout)
        return self._secure_round(messages)

    def _secure_round(self, messages: list[Message]) -> list[Message]:
        """One training round as SecAgg+; a reply per site that completed it (the aggregate
        and its metrics) or failed in it (its error). Sites that never answered are absent."""
        for msg in messages:  # never pushed: give them ids as a grid does, for the replies
            if not msg.metadata.message_id:
                msg.metadata.__dict__["_message_id"] = str(uuid4())
        by_node = {m.metadata.dst_node_id: m for m in messages}
        keys = list(messages[0].content.array_records[protocol.ARRAYS].keys())
        relay = _Relay([(GridClientProxy(nid, self.grid, self.run.run_id), _fit_ins(m, keys))
                        for nid, m in by_node.items()])
        server_round = int(cast(int, messages[0].content.config_records[protocol.CONFIG]
                                [protocol.SERVER_ROUND_KEY]))
        context = LegacyContext(Context(run_id=self.run.run_id, node_id=0, node_config={},
                                        state=RecordDict(), run_config={}), strategy=relay)
        context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
            {WorkflowKey.CURRENT_ROUND: server_round})
        context.state.array_records[MAIN_PARAMS_RECORD] = ArrayRecord()
        self.stage_replies = []
        build_workflow(self.settings, len(by_node))(self, context)
        return self._replies(by_node, keys, relay.aggregate)

    def _replies(self, by_node: dict[int, Message], keys: list[str],
                 aggregate: Parameters | None) -> list[Message]:
        """A site whose masked model is in the sum gets the aggregate and its own metrics; a
        site that failed in a stage gets its error; when the round could not be unmasked, the
        sites that answered its last stage get that reason. Sites that fell silent get no
        reply (the strategy reports them as not answering within the round timeout)."""
        stages = self.stage_replies
        masked = {r.metadata.src_node_id: r for r in (stages[2] if len(stages) > 2 else [])
                  if not r.has_error()}
        errors: dict[int, Error] = {}
        for stage in stages:
            for reply in stage:
                if reply.has_error():
                    errors.setdefault(reply.metadata.src_node_id, reply.error)
        out = [Message(error, reply_to=by_node[n]) for n, error in errors.items()
               if n not in masked]
        if aggregate is None:
            last = {r.metadata.src_node_id for r in (stages[-1] if stages else [])
                    if not r.has_error()}
            return out + [Message(Error(SECAGG_FAILED_CODE, NOT_UNMASKED), reply_to=by_node[n])
                          for n in sorted(last)]
        arrays = ArrayRecord({k: Array(v) for k, v in
                              zip(keys, parameters_to_ndarrays(aggregate), strict=True)})
        for node, reply in masked.items():
            content = RecordDict({protocol.ARRAYS: arrays, **{
                name: record for name, record in reply.content.items()
                if name in (protocol.METRICS, protocol.SITE_STATS)}})
            out.append(Message(content, reply_to=by_node[node]))
        return out


def _fit_ins(msg: Message, keys: list[str]) -> FitIns:
    """The legacy training instruction for ``msg``: its arrays and config, plus the names."""
    config = dict(msg.content.config_records[protocol.CONFIG])
    config[protocol.ARRAY_NAMES_KEY] = keys
    return FitIns(arrayrecord_to_parameters(msg.content.array_records[protocol.ARRAYS], True),
                  cast(dict, config))
