"""Splitting records into simulated sites (patient-disjoint): by site, IID or Dirichlet.

The splits need each record's metadata only (a loaded cohort's ``records``, or the
:class:`~aclecg_core.data.sources.RecordSource` list of records not yet read), so that a
simulated site can choose its records first and then load only those.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Described(Protocol):
    """What a split reads of a record (``RecordInfo`` and ``RecordSource`` both have it)."""

    @property
    def record_id(self) -> str: ...
    @property
    def patient_id(self) -> str: ...
    @property
    def site(self) -> str: ...
    @property
    def labels(self) -> tuple[str, ...]: ...


def _patients(records: Sequence[Described]) -> tuple[np.ndarray, np.ndarray]:
    """(unique patient ids, index into them per record)."""
    ids = np.array([r.patient_id or r.record_id for r in records])
    return np.unique(ids, return_inverse=True)


def partition_by_site(records: Sequence[Described]) -> tuple[list[str], list[np.ndarray]]:
    """(sorted site names, boolean record mask per site) from each record's ``site``."""
    sites = np.array([r.site for r in records])
    names = sorted(set(sites.tolist()))
    return names, [sites == name for name in names]


def partition_iid(records: Sequence[Described], n_sites: int, seed: int = 0) -> list[np.ndarray]:
    """Patients shuffled and dealt round-robin to ``n_sites`` sites: one record mask per site."""
    unique, inverse = _patients(records)
    if len(unique) < n_sites:
        raise ValueError(f"{len(unique)} patients cannot fill {n_sites} sites")
    order = np.random.default_rng(seed).permutation(len(unique))
    site_of_patient = np.empty(len(unique), dtype=np.int64)
    site_of_patient[order] = np.arange(len(unique)) % n_sites
    site = site_of_patient[inverse]
    return [site == k for k in range(n_sites)]


def partition_dirichlet(records: Sequence[Described], n_sites: int, alpha: float,
                        classes: list[str], seed: int = 0) -> list[np.ndarray]:
    """Label-skewed split: the patients of each class go to the sites in Dirichlet(alpha) shares.

    A patient's class is the first of ``classes`` among the labels of its first record (or an
    extra "other" class). Every site receives at least one patient.
    """
    if alpha <= 0:
        raise ValueError(f"dirichlet alpha must be > 0, got {alpha}")
    unique, inverse = _patients(records)
    if len(unique) < n_sites:
        raise ValueError(f"{len(unique)} patients cannot fill {n_sites} sites")
    index = {c: i for i, c in enumerate(classes)}
    patient_class = np.full(len(unique), len(classes), dtype=np.int64)
    first = np.full(len(unique), -1, dtype=np.int64)
    for r, p in enumerate(inverse):
        if first[p] < 0:
            first[p] = r
            hits = [index[lab] for lab in records[r].labels if lab in index]
            if hits:
                patient_class[p] = hits[0]
    rng = np.random.default_rng(seed)
    site_of_patient = np.empty(len(unique), dtype=np.int64)
    for c in range(len(classes) + 1):
        members = rng.permutation(np.flatnonzero(patient_class == c))
        if not len(members):
            continue
        shares = rng.dirichlet(np.full(n_sites, alpha))
        cuts = np.round(np.cumsum(shares)[:-1] * len(members)).astype(int)
        for k, part in enumerate(np.split(members, cuts)):
            site_of_patient[part] = k
    counts = np.bincount(site_of_patient, minlength=n_sites)
    for empty in np.flatnonzero(counts == 0):
        donor = int(np.argmax(np.bincount(site_of_patient, minlength=n_sites)))
        site_of_patient[rng.choice(np.flatnonzero(site_of_patient == donor))] = empty
    site = site_of_patient[inverse]
    return [site == k for k in range(n_sites)]
