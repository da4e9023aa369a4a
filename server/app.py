"""ServerApp: runs the strategy, probes and checkpoints the global encoder after every round.

Thin: configuration, data, run folder and probing live in ``aclecg_core``.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from logging import INFO, WARNING
from pathlib import Path
from typing import Any, cast

import numpy as np
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
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import (
    Bulyan,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    Krum,
    MultiKrum,
    Strategy,
)

from aclecg_core.evaluation.reference import ReferenceProbe
from aclecg_core.fed import protocol
from aclecg_core.fed.arrays import restore_dtypes, select_keys, to_numpy, to_torch
from aclecg_core.fed.audit import RoundExchange, array_digest
from aclecg_core.fed.config import FederationConfig, load_config
from aclecg_core.fed.console import DropMessages, colour_only_on_terminals, filtered
from aclecg_core.fed.disclosure import read_label_counts
from aclecg_core.fed.rounds import (
    aggregate_client_metrics,
    check_round,
    fit_to_federation,
    settled_node_count,
)
from aclecg_core.fed.rundir import RunFolder, default_run_dir
from aclecg_core.fed.sites import ensure_synthetic_cohort, probe_data
from aclecg_core.fed.training import initial_model, train_instructions
from aclecg_core.fed.updates import check_arrays, check_metrics
from aclecg_core.method.checkpoint import CheckpointError
from aclecg_core.method.model import AclEcgModel
from server.dp import DpSettings, wrap_with_dp
from server.secagg import SecureAggregationGrid

APP_DIR = Path(__file__).resolve().parents[1]
REFUSED_CODE = 1003  # the error code of a reply the server refused to aggregate
_SITE_ERROR = re.compile(r"^(site\S*|node-\d+): (.*)$", re.S)

RepliesHook = Callable[[int, list[Message], list[int]], None]


def site_name(index: int) -> str:
    return f"site{index}"


def _arrays_of(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in record.items()}


def _train_metrics(replies: list[RecordDict], weight_key: str) -> MetricRecord:
    """Flower's ``train_metrics_aggr_fn``: only the metrics that aggregate meaningfully."""
    metrics = [cast(dict[str, float], dict(next(iter(r.metric_records.values()))))
               for r in replies]
    return MetricRecord(dict(aggregate_client_metrics(metrics, weight_key).items()))


