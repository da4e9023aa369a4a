"""ClientApp: trains the global model on this site's ECGs; replies with arrays and metrics only.

The site's data: node config ``data-dir`` (+ optional ``layout``, ``site-index``) in a
deployment; ``partition-id`` / ``num-partitions`` (set by the simulation engine) plus the
cohort settings of the run config in a simulation. Nothing record-level ever leaves the site:
the reply holds one ArrayRecord (model arrays) and one MetricRecord (the training scalars), plus
a ConfigRecord ``site-stats`` (record count, sampling rate, per-class counts with small counts
suppressed) only when the run sets ``share-site-stats``.
"""

from __future__ import annotations

import logging
from typing import Any, cast

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
from aclecg_core.fed.config import FederationConfig
from aclecg_core.fed.console import DropMessages, colour_only_on_terminals
from aclecg_core.fed.sites import count_classes, simulated_site, site_data_dir
from aclecg_core.fed.training import set_threads, train_site
from client.secagg import secure_aggregation_mod

CONFIG_KEY = "aclecg-config"
OFFSET_KEY = "round-offset"
LOCAL_STATE_KEY = "local-arrays"
DATA_ERROR_CODE = 1001

app = ClientApp()

# A simulation ends its Ray actors with a WARNING "Manually terminating ClientAppActor" each:
# routine shutdown, not a problem; dropped in the process that logs it.
logging.getLogger("flwr").addFilter(DropMessages("Manually terminating"))
colour_only_on_terminals(logging.getLogger("flwr"))

# Cohorts loaded by this process, so that later rounds in the same process do not reload.
_COHORTS: dict[tuple[Any, ...], Cohort] = {}


def site_index(context: Context) -> int:
    """This site's number: node config ``site-index``, else ``partition-id + 1`` (simulation:
    site1..siteN like the synthetic cohort's folders), else the node id."""
    node = context.node_config
    if "site-index" in node:
        return int(node["site-index"])
    if "partition-id" in node:
        return int(node["partition-id"]) + 1
    return int(context.node_id)


def site_cohort(cfg: FederationConfig, context: Context) -> Cohort:
    """This site's training cohort (cached per process)."""
    node = context.node_config
    if "data-dir" in node:
        key: tuple[Any, ...] = ("dir", str(node["data-dir"]), str(node.get("layout", "")),
                                str(sorted(cfg.preprocessing.items())))
        if key not in _COHORTS:
            _COHORTS[key] = site_data_dir(cfg, str(node["data-dir"]), str(node.get("layout", "")))
    else:
        if "partition-id" not in node:
            raise ValueError("node config has neither 'data-dir' nor 'partition-id'")
        index, n = int(node["partition-id"]), int(node["num-partitions"])
        key = ("sim", index, n, cfg.base_dir, str(cfg.cohort), str(cfg.preprocessing),
               cfg.run.seed)
        if key not in _COHORTS:
            _COHORTS[key] = simulated_site(cfg, index, n)
    return _COHORTS[key]


@app.train(mods=[secure_aggregation_mod])
def train(msg: Message, context: Context) -> Message:
    """One round of local pretraining."""
    site = site_index(context)
    try:
        config = msg.content.config_records["config"]
        cfg = FederationConfig.from_json(str(config[CONFIG_KEY]))
        if "partition-id" in context.node_config:
            set_threads(cfg.run.client_cpus)
        cohort = site_cohort(cfg, context)
        local = context.state.array_records.get(LOCAL_STATE_KEY)
        update = train_site(
            cfg, cohort,
            global_arrays={k: v.numpy()
                           for k, v in msg.content.array_records["arrays"].items()},
            server_round=int(cast(int, config[OFFSET_KEY])) + int(cast(int,
                                                                      config["server-round"])),
            site=site,
            proximal_mu=float(cast(float, config.get("proximal-mu", 0.0))),
            local_arrays=None if local is None else {k: v.numpy() for k, v in local.items()},
            classes=count_classes(cfg),
        )
    except Exception as exc:  # any failure of this site is reported, never fatal to the run
        return Message(error=Error(code=DATA_ERROR_CODE,
                                   reason=f"site{site}: {type(exc).__name__}: {exc}"),
                       reply_to=msg)
    if update.local_arrays and cfg.run.aggregate != "encoder+projectors":
        context.state[LOCAL_STATE_KEY] = ArrayRecord(
            {k: Array(v) for k, v in update.local_arrays.items()})
    content = RecordDict({
        "arrays": ArrayRecord({k: Array(v) for k, v in update.arrays.items()}),
        "metrics": MetricRecord(dict(update.metrics)),
    })
    if update.stats:
        content["site-stats"] = ConfigRecord(dict(update.stats))
    return Message(content=content, reply_to=msg)
