"""The method registry: each method's views, loss Module and embedding."""

from __future__ import annotations

import pytest
import torch

from aclecg_core.method.augment import AdjacentSegments, ViewPipeline
from aclecg_core.method.losses import AnatomyAwareContrastiveLoss, ClocsLoss, NTXentLoss
from aclecg_core.method.methods import METHODS, VIEWS, views_for
from aclecg_core.method.model import EncoderConfig, build_model
from aclecg_core.method.pretrain import PretrainConfig


def test_registry_names_and_view_choices() -> None:
    assert list(METHODS) == ["acl", "simclr", "clocs"]
    assert VIEWS == ("auto", "acl", "simclr")


@pytest.mark.parametrize(("name", "loss_type", "views", "forward"), [
    ("acl", AnatomyAwareContrastiveLoss, ViewPipeline("acl"), "forward_regions"),
    ("simclr", NTXentLoss, ViewPipeline("simclr"), "forward_global"),
    ("clocs", ClocsLoss, AdjacentSegments(), "forward_global"),
])
def test_each_method_is_its_views_loss_and_embedding(
        name: str, loss_type: type, views: object, forward: str) -> None:
    cfg = PretrainConfig(method=name, temperature=0.3, gamma=0.7, acl_terms="both")
    method = METHODS[name]
    loss = method.loss(cfg)
    assert isinstance(loss, loss_type) and loss.temperature == 0.3
    assert views_for(cfg) == views
    model = build_model(EncoderConfig(size="tiny"), seed=0)
    x = torch.randn(3, 12, 200)
    z = method.embed(model, x)
    assert torch.equal(z, getattr(model, forward)(x))
    assert torch.isfinite(loss(z, method.embed(model, torch.randn(3, 12, 200))))
