"""The ACL-ECG encoder: one 1-D CNN shared by all leads, region pooling, projection heads.

State-dict keys start with ``encoder.`` (what probing and fine-tuning use) or ``projectors.``
(pretraining heads), so a federation can aggregate either part by prefix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import Tensor, nn

from aclecg_core.data.leads import CANONICAL_LEADS
from aclecg_core.data.regions import REGION_MAP_NAMES, RegionMap, region_map
from aclecg_core.settings import Settings, from_dict, one_of

REPRESENTATIONS = ("leads", "regions")
NORMS = ("group", "batch")  # GroupNorm: federation friendly (no running statistics)

# size -> (width, depth, embed_dim, proj_dim)
_PRESETS: dict[str, tuple[int, int, int, int]] = {
    "tiny": (8, 2, 32, 32),
    "small": (32, 4, 128, 64),
    "default": (64, 6, 256, 128),
}
ENCODER_SIZES = tuple(_PRESETS)


_Dimension = Annotated[int | None, Field(ge=1, description="a positive integer")]


@dataclass(frozen=True)
class EncoderConfig(Settings):
    """Encoder hyper-parameters.

    ``size`` picks a preset; ``width`` (first conv channels), ``depth`` (residual blocks),
    ``embed_dim`` (D) and ``proj_dim`` (P) override it when given. ``norm`` is ``"group"``
    (federation friendly: no running statistics) or ``"batch"``; ``regions`` names a
    :func:`~aclecg_core.data.regions.region_map`. ``representation`` is what
    :meth:`AclEcgModel.embed` returns (the probed, fine-tuned and SimCLR/CLOCS-projected
    features): ``"leads"``, the 12
    per-lead feature vectors side by side (12·D), or ``"regions"``, the region features side
    by side plus the mean of the leads in no region, if any ((R + 1)·D; 5·D for the paper's
    map), a compact form of the paper's concatenated region features.
    """

    WHAT = "encoder"

    size: Annotated[str, one_of(ENCODER_SIZES)] = "default"
    width: _Dimension = None
    depth: _Dimension = None
    embed_dim: _Dimension = None
    proj_dim: _Dimension = None
    norm: Annotated[str, one_of(NORMS)] = "group"
    regions: Annotated[str, one_of(REGION_MAP_NAMES)] = "paper"
    representation: Annotated[str, one_of(REPRESENTATIONS)] = "leads"

    def resolved(self) -> tuple[int, int, int, int]:
        """(width, depth, embed_dim, proj_dim) after applying the overrides to the preset."""
        preset = _PRESETS[self.size]
        given = (self.width, self.depth, self.embed_dim, self.proj_dim)
        w, d, e, p = (g if g is not None else v for g, v in zip(given, preset, strict=True))
        return w, d, e, p

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderConfig:
        return from_dict(cls, data)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


class _ResidualBlock(nn.Module):
    """Two convolutions (the first strided) with a projected shortcut."""

    def __init__(self, c_in: int, c_out: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(c_in, c_out, 7, stride=2, padding=3, bias=False),
            _norm(norm, c_out),
            nn.ReLU(inplace=True),
            nn.Conv1d(c_out, c_out, 7, padding=3, bias=False),
            _norm(norm, c_out),
        )
        self.shortcut = nn.Sequential(
            nn.Conv1d(c_in, c_out, 1, stride=2, bias=False), _norm(norm, c_out)
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def _mean_pool(groups: list[list[int]]) -> Tensor:
    """(len(groups), 12) weights whose row g averages the leads of ``groups[g]``."""
    pool = torch.zeros(len(groups), len(CANONICAL_LEADS))
    for g, group in enumerate(groups):
        pool[g, group] = 1.0 / len(group)
    return pool


class LeadEncoder(nn.Module):
    """The shared 1-D CNN branch plus region pooling and the global representation.

    ``forward(x)``: (B, 12, T) -> per-lead features (B, 12, D).
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        width, depth, embed_dim, _ = cfg.resolved()
        regions = region_map(cfg.regions)
        layers: list[nn.Module] = [
            nn.Conv1d(1, width, 15, stride=2, padding=7, bias=False),
            _norm(cfg.norm, width),
            nn.ReLU(inplace=True),
        ]
        channels = width
        for i in range(depth):
            out = width * 2 ** ((i + 1) // 2)
            layers.append(_ResidualBlock(channels, out, cfg.norm))
            channels = out
        layers += [nn.Conv1d(channels, embed_dim, 1), nn.AdaptiveAvgPool1d(1), nn.Flatten()]
        self.trunk = nn.Sequential(*layers)
        self.embed_dim = embed_dim
        self.regions: RegionMap = regions
        groups = [list(g) for g in regions.leads]
        self.register_buffer("region_pool", _mean_pool(groups), persistent=False)
        self.representation = cfg.representation
        rest = sorted(set(range(len(CANONICAL_LEADS))) - {i for g in groups for i in g})
        summary = [*groups, rest] if rest else groups
        self.n_summary = len(summary)
        self.register_buffer("summary_pool", _mean_pool(summary), persistent=False)

    @property
    def representation_dim(self) -> int:
        """Size of :meth:`pool_global`'s output."""
        n = len(CANONICAL_LEADS) if self.representation == "leads" else self.n_summary
        return n * self.embed_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[1] != len(CANONICAL_LEADS):
            raise ValueError(f"expected (batch, 12, samples), got {tuple(x.shape)}")
        b, leads, t = x.shape
        return self.trunk(x.reshape(b * leads, 1, t)).reshape(b, leads, self.embed_dim)

    def pool_regions(self, lead_features: Tensor) -> Tensor:
        """(B, 12, D) -> (B, R, D): mean over each region's leads."""
        pool = self.region_pool.to(lead_features.dtype)
        return torch.einsum("rl,bld->brd", pool, lead_features)

    def pool_global(self, lead_features: Tensor) -> Tensor:
        """(B, 12, D) -> (B, :attr:`representation_dim`): the global representation.

        The CNN branch is shared by all leads, so a mean over all leads would discard which lead
        a feature came from (the electrical axis, the region of an infarct); both forms keep it:
        ``leads`` puts the lead features side by side in canonical lead order, ``regions`` the
        region means (then the mean of the leads in no region).
        """
        if self.representation == "leads":
            return lead_features.flatten(1)
        pool = self.summary_pool.to(lead_features.dtype)
        return torch.einsum("rl,bld->brd", pool, lead_features).flatten(1)


def _mlp(d_in: int, d_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, d_out))


