"""NT-Xent and the anatomy-aware loss against naive per-sample loops, plus their properties."""

from __future__ import annotations

import math

import pytest
import torch

from aclecg_core.method.losses import (
    AnatomyAwareContrastiveLoss,
    ClocsLoss,
    NTXentLoss,
    acl_ecg_loss,
    clocs_loss,
    nt_xent,
)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def _info_nce(pos: float, negs: list[float], tau: float) -> float:
    denominator = math.exp(pos / tau) + sum(math.exp(s / tau) for s in negs)
    return -math.log(math.exp(pos / tau) / denominator)


def _nt_xent_loop(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    z = z1.double(), z2.double()
    n, total = len(z1), 0.0
    for a in range(2):
        for i in range(n):
            pos = _cos(z[a][i], z[1 - a][i])
            negs = [_cos(z[a][i], z[v][j]) for v in range(2) for j in range(n) if j != i]
            total += _info_nce(pos, negs, tau)
    return total / (2 * n)


def _acl_loop(r1: torch.Tensor, r2: torch.Tensor, tau: float, gamma: float) -> float:
    r = r1.double(), r2.double()
    n, n_regions, _ = r1.shape
    intra = inter = 0.0
    for a in range(2):
        b = 1 - a
        for i in range(n):
            for d in range(n_regions):
                anchor = r[a][i, d]
                negs = [_cos(anchor, r[v][j, d]) for v in range(2) for j in range(n) if j != i]
                intra += _info_nce(_cos(anchor, r[b][i, d]), negs, tau)
                negs = [_cos(anchor, r[b][j, e])
                        for j in range(n) if j != i for e in range(n_regions)]
                per_pos = [_info_nce(_cos(anchor, r[b][i, e]), negs, tau)
                           for e in range(n_regions) if e != d]
                inter += sum(per_pos) / len(per_pos)
    anchors = 2 * n * n_regions
    return gamma * intra / anchors + (1 - gamma) * inter / anchors


def _clocs_loop(z1: torch.Tensor, z2: torch.Tensor, tau: float, groups: list[int]) -> float:
    z = z1.double(), z2.double()
    n, total = len(z1), 0.0
    for a in range(2):
        for i in range(n):
            negs = [_cos(z[a][i], z[1 - a][k]) for k in range(n) if groups[k] != groups[i]]
            per_pos = [_info_nce(_cos(z[a][i], z[1 - a][j]), negs, tau)
                       for j in range(n) if groups[j] == groups[i]]
            total += sum(per_pos) / len(per_pos)
    return total / (2 * n)


def _pair(*shape: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_nt_xent_matches_loop(tau: float) -> None:
    z1, z2 = _pair(5, 8)
    assert float(nt_xent(z1, z2, tau)) == pytest.approx(_nt_xent_loop(z1, z2, tau), rel=1e-5)
    assert float(NTXentLoss(tau)(z1, z2)) == pytest.approx(_nt_xent_loop(z1, z2, tau), rel=1e-5)


@pytest.mark.parametrize(
    ("n_regions", "gamma", "tau"), [(4, 0.5, 0.1), (3, 0.2, 0.3), (2, 0.0, 1.0)]
)
def test_acl_loss_matches_loop(n_regions: int, gamma: float, tau: float) -> None:
    r1, r2 = _pair(4, n_regions, 6, seed=n_regions)
    expected = _acl_loop(r1, r2, tau, gamma)
    assert float(acl_ecg_loss(r1, r2, tau, gamma)) == pytest.approx(expected, rel=1e-5)
    module = AnatomyAwareContrastiveLoss(tau, gamma)
    assert float(module(r1, r2)) == pytest.approx(expected, rel=1e-5)


def test_symmetric_in_views_and_invariant_to_batch_permutation() -> None:
    r1, r2 = _pair(6, 4, 8)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    base = acl_ecg_loss(r1, r2)
    torch.testing.assert_close(acl_ecg_loss(r2, r1), base)
    torch.testing.assert_close(acl_ecg_loss(r1[perm], r2[perm]), base)
    z1, z2 = r1[:, 0], r2[:, 0]
    torch.testing.assert_close(nt_xent(z2, z1), nt_xent(z1, z2))
    torch.testing.assert_close(nt_xent(z1[perm], z2[perm]), nt_xent(z1, z2))


def test_aligned_views_give_lower_loss_and_finite_gradients() -> None:
    r1, r2 = _pair(8, 4, 16)
    r1.requires_grad_(True)
    loss = acl_ecg_loss(r1, r2)
    loss.backward()
    assert r1.grad is not None and torch.isfinite(r1.grad).all()
    close = r1.detach() + 0.01 * r2
    base = r1.detach()
    assert float(acl_ecg_loss(base, close, gamma=1.0)) < float(acl_ecg_loss(base, r2, gamma=1.0))
    assert float(nt_xent(base[:, 0], close[:, 0])) < float(nt_xent(base[:, 0], r2[:, 0]))


def test_record_ids_remove_same_record_negatives() -> None:
    r1, r2 = _pair(4, 2, 6)
    ids = torch.tensor([0, 0, 1, 1])
    # with a record id per window it is the plain loss
    plain = acl_ecg_loss(r1, r2)
    torch.testing.assert_close(acl_ecg_loss(r1, r2, record_ids=torch.arange(4)), plain)
    assert float(acl_ecg_loss(r1, r2, record_ids=ids)) != pytest.approx(float(acl_ecg_loss(r1, r2)))
    with pytest.raises(ValueError, match="two different records"):
        nt_xent(r1[:, 0], r2[:, 0], record_ids=torch.zeros(4, dtype=torch.long))


def test_edge_cases_raise_clear_errors() -> None:
    r1, r2 = _pair(1, 4, 6)
    with pytest.raises(ValueError, match="at least 2"):
        acl_ecg_loss(r1, r2)
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent(r1[:, 0], r2[:, 0])
    one_region = _pair(3, 1, 6)
    with pytest.raises(ValueError, match=r"gamma=1\.0"):
        acl_ecg_loss(*one_region, gamma=0.5)
    expected = _nt_xent_loop(one_region[0][:, 0], one_region[1][:, 0], 0.1)
    assert float(acl_ecg_loss(*one_region, gamma=1.0)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="same"):
        acl_ecg_loss(r1, r2[:, :2])
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=0.0)
    with pytest.raises(ValueError, match="gamma"):
        AnatomyAwareContrastiveLoss(gamma=1.5)


@pytest.mark.parametrize(("groups", "tau"), [([0, 1, 2, 3, 4], 0.1), ([0, 0, 1, 2, 2], 0.5)])
def test_clocs_matches_loop(groups: list[int], tau: float) -> None:
    z1, z2 = _pair(5, 8, seed=2)
    ids = torch.tensor(groups)
    expected = _clocs_loop(z1, z2, tau, groups)
    assert float(clocs_loss(z1, z2, tau, ids)) == pytest.approx(expected, rel=1e-5)
    assert float(ClocsLoss(tau)(z1, z2, ids)) == pytest.approx(expected, rel=1e-5)
    if len(set(groups)) == len(groups):
        assert float(clocs_loss(z1, z2, tau)) == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(clocs_loss(z2, z1, tau, ids), clocs_loss(z1, z2, tau, ids))
    with pytest.raises(ValueError, match="two different records"):
        clocs_loss(z1, z2, tau, torch.zeros(5, dtype=torch.long))


@pytest.mark.parametrize(("terms", "gamma"), [("intra", 1.0), ("inter", 0.0), ("both", 0.3)])
def test_acl_terms_select_the_ablation(terms: str, gamma: float) -> None:
    r1, r2 = _pair(4, 4, 6, seed=5)
    expected = _acl_loop(r1, r2, 0.2, gamma)
    got = acl_ecg_loss(r1, r2, 0.2, gamma=0.3, terms=terms)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    module = AnatomyAwareContrastiveLoss(0.2, 0.3, terms=terms)
    assert float(module(r1, r2)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="terms"):
        acl_ecg_loss(r1, r2, terms="global")
    assert float(acl_ecg_loss(*_pair(3, 1, 6), terms="intra")) > 0
