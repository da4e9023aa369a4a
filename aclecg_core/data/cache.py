"""On-disk cache of preprocessed cohorts: ``.npy`` arrays + a JSON index, written atomically.

The key hashes the cache format version, the layout, the preprocessing parameters and the
(path, size, mtime_ns) of every WFDB/CSV file below the source paths, so any change of data or
parameters misses.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from aclecg_core.data.cohort import Cohort, RecordInfo, RecordWarning, Rejection

CACHE_VERSION = 4  # 2: warnings of kept records; 3: age and sex; 4: CODE-15% exam sites
_ARRAYS = ("signals", "rpeaks", "window_record")


SOURCE_SUFFIXES = (".hea", ".dat", ".mat", ".csv")


def _scan(folder: str, rows: list[list[Any]]) -> None:
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir():
                _scan(entry.path, rows)
            elif entry.name.endswith(SOURCE_SUFFIXES):
                st = entry.stat()
                rows.append([entry.path, st.st_size, st.st_mtime_ns])


def source_fingerprint(paths: list[Path]) -> list[list[Any]]:
    """[path, size, mtime_ns] of every WFDB/CSV file below ``paths`` (folders or headers).

    A superset of the files a cohort is read from, found without parsing anything, so that a
    cache hit costs one directory walk.
    """
    rows: list[list[Any]] = []
    for path in paths:
        path = Path(os.path.abspath(path))
        if path.is_dir():
            _scan(str(path), rows)
            continue
        for file in (path, path.with_suffix(".dat"), path.with_suffix(".mat")):
            try:
                st = file.stat()
                rows.append([str(file), st.st_size, st.st_mtime_ns])
            except FileNotFoundError:
                rows.append([str(file), -1, -1])
    return rows


def cache_key(paths: list[Path], layout: str, preprocessing: dict[str, Any],
              metadata: Any = None) -> str:
    """Hex digest identifying a cohort built from ``paths`` with these parameters (and the
    records' ``metadata`` when it does not come from the files themselves)."""
    payload = {
        "version": CACHE_VERSION,
        "layout": layout,
        "preprocessing": preprocessing,
        "files": source_fingerprint(paths),
    }
    if metadata is not None:
        payload["metadata"] = metadata
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def save_cohort(cohort: Cohort, folder: Path) -> None:
    """Write ``cohort`` to ``folder`` atomically (temporary folder, then rename)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for name in _ARRAYS:
            np.save(tmp / f"{name}.npy", getattr(cohort, name), allow_pickle=False)
        index = {
            "version": CACHE_VERSION,
            "fs": cohort.fs,
            "preprocessing": cohort.preprocessing,
            "records": [asdict(r) for r in cohort.records],
            "rejected": [asdict(r) for r in cohort.rejected],
            "warnings": [asdict(w) for w in cohort.warnings],
        }
        (tmp / "index.json").write_text(json.dumps(index))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process wrote the same key first
            if not (folder / "index.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_cached(folder: Path) -> Cohort | None:
    """The cohort stored in ``folder``, or None when absent or unreadable."""
    try:
        index = json.loads((folder / "index.json").read_text())
        if index.get("version") != CACHE_VERSION:
            return None
        arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in _ARRAYS}
    except (OSError, ValueError):
        return None
    records = [RecordInfo(**{**r, "labels": tuple(r["labels"])}) for r in index["records"]]
    return Cohort(
        signals=arrays["signals"],
        rpeaks=arrays["rpeaks"],
        window_record=arrays["window_record"],
        records=records,
        fs=float(index["fs"]),
        preprocessing=index["preprocessing"],
        rejected=[Rejection(**r) for r in index["rejected"]],
        warnings=[RecordWarning(**w) for w in index["warnings"]],
    )
