"""Cyclic weight transfer (Chang et al., JAMIA 2018): the order in which a round's sites train
one after another, each from the previous site's model. Flower-free; ``server/cyclic.py`` runs
the chain."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def visit_order(nodes: Iterable[int], seed: int, global_round: int) -> list[int]:
    """The nodes of round ``global_round`` in the order they train: a permutation of the sorted
    node ids seeded by (``seed``, ``global_round``). The same node ids give the same order;
    Flower draws node ids at random per run, so two runs of one seed may visit differently."""
    ordered = sorted(nodes)
    rng = np.random.default_rng([seed, global_round])
    return [ordered[i] for i in rng.permutation(len(ordered))]
