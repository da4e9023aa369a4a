"""A tiny labeled cohort for probing tests."""

from __future__ import annotations

import numpy as np
import pytest

from aclecg_core.data.cohort import Cohort, RecordInfo
from aclecg_core.evaluation.splits import patient_split


@pytest.fixture
def small_cohort() -> Cohort:
    """20 records of 2 windows (12 × 100): odd records are class A (a bump), even class B;
    sites s0/s1 alternate, patients are pairs, folds 1–10 cycle."""
    rng = np.random.default_rng(0)
    n = 20
    records = [RecordInfo(f"r{i}", "", "t", f"s{i % 2}", f"p{i // 2}", i % 10 + 1, 100.0,
                          ("A",) if i % 2 else ("B",)) for i in range(n)]
    signals = rng.standard_normal((2 * n, 12, 100)).astype(np.float32)
    signals[np.repeat(np.arange(n), 2) % 2 == 1, :, 40:60] += 3.0  # class A: a bump
    return Cohort(signals, np.full((2 * n, 3), -1, np.int32), np.repeat(np.arange(n), 2),
                  records, 100.0, {})


@pytest.fixture
def tiny_cohort(small_cohort: Cohort) -> tuple[Cohort, Cohort, Cohort]:
    """(train, validation, test): patient-disjoint train/validation halves, all 20 as test."""
    train, val = patient_split(small_cohort, 0.5, seed=0)
    return train, val, small_cohort
