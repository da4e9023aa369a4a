"""Contrastive losses: the ``nn.Module`` each method's training calls, over a functional core.

All losses L2-normalise the embeddings and use cosine similarities divided by ``temperature``.
Positives and negatives are boolean masks built from record, region and view ids, and one
formula serves every term: for an anchor ``i`` with positives ``P(i)`` and negatives ``N(i)``,

    l(i) = mean_{p in P(i)} -log( exp(s_ip) / (exp(s_ip) + sum_{n in N(i)} exp(s_in)) ),

averaged over all anchors (so several positives are averaged one InfoNCE each; every positive
sees the same negatives but not the other positives). With one positive and ``N(i)`` = every
other candidate this is exactly NT-Xent.

``record_ids`` (optional, (N,)): windows of the same record are never negatives of each other
(they are not positives either, the positive is the other view of the same window).

Three methods: SimCLR's NT-Xent (:class:`NTXentLoss`), ACL-ECG's anatomy-aware loss
(:class:`AnatomyAwareContrastiveLoss`, with its intra- and inter-region terms selectable for the
ablation) and CLOCS's contrastive multi-segment coding (:class:`ClocsLoss`); ``pretrain`` builds
them through the method registry (:mod:`aclecg_core.method.methods`).
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


def _check_temperature(temperature: float) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _check_pair(z1: Tensor, z2: Tensor, ndim: int, temperature: float) -> None:
    if z1.ndim != ndim or z1.shape != z2.shape:
        raise ValueError(
            f"views must have the same {ndim}-d shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    _check_temperature(temperature)


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


ACL_TERMS = ("both", "intra", "inter")


def _term_weights(terms: str, gamma: float) -> tuple[float, float]:
    """(intra weight, inter weight) of ``terms`` (the ablation switch)."""
    if terms not in ACL_TERMS:
        raise ValueError(f"terms must be one of {list(ACL_TERMS)}, got {terms!r}")
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    return {"both": (gamma, 1 - gamma), "intra": (1.0, 0.0), "inter": (0.0, 1.0)}[terms]


def acl_ecg_loss(r1: Tensor, r2: Tensor, temperature: float = 0.1, gamma: float = 0.5,
                 record_ids: Tensor | None = None, terms: str = "both") -> Tensor:
    """The anatomy-aware loss ``gamma * intra + (1 - gamma) * inter``.

    Args:
        r1, r2: (N, R, P) region projections of view 1 and view 2; N >= 2.
        gamma: weight of the intra-region term, in [0, 1]. With R = 1 the inter-region term is
            undefined: only ``gamma = 1`` (or ``terms="intra"``) is accepted.
        terms: ``"both"`` (the paper's loss), ``"intra"`` (intra-region term only, i.e.
            ``gamma = 1``) or ``"inter"`` (inter-region term only, ``gamma = 0``): the ablation.

    Candidates are the 2·N·R embeddings; anchors are all of them (both views: symmetric).

    - intra: for anchor (n, d, view a), the positive is (n, d, other view); negatives are the
      same region d of the other records in both views (NT-Xent inside region d's 2N pool).
    - inter: the positives are (n, d', other view) for every d' != d; the negatives are all
      regions of the other records in the other view. Each positive gets its own InfoNCE
      against those negatives, averaged over the R - 1 positives.
    """
    _check_pair(r1, r2, 3, temperature)
    w_intra, w_inter = _term_weights(terms, gamma)
    n, n_regions, _ = r1.shape
    if n < 2:
        raise ValueError("acl_ecg_loss needs a batch of at least 2 (no negatives otherwise)")
    if n_regions < 2 and w_inter > 0:
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
    loss = sim.new_zeros(())
    if w_intra > 0:
        intra_pos = same_sample & same_region & other_view
        loss = loss + w_intra * masked_info_nce(sim, intra_pos, same_region & other_record)
    if w_inter > 0:
        inter_pos = same_sample & ~same_region & other_view
        loss = loss + w_inter * masked_info_nce(sim, inter_pos, other_record & other_view)
    return loss


def clocs_loss(z1: Tensor, z2: Tensor, temperature: float = 0.1,
               group_ids: Tensor | None = None) -> Tensor:
    """CLOCS's contrastive multi-segment coding (CMSC, Kiyasseh et al., ICML 2021).

    Args:
        z1, z2: (N, P) projections of two temporally adjacent, non-overlapping segments of the
            same N windows (``z1[n]`` the earlier segment, ``z2[n]`` the later one); N >= 2.
        group_ids: (N,) patient (or record) of each window; ``None``: every window its own.
    Returns: scalar. Anchors are the 2N segments; the candidates of a segment are the N segments
    of the other position. Positives: candidates of the same group (the window's own other
    segment, and with patient ids every segment of the same patient: CLOCS's patient-aware
    variant); negatives: the candidates of the other groups. Symmetric in the two segments.
    """
    _check_pair(z1, z2, 2, temperature)
    n = z1.shape[0]
    if n < 2:
        raise ValueError("clocs_loss needs a batch of at least 2 (no negatives otherwise)")
    groups = _record_ids(group_ids, n, z1.device)
    a, b = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    cross = a @ b.T / temperature
    sim = torch.cat([cross, cross.T])
    same = (groups[:, None] == groups[None]).repeat(2, 1)
    return masked_info_nce(sim, same, ~same)


class NTXentLoss(nn.Module):
    """SimCLR's NT-Xent (:func:`nt_xent`).

    Args:
        temperature: divides the cosine similarities; > 0.

    Shape:
        - z1, z2: (N, P) projections of view 1 and view 2; N >= 2.
        - record_ids: (N,) or None; windows of one record are never negatives of each other.
        - output: scalar.

    Example:
        >>> loss_fn = NTXentLoss(temperature=0.1)
        >>> loss = loss_fn(model.forward_global(v1), model.forward_global(v2), record_ids)
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        _check_temperature(temperature)
        self.temperature = temperature

    def forward(self, z1: Tensor, z2: Tensor, record_ids: Tensor | None = None) -> Tensor:
        return nt_xent(z1, z2, self.temperature, record_ids)


class AnatomyAwareContrastiveLoss(nn.Module):
    """ACL-ECG's anatomy-aware loss ``gamma * intra + (1 - gamma) * inter``
    (:func:`acl_ecg_loss`).

    Args:
        temperature: divides the cosine similarities; > 0.
        gamma: weight of the intra-region term, in [0, 1].
        terms: ``"both"``, ``"intra"`` or ``"inter"`` (the ablation; the last two ignore gamma).

    Shape:
        - r1, r2: (N, R, P) region projections of view 1 and view 2; N >= 2 (R >= 2 unless
          only the intra-region term is used).
        - record_ids: (N,) or None; windows of one record are never negatives of each other.
        - output: scalar.

    Example:
        >>> loss_fn = AnatomyAwareContrastiveLoss(temperature=0.1, gamma=0.5)
        >>> loss = loss_fn(model.forward_regions(v1), model.forward_regions(v2), record_ids)
    """

    def __init__(self, temperature: float = 0.1, gamma: float = 0.5, terms: str = "both") -> None:
        super().__init__()
        _check_temperature(temperature)
        _term_weights(terms, gamma)
        self.temperature = temperature
        self.gamma = gamma
        self.terms = terms

    def forward(self, r1: Tensor, r2: Tensor, record_ids: Tensor | None = None) -> Tensor:
        return acl_ecg_loss(r1, r2, self.temperature, self.gamma, record_ids, self.terms)


class ClocsLoss(nn.Module):
    """CLOCS's contrastive multi-segment coding (:func:`clocs_loss`).

    Args:
        temperature: divides the cosine similarities; > 0.

    Shape:
        - z1, z2: (N, P) projections of the earlier and the later segment of N windows; N >= 2.
        - group_ids: (N,) patient (or record) of each window, or None (each window its own).
        - output: scalar.

    Example:
        >>> loss_fn = ClocsLoss(temperature=0.1)
        >>> first, second = AdjacentSegments()(x, rpeaks, fs, generator)
        >>> loss = loss_fn(model.forward_global(first), model.forward_global(second), patients)
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        _check_temperature(temperature)
        self.temperature = temperature

    def forward(self, z1: Tensor, z2: Tensor, group_ids: Tensor | None = None) -> Tensor:
        return clocs_loss(z1, z2, self.temperature, group_ids)
