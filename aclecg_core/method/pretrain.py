"""Local contrastive pretraining (ACL-ECG, SimCLR or CLOCS), shared by centralized runs and
clients."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from tqdm.auto import tqdm

from aclecg_core.data.cohort import Cohort
from aclecg_core.method.device import AMP_MODES, autocast, pick_device
from aclecg_core.method.losses import ACL_TERMS
from aclecg_core.method.methods import METHODS, VIEWS, views_for
from aclecg_core.method.model import AclEcgModel
from aclecg_core.settings import Settings, from_dict, one_of

__all__ = ["METHODS", "VIEWS", "DivergenceError", "OptimizerState", "PretrainConfig",
           "PretrainResult", "pick_device", "pretrain"]

OptimizerState = dict[str, torch.Tensor]
"""AdamW's state of a model, keyed ``<kind>/<parameter name>`` (kinds :data:`ADAMW_KINDS`)."""
ADAMW_KINDS = ("step", "exp_avg", "exp_avg_sq")


@dataclass(frozen=True)
class PretrainConfig(Settings):
    """Pretraining hyper-parameters (augmentation widths in seconds).

    ``method``: ``acl`` (region embeddings, anatomy-aware loss), ``simclr`` (global embedding,
    NT-Xent) or ``clocs`` (global embedding of the two halves of each window, CMSC loss, no
    augmentation: the segments are the views). ``acl_terms``: the ACL loss terms (``both``,
    ``intra``, ``inter``; the ablation). ``views``: the augmentations, ``auto`` = the method's
    own (ACL-ECG's physiology-aware views or SimCLR's), or ``acl`` / ``simclr`` to swap them.
    """

    WHAT = "pretrain"

    method: Annotated[str, one_of(METHODS)] = "acl"
    acl_terms: Annotated[str, one_of(ACL_TERMS)] = "both"
    views: Annotated[str, one_of(VIEWS)] = "auto"
    epochs: PositiveInt = 30
    batch_size: Annotated[int, Field(ge=2, description=">= 2 (contrastive learning needs "
                                                       "negatives)")] = 64
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 1e-4
    temperature: PositiveFloat = 0.1
    gamma: Annotated[float, Field(ge=0, le=1)] = 0.5
    proximal_mu: NonNegativeFloat = 0.0
    seed: int = 0
    amp: Annotated[str, one_of(AMP_MODES)] = "auto"
    mask_fraction: Annotated[float, Field(ge=0, le=1)] = 0.2
    crop_min_scale: Annotated[float, Field(gt=0, le=1)] = 0.5
    max_shift_s: NonNegativeFloat = 0.5
    noise_std: NonNegativeFloat = 0.05
    timeout_max_s: NonNegativeFloat = 1.0

    def problems(self) -> list[str]:
        if self.method == "clocs" and self.views != "auto":
            return ["method 'clocs' uses no augmentation: views must be 'auto'"]
        return []

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainConfig:
        return from_dict(cls, data)


class DivergenceError(ValueError):
    """Training diverged: the loss became NaN or infinite."""


@dataclass
class PretrainResult:
    """Outcome of :func:`pretrain`: ``loss`` is the mean loss of the last epoch;
    ``optimizer_state`` the optimizer's state at the end (on the CPU)."""

    loss: float
    losses: list[float] = field(default_factory=list)
    num_examples: int = 0
    seconds: float = 0.0
    samples_per_second: float = 0.0
    optimizer_state: OptimizerState = field(default_factory=dict)


def _proximal_term(model: AclEcgModel, reference: dict[str, torch.Tensor]) -> torch.Tensor:
    params = dict(model.named_parameters())
    missing = sorted(set(reference) - set(params))
    if missing:
        raise KeyError(f"reference weights name unknown parameters: {missing[:5]}")
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, ref in reference.items():
        total = total + (params[name] - ref).pow(2).sum()
    return total


def _save_state(optimizer: torch.optim.Optimizer, names: list[str]) -> OptimizerState:
    """The state of ``optimizer`` over parameters ``names`` (in its order), by name, on the CPU."""
    return {f"{kind}/{names[index]}": value.detach().to("cpu", copy=True)
            for index, entry in optimizer.state_dict()["state"].items()
            for kind, value in entry.items()}


