"""Flower-free federation logic: prefix selection, dtypes after aggregation, partitioning."""

from __future__ import annotations

import numpy as np
import pytest

from aclecg_core.data.cohort import Cohort, RecordInfo
from aclecg_core.fed.arrays import restore_dtypes, round_seed, select_keys
from aclecg_core.fed.partition import partition_by_site, partition_dirichlet, partition_iid


def _cohort(n_patients: int, records_per_patient: int = 2) -> Cohort:
    records = []
    labels = ["A", "B", "C"]
    for p in range(n_patients):
        for k in range(records_per_patient):
            records.append(RecordInfo(
                record_id=f"r{p}-{k}", path="", source="test", site=f"s{p % 3}",
                patient_id=f"p{p}", fold=None, fs=100.0, labels=(labels[p % 3],)))
    n = len(records)
    return Cohort(signals=np.zeros((n, 12, 8), np.float32), rpeaks=-np.ones((n, 1), np.int32),
                  window_record=np.arange(n), records=records, fs=100.0, preprocessing={})


def test_select_keys_by_prefix() -> None:
    state = {"encoder.a": 1, "projectors.b": 2, "other.c": 3}
    assert select_keys(state, "encoder") == {"encoder.a": 1}
    assert select_keys(state, "encoder+projectors") == {"encoder.a": 1, "projectors.b": 2}
    with pytest.raises(ValueError, match="aggregate must be"):
        select_keys(state, "all")


def test_restore_dtypes_rounds_integer_buffers() -> None:
    template: dict[str, np.ndarray] = {"w": np.zeros(2, np.float32),
                                       "n": np.zeros((), np.int64)}
    out = restore_dtypes({"w": np.array([0.5, 1.5]), "n": np.array(2.9999999)}, template)
    assert out["w"].dtype == np.float32 and out["n"].dtype == np.int64 and int(out["n"]) == 3
    with pytest.raises(ValueError, match="missing"):
        restore_dtypes({"w": np.zeros(2)}, template)
    with pytest.raises(ValueError, match="shape"):
        restore_dtypes({"w": np.zeros(3), "n": np.zeros(())}, template)


def test_round_seed_depends_on_seed_round_and_site_only() -> None:
    assert round_seed(0, 2, 1) == round_seed(0, 2, 1)
    assert len({round_seed(0, 2, 1), round_seed(0, 2, 2), round_seed(0, 3, 1),
                round_seed(1, 2, 1)}) == 4


def _patient_sets(cohort: Cohort, masks: list[np.ndarray]) -> list[set[str]]:
    return [{r.patient_id for r, k in zip(cohort.records, m, strict=True) if k} for m in masks]


def test_partition_by_site() -> None:
    cohort = _cohort(9)
    names, masks = partition_by_site(cohort.records)
    assert names == ["s0", "s1", "s2"]
    assert [int(m.sum()) for m in masks] == [6, 6, 6]


@pytest.mark.parametrize("split", ["iid", "dirichlet"])
def test_partitions_cover_every_record_once_and_are_patient_disjoint(split: str) -> None:
    cohort = _cohort(40)
    if split == "iid":
        masks = partition_iid(cohort.records, 4, seed=1)
    else:
        masks = partition_dirichlet(cohort.records, 4, alpha=0.3, classes=["A", "B", "C"], seed=1)
    assert np.array_equal(np.sum(masks, axis=0), np.ones(len(cohort.records)))
    sets = _patient_sets(cohort, masks)
    assert all(sets) and sum(len(s) for s in sets) == 40
    if split == "iid":
        assert sorted(len(s) for s in sets) == [10, 10, 10, 10]


def test_dirichlet_small_alpha_skews_labels() -> None:
    cohort = _cohort(300, 1)
    masks = partition_dirichlet(cohort.records, 3, alpha=0.05, classes=["A", "B", "C"], seed=0)
    labels = np.array([r.labels[0] for r in cohort.records])
    shares = np.array([[np.mean(labels[m] == c) for c in "ABC"] for m in masks])
    assert shares.max(axis=1).mean() > 0.7  # IID shares would be about 1/3


def test_partition_needs_enough_patients() -> None:
    with pytest.raises(ValueError, match="2 patients cannot fill 3 sites"):
        partition_iid(_cohort(2).records, 3)
