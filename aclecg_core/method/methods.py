"""The contrastive methods by name: each is its two views, its loss Module and the embedding the
loss compares. :func:`~aclecg_core.method.pretrain.pretrain` looks the method up here and knows
nothing else of it.

- ``acl``: ACL-ECG's physiology-aware augmentations, region projections (N, R, P),
  :class:`~aclecg_core.method.losses.AnatomyAwareContrastiveLoss`; negatives: other records.
- ``simclr``: SimCLR's augmentations, the global projection (N, P),
  :class:`~aclecg_core.method.losses.NTXentLoss`; negatives: other records.
- ``clocs``: the two halves of each window (no augmentation), the global projection (N, P),
  :class:`~aclecg_core.method.losses.ClocsLoss`; negatives: other patients.

``PretrainConfig.views`` swaps the augmentations of ``acl`` or ``simclr`` (the ablation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor, nn

from aclecg_core.data.cohort import Cohort
from aclecg_core.method.augment import VIEW_KINDS, AdjacentSegments, ViewPipeline, Views
from aclecg_core.method.losses import AnatomyAwareContrastiveLoss, ClocsLoss, NTXentLoss
from aclecg_core.method.model import AclEcgModel

if TYPE_CHECKING:
    from aclecg_core.method.pretrain import PretrainConfig

__all__ = ["METHODS", "VIEWS", "Method", "views_for", "window_patients", "window_records"]


def window_records(cohort: Cohort) -> np.ndarray:
    """(n_windows,) int64 record of each window."""
    return np.asarray(cohort.window_record, dtype=np.int64)


def window_patients(cohort: Cohort) -> np.ndarray:
    """(n_windows,) int64 patient of each window (its record when the record has no patient id)."""
    keys = [r.patient_id or f"record:{r.record_id}" for r in cohort.records]
    _, patient = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    return patient.astype(np.int64)[window_records(cohort)]


@dataclass(frozen=True)
class Method:
    """One contrastive method.

    ``views``: the name of its own views in :data:`VIEW_BUILDERS`; ``loss``: its loss Module for
    a config, called as ``loss(z1, z2, group_ids)``; ``embed``: what the model produces from a
    view for the loss; ``groups``: the group of each window of a cohort (windows of one group are
    never negatives of each other), ``group`` its name in errors.
    """

    name: str
    title: str
    views: str
    loss: Callable[[PretrainConfig], nn.Module]
    embed: Callable[[AclEcgModel, Tensor], Tensor]
    groups: Callable[[Cohort], np.ndarray]
    group: str


def _augmentations(kind: str) -> Callable[[PretrainConfig], Views]:
    def build(cfg: PretrainConfig) -> Views:
        return ViewPipeline(method=kind, mask_fraction=cfg.mask_fraction,
                            crop_min_scale=cfg.crop_min_scale, max_shift_s=cfg.max_shift_s,
                            noise_std=cfg.noise_std, timeout_max_s=cfg.timeout_max_s)
    return build


VIEW_BUILDERS: dict[str, Callable[[PretrainConfig], Views]] = {
    **{kind: _augmentations(kind) for kind in VIEW_KINDS},
    "segments": lambda cfg: AdjacentSegments(),
}

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("acl", "ACL-ECG", "acl",
           lambda cfg: AnatomyAwareContrastiveLoss(cfg.temperature, cfg.gamma, cfg.acl_terms),
           AclEcgModel.forward_regions, window_records, "record"),
    Method("simclr", "SimCLR", "simclr", lambda cfg: NTXentLoss(cfg.temperature),
           AclEcgModel.forward_global, window_records, "record"),
    Method("clocs", "CLOCS", "segments", lambda cfg: ClocsLoss(cfg.temperature),
           AclEcgModel.forward_global, window_patients, "patient"),
)}

VIEWS = ("auto", *VIEW_KINDS)
"""Choices of ``PretrainConfig.views``: ``auto`` (the method's own) or the augmentations to swap
in (the ablation)."""


def views_for(cfg: PretrainConfig) -> Views:
    """The two views of ``cfg``: its method's own (``views="auto"``) or the named augmentations."""
    kind = METHODS[cfg.method].views if cfg.views == "auto" else cfg.views
    return VIEW_BUILDERS[kind](cfg)
