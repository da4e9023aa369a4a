"""The one evaluation split policy (server probe and CLI) and the default classes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from aclecg_core.data.cohort import Cohort
from aclecg_core.evaluation.splits import (
    default_split,
    evaluation_split,
    frequent_labels,
    guess_class_set,
    patient_split,
    ptbxl_split,
    site_split,
)


def _patients(c: Cohort) -> set[str]:
    return {r.patient_id for r in c.records}


def test_splits(small_cohort: Cohort) -> None:
    cohort = small_cohort
    train, val, test = ptbxl_split(cohort)
    assert {r.fold for r in val.records} == {9} and {r.fold for r in test.records} == {10}
    assert len(train.records) == 16
    rest, held = site_split(cohort, "s1")
    assert {r.site for r in held.records} == {"s1"} and {r.site for r in rest.records} == {"s0"}
    with pytest.raises(ValueError, match="site 'x'"):
        site_split(cohort, "x")
    a, b = patient_split(cohort, 0.3, seed=1)
    assert not {r.patient_id for r in a.records} & {r.patient_id for r in b.records}
    assert len(a.records) + len(b.records) == 20


def test_ptbxl_folds_where_the_data_have_them(small_cohort: Cohort) -> None:
    train, val, test = evaluation_split(small_cohort, "ptbxl")
    assert {r.fold for r in train.records} == set(range(1, 9))
    assert {r.fold for r in val.records} == {9} and {r.fold for r in test.records} == {10}


def test_patient_disjoint_test_then_validation_of_the_rest(small_cohort: Cohort) -> None:
    train, val, test = evaluation_split(small_cohort, "patient", 0.3, 0.5, seed=2)
    rest, expected_test = patient_split(small_cohort, 0.3, 2)
    expected_train, expected_val = patient_split(rest, 0.5, 2)
    assert test.records == expected_test.records and val.records == expected_val.records
    assert train.records == expected_train.records
    assert not (_patients(train) & _patients(val) or _patients(val) & _patients(test)
                or _patients(train) & _patients(test))


def test_a_held_out_site_is_the_test_part(small_cohort: Cohort) -> None:
    train, val, test = evaluation_split(small_cohort, "site:s1")
    assert {r.site for r in test.records} == {"s1"}
    assert {r.site for r in train.records + val.records} == {"s0"}
    with pytest.raises(ValueError, match=r"unknown split 'folds': use auto, ptbxl, site:NAME or "
                       r"patient"):
        evaluation_split(small_cohort, "folds")


def test_default_classes(small_cohort: Cohort) -> None:
    assert guess_class_set(small_cohort) == "synthetic"  # no PTB-XL superclass among A, B
    assert frequent_labels(small_cohort) == ["B", "A"]  # ten records each: ties by name
    assert frequent_labels(small_cohort, min_records=11) == []


def test_auto_split_uses_folds_where_every_record_has_one(small_cohort: Cohort) -> None:
    assert default_split(small_cohort) == "ptbxl"
    folds = evaluation_split(small_cohort, "auto")
    assert [p.records for p in folds] == [p.records for p in ptbxl_split(small_cohort)]
    some = replace(small_cohort, records=[replace(r, fold=None) if r.fold == 10 else r
                                          for r in small_cohort.records])
    assert default_split(some) == "patient"
    train, _, test = evaluation_split(some, "auto")
    assert not _patients(train) & _patients(test)
