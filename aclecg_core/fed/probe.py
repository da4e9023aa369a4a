"""The server's centralized linear probe: its labeled data (loaded once per run, split by the
evaluation policy of :mod:`aclecg_core.evaluation.splits`), the rounds it probes, and each
probed round's result with its paired difference from round 0's random-init encoder."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from aclecg_core.data.cohort import Cohort
from aclecg_core.evaluation.probe import record_labels, validation_columns
from aclecg_core.evaluation.reference import ReferenceProbe
from aclecg_core.evaluation.splits import CLASS_SETS, evaluation_split, frequent_labels
from aclecg_core.fed.arrays import to_torch
from aclecg_core.fed.config import FederationConfig
from aclecg_core.fed.sites import ensure_synthetic_cohort, load_folders
from aclecg_core.fed.training import initial_model
from aclecg_core.method.model import AclEcgModel


@dataclass(frozen=True)
class ProbeCohorts:
    """The probe's train part, validation part (chooses C), test part and classes."""

    train: Cohort
    val: Cohort
    test: Cohort
    classes: list[str]

    @property
    def records(self) -> int:
        return sum(len(part.records) for part in (self.train, self.val, self.test))

    def subset(self, records: int, seed: int) -> ProbeCohorts:
        """About ``records`` of the records, each part in proportion (a seeded, fixed choice,
        at least 2 records a part); all of them when ``records`` is 0 or not fewer."""
        if not records or records >= self.records:
            return self
        rng = np.random.default_rng(seed)
        parts = []
        for part in (self.train, self.val, self.test):
            n = len(part.records)
            keep = np.zeros(n, dtype=bool)
            keep[rng.choice(n, min(n, max(2, round(n * records / self.records))),
                            replace=False)] = True
            parts.append(part.select_records(keep))
        train, val, test = parts
        return ProbeCohorts(train, val, test, self.classes)


def load_probe_cohorts(cfg: FederationConfig) -> ProbeCohorts:
    """The ``probe`` section's data, whole records (windows tiling each record, as ``aclecg
    probe`` sees them), split (PTB-XL folds for ``ptbxl``, else patient-disjoint);
    classes ``probe.classes``, else the source's: the synthetic labels, PTB-XL's superclasses
    or a folder's most frequent labels."""
    p = cfg.probe
    folders = [cfg.path(f) for f in p.folders()]
    if p.source == "synthetic-holdout":
        root = ensure_synthetic_cohort(cfg)
        cohort = load_folders(cfg, [root / f"site{cfg.cohort.sites + 1}"], "auto", workers=None,
                              whole=True)
        default = CLASS_SETS["synthetic"]
    elif p.source == "ptbxl":
        cohort = load_folders(cfg, folders, "ptbxl", workers=None, whole=True)
        default = CLASS_SETS["ptbxl"]
    else:
        cohort = load_folders(cfg, folders, p.layout if p.layout != "auto" else "cinc",
                              workers=None, whole=True)
        default = frequent_labels(cohort)
    held_out = "ptbxl" if p.source == "ptbxl" else "patient"
    train, val, test = evaluation_split(cohort, held_out, p.test_fraction, p.val_fraction,
                                        cfg.run.seed)
    classes = list(p.classes) or list(default)
    if not classes:
        raise ValueError(f"probe data {', '.join(map(str, folders))}: no label with enough "
                         "records; set probe.classes")
    return _checked(ProbeCohorts(train, val, test, classes), f"probe data ({p.source})",
                    "give the probe more labeled records or change probe.val-fraction")


def _checked(data: ProbeCohorts, what: str, advice: str) -> ProbeCohorts:
    """``data``, if some class can choose the probe's C (else ValueError naming ``what``)."""
    try:
        validation_columns(record_labels(data.train, data.classes),
                           record_labels(data.val, data.classes))
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}; {advice}") from None
    return data


PROBE_NICENESS = 10  # the server's probe thread yields the CPU to training on the same machine


def yield_cpu_to_training() -> None:
    """Lower the calling thread's scheduling priority (Linux: niceness is per thread; the
    threads it starts, e.g. torch's, inherit it): on a machine that also trains (a simulation)
    the per-round probe then uses the cores the sites leave idle instead of slowing them.
    Elsewhere a no-op (there it would lower the whole process)."""
    if sys.platform == "linux":
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid,
                       max(os.getpriority(os.PRIO_PROCESS, tid), PROBE_NICENESS))


class ServerProbe:
    """Probes the global encoder of the rounds ``eval-every`` asks for (round 0 and the last
    always) on the round probe data (``probe.round-records`` of the records, else all); the
    data are loaded on first use and kept."""

    def __init__(self, cfg: FederationConfig) -> None:
        self.cfg = cfg
        self._cohorts: ProbeCohorts | None = None
        self._rounds: ProbeCohorts | None = None
        self._reference: ReferenceProbe | None = None

    def cohorts(self) -> ProbeCohorts:
        """All the probe data (loaded once)."""
        if self._cohorts is None:
            self._cohorts = load_probe_cohorts(self.cfg)
        return self._cohorts

    def round_cohorts(self) -> ProbeCohorts:
        """The fixed part of the probe data that every round is probed on."""
        if self._rounds is None:
            n = self.cfg.probe.round_records
            self._rounds = _checked(self.cohorts().subset(n, self.cfg.run.seed),
                                    f"probe.round-records={n}", "raise it")
        return self._rounds

    @property
    def reference(self) -> ReferenceProbe:
        if self._reference is None:
            c = self.round_cohorts()
            self._reference = ReferenceProbe(c.train, c.val, c.test, c.classes,
                                             seed=self.cfg.run.seed,
                                             n_bootstrap=self.cfg.probe.bootstrap)
        return self._reference

    def due(self, global_round: int) -> bool:
        every = self.cfg.run.eval_every
        return (global_round in (0, self.cfg.run.num_server_rounds)
                or (every > 0 and global_round % every == 0))

    def lacks_round0(self, global_round: int) -> bool:
        """Whether round ``global_round`` has no round-0 probe to compare with (a resumed run
        probed round 0 in an earlier process): :meth:`set_round0` with its checkpoint."""
        return global_round > 0 and self.reference.reference_scores is None

    def set_round0(self, state: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Probe round 0's (random-init) encoder, the reference of later rounds."""
        return self.reference.set_reference(self._model(state)).to_dict()

    def result(self, global_round: int, state: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """The probe of this round's encoder (C chosen on the validation part), with
        ``vs_round0``: its paired difference from round 0 (None for round 0 itself)."""
        if global_round == 0:
            return {**self.set_round0(state), "vs_round0": None}
        result, difference = self.reference.probe(self._model(state))
        return {**result.to_dict(),
                "vs_round0": None if difference is None else difference.to_dict()}

    def _model(self, state: Mapping[str, np.ndarray]) -> AclEcgModel:
        model = initial_model(self.cfg)
        model.load_state_dict(to_torch(dict(state)))
        return model
