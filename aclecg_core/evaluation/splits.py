"""The evaluation split policy and the default classes, written once for the server's probe
(:class:`aclecg_core.fed.probe.ServerProbe`) and the ``aclecg probe | finetune`` commands.

Split: PTB-XL's own folds where the data have them (1–8 train, 9 validation, 10 test);
otherwise a test part held out patient-disjoint (a seeded share of the patients, or one site),
then a patient-disjoint validation part of the rest, where the probe chooses its
regularisation. Classes: a named vocabulary (``ptbxl``: PTB-XL's superclasses, ``synthetic``:
the synthetic cohort's labels), or the most frequent labels of the data.
"""

from __future__ import annotations

import numpy as np

from aclecg_core.data.cohort import Cohort
from aclecg_core.data.labels import PTBXL_SUPERCLASSES, SYNTHETIC_CLASSES

CLASS_SETS: dict[str, list[str]] = {"ptbxl": PTBXL_SUPERCLASSES, "synthetic": SYNTHETIC_CLASSES}


def ptbxl_split(cohort: Cohort) -> tuple[Cohort, Cohort, Cohort]:
    """The PTB-XL reference split by ``strat_fold``: 1–8 train, 9 validation, 10 test."""
    folds = np.array([-1 if r.fold is None else r.fold for r in cohort.records])
    if (folds < 0).any():
        missing = [r.record_id for r in cohort.records if r.fold is None][:3]
        raise ValueError(f"records without a fold (e.g. {missing}); use a site or patient split")
    parts = ((folds >= 1) & (folds <= 8), folds == 9, folds == 10)
    for name, keep in zip(("train (1-8)", "validation (9)", "test (10)"), parts, strict=True):
        if not keep.any():
            raise ValueError(f"the PTB-XL {name} part is empty")
    train, val, test = (cohort.select_records(keep) for keep in parts)
    return train, val, test


def site_split(cohort: Cohort, site: str) -> tuple[Cohort, Cohort]:
    """(the other sites, the held-out ``site``)."""
    sites = np.array([r.site for r in cohort.records])
    held = sites == site
    if not held.any() or held.all():
        raise ValueError(f"site {site!r} must hold some but not all records; sites: "
                         f"{sorted(set(sites.tolist()))}")
    return cohort.select_records(~held), cohort.select_records(held)


def patient_split(cohort: Cohort, test_fraction: float = 0.2,
                  seed: int = 0) -> tuple[Cohort, Cohort]:
    """(train, test) with no patient in both: a seeded random ``test_fraction`` of patients."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    patients = np.array([r.patient_id for r in cohort.records])
    unique = np.unique(patients)
    if len(unique) < 2:
        raise ValueError("a patient split needs at least two patients")
    rng = np.random.default_rng(seed)
    n_test = min(max(1, round(test_fraction * len(unique))), len(unique) - 1)
    test_patients = rng.choice(unique, n_test, replace=False)
    held = np.isin(patients, test_patients)
    return cohort.select_records(~held), cohort.select_records(held)


def default_split(cohort: Cohort) -> str:
    """``ptbxl`` where every record has a PTB-XL fold, else ``patient``: a split for any data."""
    return "ptbxl" if all(r.fold is not None for r in cohort.records) else "patient"


def evaluation_split(cohort: Cohort, held_out: str = "patient", test_fraction: float = 0.2,
                     val_fraction: float = 0.2, seed: int = 0) -> tuple[Cohort, Cohort, Cohort]:
    """(train, validation, test) of ``cohort``: ``held_out`` ``ptbxl`` (PTB-XL's folds),
    ``patient`` (``test_fraction`` of the patients), ``site:NAME`` (that site's records) or
    ``auto`` (:func:`default_split`); the validation part is ``val_fraction`` of the remaining
    patients."""
    if held_out == "auto":
        held_out = default_split(cohort)
    if held_out == "ptbxl":
        return ptbxl_split(cohort)
    if held_out.startswith("site:"):
        rest, test = site_split(cohort, held_out.removeprefix("site:"))
    elif held_out == "patient":
        rest, test = patient_split(cohort, test_fraction, seed)
    else:
        raise ValueError(f"unknown split {held_out!r}: use auto, ptbxl, site:NAME or patient")
    train, val = patient_split(rest, val_fraction, seed)
    return train, val, test


def guess_class_set(cohort: Cohort) -> str:
    """``ptbxl`` when a record carries a PTB-XL superclass, else ``synthetic``."""
    seen = {label for r in cohort.records for label in r.labels}
    return "ptbxl" if seen & set(PTBXL_SUPERCLASSES) else "synthetic"


def frequent_labels(cohort: Cohort, min_records: int = 10, top: int = 10) -> list[str]:
    """The ``top`` labels carried by the most records (at least ``min_records`` each)."""
    counts: dict[str, int] = {}
    for r in cohort.records:
        for label in set(r.labels):
            counts[label] = counts.get(label, 0) + 1
    ranked = sorted((n, lab) for lab, n in counts.items() if n >= min_records)
    return [lab for _, lab in reversed(ranked)][:top]