class Projectors(nn.Module):
    """One MLP head per region (ACL-ECG) and a global head (SimCLR)."""

    def __init__(self, n_regions: int, embed_dim: int, proj_dim: int, global_dim: int) -> None:
        super().__init__()
        self.regions = nn.ModuleList(
            _mlp(embed_dim, proj_dim, embed_dim) for _ in range(n_regions)
        )
        self.global_head = _mlp(global_dim, proj_dim, embed_dim)


class AclEcgModel(nn.Module):
    """Encoder plus projection heads; see the module docstring for the state-dict layout."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        _, _, embed_dim, proj_dim = cfg.resolved()
        self.config = cfg
        self.encoder = LeadEncoder(cfg)
        self.projectors = Projectors(len(self.encoder.regions), embed_dim, proj_dim,
                                     self.encoder.representation_dim)

    @property
    def embed_dim(self) -> int:
        """Size of :meth:`embed`'s output (12·D for ``leads``, (R + 1)·D for ``regions``)."""
        return self.encoder.representation_dim

    def embed(self, x: Tensor) -> Tensor:
        """(B, 12, T) -> the global representation (B, :attr:`embed_dim`), the features used
        for probing and fine-tuning."""
        return self.encoder.pool_global(self.encoder(x))

    def forward_regions(self, x: Tensor) -> Tensor:
        """(B, 12, T) -> projected region embeddings (B, R, P)."""
        regions = self.encoder.pool_regions(self.encoder(x))
        return torch.stack(
            [head(regions[:, r]) for r, head in enumerate(self.projectors.regions)], dim=1
        )

    def forward_global(self, x: Tensor) -> Tensor:
        """(B, 12, T) -> projected global embedding (B, P)."""
        return self.projectors.global_head(self.embed(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(x)


def build_model(cfg: EncoderConfig, seed: int | None = None) -> AclEcgModel:
    """A freshly initialised model; ``seed`` makes the initialisation reproducible."""
    if seed is None:
        return AclEcgModel(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AclEcgModel(cfg)
