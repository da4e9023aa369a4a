"""Evidence of a finished run on all of the server's probe data: the probe of round 0's
random-init encoder, the best round's and the final one where the rounds were probed on
``probe.round-records`` of them (``RUN_DIR/holdout.json``), and the per-region probe of the
final encoder against round 0's (``RUN_DIR/regions.json``); the report reads both."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from aclecg_core.evaluation.probe import ProbeData, record_labels
from aclecg_core.evaluation.reference import ReferenceProbe
from aclecg_core.evaluation.regions import (
    RegionProbeResult,
    global_features,
    record_lead_features,
    region_differences,
    region_probe,
)
from aclecg_core.fed.config import FederationConfig
from aclecg_core.fed.probe import ServerProbe
from aclecg_core.method.checkpoint import checkpoint_paths, load_encoder
from aclecg_core.method.device import pick_device
from aclecg_core.method.model import AclEcgModel

REGIONS_FILE = "regions.json"
HOLDOUT_FILE = "holdout.json"
ENCODERS = (("round 0", "round-0000"), ("best", "best"), ("final", "final"))


class HoldoutEvidence:
    """The end-of-run evidence built one encoder at a time, round 0's first (the others are
    paired with it): :meth:`add` may take round 0's encoder while the rounds train (the
    server's worker thread) and the best and final ones at the end; :meth:`write` writes
    ``holdout.json`` and ``regions.json`` (see :func:`write_evidence`)."""

    def __init__(self, cfg: FederationConfig, probe: ServerProbe) -> None:
        self.cfg, self.device = cfg, pick_device(cfg.run.device)
        self.data, self.rounds = probe.cohorts(), probe.round_cohorts()
        self.whole = self.rounds.records < self.data.records
        self.parts = (self.data.train, self.data.val, self.data.test)
        self.labels = [record_labels(part, self.data.classes) for part in self.parts]
        self.reference = ReferenceProbe(*self.parts, self.data.classes, seed=cfg.run.seed,
                                        n_bootstrap=cfg.probe.bootstrap, device=self.device)
        self.encoders: list[dict[str, Any]] = []  # holdout.json's entries, one per round
        self.by_round: dict[int, tuple[dict[str, Any], list[np.ndarray]]] = {}
        self.regions: dict[str, tuple[int, RegionProbeResult]] = {}

    @property
    def names(self) -> set[str]:
        return {name for entry, _ in self.by_round.values() for name in entry["names"]}

    def add(self, name: str, model: AclEcgModel, round_: int) -> None:
        """Evidence of encoder ``name`` (``round 0``, ``best``, ``final``) of round ``round_``:
        its whole-record probe (once per round; round 0's is the reference) and, except for
        ``best``, its region probe, fitted side by side from one encoder pass."""
        if not self.by_round and name != "round 0":
            raise ValueError(f"the evidence of {name!r} needs round 0's first")
        known = self.by_round.get(round_)
        if known is None:
            leads = [record_lead_features(model, part, self.device) for part in self.parts]
            entry: dict[str, Any] = {"names": [], "round": round_}
            first = not self.by_round
            self.by_round[round_] = entry, leads
        else:
            (entry, leads), first = known, False
        entry["names"].append(name)
        # One BLAS thread per fit; limiting BLAS around both keeps them from undoing each
        # other's limit.
        with threadpool_limits(limits=1, user_api="blas"), \
                ThreadPoolExecutor(1, "aclecg-regions") as lane:
            region = None if name == "best" else lane.submit(
                region_probe, model, *self.parts, self.data.classes, self.device,
                seed=self.cfg.run.seed, n_bootstrap=self.cfg.probe.bootstrap, leads=leads)
            if known is None and self.whole:
                features = ProbeData(*(array for lead, y in zip(leads, self.labels, strict=True)
                                       for array in (global_features(model, lead), y)))
                entry.update(_whole_probe(self.reference, features, first))
                self.encoders.append(entry)
            if region is not None:
                self.regions[name] = round_, region.result()

    def write(self, run_dir: Path) -> tuple[dict[str, Any] | None, RegionProbeResult]:
        """Write ``holdout.json`` (when the rounds were probed on a share) and
        ``regions.json``; returns the first's content (None when not written) and the final
        encoder's region probe."""
        data, rounds, labels, cfg = self.data, self.rounds, self.labels, self.cfg
        holdout = None
        if self.whole:
            holdout = {
                "classes": data.classes, "n_train": len(data.train.records),
                "n_val": len(data.val.records), "n_test": len(data.test.records),
                "positives": _positives(labels[2], data.classes),
                "val_positives": _positives(labels[1], data.classes),
                "round_records": {"n_train": len(rounds.train.records),
                                  "n_val": len(rounds.val.records),
                                  "n_test": len(rounds.test.records)},
                "encoders": self.encoders,
            }
            _write(Path(run_dir) / HOLDOUT_FILE, holdout)
        (final_round, final), (_, start) = self.regions["final"], self.regions["round 0"]
        _write(Path(run_dir) / REGIONS_FILE, {
            "round": final_round, **final.to_dict(), "round0": start.to_dict(),
            "vs_round0": region_differences(final, start, cfg.run.seed, cfg.probe.bootstrap)})
        return holdout, final


def write_evidence(cfg: FederationConfig, run_dir: Path, probe: ServerProbe,
                   evidence: HoldoutEvidence | None = None
                   ) -> tuple[dict[str, Any] | None, RegionProbeResult]:
    """Where the rounds were probed on a share of the probe data (``probe.round-records``):
    probe round 0's, the best round's (chosen on that share's validation part) and the final
    encoder on all of it, each later one paired with round 0 on the same test records
    (``holdout.json``; otherwise metrics.json already holds these probes). Always: each region
    of round 0's and the final encoder (``regions.json``: the final encoder's
    ``RegionProbeResult.to_dict()`` with its round, ``round0`` the same for round 0,
    ``vs_round0`` the paired differences, :func:`region_differences`). One encoder pass per
    encoder serves both probes; ``evidence``: the encoders already added (round 0's while the
    rounds trained), the others are loaded from the run's checkpoints. Returns
    ``holdout.json``'s content (None when not written) and the final encoder's region probe."""
    evidence = evidence or HoldoutEvidence(cfg, probe)
    for name, file in ENCODERS:
        path = Path(run_dir) / "checkpoints" / file
        if name in evidence.names or (name == "best" and not (
                evidence.whole and checkpoint_paths(path)[1].exists())):
            continue
        model, meta = load_encoder(path, evidence.device)
        evidence.add(name, model, meta["round"])
    return evidence.write(run_dir)


def _whole_probe(reference: ReferenceProbe, features: ProbeData, first: bool
                 ) -> dict[str, Any]:
    """The whole-record probe of one encoder's features; the first is round 0's, the
    reference of the others, which are paired with it."""
    if first:
        return {**reference.set_reference(features).to_dict(), "vs_round0": None}
    result, difference = reference.probe(features)
    return {**result.to_dict(),
            "vs_round0": None if difference is None else difference.to_dict()}


def _positives(labels: np.ndarray, classes: list[str]) -> dict[str, int]:
    return {c: int(n) for c, n in zip(classes, labels.sum(axis=0), strict=True)}


def _write(path: Path, content: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n")
    tmp.replace(path)
