"""The site a ClientApp trains for: a deployed site's own node config, or in a simulation its
share of the cohort of the local run config (Flower-free: node config, run config and node id
come in as plain values)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aclecg_core.data.cohort import Cohort
from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.fed import site as site_keys
from aclecg_core.fed.config import load_config
from aclecg_core.fed.rounds import fit_to_federation
from aclecg_core.fed.site import SiteSettings
from aclecg_core.fed.sites import simulated_site, simulated_site_name

# Node config keys Flower's simulation engine sets for each simulated node.
PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"

# Cohorts loaded by this process, so that later rounds in the same process do not reload.
_COHORTS: dict[tuple[Any, ...], Cohort] = {}


def is_simulated(node_config: Mapping[str, Any]) -> bool:
    """A node of Flower's simulation engine (not a deployed site with its own data)."""
    return PARTITION_ID in node_config and site_keys.DATA_DIR not in node_config


def site_label(node_config: Mapping[str, Any], node_id: int) -> str:
    """The node's site name for error replies, without failing on a bad node config."""
    if PARTITION_ID in node_config:
        return f"site{int(node_config[PARTITION_ID]) + 1}"
    if site_keys.INDEX in node_config:
        return f"site{node_config[site_keys.INDEX]}"
    return str(node_config.get(site_keys.NAME) or f"node-{node_id}")


class LocalSite:
    """Where this node's data come from and how it trains (``index``, ``device``, ``threads``);
    ``name``: what reports call it beside its label ``site{index}`` (a simulated site's
    hospital, a deployed site's node config ``site``)."""

    def __init__(self, node_config: Mapping[str, Any], run_config: Mapping[str, Any],
                 node_id: int, app_dir: Path) -> None:
        self.simulated = is_simulated(node_config)
        if self.simulated:
            self.partition = int(node_config[PARTITION_ID])
            self.partitions = int(node_config[NUM_PARTITIONS])
            self.cfg = fit_to_federation(load_config(run_config, app_dir), self.partitions)
            self.index, self.device = self.partition + 1, self.cfg.run.device
            self.threads = self.cfg.run.client_cpus
            self.name = simulated_site_name(self.cfg, self.partition, self.partitions)
        else:
            self.settings = SiteSettings.from_node_config(node_config)
            self.index = self.settings.index if self.settings.index is not None else node_id
            self.device, self.threads = self.settings.device, self.settings.threads
            self.name = self.settings.name or f"site{self.index}"

    def cohort(self, preprocessing: dict[str, Any]) -> Cohort:
        """This site's training records (cached per process)."""
        if self.simulated:
            key: tuple[Any, ...] = ("sim", self.partition, self.partitions, self.cfg.base_dir,
                                    str(self.cfg.cohort), str(preprocessing), self.cfg.run.seed)
            if key not in _COHORTS:
                _COHORTS[key] = simulated_site(self.cfg, self.partition, self.partitions)
        else:
            key = ("dir", str(self.settings), str(sorted(preprocessing.items())))
            if key not in _COHORTS:
                _COHORTS[key] = self.settings.load(PreprocessConfig.from_dict(preprocessing))
        return _COHORTS[key]
