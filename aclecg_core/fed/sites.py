"""Where a run's data come from: the synthetic cohort, each simulated site's share of the cohort,
and folders read with the run's preprocessing and cache."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from aclecg_core.data.cohort import Cohort
from aclecg_core.data.loading import load_cohort, load_sources
from aclecg_core.data.preprocess import PreprocessConfig, whole_records
from aclecg_core.data.sources import RecordSource, described
from aclecg_core.evaluation.splits import CLASS_SETS
from aclecg_core.fed.config import FederationConfig
from aclecg_core.fed.partition import partition_by_site, partition_dirichlet, partition_iid

_DONE = ".complete"


def ensure_synthetic_cohort(cfg: FederationConfig) -> Path:
    """Generate the synthetic cohort (training sites + one hold-out site) unless cached.

    ``site1 .. site{n}`` are the training sites, ``site{n+1}`` the labeled hold-out site of the
    server's probe: ``probe.holdout-records`` records with the reference case mix, or (0) a
    site like the others. Written to a temporary folder first, so a killed run never leaves a
    partial cohort behind.
    """
    out = cfg.synthetic_dir()
    if (out / _DONE).is_file():
        return out
    from aclecg_core.data.synth import write_synthetic_cohort
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        held = cfg.probe.holdout_records
        write_synthetic_cohort(tmp, sites=cfg.cohort.sites + (not held),
                               records_per_site=cfg.cohort.records_per_site,
                               seed=cfg.cohort.synthetic_seed, reference_records=held)
        (tmp / _DONE).write_text("ok\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_folders(cfg: FederationConfig, paths: list[Path], layout: str,
                 workers: int | None = 1, whole: bool = False) -> Cohort:
    """Every record below ``paths``, preprocessed as the run asks (``whole``: with windows
    tiling each record, as the probe sees them), in the run's cache."""
    pre = PreprocessConfig.from_dict(cfg.preprocessing)
    return load_cohort(paths, layout=layout, preprocessing=whole_records(pre) if whole else pre,
                       cache_dir=cfg.path(cfg.cohort.cache_dir) / "cohorts", workers=workers)


def count_classes(cfg: FederationConfig) -> list[str]:
    """The label vocabulary whose per-site counts the clients report (fixed across sites)."""
    c = cfg.cohort
    if c.classes:
        return list(c.classes)
    if c.source == "synthetic":
        return list(CLASS_SETS["synthetic"])
    if c.layout == "ptbxl":
        return list(CLASS_SETS["ptbxl"])
    return list(cfg.probe.classes)


def training_folders(cfg: FederationConfig) -> tuple[list[Path], str]:
    """The folders the simulated sites' records come from and their layout: the synthetic
    training sites' folders, or the cohort's ``paths`` / ``path``."""
    c = cfg.cohort
    if c.source == "synthetic":
        root = ensure_synthetic_cohort(cfg)
        return [root / f"site{k}" for k in range(1, c.sites + 1)], "auto"
    return [cfg.path(p) for p in c.folders()], c.layout


def simulated_site(cfg: FederationConfig, index: int, num_sites: int) -> Cohort:
    """The training data of simulated site ``index`` (``partition-id``, 0-based) of
    ``num_sites``; with the synthetic cohort and partition ``site``: folder ``site{index+1}``.

    Partition first, then load: the split reads the records' metadata only (PTB-XL table,
    header comments), and the site reads and preprocesses its own records and no others.
    """
    _check_index(cfg, index, num_sites)
    paths, _ = training_folders(cfg)
    if cfg.cohort.source == "synthetic" and cfg.cohort.partition == "site":
        return load_folders(cfg, [paths[index]], "auto")
    sources, _, masks = _partition(cfg, num_sites)
    mine = [s for s, keep in zip(sources, masks[index], strict=True) if keep]
    return load_sources(mine, PreprocessConfig.from_dict(cfg.preprocessing),
                        cache_dir=cfg.path(cfg.cohort.cache_dir) / "cohorts", workers=1)


def simulated_site_name(cfg: FederationConfig, index: int, num_sites: int) -> str:
    """What simulated site ``index`` is called in reports beside its label ``site{index+1}``:
    its hospital (the records' ``site``) when the cohort's folders are partitioned by site,
    else the label itself."""
    _check_index(cfg, index, num_sites)
    if cfg.cohort.source == "synthetic" or cfg.cohort.partition != "site":
        return f"site{index + 1}"
    names = _partition(cfg, num_sites)[1]
    return names[index] if names else f"site{index + 1}"


def _check_index(cfg: FederationConfig, index: int, num_sites: int) -> None:
    c = cfg.cohort
    if num_sites != c.sites:
        raise ValueError(
            f"the federation runs {num_sites} nodes but cohort.sites is {c.sites} in "
            f"{cfg.run.config_file or 'the config'}: set cohort.sites to {num_sites} there, or "
            f"run {c.sites} nodes (flwr run . --federation-config 'num-supernodes={c.sites}')")
    if not 0 <= index < num_sites:
        raise ValueError(f"site index {index} outside 0..{num_sites - 1}")


def _partition(cfg: FederationConfig, num_sites: int
               ) -> tuple[list[RecordSource], list[str], list[np.ndarray]]:
    """The cohort folders' records, the site names (partition ``site``; else none) and one
    record mask per simulated site."""
    c = cfg.cohort
    paths, layout = training_folders(cfg)
    sources = described(tuple(paths), layout)
    if not sources:
        raise ValueError(f"no WFDB records found in {', '.join(map(str, paths))}")
    names: list[str] = []
    if c.partition == "site":
        names, masks = partition_by_site(sources)
        if len(names) != num_sites:
            raise ValueError(f"{', '.join(map(str, paths))} hold {len(names)} sites {names}, but "
                             f"the cohort config has sites={num_sites} (leave sites out to "
                             "federate every hospital found)")
    elif c.partition == "iid":
        masks = partition_iid(sources, num_sites, seed=cfg.run.seed)
    else:
        masks = partition_dirichlet(sources, num_sites, c.dirichlet_alpha, count_classes(cfg),
                                    seed=cfg.run.seed)
    return sources, names, masks
