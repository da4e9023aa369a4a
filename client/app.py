"""ClientApp: trains the global model on this site's ECGs; replies with arrays and metrics only.

The train message says how to train (:mod:`aclecg_core.fed.protocol`), never where: a deployed
site's data folder, cache, device and threads are its own node config
(:mod:`aclecg_core.fed.site`, set by ``aclecg deploy supernode``). In a simulation (node config
``partition-id`` / ``num-partitions`` from Flower's engine) every site lives on this machine and
takes its share of the cohort of the local run config. Nothing record-level ever leaves the
site: the reply holds the model arrays and the training scalars, plus the site's summary only
when the run sets ``share-site-stats``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
from flwr.clientapp import ClientApp

from aclecg_core.data.cohort import Cohort
from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.fed import protocol
from aclecg_core.fed import site as site_keys
from aclecg_core.fed.config import load_config
from aclecg_core.fed.console import DropMessages, colour_only_on_terminals
from aclecg_core.fed.rounds import fit_to_federation
from aclecg_core.fed.site import SiteSettings
from aclecg_core.fed.sites import simulated_site
from aclecg_core.fed.training import set_threads, train_site
from client.secagg import secure_aggregation_mod

APP_DIR = Path(__file__).resolve().parents[1]
LOCAL_STATE_KEY = "local-arrays"
SITE_ERROR_CODE = 1001

# A simulation ends its Ray actors with a WARNING "Manually terminating ClientAppActor" each:
# routine shutdown, not a problem; dropped in the process that logs it.
logging.getLogger("flwr").addFilter(DropMessages("Manually terminating"))
colour_only_on_terminals(logging.getLogger("flwr"))

# Cohorts loaded by this process, so that later rounds in the same process do not reload.
_COHORTS: dict[tuple[Any, ...], Cohort] = {}


class LocalSite:
    """Where this node's data come from and how it trains: a deployed site's own node config,
    or a simulated site's share of the local run config's cohort."""

    def __init__(self, context: Context, run_config: Mapping[str, Any]) -> None:
        node = context.node_config
        self.simulated = "partition-id" in node and site_keys.DATA_DIR not in node
        if self.simulated:
            self.partition, self.partitions = int(node["partition-id"]), \
                int(node["num-partitions"])
            cfg = load_config({**run_config, **dict(context.run_config)}, APP_DIR)
            self.cfg = fit_to_federation(cfg, self.partitions)
            self.index, self.device = self.partition + 1, self.cfg.run.device
            self.threads = self.cfg.run.client_cpus
        else:
            self.settings = SiteSettings.from_node_config(node)
            self.index = self.settings.index if self.settings.index is not None \
                else int(context.node_id)
            self.device, self.threads = self.settings.device, self.settings.threads
        self.name = f"site{self.index}"

    def cohort(self, preprocessing: dict[str, Any]) -> Cohort:
        """This site's training records (cached per process)."""
        if self.simulated:
            c = self.cfg.cohort
            key: tuple[Any, ...] = ("sim", self.partition, self.partitions, self.cfg.base_dir,
                                    str(c), str(preprocessing), self.cfg.run.seed)
            if key not in _COHORTS:
                _COHORTS[key] = simulated_site(self.cfg, self.partition, self.partitions)
        else:
            key = ("dir", str(self.settings), str(sorted(preprocessing.items())))
            if key not in _COHORTS:
                _COHORTS[key] = self.settings.load(PreprocessConfig.from_dict(preprocessing))
        return _COHORTS[key]


def site_name(context: Context) -> str:
    """This node's site name for error replies, without failing on a bad node config."""
    node = context.node_config
    if "partition-id" in node:
        return f"site{int(node['partition-id']) + 1}"
    if "site-index" in node:
        return f"site{node['site-index']}"
    return str(node.get("site") or f"node-{context.node_id}")


def train_round(msg: Message, context: Context, run_config: Mapping[str, Any]) -> Message:
    """One round of local pretraining; any failure becomes an error reply naming the site."""
    try:
        instructions = protocol.TrainInstructions.decode(
            msg.content.config_records[protocol.CONFIG])
        site = LocalSite(context, run_config)
        if site.threads:
            set_threads(site.threads)
        local = context.state.array_records.get(LOCAL_STATE_KEY)
        update = train_site(
            instructions, site.cohort(instructions.preprocessing),
            global_arrays={k: v.numpy()
                           for k, v in msg.content.array_records[protocol.ARRAYS].items()},
            site=site.index, device=site.device,
            local_arrays=None if local is None else {k: v.numpy() for k, v in local.items()},
        )
    except Exception as exc:  # any failure of this site is reported, never fatal to the run
        return Message(error=Error(code=SITE_ERROR_CODE, reason=f"{site_name(context)}: "
                                   f"{type(exc).__name__}: {exc}"), reply_to=msg)
    if update.local_arrays and instructions.aggregate != "encoder+projectors":
        context.state[LOCAL_STATE_KEY] = ArrayRecord(
            {k: Array(v) for k, v in update.local_arrays.items()})
    content = RecordDict({
        protocol.ARRAYS: ArrayRecord({k: Array(v) for k, v in update.arrays.items()}),
        protocol.METRICS: MetricRecord(dict(update.report.encode())),
    })
    if update.stats:
        content[protocol.SITE_STATS] = ConfigRecord(dict(update.stats))
    return Message(content=content, reply_to=msg)


def make_client_app(run_config: Mapping[str, Any] | None = None) -> ClientApp:
    """A ClientApp; ``run_config`` fills keys missing from ``context.run_config`` for simulated
    sites (the in-process simulation's contexts carry an empty run config)."""
    client_app = ClientApp()

    @client_app.train(mods=[secure_aggregation_mod])
    def _train(msg: Message, context: Context) -> Message:
        return train_round(msg, context, run_config or {})

    return client_app


def train(msg: Message, context: Context) -> Message:
    """The train handler with the project's own run config defaults."""
    return train_round(msg, context, {})


app = make_client_app()
