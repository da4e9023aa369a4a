"""Checks around the rounds of a federated run: the federation's size, rounds without any
successful site, and which client metrics are worth aggregating (Flower-free)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aclecg_core.fed.config import FederationConfig

# Client metrics that mean something when aggregated over sites: the loss (weighted by
# examples), the examples (summed) and the local training time (slowest site). Everything
# else a site reports (records, windows, fs, label counts) is a site fact for the report.
AGGREGATED_METRICS = ("loss", "num-examples", "seconds")


class FederationError(RuntimeError):
    """The federated run cannot go on (e.g. a round in which no site succeeded)."""


def check_round(global_round: int, succeeded: int, failures: Sequence[Mapping[str, Any]]) -> None:
    """Raise :class:`FederationError` naming every site's reason when no site succeeded (named
    sites in order, then the nodes that gave no site name)."""
    if succeeded:
        return
    ordered = sorted(failures, key=lambda f: (str(f["site"]).startswith("node-"), str(f["site"])))
    reasons = "; ".join(f"{f['site']}: {f['error']}" for f in ordered) or "no site was sampled"
    raise FederationError(f"round {global_round}: no site succeeded, the run stops ({reasons})")


def aggregate_client_metrics(metrics: Sequence[Mapping[str, float]],
                             weight_key: str = "num-examples") -> dict[str, float | int]:
    """The meaningful aggregate of the sites' scalar metrics (:data:`AGGREGATED_METRICS`)."""
    if not metrics:
        return {}
    weights = [float(m.get(weight_key, 1.0)) for m in metrics]
    total = sum(weights) or 1.0
    out: dict[str, float | int] = {}
    if all("loss" in m for m in metrics):
        out["loss"] = sum(w * float(m["loss"]) for w, m in zip(weights, metrics, strict=True)) \
            / total
    if all(weight_key in m for m in metrics):
        out[weight_key] = int(sum(weights))
    if all("seconds" in m for m in metrics):
        out["seconds"] = max(float(m["seconds"]) for m in metrics)
    return out


def follows_federation(cfg: FederationConfig) -> bool:
    """Whether the number of simulated sites may follow the federation's node count: yes for
    the synthetic cohort and for IID / Dirichlet partitions; no when a folder's own sites fix it."""
    return cfg.cohort.source == "synthetic" or cfg.cohort.partition != "site"


def fit_to_federation(cfg: FederationConfig, nodes: int) -> FederationConfig:
    """``cfg`` with ``cohort.sites = nodes`` where the cohort can follow the federation.

    Raises :class:`FederationError` when fewer nodes than ``min-sites`` are connected.
    """
    if nodes < cfg.run.min_sites:
        raise FederationError(
            f"the federation has {nodes} node(s) but min-sites is {cfg.run.min_sites}: run with "
            f"--set min-sites={max(nodes, 1)} or start more nodes")
    if nodes == cfg.cohort.sites or not follows_federation(cfg):
        return cfg
    return dataclasses.replace(cfg, cohort=dataclasses.replace(cfg.cohort, sites=nodes))


def settled_node_count(count: Callable[[], int], wanted: int, minimum: int,
                       settle_s: float = 1.0, poll_s: float = 0.1,
                       clock: Callable[[], float] = time.monotonic,
                       sleep: Callable[[float], None] = time.sleep) -> int:
    """The number of connected nodes once it is stable: returns as soon as ``wanted`` nodes are
    connected, else once at least ``minimum`` are and the count has not changed for
    ``settle_s`` seconds (waits for ``minimum`` as long as it takes, like Flower's sampling)."""
    last, since = -1, clock()
    while True:
        n = count()
        if n >= wanted:
            return n
        if n != last:
            last, since = n, clock()
        elif n >= minimum and clock() - since >= settle_s:
            return n
        sleep(poll_s)
