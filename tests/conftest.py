"""Shared fixtures: the real ECG data beside the project."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: 350 PTB-XL records and 200 PhysioNet/CinC challenge records."""
    if not (SHARED_DATA / "ptbxl" / "ptbxl_database.csv").is_file():
        raise FileNotFoundError(f"real ECG test data not found at {SHARED_DATA}")
    return SHARED_DATA
