"""The federated pretraining loop of the quality benchmark and of the validation study (issue 21).

An in-process federation that runs the product's own code on both sides: the server is
:func:`server.strategy.build_strategy` (Flower's FedAvg / FedAvgM / FedAdam / FedProx inside the
project's :class:`~server.strategy.RecordingStrategy`, exactly what the ServerApp starts), driven
round by round through ``configure_train`` and ``aggregate_train``; every site decodes its train
message and calls :func:`aclecg_core.fed.training.train_site` as the ClientApp does, keeping its
non-aggregated arrays (and, with ``keep_optimizer_state``, its optimizer state) between rounds
as the ClientApp keeps them in its context state. Only the transport is left out (no Flower
simulation, no Ray): one process, sites trained in turn.

The sites are the corpus's source hospitals (:func:`aclecg_core.fed.partition.partition_by_site`:
PTB-XL recording sites, CinC hospitals, CODE-15 sources); sites with fewer than
``min_site_records`` records train as one pooled site so that every record is trained on.
``rounds × local_epochs`` = the pooled run's epochs: every window is seen as often as pooled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any, cast

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords
from flwr.supercore.task_identity import TaskIdentity

from aclecg_core.data.cohort import Cohort
from aclecg_core.fed import protocol
from aclecg_core.fed.arrays import restore_dtypes, select_keys, to_numpy, to_torch
from aclecg_core.fed.config import FederationConfig, load_config
from aclecg_core.fed.partition import partition_by_site
from aclecg_core.fed.training import initial_model, train_instructions, train_site
from aclecg_core.method.model import AclEcgModel
from aclecg_core.method.pretrain import PretrainConfig, pretrain
from benchmarks.common import ROOT
from server.cyclic import CyclicStrategy
from server.replies import arrays_of
from server.strategy import build_strategy


@dataclass(frozen=True)
class FedSettings:
    """One federated configuration (run-config keys in snake_case; ``docs/federation.md``).

    ``local_epochs`` must divide the pooled epochs: rounds = epochs / local_epochs.
    """

    strategy: str = "fedavg"  # fedavg, fedavgm, fedadam, fedprox, cyclic (server/strategy.py)
    server_lr: float = 1.0  # fedavgm
    server_momentum: float = 0.0  # fedavgm
    server_eta: float = 0.01  # fedadam
    proximal_mu: float = 0.0  # fedprox
    local_epochs: int = 1
    batch_size: int = 64
    lr: float = 1e-3
    aggregate: str = "encoder+projectors"  # or "encoder": the projectors stay at each site
    min_site_records: int = 16
    keep_optimizer_state: bool = False  # each site continues its own AdamW across rounds
    # Benchmark-only prototypes (issue 21), not product options:
    share_optimizer_state: bool = False  # every site starts from the sites' mean AdamW state
    round_parts: int = 1  # a local epoch spread over this many rounds (disjoint record parts)
    normalize_steps: bool = False  # FedNova: each site's update divided by its local steps

    def rounds(self, epochs: int) -> int:
        if epochs % self.local_epochs:
            raise ValueError(f"local_epochs {self.local_epochs} does not divide {epochs} epochs")
        if self.round_parts > 1 and self.local_epochs != 1:
            raise ValueError("round_parts > 1 needs local_epochs 1")
        return epochs // self.local_epochs * self.round_parts


CHOSEN = FedSettings(strategy="cyclic")  # chosen on fold 9 (tune.py; FedAvgM 0.5 before)


def run_config(s: FedSettings, encoder: str, epochs: int, seed: int,
               device: str) -> FederationConfig:
    """The run config of ``s`` (the product's keys; no config file)."""
    return load_config({
        "config-file": "", "encoder": encoder, "method": "acl", "seed": seed, "device": device,
        "min-sites": 1, "num-server-rounds": s.rounds(epochs), "local-epochs": s.local_epochs,
        "batch-size": s.batch_size, "lr": s.lr, "strategy": s.strategy,
        "server-lr": s.server_lr, "server-momentum": s.server_momentum,
        "server-eta": s.server_eta, "proximal-mu": s.proximal_mu,
        "aggregate": s.aggregate,
        "keep-optimizer-state": s.keep_optimizer_state or s.share_optimizer_state}, ROOT)


def corpus_sites(corpus: Cohort, min_records: int) -> tuple[list[str], list[Cohort]]:
    """The corpus's source sites (names, cohorts); those under ``min_records`` records pooled
    into one site."""
    names, masks = partition_by_site(corpus.records)
    small = [m.sum() < min_records for m in masks]
    if sum(small) > 1:
        pooled = np.any([m for m, s in zip(masks, small, strict=True) if s], axis=0)
        names = [n for n, s in zip(names, small, strict=True) if not s] + ["pooled small sites"]
        masks = [m for m, s in zip(masks, small, strict=True) if not s] + [pooled]
    return names, [corpus.select_records(m) for m in masks]


def site_batches(corpus: Cohort, min_records: int, batch_size: int, seed: int,
                 epoch: int, by_site: bool = True) -> list[np.ndarray]:
    """One epoch's batches of window indices of ``corpus`` where every batch holds the windows
    of one site (:func:`corpus_sites`): each site's windows in a seeded order, cut into batches
    of ``batch_size`` (a site's last one shorter), the batches of all sites in a seeded order.
    ``by_site=False``: the whole corpus as one site (mixed batches; the control)."""
    _, masks = partition_by_site(corpus.records)
    small = [m.sum() < min_records for m in masks]
    if not by_site:
        masks = [np.ones(len(corpus.records), dtype=bool)]
    elif sum(small) > 1:
        masks = [m for m, s in zip(masks, small, strict=True) if not s] + [
            np.any([m for m, s in zip(masks, small, strict=True) if s], axis=0)]
    rng = np.random.default_rng([seed, epoch])
    batches = []
    for mask in masks:
        windows = rng.permutation(np.flatnonzero(mask[corpus.window_record]))
        batches += [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def site_batch_pretrain(model: AclEcgModel, corpus: Cohort, cfg: PretrainConfig,
                        min_records: int, by_site: bool = True,
                        fresh_optimizer: bool = False) -> dict[str, Any]:
    """Pooled ACL-ECG pretraining (a diagnostic, issue 21) whose batches each hold one site's
    windows, as a federated site's do: ``cfg.epochs`` epochs of :func:`site_batches`, one
    continuous AdamW (its state handed from batch to batch), augmentations seeded per step.
    ``by_site=False``: the same loop over mixed batches (the control). ``fresh_optimizer``:
    AdamW starts afresh every epoch, as a federated site's does every round."""
    state, losses, start, step = None, [], time.perf_counter(), 0
    for epoch in range(cfg.epochs):
        epoch_losses = []
        if fresh_optimizer:
            state = None
        for windows in site_batches(corpus, min_records, cfg.batch_size, cfg.seed, epoch,
                                    by_site):
            step += 1
            batch = Cohort(corpus.signals[windows], corpus.rpeaks[windows],
                           corpus.window_record[windows], corpus.records, corpus.fs,
                           corpus.preprocessing)
            if len(np.unique(batch.window_record)) < 2:
                continue  # as pretrain skips a batch of one record
            result = pretrain(model, batch, replace(cfg, epochs=1, batch_size=len(windows),
                                                    seed=cfg.seed * 1_000_003 + step),
                              optimizer_state=state)
            state = result.optimizer_state
            epoch_losses.append(result.loss)
        losses.append(round(float(np.mean(epoch_losses)), 4))
    return {"seconds": round(time.perf_counter() - start, 1), "losses": losses, "steps": step}


class _Nodes:
    """The part of a Grid that Flower's node sampling uses: one node per site (ids 1..n)."""

    def __init__(self, n: int) -> None:
        self.nodes = list(range(1, n + 1))

    def get_node_ids(self) -> list[int]:
        return self.nodes


def _record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(v) for k, v in arrays.items()})


