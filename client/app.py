"""ClientApp: trains the global model on this site's ECGs; replies with arrays and metrics only.

The train message says how to train (:mod:`aclecg_core.fed.protocol`), never where: a deployed
site's data folder, cache, device and threads are its own node config
(:mod:`aclecg_core.fed.site`, set by ``aclecg deploy supernode``); a simulated site takes its
share of the cohort of the local run config (:mod:`aclecg_core.fed.local_site`). Nothing
record-level ever leaves the site: the reply holds the model arrays and the training scalars,
plus the site's summary only when the run sets ``share-site-stats``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
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

from aclecg_core.fed import protocol
from aclecg_core.fed.console import DropMessages, colour_only_on_terminals
from aclecg_core.fed.local_site import LocalSite, site_label
from aclecg_core.fed.training import set_threads, train_site
from client.secagg import secure_aggregation_mod

APP_DIR = Path(__file__).resolve().parents[1]
LOCAL_STATE_KEY = "local-arrays"  # projection heads a site keeps when only the encoder travels
OPTIMIZER_STATE_KEY = "optimizer-state"  # keep-optimizer-state: AdamW moments and step counts
SITE_ERROR_CODE = 1001

# A simulation ends its Ray actors with a WARNING "Manually terminating ClientAppActor" each:
# routine shutdown, not a problem; dropped in the process that logs it.
logging.getLogger("flwr").addFilter(DropMessages("Manually terminating"))
colour_only_on_terminals(logging.getLogger("flwr"))


def _numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in record.items()}


def _record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(v) for k, v in arrays.items()})


def train_round(msg: Message, context: Context, run_config: Mapping[str, Any]) -> Message:
    """One round of local pretraining; any failure becomes an error reply naming the site."""
    try:
        instructions = protocol.TrainInstructions.decode(
            msg.content.config_records[protocol.CONFIG])
        site = LocalSite(context.node_config, {**run_config, **dict(context.run_config)},
                         int(context.node_id), APP_DIR)
        if site.threads:
            set_threads(site.threads)
        local = context.state.array_records.get(LOCAL_STATE_KEY)
        moments = context.state.array_records.get(OPTIMIZER_STATE_KEY)
        update = train_site(instructions, site.cohort(instructions.preprocessing),
                            global_arrays=_numpy(msg.content.array_records[protocol.ARRAYS]),
                            site=site.index, device=site.device,
                            local_arrays=None if local is None else _numpy(local),
                            optimizer_state=None if moments is None else _numpy(moments))
    except Exception as exc:  # any failure of this site is reported, never fatal to the run
        reason = f"{site_label(context.node_config, context.node_id)}: " \
            f"{type(exc).__name__}: {exc}"
        return Message(error=Error(code=SITE_ERROR_CODE, reason=reason), reply_to=msg)
    if update.local_arrays and instructions.aggregate != "encoder+projectors":
        context.state[LOCAL_STATE_KEY] = _record(update.local_arrays)
    if update.optimizer_state:  # kept here for the site's next round, never in the reply
        context.state[OPTIMIZER_STATE_KEY] = _record(update.optimizer_state)
    content = RecordDict({protocol.ARRAYS: _record(update.arrays),
                          protocol.METRICS: MetricRecord(dict(update.report.encode())),
                          protocol.SITE: ConfigRecord({protocol.SITE_NAME_KEY: site.name})})
    if update.stats:
        content[protocol.SITE_STATS] = ConfigRecord(dict(update.stats))
    return Message(content=content, reply_to=msg)


def site_name_reply(msg: Message, context: Context, run_config: Mapping[str, Any]) -> Message:
    """The answer to a site-name query: the site's name (the cyclic chain orders sites by it);
    its label when the site cannot be set up (the train message will report why)."""
    try:
        name = LocalSite(context.node_config, {**run_config, **dict(context.run_config)},
                         int(context.node_id), APP_DIR).name
    except Exception:  # the label still orders the site
        name = site_label(context.node_config, context.node_id)
    return Message(content=RecordDict({protocol.SITE: ConfigRecord(
        {protocol.SITE_NAME_KEY: name})}), reply_to=msg)


def make_client_app(run_config: Mapping[str, Any] | None = None) -> ClientApp:
    """A ClientApp; ``run_config`` fills keys missing from ``context.run_config`` for simulated
    sites (the in-process simulation's contexts carry an empty run config)."""
    client_app = ClientApp()

    @client_app.train(mods=[secure_aggregation_mod])
    def _train(msg: Message, context: Context) -> Message:
        return train_round(msg, context, run_config or {})

    @client_app.query(protocol.SITE_NAME_ACTION)
    def _site_name(msg: Message, context: Context) -> Message:
        return site_name_reply(msg, context, run_config or {})

    return client_app


def train(msg: Message, context: Context) -> Message:
    """The train handler with the project's own run config defaults."""
    return train_round(msg, context, {})


app = make_client_app()
