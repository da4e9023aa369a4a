"""The cohort cache: identical arrays on a hit, a miss on any change of files or parameters."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from aclecg_core.data.cohort import DataError
from aclecg_core.data.loading import load_cohort
from aclecg_core.data.preprocess import PreprocessConfig


@pytest.fixture()
def corpus(shared_data: Path, tmp_path: Path) -> Path:
    """Two good PTB-XL files and one signal file without header."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("00001_lr", "00002_lr"):
        for ext in (".hea", ".dat"):
            shutil.copyfile(shared_data / "ptbxl/records100/00000" / (name + ext),
                            folder / (name + ext))
    shutil.copyfile(shared_data / "ptbxl/records100/00000/00003_lr.dat", folder / "orphan.dat")
    return folder


def _entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir())


def test_cache_hit_miss_and_strict(corpus: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_cohort([corpus], cache_dir=cache, workers=1)
    assert [r.reason for r in first.rejected] == ["header file missing"]
    assert len(first.records) == 2 and len(_entries(cache)) == 1  # no temporary left behind
    index = cache / _entries(cache)[0]
    assert {p.name for p in index.iterdir()} == {
        "signals.npy", "rpeaks.npy", "window_record.npy", "index.json"}
    hit = load_cohort([corpus], cache_dir=cache, workers=1)
    np.testing.assert_array_equal(hit.signals, first.signals)
    np.testing.assert_array_equal(hit.rpeaks, first.rpeaks)
    assert hit.records == first.records and hit.rejected == first.rejected
    with pytest.raises(DataError, match=r"orphan\.hea: header file missing"):
        load_cohort([corpus], cache_dir=cache, strict=True)

    load_cohort([corpus], cache_dir=cache, workers=1, preprocessing=PreprocessConfig(stride_s=5))
    assert len(_entries(cache)) == 2
    load_cohort([corpus], cache_dir=cache, workers=1,
                preprocessing=PreprocessConfig(max_flat_leads=0))
    assert len(_entries(cache)) == 3
    dat = corpus / "00002_lr.dat"
    stat = dat.stat()
    os.utime(dat, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    load_cohort([corpus], cache_dir=cache, workers=1)
    assert len(_entries(cache)) == 4


def test_notch_removes_mains() -> None:
    from aclecg_core.data.preprocess import filter_signal

    cfg = PreprocessConfig(target_fs=250.0, bandpass_hz=None, notch_hz=50.0)
    t = np.arange(2500) / 250.0
    x = np.tile(np.sin(2 * np.pi * 50 * t), (12, 1)).astype(np.float32)
    assert np.abs(filter_signal(x, cfg)[:, 250:-250]).max() < 0.05
