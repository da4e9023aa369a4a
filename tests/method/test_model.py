"""Encoder shapes, region pooling, state-dict layout and configuration validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aclecg_core.data.regions import CLINICAL_REGIONS, RegionMap, region_map
from aclecg_core.method.model import EncoderConfig, build_model


def test_region_maps() -> None:
    assert region_map("paper").lead_names() == {
        "inferior": ("II", "III"), "septal": ("V1", "V2"),
        "anterior": ("V3", "V4"), "lateral": ("V5", "V6"),
    }
    assert [len(g) for g in CLINICAL_REGIONS.leads] == [3, 4, 2, 2]
    with pytest.raises(ValueError, match="unknown region map"):
        region_map("cardiac")
    with pytest.raises(ValueError, match="two regions"):
        RegionMap(names=("a", "b"), leads=((1, 2), (2,)))
    with pytest.raises(ValueError, match=r"0\.\.11"):
        RegionMap(names=("a",), leads=((12,),))


@pytest.mark.parametrize("regions", ["paper", "clinical"])
def test_shapes_and_region_pooling(regions: str) -> None:
    cfg = EncoderConfig(size="tiny", regions=regions, proj_dim=16)
    model = build_model(cfg, seed=0)
    x = torch.randn(3, 12, 250)
    n_regions = len(region_map(regions))
    assert model.embed(x).shape == (3, 12 * 32) == (3, model.embed_dim)
    assert model.forward_regions(x).shape == (3, n_regions, 16)
    assert model.forward_global(x).shape == (3, 16)
    lead_features = model.encoder(x)
    pooled = model.encoder.pool_regions(lead_features)
    for r, group in enumerate(region_map(regions).leads):
        torch.testing.assert_close(pooled[:, r], lead_features[:, list(group)].mean(dim=1))
    # the global representation keeps lead identity: lead l's features sit in block l
    torch.testing.assert_close(model.embed(x).reshape(3, 12, 32), lead_features)


@pytest.mark.parametrize(("regions", "groups"), [("paper", 5), ("clinical", 5)])
def test_region_representation_is_compact(regions: str, groups: int) -> None:
    cfg = EncoderConfig(size="tiny", regions=regions, representation="regions")
    model = build_model(cfg, seed=0)
    x = torch.randn(2, 12, 250)
    assert model.embed(x).shape == (2, groups * 32) == (2, model.embed_dim)
    assert model.forward_global(x).shape == (2, 32)
    lead_features = model.encoder(x)
    blocks = model.embed(x).reshape(2, groups, 32)
    torch.testing.assert_close(blocks[:, :-1], model.encoder.pool_regions(lead_features))
    rest = sorted(set(range(12)) - {i for g in region_map(regions).leads for i in g})
    torch.testing.assert_close(blocks[:, -1], lead_features[:, rest].mean(dim=1))
    with pytest.raises(ValueError, match="representation"):
        EncoderConfig(representation="mean")


def test_state_dict_layout_and_groupnorm() -> None:
    model = build_model(EncoderConfig(size="tiny"), seed=0)
    keys = list(model.state_dict())
    assert all(k.startswith(("encoder.", "projectors.")) for k in keys)
    assert any(k.startswith("projectors.global_head.") for k in keys)
    assert sum(k.startswith("projectors.regions.") for k in keys) > 0
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    assert all(v.is_floating_point() for v in model.state_dict().values())
    batch = build_model(EncoderConfig(size="tiny", norm="batch"))
    assert any(isinstance(m, nn.BatchNorm1d) for m in batch.modules())


def test_seeded_build_and_config_round_trip() -> None:
    cfg = EncoderConfig(size="small", depth=3, regions="clinical")
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    tiny = EncoderConfig(size="tiny")
    a, b = build_model(tiny, seed=4), build_model(tiny, seed=4)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    with pytest.raises(ValueError, match="size"):
        EncoderConfig(size="huge")
    with pytest.raises(ValueError, match="unknown encoder config keys"):
        EncoderConfig.from_dict({"size": "tiny", "heads": 2})
    with pytest.raises(ValueError, match="positive integer"):
        EncoderConfig(width=0)
    with pytest.raises(ValueError, match=r"\(batch, 12, samples\)"):
        a.embed(torch.randn(2, 8, 100))
