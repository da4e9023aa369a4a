"""The project's label vocabulary: SNOMED-CT codes, CPSC abbreviations and PTB-XL statements.

One vocabulary for all CinC-style sources: a label is the PhysioNet/CinC Challenge 2020/2021
abbreviation of its SNOMED-CT code (table ``snomed_ct_labels.json``, copied from the challenge's
``dx_mapping_scored.csv``/``dx_mapping_unscored.csv``), with these project rules:

* Codes the challenge scores as one diagnosis share one label (:data:`EQUIVALENT_CODES`):
  733534002 (CLBBB) → LBBB, 713427006 (CRBBB) → RBBB, 63593006 (SVPB) → PAC,
  17338001 (VPB) → PVC.
* Two challenge abbreviations collide with PTB-XL labels of another meaning and are renamed
  (:data:`RENAMED_CODES`): 57054005 acute MI "AMI" → "AcuteMI" (PTB-XL AMI = anterior MI),
  698247007 cardiac dysrhythmia "CD" → "CDys" (PTB-XL CD = conduction disturbance).
* CPSC 2018 text labels map through :data:`CPSC_ABBREVIATIONS` (Normal → NSR, I-AVB → IAVB...).
* Four project labels without a SNOMED-CT code: regional myocardial infarction MI-INF, MI-SEP,
  MI-ANT, MI-LAT (used by the synthetic cohort).
* Text tokens that are vocabulary abbreviations map to themselves (``# Dx: MI-INF,LBBB``).
* :data:`CHAGAS_LABEL` marks records whose PhysioNet Challenge 2025 header says
  ``# Chagas label: True`` (CODE-15%, SaMi-Trop); those records carry no diagnostic statements.

PTB-XL records carry PTB-XL's own diagnostic superclasses (:data:`PTBXL_SUPERCLASSES`) and
subclasses (e.g. IMI, AMI, CLBBB, NST_) as in the PTB-XL benchmark, plus the vocabulary label of
rhythm/conduction/hypertrophy statements with an exact counterpart (:data:`PTBXL_SCP_TO_LABEL`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path

SYNTHETIC_CLASSES: list[str] = [
    "NSR", "MI-INF", "MI-SEP", "MI-ANT", "MI-LAT", "LBBB", "RBBB", "AF", "LVH", "SB", "STach",
]
PTBXL_SUPERCLASSES: list[str] = ["NORM", "MI", "STTC", "CD", "HYP"]

REGIONAL_MI: dict[str, str] = {
    "MI-INF": "inferior myocardial infarction",
    "MI-SEP": "septal myocardial infarction",
    "MI-ANT": "anterior myocardial infarction",
    "MI-LAT": "lateral myocardial infarction",
}
EQUIVALENT_CODES: dict[str, str] = {
    "733534002": "164909002",
    "713427006": "59118001",
    "63593006": "284470004",
    "17338001": "427172004",
}
RENAMED_CODES: dict[str, str] = {"57054005": "AcuteMI", "698247007": "CDys"}
CPSC_ABBREVIATIONS: dict[str, str] = {
    "Normal": "NSR", "AF": "AF", "I-AVB": "IAVB", "LBBB": "LBBB", "RBBB": "RBBB",
    "PAC": "PAC", "PVC": "PVC", "STD": "STD", "STE": "STE",
}
PTBXL_SCP_TO_LABEL: dict[str, str] = {
    "SR": "NSR", "AFIB": "AF", "AFLT": "AFL", "STACH": "STach", "SBRAD": "SB", "SARRH": "SA",
    "PACE": "PR", "PAC": "PAC", "PVC": "PVC", "1AVB": "IAVB", "CLBBB": "LBBB", "CRBBB": "RBBB",
    "IRBBB": "IRBBB", "ILBBB": "ILBBB", "LAFB": "LAnFB", "LPFB": "LPFB", "LVH": "LVH",
    "RVH": "RVH", "WPW": "WPW", "LNGQT": "LQT", "IVCD": "NSIVCB",
}
UNKNOWN_PREFIX = "unknown:"
CHAGAS_LABEL = "Chagas"


@cache
def snomed_table() -> dict[str, tuple[str, str, bool]]:
    """SNOMED-CT code → (challenge abbreviation, description, scored by the challenge)."""
    data = json.loads((Path(__file__).with_name("snomed_ct_labels.json")).read_text())
    return {code: (row[0], row[1], bool(row[2])) for code, row in data["codes"].items()}


def label_for_code(code: str) -> str | None:
    """The vocabulary label of a SNOMED-CT code, or None if the code is not in the table."""
    code = EQUIVALENT_CODES.get(code, code)
    if code in RENAMED_CODES:
        return RENAMED_CODES[code]
    row = snomed_table().get(code)
    return row[0] if row else None


@cache
def vocabulary() -> frozenset[str]:
    """Every label a CinC-style or synthetic record can carry."""
    labels = {label_for_code(code) for code in snomed_table()}
    return frozenset(label for label in labels if label) | frozenset(REGIONAL_MI) | {CHAGAS_LABEL}


@cache
def scored_labels() -> tuple[str, ...]:
    """Labels of the challenge's 26 scored diagnosis classes (equivalent codes merged)."""
    labels = {label_for_code(code) for code, row in snomed_table().items() if row[2]}
    return tuple(sorted(label for label in labels if label))


@cache
def _text_labels() -> dict[str, str]:
    """Text token (case-folded) → label: CPSC abbreviations and vocabulary abbreviations."""
    table = {abbr.casefold(): abbr for abbr in vocabulary()}
    for code, row in snomed_table().items():  # folded/renamed abbreviations still map
        table.setdefault(row[0].casefold(), label_for_code(code) or row[0])
    table.update({text.casefold(): label for text, label in CPSC_ABBREVIATIONS.items()})
    return table


def label_for_token(token: str) -> str | None:
    """Map one ``Dx`` token (SNOMED-CT code or abbreviation) to its label, or None."""
    token = token.strip()
    if token.isdigit():
        return label_for_code(token)
    return _text_labels().get(token.casefold())


def map_dx(tokens: Iterable[str]) -> tuple[str, ...]:
    """Sorted unique labels of ``Dx`` tokens; unknown tokens are kept as ``unknown:<token>``."""
    labels: set[str] = set()
    for token in tokens:
        if not token.strip():
            continue
        label = label_for_token(token)
        labels.add(label if label else f"{UNKNOWN_PREFIX}{token.strip()}")
    return tuple(sorted(labels))
