"""Cyclic weight transfer (Chang et al., JAMIA 2018): the order in which a round's sites train
one after another, each from the previous site's model. Flower-free; ``server/cyclic.py`` runs
the chain."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def visit_order(sites: Mapping[int, str], seed: int, global_round: int) -> list[int]:
    """The nodes of round ``global_round`` in the order they train: a permutation seeded by
    (``seed``, ``global_round``) of the nodes sorted by site name (``sites``: node id -> name;
    node id breaks ties). Flower draws node ids at random per run; site names do not change,
    so a run and its resume, or two runs of one seed, visit the sites in the same order."""
    ordered = sorted(sites, key=lambda node: (sites[node], node))
    rng = np.random.default_rng([seed, global_round])
    return [ordered[i] for i in rng.permutation(len(ordered))]
