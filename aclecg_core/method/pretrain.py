"""Local contrastive pretraining (ACL-ECG, SimCLR or CLOCS), shared by centralized runs and
clients."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from aclecg_core.data.cohort import Cohort
from aclecg_core.method.augment import ViewPipeline
from aclecg_core.method.device import autocast, pick_device
from aclecg_core.method.losses import ACL_TERMS, acl_ecg_loss, clocs_loss, nt_xent
from aclecg_core.method.model import AclEcgModel
from aclecg_core.settings import reject_unknown_keys

__all__ = ["METHODS", "VIEWS", "DivergenceError", "PretrainConfig", "PretrainResult",
           "pick_device", "pretrain"]

METHODS = ("acl", "simclr", "clocs")
VIEWS = ("auto", "acl", "simclr")


@dataclass(frozen=True)
class PretrainConfig:
    """Pretraining hyper-parameters (augmentation widths in seconds).

    ``method``: ``acl`` (region embeddings, anatomy-aware loss), ``simclr`` (global embedding,
    NT-Xent) or ``clocs`` (global embedding of the two halves of each window, CMSC loss, no
    augmentation: the segments are the views). ``acl_terms``: the ACL loss terms (``both``,
    ``intra``, ``inter``; the ablation). ``views``: the augmentations, ``auto`` = the method's
    own (ACL-ECG's physiology-aware views or SimCLR's), or ``acl`` / ``simclr`` to swap them.
    """

    method: str = "acl"
    acl_terms: str = "both"
    views: str = "auto"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    gamma: float = 0.5
    proximal_mu: float = 0.0
    seed: int = 0
    amp: str = "auto"
    mask_fraction: float = 0.2
    crop_min_scale: float = 0.5
    max_shift_s: float = 0.5
    noise_std: float = 0.05
    timeout_max_s: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        for name, choices in (("method", METHODS), ("acl_terms", ACL_TERMS), ("views", VIEWS)):
            if getattr(self, name) not in choices:
                problems.append(f"{name} must be one of {list(choices)}, "
                                f"got {getattr(self, name)!r}")
        if self.method == "clocs" and self.views != "auto":
            problems.append("method 'clocs' uses no augmentation: views must be 'auto'")
        if self.amp not in ("auto", "off"):
            problems.append(f"amp must be 'auto' or 'off', got {self.amp!r}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if self.batch_size == 1:
            problems.append("batch_size must be >= 2 (contrastive learning needs negatives)")
        for name in ("lr", "temperature"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("weight_decay", "proximal_mu", "max_shift_s", "noise_std", "timeout_max_s"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("gamma", "mask_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not 0 < self.crop_min_scale <= 1:
            problems.append(f"crop_min_scale must be in (0, 1], got {self.crop_min_scale!r}")
        if problems:
            raise ValueError("invalid pretrain config: " + "; ".join(problems))

    def view_pipeline(self) -> ViewPipeline:
        """The augmentations of ``views`` (``auto``: the method's own)."""
        if self.views != "auto":
            kind = self.views
        else:
            kind = "simclr" if self.method == "simclr" else "acl"
        return ViewPipeline(
            method=kind,
            mask_fraction=self.mask_fraction,
            crop_min_scale=self.crop_min_scale,
            max_shift_s=self.max_shift_s,
            noise_std=self.noise_std,
            timeout_max_s=self.timeout_max_s,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainConfig:
        reject_unknown_keys(cls, data, "pretrain config keys")
        return cls(**data)


class DivergenceError(ValueError):
    """Training diverged: the loss became NaN or infinite."""


@dataclass
class PretrainResult:
    """Outcome of :func:`pretrain`: ``loss`` is the mean loss of the last epoch."""

    loss: float
    losses: list[float] = field(default_factory=list)
    num_examples: int = 0
    seconds: float = 0.0
    samples_per_second: float = 0.0


def _proximal_term(model: AclEcgModel, reference: dict[str, torch.Tensor]) -> torch.Tensor:
    params = dict(model.named_parameters())
    missing = sorted(set(reference) - set(params))
    if missing:
        raise KeyError(f"reference weights name unknown parameters: {missing[:5]}")
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, ref in reference.items():
        total = total + (params[name] - ref).pow(2).sum()
    return total


def _patient_of_window(cohort: Cohort) -> np.ndarray:
    """(n_windows,) int64 group of each window for CLOCS: its patient, or its record when the
    record has no patient id."""
    keys = [r.patient_id or f"record:{r.record_id}" for r in cohort.records]
    _, patient = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    return patient.astype(np.int64)[np.asarray(cohort.window_record, dtype=np.int64)]


def pretrain(
    model: AclEcgModel,
    cohort: Cohort,
    cfg: PretrainConfig,
    device: str | torch.device = "cpu",
    reference_weights: dict[str, torch.Tensor] | None = None,
    progress: bool = False,
) -> PretrainResult:
    """Train ``model`` in place for ``cfg.epochs`` epochs over every window of ``cohort``.

    Each epoch shuffles the windows with a generator seeded from ``cfg.seed``; augmentations
    draw from a second seeded generator (both on the CPU), so CPU runs are deterministic.
    Windows of the same record are never negatives of each other (CLOCS: of the same patient);
    batches with fewer than two records (patients) are skipped. With ``cfg.proximal_mu > 0``
    the FedProx term ``mu / 2 * ||w - w_ref||²`` over the parameters named in
    ``reference_weights`` is added. A non-finite loss stops the training with
    :class:`DivergenceError` naming the step (counted from 1 over all epochs).
    """
    device = pick_device(device) if isinstance(device, str) else device
    if len(cohort) == 0:
        raise ValueError("cannot pretrain on an empty cohort")
    if len(np.unique(cohort.window_record)) < 2:
        raise ValueError("contrastive pretraining needs windows of at least two records")
    if cfg.proximal_mu > 0 and not reference_weights:
        raise ValueError("proximal_mu > 0 needs reference_weights")
    reference = {
        k: v.detach().to(device, torch.float32) for k, v in (reference_weights or {}).items()
    } if cfg.proximal_mu > 0 else {}
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    views = cfg.view_pipeline()
    order_gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1)
    signals = torch.from_numpy(np.ascontiguousarray(cohort.signals, dtype=np.float32))
    rpeaks = torch.from_numpy(np.ascontiguousarray(cohort.rpeaks)).long()
    records = torch.from_numpy(np.asarray(cohort.window_record, dtype=np.int64))
    if cfg.method == "clocs":
        records = torch.from_numpy(_patient_of_window(cohort))
        if len(torch.unique(records)) < 2:
            raise ValueError("CLOCS needs windows of at least two patients")
    losses: list[float] = []
    seen = steps = 0
    start = time.perf_counter()
    bar = tqdm(total=cfg.epochs * len(cohort), disable=not progress, unit="ecg", desc=cfg.method)
    for _ in range(cfg.epochs):
        order = torch.randperm(len(cohort), generator=order_gen)
        epoch_loss, epoch_batches = 0.0, 0
        for begin in range(0, len(order), cfg.batch_size):
            idx = order[begin : begin + cfg.batch_size]
            bar.update(len(idx))
            batch_records = records[idx]
            if len(torch.unique(batch_records)) < 2:
                continue
            x = signals[idx].to(device, non_blocking=True)
            ids = batch_records.to(device)
            if cfg.method == "clocs":
                half = x.shape[2] // 2
                v1, v2 = x[..., :half], x[..., half : 2 * half]
            else:
                v1, v2 = views(x, rpeaks[idx], cohort.fs, aug_gen)
            with autocast(device, cfg.amp):
                if cfg.method == "acl":
                    z1, z2 = model.forward_regions(v1), model.forward_regions(v2)
                else:
                    z1, z2 = model.forward_global(v1), model.forward_global(v2)
            if cfg.method == "acl":
                loss = acl_ecg_loss(z1, z2, cfg.temperature, cfg.gamma, ids, cfg.acl_terms)
            elif cfg.method == "clocs":
                loss = clocs_loss(z1, z2, cfg.temperature, ids)
            else:
                loss = nt_xent(z1, z2, cfg.temperature, ids)
            steps += 1
            value = float(loss.detach())
            if not math.isfinite(value):
                bar.close()
                raise DivergenceError(f"non-finite loss ({value}) at step {steps} (lr {cfg.lr:g})")
            objective = loss
            if reference:
                objective = loss + cfg.proximal_mu / 2 * _proximal_term(model, reference)
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            epoch_loss += value
            epoch_batches += 1
            seen += len(idx)
            bar.set_postfix(loss=f"{value:.3f}")
        losses.append(epoch_loss / epoch_batches if epoch_batches else float("nan"))
    bar.close()
    seconds = time.perf_counter() - start
    return PretrainResult(
        loss=losses[-1],
        losses=losses,
        num_examples=seen // cfg.epochs,
        seconds=seconds,
        samples_per_second=seen / seconds if seconds > 0 else 0.0,
    )