def _load_state(optimizer: torch.optim.Optimizer, model: AclEcgModel,
                state: Mapping[str, torch.Tensor]) -> None:
    """Start ``optimizer`` (over ``model.parameters()``) from a saved :data:`OptimizerState`.

    Every parameter named must exist with the saved shape (the step counts: 0-d) and have each
    of :data:`ADAMW_KINDS` (ValueError naming the first that does not); parameters left out
    start fresh.
    """
    params = dict(model.named_parameters())
    index = {name: i for i, name in enumerate(params)}
    entries: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        kind, _, name = key.partition("/")
        if name not in params or kind not in ADAMW_KINDS:
            raise ValueError(f"optimizer state entry {key!r} names no {'/'.join(ADAMW_KINDS)} "
                             "of a parameter of this model (was it saved for another model?)")
        shape = () if kind == "step" else tuple(params[name].shape)
        if tuple(value.shape) != shape:
            raise ValueError(f"optimizer state {key!r} has shape {tuple(value.shape)}, not "
                             f"{shape} (saved for another model?)")
        entries.setdefault(index[name], {})[kind] = value.clone()  # AdamW updates in place
    for i, entry in entries.items():
        if set(entry) != set(ADAMW_KINDS):
            missing = sorted(set(ADAMW_KINDS) - set(entry))
            raise ValueError(f"optimizer state of {list(params)[i]!r} lacks {missing}")
    saved = optimizer.state_dict()
    optimizer.load_state_dict({**saved, "state": entries})


def pretrain(
    model: AclEcgModel,
    cohort: Cohort,
    cfg: PretrainConfig,
    device: str | torch.device = "cpu",
    reference_weights: dict[str, torch.Tensor] | None = None,
    progress: bool = False,
    optimizer_state: Mapping[str, torch.Tensor] | None = None,
) -> PretrainResult:
    """Train ``model`` in place for ``cfg.epochs`` epochs over every window of ``cohort``.

    The method (:data:`~aclecg_core.method.methods.METHODS`) gives the two views of each batch,
    the embedding of each view and the loss Module comparing them. Each epoch shuffles the
    windows with a generator seeded from ``cfg.seed``; augmentations draw from a second seeded
    generator (both on the CPU), so CPU runs are deterministic. Windows of the same record are
    never negatives of each other (CLOCS: of the same patient); batches with fewer than two
    records (patients) are skipped. With ``cfg.proximal_mu > 0`` the FedProx term
    ``mu / 2 * ||w - w_ref||²`` over the parameters named in ``reference_weights`` is added. A
    non-finite loss stops the training with :class:`DivergenceError` naming the step (counted
    from 1 over all epochs). AdamW starts from ``optimizer_state`` (moments and step counts of
    an earlier call's :attr:`PretrainResult.optimizer_state`, keyed by parameter name: a state
    of another model is a ValueError) or, without it, fresh; its learning rate and weight
    decay are ``cfg``'s.
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
    method = METHODS[cfg.method]
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if optimizer_state:
        _load_state(optimizer, model, optimizer_state)
    views = views_for(cfg)
    loss_fn = method.loss(cfg)
    order_gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1)
    signals = torch.from_numpy(np.ascontiguousarray(cohort.signals, dtype=np.float32))
    rpeaks = torch.from_numpy(np.ascontiguousarray(cohort.rpeaks)).long()
    groups = torch.from_numpy(method.groups(cohort))
    if len(torch.unique(groups)) < 2:
        raise ValueError(f"{method.title} needs windows of at least two {method.group}s")
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
            batch_groups = groups[idx]
            if len(torch.unique(batch_groups)) < 2:
                continue
            x = signals[idx].to(device, non_blocking=True)
            ids = batch_groups.to(device)
            v1, v2 = views(x, rpeaks[idx], cohort.fs, aug_gen)
            with autocast(device, cfg.amp):
                z1, z2 = method.embed(model, v1), method.embed(model, v2)
            loss = loss_fn(z1, z2, ids)
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
        optimizer_state=_save_state(optimizer, [n for n, _ in model.named_parameters()]),
    )
