"""WFDB records the fast reader does not handle, written with ``wfdb`` itself: FLAC-compressed
signal files and multi-segment records are read through ``wfdb.rdrecord`` and checked alike."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import wfdb

from aclecg_core.data.check import check_sources
from aclecg_core.data.cohort import DataError
from aclecg_core.data.loading import read_record

PTBXL_RECORD = "ptbxl/records100/00000/00001_lr"


@pytest.fixture(scope="module")
def original(shared_data: Path) -> wfdb.Record:
    return wfdb.rdrecord(str(shared_data / PTBXL_RECORD))


def _write(record: wfdb.Record, folder: Path, name: str, signal: np.ndarray, fmt: str,
           gain: float = 1000.0) -> Path:
    n = record.n_sig
    wfdb.wrsamp(name, fs=record.fs, units=["mV"] * n, sig_name=record.sig_name,
                p_signal=signal, fmt=[fmt] * n, adc_gain=[gain] * n, baseline=[0] * n,
                comments=["Dx: 426783006"], write_dir=str(folder))
    return folder / f"{name}.hea"


def _multi_segment(record: wfdb.Record, folder: Path, name: str, cuts: list[int]) -> Path:
    spans = list(itertools.pairwise([0, *cuts, record.sig_len]))
    names = [f"{name}_{i}" for i in range(len(spans))]
    segments = [wfdb.rdrecord(str(_write(record, folder, seg, record.p_signal[a:b], "16")
                                  .with_suffix("")))
                for seg, (a, b) in zip(names, spans, strict=True)]
    multi = wfdb.MultiRecord(record_name=name, segments=segments, layout="fixed",
                             fs=record.fs, n_sig=record.n_sig, sig_len=record.sig_len,
                             seg_name=names, seg_len=[b - a for a, b in spans])
    multi.n_seg = len(names)  # wfdb 4.3 does not derive it
    multi.wrheader(write_dir=str(folder))
    return folder / f"{name}.hea"


@pytest.mark.parametrize(("fmt", "gain"), [("508", 40.0), ("516", 1000.0), ("524", 1e5)])
def test_flac_record(original: wfdb.Record, tmp_path: Path, fmt: str, gain: float) -> None:
    hea = _write(original, tmp_path, "flac", original.p_signal, fmt, gain)
    assert f" {fmt} " in hea.read_text()
    read, fs, info = read_record(hea)
    assert fs == original.fs and info.labels == ("NSR",)
    np.testing.assert_allclose(read.T, original.p_signal, atol=0.51 / gain + 1e-6)


def test_multi_segment_record(original: wfdb.Record, tmp_path: Path) -> None:
    hea = _multi_segment(original, tmp_path, "multi", [300, 650])
    assert hea.read_text().startswith("multi/3 12 100 1000")
    read, _, _ = read_record(hea)
    np.testing.assert_allclose(read.T, original.p_signal, atol=1e-3)
    (record,) = [r for r in check_sources([tmp_path], workers=1).records
                 if r.record_id == "multi"]
    assert record.reason is None and record.windows == 1


def test_multi_segment_with_a_missing_segment(original: wfdb.Record, tmp_path: Path) -> None:
    hea = _multi_segment(original, tmp_path, "multi", [500])
    (tmp_path / "multi_1.dat").unlink()
    with pytest.raises(DataError, match=r"multi\.hea: unreadable multi-segment record: "):
        read_record(hea)


def test_the_same_checks_follow_the_fallback(original: wfdb.Record, tmp_path: Path) -> None:
    flat = original.p_signal.copy()
    flat[:, 6:] = 0.0
    hea = _write(original, tmp_path, "flat", flat, "516")
    with pytest.raises(DataError, match=r"flat\.hea: flat leads: V1, V2, V3, V4, V5, V6"):
        read_record(hea)


def test_unknown_format_names_the_problem(original: wfdb.Record, tmp_path: Path) -> None:
    hea = _write(original, tmp_path, "odd", original.p_signal, "16")
    hea.write_text(hea.read_text().replace(" 16 1000", " 999 1000"))
    with pytest.raises(DataError, match=r"odd\.hea: unreadable signal: "):
        read_record(hea)
