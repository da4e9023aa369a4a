"""The canonical 12-lead order, lead-name aliases and derivation of limb/augmented leads."""

from __future__ import annotations

import numpy as np

CANONICAL_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)
LEAD_INDEX: dict[str, int] = {name: i for i, name in enumerate(CANONICAL_LEADS)}

_ALIASES: dict[str, str] = {
    "1": "I", "2": "II", "3": "III", "L1": "I", "L2": "II", "L3": "III",
    "LEAD I": "I", "LEAD II": "II", "LEAD III": "III",
    "DI": "I", "DII": "II", "DIII": "III", "MLII": "II", "ML2": "II",
    "AVR": "aVR", "AVL": "aVL", "AVF": "aVF", "-AVR": "-aVR",
}


class LeadError(ValueError):
    """The lead set of a record cannot be mapped onto the 12 standard leads."""


def canonical_lead_name(name: str) -> str | None:
    """Return the canonical name of ``name`` (case-insensitive, common aliases), or None."""
    key = name.strip().upper().replace("_", " ")
    if key in _ALIASES:
        return _ALIASES[key]
    for lead in CANONICAL_LEADS:
        if key == lead.upper():
            return lead
    if key.startswith("LEAD "):
        return canonical_lead_name(key[5:])
    return None


def to_canonical_order(signal: np.ndarray, names: list[str]) -> np.ndarray:
    """Reorder ``signal`` (samples, n_leads) into (12, samples) canonical order.

    Extra leads (e.g. Frank X/Y/Z) are ignored. Missing III, aVR, aVL and aVF are derived from
    I and II (Einthoven/Goldberger); any other missing lead raises :class:`LeadError`.
    """
    if signal.ndim != 2 or signal.shape[1] != len(names):
        raise LeadError(f"signal shape {signal.shape} does not match {len(names)} lead names")
    columns: dict[str, np.ndarray] = {}
    for i, raw in enumerate(names):
        lead = canonical_lead_name(raw)
        if lead == "-aVR":
            columns.setdefault("aVR", -signal[:, i])
        elif lead is not None:
            columns.setdefault(lead, signal[:, i])
    if "I" in columns and "II" in columns:
        lead_i, lead_ii = columns["I"], columns["II"]
        columns.setdefault("III", lead_ii - lead_i)
        columns.setdefault("aVR", -(lead_i + lead_ii) / 2)
        columns.setdefault("aVL", lead_i - lead_ii / 2)
        columns.setdefault("aVF", lead_ii - lead_i / 2)
    missing = [lead for lead in CANONICAL_LEADS if lead not in columns]
    if missing:
        raise LeadError(f"missing leads {missing} (found {names})")
    return np.stack([columns[lead] for lead in CANONICAL_LEADS]).astype(np.float32)