def build_strategy(cfg: FederationConfig, template: Mapping[str, np.ndarray],
                   on_replies: RepliesHook) -> Strategy:
    """The configured Flower strategy, in the server-side DP wrapper when ``dp`` is on, inside
    a :class:`RecordingStrategy` (replies reported, site order, dtypes of ``template``)."""
    r = cfg.run
    common: dict[str, Any] = dict(fraction_train=r.fraction_train, fraction_evaluate=0.0,
                                  min_train_nodes=r.min_sites, min_evaluate_nodes=0,
                                  min_available_nodes=r.min_sites,
                                  train_metrics_aggr_fn=_train_metrics)
    base: type[FedAvg]
    if r.robust_aggregation != "off":
        base, extra = _robust_strategy(cfg)
        common.update(extra)
    elif r.strategy == "fedprox":
        base, common["proximal_mu"] = FedProx, r.proximal_mu
    elif r.strategy == "fedavgm":
        base = FedAvgM
        common.update(server_learning_rate=r.server_lr, server_momentum=r.server_momentum)
    elif r.strategy == "fedadam":
        base, common["eta"] = FedAdam, r.server_eta
    else:
        base = FedAvg
    dp = DpSettings.from_run_config(cfg.to_dict()["run"])
    # Federated evaluation is off on purpose (the server probes centrally): no warning about it.
    with filtered(logging.getLogger("flwr"), DropMessages("fraction_evaluate is set to 0.0")):
        strategy = base(**common)
    inner = wrap_with_dp(strategy, dp, cfg.sites_per_round())
    return RecordingStrategy(inner, template, on_replies, max_update_ratio=r.max_update_ratio,
                             same_dtypes=not r.secure_aggregation)


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
    arrays back the dtypes of ``template``."""

    def __init__(self, inner: Strategy, template: Mapping[str, np.ndarray],
                 on_replies: RepliesHook, max_update_ratio: float = float("inf"),
                 same_dtypes: bool = True) -> None:
        self.inner, self.template, self.on_replies = inner, template, on_replies
        self.max_update_ratio, self.same_dtypes = max_update_ratio, same_dtypes
        self.sent: list[Message] = []  # this round's train messages (ids set when pushed)
        self.global_arrays: dict[str, np.ndarray] | None = None  # what this round trains from

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.global_arrays = _arrays_of(arrays)
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
        checks = (self.template, self.global_arrays, self.max_update_ratio, self.same_dtypes)
        ordered = sorted((check_reply(m, *checks) for m in replies), key=_reply_order)
        self.on_replies(server_round, ordered, silent)
        arrays, metrics = self.inner.aggregate_train(server_round, ordered)
        if arrays is not None:
            fixed = restore_dtypes(_arrays_of(arrays), self.template)
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


def check_reply(msg: Message, template: Mapping[str, np.ndarray],
                reference: Mapping[str, np.ndarray] | None, max_ratio: float,
                same_dtypes: bool) -> Message:
    """``msg``, or when its training reply cannot be aggregated
    (:mod:`aclecg_core.fed.updates`) an error reply from the same node naming the site and why:
    its arrays never reach the aggregation."""
    if msg.has_error():
        return msg
    metrics = msg.content.metric_records.get(protocol.METRICS)
    record = msg.content.array_records.get(protocol.ARRAYS)
    records = sorted([*msg.content.array_records, *msg.content.metric_records])
    if metrics is None or record is None or len(records) != 2:
        problem: str | None = f"the reply holds records {records}, expected " \
            f"'{protocol.ARRAYS}' and '{protocol.METRICS}' (one each)"
    else:
        problem = check_metrics(dict(metrics)) or check_arrays(
            _arrays_of(record), template, reference, max_ratio, same_dtypes)
    if problem is None:
        return msg
    node = msg.metadata.src_node_id
    index = None if metrics is None else metrics.get("site-index")
    site = site_name(int(index)) if isinstance(index, int | float) and math.isfinite(index) \
        else f"node-{node}"
    instruction = Message(RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
    return Message(Error(code=REFUSED_CODE, reason=f"{site}: update refused: {problem}"),
                   reply_to=instruction)


def _reply_order(msg: Message) -> tuple[int, float]:
    if msg.has_error():
        return (1, msg.metadata.src_node_id)
    metrics = next(iter(msg.content.metric_records.values()))
    return (0, float(cast(float, metrics.get("site-index", msg.metadata.src_node_id))))


def client_entry(msg: Message) -> tuple[dict[str, Any], dict[str, Any]]:
    """(client entry of metrics.json, site entry) from a valid reply; the site's records,
    sampling rate and label counts only if it sent ``site-stats`` (``share-site-stats``)."""
    report = protocol.TrainReport.decode(msg.content.metric_records[protocol.METRICS])
    site = site_name(report.site_index)
    client = {"site": site, "loss": report.loss, "num-examples": report.num_examples,
              "seconds": report.seconds, "samples-per-second": report.samples_per_second}
    stats = cast(dict[str, int | float | str],
                 dict(msg.content.config_records.get(protocol.SITE_STATS, {})))
    info = {"site": site, "records": stats.get("records"), "windows": report.num_examples,
            "fs": stats.get("fs"), "label_counts": read_label_counts(stats)}
    return client, info


def failure_entry(msg: Message) -> dict[str, str]:
    reason = msg.error.reason or f"error code {msg.error.code}"
    match = _SITE_ERROR.match(reason)
    if match:
        return {"site": match.group(1), "error": match.group(2)}
    return {"site": f"node-{msg.metadata.src_node_id}", "error": reason}


class RoundRecorder:
    """Collects each round's replies, probes every ``eval-every`` rounds, writes the run folder."""

    def __init__(self, cfg: FederationConfig, folder: RunFolder, template: dict[str, np.ndarray],
                 offset: int) -> None:
        self.cfg, self.folder, self.template, self.offset = cfg, folder, template, offset
        self.total = cfg.run.num_server_rounds
        self.clients: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.mark = time.perf_counter()
        train, val, test, classes = probe_data(cfg)
        self.prober = ReferenceProbe(train, val, test, classes, seed=cfg.run.seed,
                                     n_bootstrap=cfg.probe.bootstrap)
        self.exchange: RoundExchange | None = None
        self.next_sent: str | None = None  # digest of the arrays the next round sends

    def on_replies(self, server_round: int, replies: list[Message], silent: list[int]) -> None:
        self.clients, self.failures, sites = [], [], []
        secure = self.cfg.run.secure_aggregation  # replies carry the aggregate, not their own
        self.exchange = RoundExchange(
            asked=sorted(f"node-{n}" for n in [m.metadata.src_node_id for m in replies] + silent),
            sent_sha256=self.next_sent, secure_aggregation=secure)
        for msg in replies:
            if msg.has_error():
                self.failures.append(failure_entry(msg))
            else:
                client, info = client_entry(msg)
                self.clients.append(client)
                sites.append(info)
                self.exchange.answered.append({
                    "site": client["site"], "node": msg.metadata.src_node_id,
                    "arrays_sha256": None if secure else array_digest(
                        _arrays_of(msg.content.array_records[protocol.ARRAYS]))})
        self.failures += [{"site": f"node-{n}", "error": "no reply within round-timeout "
                           f"({self.cfg.run.round_timeout:g} s)"} for n in silent]
        self.exchange.failed = list(self.failures)
        self.folder.add_sites(sites)
        check_round(self.offset + server_round, len(self.clients), self.failures)

    def should_probe(self, global_round: int) -> bool:
        every = self.cfg.run.eval_every
        return (global_round == 0 or global_round == self.total
                or (every > 0 and global_round % every == 0))

    def evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """``evaluate_fn`` of ``Strategy.start``: probe, checkpoint, log (global rounds)."""
        global_round = self.offset + server_round
        if server_round == 0 and self.offset > 0:
            self.mark = time.perf_counter()
            self.next_sent = array_digest(_arrays_of(arrays))
            return None  # resumed: this round was finished before
        state = {**self.template, **_arrays_of(arrays)}
        probe = self._probe(global_round, state) if self.should_probe(global_round) else None
        wall = time.perf_counter() - self.mark
        self.folder.finish_round(global_round, state, wall, self.clients, self.failures, probe,
                                 self.exchange)
        self.exchange, self.next_sent = None, array_digest(_arrays_of(arrays))
        self._log(global_round, wall, probe)
        self.clients, self.failures = [], []
        self.mark = time.perf_counter()
        if probe is None:
            return None
        return MetricRecord({"macro-auroc": float(probe["macro_auroc"]),
                             "macro-auprc": float(probe["macro_auprc"])})

    def _model(self, state: Mapping[str, np.ndarray]) -> AclEcgModel:
        model = initial_model(self.cfg)
        model.load_state_dict(to_torch(dict(state)))
        return model

    def _probe(self, global_round: int, state: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """The probe of this round's encoder (C chosen on the server's validation part); after
        round 0 with ``vs_round0``: its paired difference from round 0's random-init encoder."""
        if global_round == 0:
            return {**self.prober.set_reference(self._model(state)).to_dict(), "vs_round0": None}
        if self.prober.reference_scores is None:  # resumed: round 0 was probed by an earlier run
            try:
                self.prober.set_reference(self._model(self.folder.load_round(0)))
            except CheckpointError as exc:
                log(WARNING, "[aclecg] no comparison with round 0: %s", exc)
        result, difference = self.prober.probe(self._model(state))
        return {**result.to_dict(),
                "vs_round0": None if difference is None else difference.to_dict()}

    def _log(self, global_round: int, wall: float, probe: dict[str, Any] | None) -> None:
        losses = " ".join(f"{c['site']}={c['loss']:.3f}" for c in self.clients) or "-"
        auroc = "-" if probe is None else f"{probe['macro_auroc']:.3f} " \
            f"[{probe['auroc_ci'][0]:.3f}, {probe['auroc_ci'][1]:.3f}] C={probe['c']:g}"
        if probe is not None and probe.get("vs_round0"):
            d = probe["vs_round0"]
            auroc += f" vs round 0 {d['auroc_diff']:+.3f} " \
                f"[{d['auroc_diff_ci'][0]:+.3f}, {d['auroc_diff_ci'][1]:+.3f}]"
        log(INFO, "[aclecg] round %d/%d  loss %s  probe AUROC %s  %.1f s", global_round,
            self.total, losses, auroc, wall)
        for f in self.failures:
            log(WARNING, "[aclecg] round %d: %s failed: %s", global_round, f["site"], f["error"])


def run_federation(grid: Grid, cfg: FederationConfig) -> Path:
    """The whole federated run on ``grid``; returns the run folder."""
    nodes = settled_node_count(lambda: len(list(grid.get_node_ids())), cfg.cohort.sites,
                               cfg.run.min_sites)
    fitted = fit_to_federation(cfg, nodes)
    if fitted.cohort.sites != cfg.cohort.sites:
        log(INFO, "[aclecg] the federation has %d nodes: simulating %d sites (cohort.sites "
            "was %d)", nodes, nodes, cfg.cohort.sites)
    cfg = fitted
    if cfg.cohort.source == "synthetic":
        ensure_synthetic_cohort(cfg)
    run_dir = default_run_dir(cfg)
    folder = RunFolder.resume(run_dir, cfg) if cfg.run.resume else RunFolder.create(run_dir, cfg)
    log(INFO, "[aclecg] run folder %s", run_dir)
    try:
        template = to_numpy(initial_model(cfg).state_dict())
        offset = folder.last_round
        state = folder.load_round(offset) if offset > 0 else template
        remaining = cfg.run.num_server_rounds - offset
        if remaining > 0:
            recorder = RoundRecorder(cfg, folder, template, offset)
            global_template = select_keys(template, cfg.run.aggregate)
            strategy = build_strategy(cfg, global_template, recorder.on_replies)
            initial = select_keys(state, cfg.run.aggregate)
            strategy.start(
                grid=SecureAggregationGrid(grid, cfg.run) if cfg.run.secure_aggregation else grid,
                initial_arrays=ArrayRecord({k: Array(v) for k, v in initial.items()}),
                num_rounds=remaining,
                timeout=cfg.run.round_timeout,
                train_config=ConfigRecord(cast(dict[str, Any],
                                               train_instructions(cfg, offset).encode())),
                evaluate_fn=recorder.evaluate,
            )
        folder.finish("finished")
    except BaseException as exc:
        folder.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    _write_region_evidence(cfg, run_dir)
    _write_report(run_dir)
    return run_dir


def _write_region_evidence(cfg: FederationConfig, run_dir: Path) -> None:
    """The per-region probe of the final encoder; a failure costs the report panel, not the run."""
    from aclecg_core.fed.evidence import write_region_evidence

    try:
        result = write_region_evidence(cfg, run_dir)
    except (ValueError, OSError) as exc:
        log(WARNING, "[aclecg] no per-region evidence: %s", exc)
        return
    log(INFO, "[aclecg] per-region probe: best region per class %s", result.best)


def _write_report(run_dir: Path) -> None:
    try:
        from aclecg_core.report import write_report
    except ImportError:
        log(WARNING, "[aclecg] no report writer available; run folder %s", run_dir)
        return
    md, html = write_report(run_dir)
    log(INFO, "[aclecg] report: %s (and %s)", html, md)


def make_app(run_config: Mapping[str, Any] | None = None,
             wrap_grid: Callable[[Grid], Grid] | None = None) -> ServerApp:
    """A ServerApp; ``run_config`` fills keys missing from ``context.run_config`` (used by the
    in-process simulation, whose context carries an empty run config); ``wrap_grid`` wraps the
    grid (the simulation's progress bar)."""
    colour_only_on_terminals(logging.getLogger("flwr"))
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg = load_config({**(run_config or {}), **dict(context.run_config)}, APP_DIR)
        run_federation(wrap_grid(grid) if wrap_grid else grid, cfg)

    return server_app


app = make_app()
