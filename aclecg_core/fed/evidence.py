"""Evidence of a finished run on all of the server's probe data: the probe of round 0's
random-init encoder, the best round's and the final one where the rounds were probed on
``probe.round-records`` of them (``RUN_DIR/holdout.json``), and the per-region probe of the
final encoder against round 0's (``RUN_DIR/regions.json``); the report reads both."""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
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


def write_evidence(cfg: FederationConfig, run_dir: Path, probe: ServerProbe
                   ) -> tuple[dict[str, Any] | None, RegionProbeResult]:
    """Where the rounds were probed on a share of the probe data (``probe.round-records``):
    probe round 0's, the best round's (chosen on that share's validation part) and the final
    encoder on all of it, each later one paired with round 0 on the same test records
    (``holdout.json``; otherwise metrics.json already holds these probes). Always: each region
    of round 0's and the final encoder (``regions.json``: the final encoder's
    ``RegionProbeResult.to_dict()`` with its round, ``round0`` the same for round 0,
    ``vs_round0`` the paired differences, :func:`region_differences`). One encoder pass per
    encoder serves both probes. Returns ``holdout.json``'s content (None when not written) and
    the final encoder's region probe."""
    device = pick_device(cfg.run.device)
    data, rounds = probe.cohorts(), probe.round_cohorts()
    whole = rounds.records < data.records
    parts = (data.train, data.val, data.test)
    labels = [record_labels(part, data.classes) for part in parts]
    reference = ReferenceProbe(*parts, data.classes, seed=cfg.run.seed,
                               n_bootstrap=cfg.probe.bootstrap, device=device)
    encoders: list[dict[str, Any]] = []
    done: dict[int, dict[str, Any]] = {}
    regions: dict[str, tuple[int, Future[RegionProbeResult]]] = {}
    # The encoder passes run here, one encoder after the other; the probes fitted on their
    # features run beside them in two lanes, whole-record probes (round 0 first: the others
    # are paired with it) and region probes, each lane in order. The fits use one BLAS thread
    # each; limiting BLAS for the whole block keeps the lanes from undoing each other's limit.
    with threadpool_limits(limits=1, user_api="blas"), \
            ThreadPoolExecutor(1, "aclecg-holdout") as holdout_lane, \
            ThreadPoolExecutor(1, "aclecg-regions") as region_lane:
        for name, model, meta in _encoders(run_dir, device, best=whole):
            if meta["round"] in done:  # the best round is the final one (or round 0)
                done[meta["round"]]["names"].append(name)
            else:
                leads = [record_lead_features(model, part, device) for part in parts]
                entry: dict[str, Any] = {"names": [name], "round": meta["round"]}
                if whole:
                    features = ProbeData(*(array for lead, y in zip(leads, labels, strict=True)
                                           for array in (global_features(model, lead), y)))
                    entry["probe"] = holdout_lane.submit(
                        _whole_probe, reference, features, first=not done)
                    encoders.append(entry)
                done[meta["round"]] = entry
            if name != "best":
                regions[name] = meta["round"], region_lane.submit(
                    region_probe, model, *parts, data.classes, device, seed=cfg.run.seed,
                    n_bootstrap=cfg.probe.bootstrap, leads=leads)
    for entry in encoders:
        entry.update(entry.pop("probe").result())
    holdout = None
    if whole:
        holdout = {
            "classes": data.classes, "n_train": len(data.train.records),
            "n_val": len(data.val.records), "n_test": len(data.test.records),
            "positives": _positives(labels[2], data.classes),
            "val_positives": _positives(labels[1], data.classes),
            "round_records": {"n_train": len(rounds.train.records),
                              "n_val": len(rounds.val.records),
                              "n_test": len(rounds.test.records)},
            "encoders": encoders,
        }
        _write(Path(run_dir) / HOLDOUT_FILE, holdout)
    (final_round, final_job), (_, start_job) = regions["final"], regions["round 0"]
    final, start = final_job.result(), start_job.result()
    _write(Path(run_dir) / REGIONS_FILE, {
        "round": final_round, **final.to_dict(), "round0": start.to_dict(),
        "vs_round0": region_differences(final, start, cfg.run.seed, cfg.probe.bootstrap)})
    return holdout, final


def _whole_probe(reference: ReferenceProbe, features: ProbeData, first: bool
                 ) -> dict[str, Any]:
    """The whole-record probe of one encoder's features; the first is round 0's, the
    reference of the others, which are paired with it."""
    if first:
        return {**reference.set_reference(features).to_dict(), "vs_round0": None}
    result, difference = reference.probe(features)
    return {**result.to_dict(),
            "vs_round0": None if difference is None else difference.to_dict()}


def _encoders(run_dir: Path, device: torch.device | str, best: bool
              ) -> list[tuple[str, AclEcgModel, dict[str, Any]]]:
    """Round 0's, the best (if ``best`` and there is one) and the final checkpoint."""
    out = []
    for name, file in ENCODERS:
        path = Path(run_dir) / "checkpoints" / file
        if name == "best" and not (best and checkpoint_paths(path)[1].exists()):
            continue
        model, meta = load_encoder(path, device)
        out.append((name, model, meta))
    return out


def _positives(labels: np.ndarray, classes: list[str]) -> dict[str, int]:
    return {c: int(n) for c, n in zip(classes, labels.sum(axis=0), strict=True)}


def _write(path: Path, content: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n")
    tmp.replace(path)