def fedavg(updates: list[tuple[dict[str, np.ndarray], int]],
           template: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """FedAvg's step alone (the speed benchmark's memory rounds): Flower's
    ``aggregate_arrayrecords`` weighted by ``num-examples``, then ``restore_dtypes``."""
    replies = [RecordDict({"arrays": _record(arrays),
                           "metrics": MetricRecord({"num-examples": n})})
               for arrays, n in updates]
    aggregated = aggregate_arrayrecords(replies, "num-examples")
    return restore_dtypes(arrays_of(aggregated), template)


def mean_state(states: list[tuple[dict[str, np.ndarray], int]]) -> dict[str, np.ndarray]:
    """The ``num-examples``-weighted mean of the sites' optimizer states (step counts too)."""
    weights = np.array([n for _, n in states], np.float64) / sum(n for _, n in states)
    return {k: np.asarray(sum(np.asarray(st[k], np.float64) * w
                              for (st, _), w in zip(states, weights, strict=True)),
                          dtype=states[0][0][k].dtype) for k in states[0][0]}


def normalized_updates(updates: list[tuple[dict[str, np.ndarray], int]],
                       start: dict[str, np.ndarray], batch_size: int
                       ) -> list[dict[str, np.ndarray]]:
    """FedNova's rescaling (Wang et al., NeurIPS 2020) of the sites' ``(arrays, num_examples)``
    trained from ``start``: site i's update ``a_i - start`` times ``tau / k_i``, with ``k_i``
    its local steps and ``tau`` the example-weighted mean of the ``k_i``, so that the weighted
    mean of the rescaled arrays weights each site by its examples, not examples × steps."""
    steps = np.array([-(-n // batch_size) for _, n in updates], np.float64)
    weights = np.array([n for _, n in updates], np.float64)
    tau = float(steps @ weights / weights.sum())
    return [{k: (start[k] + (a[k] - start[k]) * (tau / k_i)).astype(a[k].dtype) for k in a}
            for (a, _), k_i in zip(updates, steps, strict=True)]


def round_part(site: Cohort, seed: int, node: int, server_round: int, parts: int) -> Cohort:
    """The records of ``site`` that round ``server_round`` trains on when each local epoch is
    spread over ``parts`` rounds: part ``(round - 1) % parts`` of the epoch's seeded permutation
    (the parts of one epoch are disjoint and cover every record)."""
    if parts == 1:
        return site
    epoch, part = divmod(server_round - 1, parts)
    order = np.random.default_rng([seed, epoch, node]).permutation(len(site.records))
    keep = np.zeros(len(site.records), dtype=bool)
    keep[np.array_split(order, parts)[part]] = True
    return site.select_records(keep)


@contextmanager
def _flower_warnings_only() -> Iterator[None]:
    """Flower's logger at WARNING for the block, its level restored after."""
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    flwr_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        flwr_logger.setLevel(level)


def _run_info(s: FedSettings, epochs: int, rounds: int, corpus: Cohort,
              sites: dict[str, Cohort], start: float, losses: list[float],
              failures: int) -> dict[str, Any]:
    """What a federated pretraining reports besides its model."""
    return {"seconds": round(time.perf_counter() - start, 1),
            "samples_seen": epochs * len(corpus), "windows": len(corpus), "epochs": epochs,
            "rounds": rounds, "settings": asdict(s), "losses": losses, "site_failures": failures,
            "sites": {n: len(c.records) for n, c in sites.items()}}


def _task_identity() -> None:
    """Messages need a task identity, which a Flower runtime sets: this process's own."""
    if TaskIdentity._run_id is None:
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0


class _SiteGrid:
    """The grid of :func:`cyclic_pretrain`: nodes 1..n are ``sites`` (named ``names``);
    ``send_and_receive`` answers a site-name query with the site's name, and trains each train
    message's site in this process as the ClientApp would, answering with its arrays and
    metrics (a diverged site: an error reply)."""

    def __init__(self, names: list[str], sites: list[Cohort], device: str) -> None:
        self.names, self.sites, self.device = names, sites, device
        self.losses: list[float] = []

    def get_node_ids(self) -> list[int]:
        return list(range(1, len(self.sites) + 1))

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> list[Message]:
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            if message.metadata.message_type == protocol.SITE_NAME_QUERY:
                message.metadata.__dict__["_message_id"] = f"q{node}"  # as pushed
                replies.append(Message(RecordDict({protocol.SITE: ConfigRecord(
                    {protocol.SITE_NAME_KEY: self.names[node - 1]})}), reply_to=message))
                continue
            ins = protocol.TrainInstructions.decode(
                message.content.config_records[protocol.CONFIG])
            message.metadata.__dict__["_message_id"] = f"r{ins.round}n{node}"  # as pushed
            try:
                update = train_site(ins, self.sites[node - 1],
                                    arrays_of(message.content.array_records[protocol.ARRAYS]),
                                    node, device=self.device)
            except ValueError as exc:
                replies.append(Message(Error(code=1, reason=f"site{node}: {exc}"),
                                       reply_to=message))
                continue
            self.losses.append(update.report.loss)
            replies.append(Message(RecordDict({
                protocol.ARRAYS: _record(update.arrays),
                protocol.METRICS: MetricRecord(dict(update.report.encode()))}),
                reply_to=message))
        return replies


def cyclic_pretrain(s: FedSettings, epochs: int, seed: int, corpus: Cohort,
                    encoder: str = "tiny", device: str = "cpu"
                    ) -> tuple[AclEcgModel, dict[str, Any]]:
    """``strategy = cyclic`` (cyclic weight transfer): the product's
    :class:`~server.cyclic.CyclicStrategy` and :class:`~server.cyclic.CyclicGrid` over a grid
    whose sites train in this process; each round the model visits every site once, each
    site's local training (:func:`train_site`) starting from the previous site's weights."""
    cfg = run_config(s, encoder, epochs, seed, device)
    _task_identity()
    names, sites = corpus_sites(corpus, s.min_site_records)
    model = initial_model(cfg)
    global_arrays = select_keys(to_numpy(model.state_dict()), cfg.run.aggregate)
    strategy = build_strategy(cfg, global_arrays, lambda *_: None)
    grid = _SiteGrid(names, sites, device)
    chain = cast(CyclicStrategy, strategy.inner).chain(cast(Grid, grid), strategy.accepts)
    config = ConfigRecord(cast(dict[str, Any], train_instructions(cfg).encode()))
    start, losses, failures = time.perf_counter(), [], 0
    with _flower_warnings_only():
        for server_round in range(1, cfg.run.num_server_rounds + 1):
            grid.losses = []
            sent = list(strategy.configure_train(server_round, _record(global_arrays), config,
                                                 cast(Grid, grid)))
            replies = list(chain.send_and_receive(sent))
            failures += sum(r.has_error() for r in replies)
            arrays, _ = strategy.aggregate_train(server_round, replies)
            if arrays is None:
                raise RuntimeError(f"round {server_round}: no site update was accepted")
            global_arrays = arrays_of(arrays)
            losses.append(round(float(np.mean(grid.losses)), 4))
    model.load_state_dict(to_torch(global_arrays), strict=False)
    return model, _run_info(s, epochs, cfg.run.num_server_rounds, corpus, dict(zip(
        names, sites, strict=True)), start, losses, failures)


def federated_pretrain(s: FedSettings, epochs: int, seed: int, corpus: Cohort,
                       encoder: str = "tiny", device: str = "cpu"
                       ) -> tuple[AclEcgModel, dict[str, Any]]:
    """Federated ACL-ECG pretraining of ``corpus`` by its sites under ``s``; the global model
    (aggregated keys) plus, for keys kept at the sites, the initial values."""
    if s.strategy == "cyclic":
        return cyclic_pretrain(s, epochs, seed, corpus, encoder, device)
    cfg = run_config(s, encoder, epochs, seed, device)
    _task_identity()
    with _flower_warnings_only():  # no per-round sampling lines
        names, sites = corpus_sites(corpus, s.min_site_records)
        model = initial_model(cfg)
        global_arrays = select_keys(to_numpy(model.state_dict()), cfg.run.aggregate)
        strategy = build_strategy(cfg, global_arrays, lambda *_: None)
        config = ConfigRecord(cast(dict[str, Any], train_instructions(cfg).encode()))
        kept: dict[int, dict[str, np.ndarray]] = {}  # sites' context state (not aggregated)
        moments: dict[int, dict[str, np.ndarray]] = {}  # sites' context state (optimizer)
        start, failures, losses = time.perf_counter(), 0, []
        for server_round in range(1, cfg.run.num_server_rounds + 1):
            sent = list(strategy.configure_train(server_round, _record(global_arrays), config,
                                                 cast(Grid, _Nodes(len(sites)))))
            trained, round_losses, states = [], [], []
            for message in sent:
                node = message.metadata.dst_node_id
                message.metadata.__dict__["_message_id"] = f"r{server_round}n{node}"  # as pushed
                ins = protocol.TrainInstructions.decode(
                    message.content.config_records[protocol.CONFIG])
                try:
                    part = round_part(sites[node - 1], seed, node, server_round, s.round_parts)
                    update = train_site(ins, part,
                                        arrays_of(message.content.array_records[protocol.ARRAYS]),
                                        node, device=cfg.run.device, local_arrays=kept.get(node),
                                        optimizer_state=moments.get(node))
                except ValueError:  # a diverged site sends nothing (the ClientApp: an error reply)
                    failures += 1
                    continue
                if update.local_arrays and ins.aggregate != "encoder+projectors":
                    kept[node] = update.local_arrays
                if update.optimizer_state:
                    moments[node] = update.optimizer_state
                    states.append((update.optimizer_state, update.report.num_examples))
                trained.append((message, update))
                round_losses.append(update.report.loss)
            sent_arrays = [(u.arrays, u.report.num_examples) for _, u in trained]
            if s.normalize_steps:
                sent_arrays = [(a, n) for a, (_, n) in zip(
                    normalized_updates(sent_arrays, global_arrays, s.batch_size), sent_arrays,
                    strict=True)]
            replies = [Message(RecordDict({
                protocol.ARRAYS: _record(a),
                protocol.METRICS: MetricRecord(dict(u.report.encode()))}), reply_to=m)
                for (m, u), (a, _) in zip(trained, sent_arrays, strict=True)]
            arrays, _ = strategy.aggregate_train(server_round, replies)
            if arrays is None:
                raise RuntimeError(f"round {server_round}: no site update was aggregated")
            global_arrays = arrays_of(arrays)
            if s.share_optimizer_state and states:
                shared = mean_state(states)
                moments = {node: shared for node in range(1, len(sites) + 1)}
            losses.append(round(float(np.mean(round_losses)), 4))
    model.load_state_dict(to_torch(global_arrays), strict=False)
    return model, _run_info(s, epochs, cfg.run.num_server_rounds, corpus, dict(zip(
        names, sites, strict=True)), start, losses, failures)
