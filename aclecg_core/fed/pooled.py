"""The pooled reference of a simulated federation: what pooling the sites' ECGs would have given.

The same initial model is pretrained centrally on the union of the simulated sites' records,
with the run's training settings and the same samples (one epoch per round and local epoch),
and probed beside the run's final encoder on the server's probe data: the same label-fraction
draws, the same test records, paired bootstrap intervals of federated − pooled. Only a
simulation can do this (a deployment's server never holds the sites' records).
Writes ``RUN_DIR/pooled/encoder.safetensors`` (+ sidecar) and ``RUN_DIR/pooled.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aclecg_core.data.cohort import Cohort
from aclecg_core.evaluation.probe import split_features
from aclecg_core.evaluation.reference import compare_with_reference
from aclecg_core.fed.config import FederationConfig
from aclecg_core.fed.probe import load_probe_cohorts
from aclecg_core.fed.sites import load_folders, training_folders
from aclecg_core.fed.training import initial_model, train_instructions
from aclecg_core.method.checkpoint import (
    atomic_write,
    cohort_sites,
    corpus_summary,
    encoder_metadata,
    load_encoder,
    save_checkpoint,
)
from aclecg_core.method.device import pick_device
from aclecg_core.method.model import AclEcgModel, EncoderConfig
from aclecg_core.method.pretrain import PretrainConfig, PretrainResult, pretrain
from aclecg_core.settings import from_attributes

POOLED_FILE = "pooled.json"
POOLED_CHECKPOINT = Path("pooled") / "encoder.safetensors"


def pooled_cohort(cfg: FederationConfig) -> Cohort:
    """Every record the run's simulated sites train on, as one cohort (the partitions of the
    same folders cover every record; preprocessed as the sites preprocess)."""
    folders, layout = training_folders(cfg)
    return load_folders(cfg, folders, layout, workers=None)


def pretrain_pooled(cfg: FederationConfig, cohort: Cohort, rounds: int,
                    device: str = "auto", progress: bool = False
                    ) -> tuple[AclEcgModel, PretrainResult]:
    """The run's initial model pretrained centrally on ``cohort`` for ``rounds`` × the run's
    local epochs, with its method, batch size, optimizer and views (seed: the run's); what
    only a federation has (FedProx's proximal term, DP noise, server steps) is left out."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    model = initial_model(cfg)
    pcfg = from_attributes(PretrainConfig, train_instructions(cfg), proximal_mu=0.0,
                           epochs=rounds * cfg.run.local_epochs, seed=cfg.run.seed)
    result = pretrain(model, cohort, pcfg, device=pick_device(device), progress=progress)
    return model, result


def compare_pooled(cfg: FederationConfig, run_dir: Path, fractions: tuple[float, ...] = (0.1, 1.0),
                   draws: int = 5, device: str = "auto", progress: bool = False
                   ) -> dict[str, Any]:
    """Pretrain the pooled reference of the run in ``run_dir`` (its final round's samples),
    save it, probe it and the run's final encoder on the server's probe data at each label
    ``fractions`` (``draws`` stratified draws below 1), and write ``pooled.json``; returns its
    content. Raises :class:`~aclecg_core.method.checkpoint.CheckpointError` naming the file
    when the run has no final checkpoint, and ValueError when the sites' reported windows are
    not the config's cohort (not a simulation of it: the samples would differ)."""
    run_dir = Path(run_dir)
    federated, meta = load_encoder(run_dir / "checkpoints" / "final.safetensors")
    rounds = int(meta.get("round") or 0)
    cohort = pooled_cohort(cfg)
    fed_windows = (meta.get("corpus") or {}).get("windows")
    if fed_windows is None:
        raise ValueError(f"{run_dir}: the run's sites did not all report their training "
                         "windows, so the same samples cannot be checked")
    if fed_windows != len(cohort):
        raise ValueError(
            f"{run_dir}: the run's sites reported {fed_windows} training windows, its config's "
            f"cohort holds {len(cohort)}: compare-pooled needs a simulation of that cohort (a "
            "deployment's sites train on their own records, which the server does not hold)")
    pooled, result = pretrain_pooled(cfg, cohort, rounds, device, progress)
    pooled.eval()
    checkpoint = run_dir / POOLED_CHECKPOINT
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(checkpoint, pooled.state_dict(), encoder_metadata(
        method=cfg.run.method, encoder=EncoderConfig(size=cfg.run.encoder),
        preprocessing=cfg.preprocessing, round=None,
        metrics={"loss": result.loss}, config=cfg.to_dict(),
        corpus=corpus_summary("centralized", "the pooled records of the run's sites",
                              cohort_sites(cohort))))
    data = load_probe_cohorts(cfg)
    dev = pick_device(device)
    parts = (data.train, data.val, data.test)
    fed_features = split_features(federated.to(dev), *parts, data.classes, dev)
    pooled_features = split_features(pooled.to(dev), *parts, data.classes, dev)
    comparisons = []
    for fraction in fractions:
        n = draws if fraction < 1 else 1
        comparison = compare_with_reference(fed_features, pooled_features, data.classes,
                                            fraction, n, cfg.run.seed, cfg.probe.bootstrap)
        comparisons.append({"fraction": fraction, "draws": n,
                            "federated": comparison.encoder.to_dict(),
                            "pooled": comparison.reference.to_dict(),
                            "difference": comparison.difference.to_dict()})
    out = {
        "rounds": rounds, "local_epochs": cfg.run.local_epochs,
        "epochs": rounds * cfg.run.local_epochs, "records": len(cohort.records),
        "windows": len(cohort),
        "samples_seen": result.num_examples * rounds * cfg.run.local_epochs,
        "pooled_loss": result.loss, "seconds": round(result.seconds, 1),
        "checkpoint": str(POOLED_CHECKPOINT), "federated_checkpoint": "checkpoints/final",
        "classes": data.classes, "n_train": len(data.train.records),
        "n_val": len(data.val.records), "n_test": len(data.test.records),
        "seed": cfg.run.seed, "comparisons": comparisons,
    }
    atomic_write(run_dir / POOLED_FILE,
                 lambda tmp: Path(tmp).write_text(json.dumps(out, indent=2) + "\n"))
    return out
