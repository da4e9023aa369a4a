"""Where each site's data and the server's probe data come from (simulation and deployment)."""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

from aclecg_core.data.cohort import Cohort
from aclecg_core.data.labels import PTBXL_SUPERCLASSES, SYNTHETIC_CLASSES
from aclecg_core.data.loading import load_cohort, load_sources
from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.data.sources import RecordSource, discover, with_header_metadata
from aclecg_core.fed.config import FederationConfig
from aclecg_core.fed.partition import partition_by_site, partition_dirichlet, partition_iid

_DONE = ".complete"


def ensure_synthetic_cohort(cfg: FederationConfig) -> Path:
    """Generate the synthetic cohort (training sites + one hold-out site) unless cached.

    ``site1 .. site{n}`` are the training sites, ``site{n+1}`` the labeled hold-out site of the
    server's probe. Written to a temporary folder first, so a killed run never leaves a partial
    cohort behind.
    """
    out = cfg.synthetic_dir()
    if (out / _DONE).is_file():
        return out
    from aclecg_core.data.synth import write_synthetic_cohort
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_synthetic_cohort(tmp, sites=cfg.cohort.sites + 1,
                               records_per_site=cfg.cohort.records_per_site,
                               seed=cfg.cohort.synthetic_seed)
        (tmp / _DONE).write_text("ok\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _load(cfg: FederationConfig, paths: list[Path], layout: str,
          workers: int | None = 1) -> Cohort:
    return load_cohort(paths, layout=layout,
                       preprocessing=PreprocessConfig.from_dict(cfg.preprocessing),
                       cache_dir=cfg.path(cfg.cohort.cache_dir) / "cohorts", workers=workers)


def count_classes(cfg: FederationConfig) -> list[str]:
    """The label vocabulary whose per-site counts the clients report (fixed across sites)."""
    c = cfg.cohort
    if c.classes:
        return list(c.classes)
    if c.source == "synthetic":
        return list(SYNTHETIC_CLASSES)
    if c.layout == "ptbxl":
        return list(PTBXL_SUPERCLASSES)
    return list(cfg.probe.classes)


def simulated_site(cfg: FederationConfig, index: int, num_sites: int) -> Cohort:
    """The training data of simulated site ``index`` (``partition-id``, 0-based) of
    ``num_sites``; with the synthetic cohort and partition ``site``: folder ``site{index+1}``.

    Partition first, then load: the split reads the records' metadata only (PTB-XL table,
    header comments), and the site reads and preprocesses its own records and no others.
    """
    c = cfg.cohort
    if num_sites != c.sites:
        raise ValueError(
            f"the federation runs {num_sites} nodes but cohort.sites is {c.sites} in "
            f"{cfg.run.config_file or 'the config'}: set cohort.sites to {num_sites} there, or "
            f"run {c.sites} nodes (flwr run . --federation-config 'num-supernodes={c.sites}')")
    if not 0 <= index < num_sites:
        raise ValueError(f"site index {index} outside 0..{num_sites - 1}")
    if c.source == "synthetic":
        root = ensure_synthetic_cohort(cfg)
        if c.partition == "site":
            return _load(cfg, [root / f"site{index + 1}"], "auto")
        paths, layout = [root / f"site{k}" for k in range(1, c.sites + 1)], "auto"
    else:
        paths, layout = [cfg.path(c.path)], c.layout
    sources = _described(tuple(paths), layout)
    if not sources:
        raise ValueError(f"no WFDB records found in {', '.join(map(str, paths))}")
    if c.partition == "site":
        names, masks = partition_by_site(sources)
        if len(names) != num_sites:
            raise ValueError(f"{cfg.path(c.path)} holds {len(names)} sites {names}, but the "
                             f"cohort config has sites={num_sites}")
    elif c.partition == "iid":
        masks = partition_iid(sources, num_sites, seed=cfg.run.seed)
    else:
        masks = partition_dirichlet(sources, num_sites, c.dirichlet_alpha, count_classes(cfg),
                                    seed=cfg.run.seed)
    mine = [s for s, keep in zip(sources, masks[index], strict=True) if keep]
    return load_sources(mine, PreprocessConfig.from_dict(cfg.preprocessing),
                        cache_dir=cfg.path(cfg.cohort.cache_dir) / "cohorts", workers=1)


@cache
def _described(paths: tuple[Path, ...], layout: str) -> list[RecordSource]:
    """Every record below ``paths`` with its header metadata, found once per process: a
    ClientApp worker serving several simulated sites splits the same folder for each."""
    return [with_header_metadata(s) for s in discover(list(paths), layout)]


def _frequent_labels(cohort: Cohort, min_records: int = 10, top: int = 10) -> list[str]:
    counts: dict[str, int] = {}
    for r in cohort.records:
        for label in set(r.labels):
            counts[label] = counts.get(label, 0) + 1
    ranked = sorted((n, lab) for lab, n in counts.items() if n >= min_records)
    return [lab for _, lab in reversed(ranked)][:top]


def probe_data(cfg: FederationConfig) -> tuple[Cohort, Cohort, Cohort, list[str]]:
    """(probe-train, probe-validation, probe-test, classes) of the server's centralized linear
    probe; the validation part is where the probe chooses its regularisation."""
    from aclecg_core.evaluation.probe import (
        patient_split,
        ptbxl_split,
        record_labels,
        validation_columns,
    )

    p = cfg.probe

    def split(c: Cohort) -> tuple[Cohort, Cohort, Cohort]:
        rest, test = patient_split(c, p.test_fraction, seed=cfg.run.seed)
        train, val = patient_split(rest, p.val_fraction, seed=cfg.run.seed)
        return train, val, test

    if p.source == "synthetic-holdout":
        root = ensure_synthetic_cohort(cfg)
        cohort = _load(cfg, [root / f"site{cfg.cohort.sites + 1}"], "auto", workers=None)
        train, val, test = split(cohort)
        classes = list(p.classes) or list(SYNTHETIC_CLASSES)
    elif p.source == "ptbxl":
        cohort = _load(cfg, [cfg.path(p.path)], "ptbxl", workers=None)
        train, val, test = ptbxl_split(cohort)
        classes = list(p.classes) or list(PTBXL_SUPERCLASSES)
    else:
        cohort = _load(cfg, [cfg.path(p.path)], p.layout if p.layout != "auto" else "cinc",
                       workers=None)
        train, val, test = split(cohort)
        classes = list(p.classes) or _frequent_labels(cohort)
    if not classes:
        raise ValueError(f"probe data {cfg.path(p.path)}: no label with enough records; "
                         "set probe.classes")
    try:
        validation_columns(record_labels(train, classes), record_labels(val, classes))
    except ValueError as exc:
        raise ValueError(f"probe data ({p.source}): {exc}; give the probe more labeled records "
                         "or change probe.val-fraction") from None
    return train, val, test, classes

