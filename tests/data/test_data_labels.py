"""The label vocabulary: SNOMED-CT table, equivalences, CPSC and project abbreviations, PTB-XL."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from aclecg_core.data import labels
from aclecg_core.data.sources import cinc_site, ptbxl_labels


def _challenge_rows(shared: Path) -> list[dict[str, str]]:
    rows = []
    for name in ("dx_mapping_scored.csv", "dx_mapping_unscored.csv"):
        with (shared / "cinc" / "label_maps" / name).open(newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


def test_table_matches_the_challenge_files(shared_data: Path) -> None:
    rows = _challenge_rows(shared_data)
    table = labels.snomed_table()
    assert len(table) == len(rows) == 133
    for row in rows:
        abbreviation, description, _ = table[row["SNOMEDCTCode"]]
        assert (abbreviation, description) == (row["Abbreviation"], row["Dx"])
    assert sum(scored for _, _, scored in table.values()) == 30
    assert len(labels.scored_labels()) == 26


@pytest.mark.parametrize(("code", "label"), [
    ("733534002", "LBBB"), ("164909002", "LBBB"), ("713427006", "RBBB"), ("59118001", "RBBB"),
    ("284470004", "PAC"), ("63593006", "PAC"), ("427172004", "PVC"), ("17338001", "PVC"),
    ("426783006", "NSR"), ("164889003", "AF"), ("270492004", "IAVB"), ("429622005", "STD"),
    ("164931005", "STE"), ("164873001", "LVH"), ("57054005", "AcuteMI"), ("698247007", "CDys"),
])
def test_snomed_codes(code: str, label: str) -> None:
    assert labels.label_for_token(code) == label


@pytest.mark.parametrize(("token", "label"), [
    ("Normal", "NSR"), ("AF", "AF"), ("I-AVB", "IAVB"), ("LBBB", "LBBB"), ("RBBB", "RBBB"),
    ("PAC", "PAC"), ("PVC", "PVC"), ("STD", "STD"), ("STE", "STE"), ("CLBBB", "LBBB"),
    ("MI-INF", "MI-INF"), ("mi-lat", "MI-LAT"), ("STach", "STach"), ("SB", "SB"), ("LVH", "LVH"),
])
def test_text_tokens(token: str, label: str) -> None:
    assert labels.label_for_token(token) == label


def test_dx_lists_and_unknown_tokens() -> None:
    assert labels.map_dx(["MI-INF", " LBBB"]) == ("LBBB", "MI-INF")
    assert labels.map_dx(["733534002", "164909002", ""]) == ("LBBB",)
    assert labels.map_dx(["12345", "Foo"]) == ("unknown:12345", "unknown:Foo")


def test_project_vocabularies() -> None:
    assert set(labels.SYNTHETIC_CLASSES) <= labels.vocabulary()
    assert len(labels.SYNTHETIC_CLASSES) == 11
    assert labels.PTBXL_SUPERCLASSES == ["NORM", "MI", "STTC", "CD", "HYP"]
    assert set(labels.PTBXL_SCP_TO_LABEL.values()) <= labels.vocabulary()
    assert not set(labels.PTBXL_SUPERCLASSES) - {"MI"} & labels.vocabulary()


def test_ptbxl_labels() -> None:
    classes = {"IMI": ("MI", "IMI"), "NDT": ("STTC", "STTC"), "NORM": ("NORM", "NORM")}
    assert ptbxl_labels({"IMI": 50.0, "NDT": 0.0, "SR": 0.0}, classes) == (
        "IMI", "MI", "NSR", "STTC")
    assert ptbxl_labels({"IMI": 50.0, "NDT": 0.0}, classes, min_likelihood=20) == ("IMI", "MI")


@pytest.mark.parametrize(("name", "site"), [
    ("A0001", "CPSC"), ("Q0001", "CPSC-Extra"), ("S0001", "PTB"), ("I0001", "StPetersburg"),
    ("HR06001", "PTB-XL"), ("E07500", "Georgia"), ("JS20001", "Ningbo"), ("X1", None),
])
def test_cinc_sites(name: str, site: str | None) -> None:
    assert cinc_site(name) == site
