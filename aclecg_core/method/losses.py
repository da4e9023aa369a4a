"""Contrastive losses: a functional core over similarity masks, and ``nn.Module`` wrappers.

All losses L2-normalise the embeddings and use cosine similarities divided by ``temperature``.
Positives and negatives are boolean masks built from record, region and view ids, and one
formula serves every term: for an anchor ``i`` with positives ``P(i)`` and negatives ``N(i)``,

    l(i) = mean_{p in P(i)} -log( exp(s_ip) / (exp(s_ip) + sum_{n in N(i)} exp(s_in)) ),

averaged over all anchors (so several positives are averaged one InfoNCE each; every positive
sees the same negatives but not the other positives). With one positive and ``N(i)`` = every
other candidate this is exactly NT-Xent.

``record_ids`` (optional, (N,)): windows of the same record are never negatives of each other
(they are not positives either, the positive is the other view of the same window).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_info_nce(sim: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
    """Mean over anchors of ``l(i)`` (module docstring).

    Args:
        sim: (A, C) similarities (already divided by the temperature).
        positive: bool (A, C); every anchor needs at least one positive.
        negative: bool (A, C) disjoint from ``positive``; every anchor needs at least one.
    """
    if sim.shape != positive.shape or sim.shape != negative.shape:
        raise ValueError("sim, positive and negative must have the same shape")
    if bool((positive & negative).any()):
        raise ValueError("a pair cannot be both positive and negative")
    n_pos = positive.sum(dim=1)
    if bool((n_pos == 0).any()) or bool((negative.sum(dim=1) == 0).any()):
        raise ValueError("every anchor needs at least one positive and one negative")
    neg_lse = torch.logsumexp(sim.masked_fill(~negative, float("-inf")), dim=1, keepdim=True)
    per_pair = torch.logaddexp(sim, neg_lse) - sim
    per_anchor = (per_pair * positive).sum(dim=1) / n_pos
    return per_anchor.mean()


def _check_pair(z1: Tensor, z2: Tensor, ndim: int, temperature: float) -> None:
    if z1.ndim != ndim or z1.shape != z2.shape:
        raise ValueError(
            f"views must have the same {ndim}-d shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _record_ids(record_ids: Tensor | None, n: int, device: torch.device) -> Tensor:
    if record_ids is None:
        return torch.arange(n, device=device)
    if record_ids.shape != (n,):
        raise ValueError(f"record_ids must have shape ({n},), got {tuple(record_ids.shape)}")
    if len(torch.unique(record_ids)) < 2:
        raise ValueError("contrastive losses need at least two different records in the batch")
    return record_ids.to(device)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.1,
            record_ids: Tensor | None = None) -> Tensor:
    """SimCLR's NT-Xent over the 2N pool of both views.

    Args:
        z1, z2: (N, P) projections of view 1 and view 2; N >= 2.
    Returns: scalar; anchor ``(n, a)`` has positive ``(n, other view)``, all other members of the
    pool (apart from same-record windows) are negatives. Symmetric in the views.
    """
    _check_pair(z1, z2, 2, temperature)
    n = z1.shape[0]
    if n < 2:
        raise ValueError("nt_xent needs a batch of at least 2 (no negatives otherwise)")
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    records = _record_ids(record_ids, n, z.device).repeat(2)
    sample = torch.arange(n, device=z.device).repeat(2)
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    positive = (sample[:, None] == sample[None]) & ~eye
    negative = records[:, None] != records[None]
    return masked_info_nce(sim, positive, negative)


def acl_ecg_loss(r1: Tensor, r2: Tensor, temperature: float = 0.1, gamma: float = 0.5,
                 record_ids: Tensor | None = None) -> Tensor:
    """The anatomy-aware loss ``gamma * intra + (1 - gamma) * inter``.

    Args:
        r1, r2: (N, R, P) region projections of view 1 and view 2; N >= 2.
        gamma: weight of the intra-region term, in [0, 1]. With R = 1 the inter-region term is
            undefined: only ``gamma = 1`` is accepted.

    Candidates are the 2·N·R embeddings; anchors are all of them (both views: symmetric).

    - intra: for anchor (n, d, view a), the positive is (n, d, other view); negatives are the
      same region d of the other records in both views (NT-Xent inside region d's 2N pool).
    - inter: the positives are (n, d', other view) for every d' != d; the negatives are all
      regions of the other records in the other view. Each positive gets its own InfoNCE
      against those negatives, averaged over the R - 1 positives.
    """
    _check_pair(r1, r2, 3, temperature)
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    n, n_regions, _ = r1.shape
    if n < 2:
        raise ValueError("acl_ecg_loss needs a batch of at least 2 (no negatives otherwise)")
    if n_regions < 2 and gamma < 1:
        raise ValueError("the inter-region term needs at least 2 regions; use gamma=1.0")
    z = F.normalize(torch.stack([r1, r2]).float(), dim=-1).reshape(2 * n * n_regions, -1)
    sim = z @ z.T / temperature
    grid = torch.meshgrid(
        torch.arange(2, device=z.device),
        torch.arange(n, device=z.device),
        torch.arange(n_regions, device=z.device),
        indexing="ij",
    )
    view, sample, region = (g.reshape(-1) for g in grid)
    record = _record_ids(record_ids, n, z.device)[sample]
    same_sample = sample[:, None] == sample[None]
    same_region = region[:, None] == region[None]
    other_view = view[:, None] != view[None]
    other_record = record[:, None] != record[None]
    intra = masked_info_nce(sim, same_sample & same_region & other_view, same_region & other_record)
    if gamma == 1:
        return intra
    inter = masked_info_nce(sim, same_sample & ~same_region & other_view, other_record & other_view)
    return gamma * intra + (1 - gamma) * inter


class NTXentLoss(nn.Module):
    """Module form of :func:`nt_xent`: ``forward(z1 (N, P), z2 (N, P)) -> scalar``."""

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, z1: Tensor, z2: Tensor, record_ids: Tensor | None = None) -> Tensor:
        return nt_xent(z1, z2, self.temperature, record_ids)


class AnatomyAwareContrastiveLoss(nn.Module):
    """Module form of :func:`acl_ecg_loss`: ``forward(r1 (N, R, P), r2 (N, R, P)) -> scalar``."""

    def __init__(self, temperature: float = 0.1, gamma: float = 0.5) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 <= gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        self.temperature = temperature
        self.gamma = gamma

    def forward(self, r1: Tensor, r2: Tensor, record_ids: Tensor | None = None) -> Tensor:
        return acl_ecg_loss(r1, r2, self.temperature, self.gamma, record_ids)
