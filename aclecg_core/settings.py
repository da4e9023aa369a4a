"""Shared check for building frozen settings dataclasses from plain dictionaries."""

from __future__ import annotations

from dataclasses import fields
from typing import Any


def reject_unknown_keys(cls: type, data: dict[str, Any], what: str) -> None:
    """Raise ``ValueError`` naming the keys of ``data`` that are not fields of dataclass ``cls``."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known keys {sorted(known)}")
