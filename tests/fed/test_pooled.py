"""The pooled reference's training: the run's settings, rounds × local epochs, no federation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from aclecg_core.data.cohort import Cohort, RecordInfo
from aclecg_core.fed.config import load_config
from aclecg_core.fed.pooled import pretrain_pooled
from aclecg_core.fed.training import initial_model

ROOT = Path(__file__).resolve().parents[2]


def _cohort(n: int) -> Cohort:
    records = [RecordInfo(record_id=f"r{k}", path="", source="test", site="a",
                          patient_id=f"p{k}", fold=None, fs=100.0, labels=()) for k in range(n)]
    return Cohort(signals=np.random.default_rng(0).standard_normal((n, 12, 500)).astype(
                      np.float32),
                  rpeaks=np.tile(np.arange(50, 500, 100, dtype=np.int32), (n, 1)),
                  window_record=np.arange(n), records=records, fs=100.0, preprocessing={})


def test_the_pooled_reference_trains_rounds_times_local_epochs_without_the_federation() -> None:
    """A FedProx run (its proximal term needs the global model: not in pooled training), 3
    rounds of 2 local epochs = 6 epochs from the run's initial model."""
    cfg = load_config({"strategy": "fedprox", "proximal-mu": 0.1, "batch-size": 4,
                       "local-epochs": 2, "seed": 5}, ROOT)
    model, result = pretrain_pooled(cfg, _cohort(8), rounds=3, device="cpu")
    assert len(result.losses) == 6 and result.num_examples == 8
    start = initial_model(cfg).state_dict()
    assert any(not torch.equal(v, start[k]) for k, v in model.state_dict().items())
    again, _ = pretrain_pooled(cfg, _cohort(8), rounds=3, device="cpu")  # seeded: the same
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
