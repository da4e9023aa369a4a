"""The run's Flower strategy: the configured aggregation (FedAvg and its variants, a robust
aggregation, server-side DP) inside a :class:`RecordingStrategy` that checks, reports and orders
the sites' replies."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from logging import INFO
from typing import Any, cast

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    Bulyan,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    Krum,
    MultiKrum,
    Strategy,
)

from aclecg_core.fed.arrays import restore_dtypes
from aclecg_core.fed.config import FederationConfig
from aclecg_core.fed.console import DropMessages, filtered
from aclecg_core.fed.protocol import ARRAYS
from aclecg_core.fed.rounds import aggregate_client_metrics
from server.cyclic import CyclicStrategy
from server.dp import DpSettings, wrap_with_dp
from server.optimiser import GlobalRoundFedAdam, ServerOptimiser
from server.replies import arrays_of, check_reply, reply_order

RepliesHook = Callable[[int, list[Message], list[int]], None]


def _train_metrics(replies: list[RecordDict], weight_key: str) -> MetricRecord:
    """Flower's ``train_metrics_aggr_fn``: only the metrics that aggregate meaningfully."""
    metrics = [cast(dict[str, float], dict(next(iter(r.metric_records.values()))))
               for r in replies]
    return MetricRecord(dict(aggregate_client_metrics(metrics, weight_key).items()))


def build_strategy(cfg: FederationConfig, template: Mapping[str, np.ndarray],
                   on_replies: RepliesHook) -> RecordingStrategy:
    """The configured Flower strategy, in the server-side DP wrapper when ``dp`` is on, inside
    a :class:`RecordingStrategy` (replies reported, site order, dtypes of ``template``, the
    server optimiser's state of FedAvgM and FedAdam). A ``robust-aggregation`` replaces the
    server step of ``fedavg`` and ``fedavgm`` (no server momentum)."""
    r = cfg.run
    common: dict[str, Any] = dict(fraction_train=r.fraction_train, fraction_evaluate=0.0,
                                  min_train_nodes=r.min_sites, min_evaluate_nodes=0,
                                  min_available_nodes=r.min_sites,
                                  train_metrics_aggr_fn=_train_metrics)
    base: type[FedAvg]
    if r.robust_aggregation != "off":
        base, extra = _robust_strategy(cfg)
        common.update(extra)
        if r.strategy != "fedavg":
            log(INFO, "[aclecg] robust-aggregation '%s' replaces the server step of strategy "
                "'%s' (no server momentum)", r.robust_aggregation, r.strategy)
    elif r.strategy == "fedprox":
        base, common["proximal_mu"] = FedProx, r.proximal_mu
    elif r.strategy == "fedavgm":
        base = FedAvgM
        common.update(server_learning_rate=r.server_lr, server_momentum=r.server_momentum)
    elif r.strategy == "fedadam":
        base, common["eta"] = GlobalRoundFedAdam, r.server_eta
    elif r.strategy == "cyclic":
        base = CyclicStrategy
    else:
        base = FedAvg
    dp = DpSettings.from_run(cfg.run)
    # Federated evaluation is off on purpose (the server probes centrally): no warning about it.
    with filtered(logging.getLogger("flwr"), DropMessages("fraction_evaluate is set to 0.0")):
        strategy = base(**common)
    inner = wrap_with_dp(strategy, dp, cfg.sites_per_round())
    optimiser = (ServerOptimiser(strategy, template)
                 if isinstance(strategy, FedAvgM | GlobalRoundFedAdam) else None)
    return RecordingStrategy(inner, template, on_replies, max_update_ratio=r.max_update_ratio,
                             same_dtypes=not r.secure_aggregation, optimiser=optimiser)


def _robust_strategy(cfg: FederationConfig) -> tuple[type[FedAvg], dict[str, Any]]:
    """Flower's strategy for ``robust-aggregation`` and its own arguments."""
    r = cfg.run
    byzantine = {"num_malicious_nodes": r.robust_byzantine_sites}
    if r.robust_aggregation == "median":
        return FedMedian, {}
    if r.robust_aggregation == "trimmed-mean":
        return FedTrimmedAvg, {"beta": r.robust_trim_fraction}
    if r.robust_aggregation == "krum":
        return Krum, byzantine
    if r.robust_aggregation == "multi-krum":
        keep = max(1, cfg.sites_per_round() - r.robust_byzantine_sites)
        return MultiKrum, {**byzantine, "num_nodes_to_select": keep}
    return Bulyan, byzantine


class RecordingStrategy(Strategy):
    """Wraps ``inner`` to (1) refuse the replies that fail :func:`check_reply` (each becomes an
    error reply naming the site and the reason: a failure of the round), (2) report every
    round's replies, errors included, and the nodes that did not answer (before a DP wrapper
    may skip the round), (3) aggregate in a fixed (site) order and (4) give the aggregated
    arrays back the dtypes of ``template``; ``optimiser``: the state of the server optimiser
    inside ``inner``, if it keeps one. A reply is checked against the arrays its train message
    carried (the round's global model; in a cyclic round, the previous site's)."""

    def __init__(self, inner: Strategy, template: Mapping[str, np.ndarray],
                 on_replies: RepliesHook, max_update_ratio: float = float("inf"),
                 same_dtypes: bool = True, optimiser: ServerOptimiser | None = None) -> None:
        self.inner, self.template, self.on_replies = inner, template, on_replies
        self.max_update_ratio, self.same_dtypes = max_update_ratio, same_dtypes
        self.optimiser = optimiser
        self.sent: list[Message] = []  # this round's train messages (ids set when pushed)
        self.global_arrays: dict[str, np.ndarray] | None = None  # what this round trains from
        self.global_record: ArrayRecord | None = None  # the same, as configure_train got it

    def check(self, reply: Message, sent: Message | None = None) -> Message:
        """``reply``, or the error reply that refuses it (:func:`check_reply`) against the
        arrays of ``sent``, the train message it answers (None: the round's global arrays)."""
        record = None if sent is None else sent.content.array_records.get(ARRAYS)
        reference = self.global_arrays if record is None or record is self.global_record \
            else arrays_of(record)
        return check_reply(reply, self.template, reference, self.max_update_ratio,
                           self.same_dtypes)

    def accepts(self, reply: Message, sent: Message) -> bool:
        """Whether :meth:`check` takes ``reply`` (a cyclic round chains only such replies)."""
        return not self.check(reply, sent).has_error()

    def server_state(self) -> dict[str, np.ndarray] | None:
        """The server optimiser's state after the last round; None if the strategy keeps none."""
        return None if self.optimiser is None else self.optimiser.state()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.global_arrays, self.global_record = arrays_of(arrays), arrays
        if self.optimiser is not None:
            self.optimiser.sent(arrays)
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self.sent = messages
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        # A reply names its node by the message it answers: an error the SuperLink writes for
        # an unreachable node comes from the SuperLink's own node id.
        node_of = {m.metadata.message_id: m.metadata.dst_node_id for m in self.sent}
        answered = {node_of.get(m.metadata.reply_to_message_id, m.metadata.src_node_id)
                    for m in replies}
        silent = [m.metadata.dst_node_id for m in self.sent
                  if m.metadata.dst_node_id not in answered]
        sent = {m.metadata.message_id: m for m in self.sent}
        ordered = sorted((self.check(m, sent.get(m.metadata.reply_to_message_id))
                          for m in replies), key=reply_order)
        self.on_replies(server_round, ordered, silent)
        arrays, metrics = self.inner.aggregate_train(server_round, ordered)
        if arrays is not None:
            fixed = restore_dtypes(arrays_of(arrays), self.template)
            arrays = ArrayRecord({k: Array(v) for k, v in fixed.items()})
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.inner.summary()
