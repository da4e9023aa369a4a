"""The in-memory cohort: preprocessed fixed-length windows plus per-record metadata.

Every data source (WFDB folders, PTB-XL, PhysioNet/CinC, synthetic, GAN) ends up as a
:class:`Cohort`; augmentations, training, probing and the federation only see this type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RecordInfo:
    """Metadata of one source record (never leaves a site in a federated run)."""

    record_id: str
    path: str
    source: str
    site: str
    patient_id: str
    fold: int | None
    fs: float
    labels: tuple[str, ...]
    device: str = ""
    age: float | None = None  # years (PTB-XL's code 300 for "over 89" is read as 90)
    sex: str = ""  # "F", "M" or "" (unknown)


class DataError(ValueError):
    """A data file or source cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Rejection:
    """A record that could not be used, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class RecordWarning:
    """A problem a usable record was kept despite (e.g. a few flat leads)."""

    path: str
    message: str


@dataclass
class Cohort:
    """Preprocessed windows of a set of records.

    Attributes:
        signals: float32 (n_windows, 12, window_samples) in canonical lead order.
        rpeaks: int32 (n_windows, max_beats) R-peak sample indices inside each window, -1 padded.
        window_record: int64 (n_windows,) index into ``records`` for each window.
        records: metadata of each record.
        fs: sampling rate of ``signals`` in Hz.
        preprocessing: the preprocessing parameters that produced ``signals``.
        rejected: records that were skipped, with reasons.
        warnings: problems of kept records (``path`` as in ``RecordInfo.path``).
    """

    signals: np.ndarray
    rpeaks: np.ndarray
    window_record: np.ndarray
    records: list[RecordInfo]
    fs: float
    preprocessing: dict[str, Any]
    rejected: list[Rejection] = field(default_factory=list)
    warnings: list[RecordWarning] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.signals)
        if self.signals.ndim != 3 or self.signals.shape[1] != 12:
            raise ValueError(f"signals must be (n, 12, samples), got {self.signals.shape}")
        if self.rpeaks.ndim != 2 or len(self.rpeaks) != n or len(self.window_record) != n:
            raise ValueError("rpeaks and window_record must have one row per window")

    def __len__(self) -> int:
        return len(self.signals)

    @property
    def window_samples(self) -> int:
        return int(self.signals.shape[2])

    def record_label_matrix(self, classes: list[str]) -> np.ndarray:
        """Multi-hot uint8 (n_records, len(classes)) of each record's labels."""
        index = {c: i for i, c in enumerate(classes)}
        per_record = np.zeros((len(self.records), len(classes)), dtype=np.uint8)
        for r, info in enumerate(self.records):
            for label in info.labels:
                if label in index:
                    per_record[r, index[label]] = 1
        return per_record

    def label_matrix(self, classes: list[str]) -> np.ndarray:
        """Multi-hot uint8 (n_windows, len(classes)) of each window's record labels."""
        return self.record_label_matrix(classes)[self.window_record]

    def select_records(self, keep: np.ndarray) -> Cohort:
        """The sub-cohort of the records where boolean ``keep`` (n_records,) is true."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (len(self.records),):
            raise ValueError(f"keep must have shape ({len(self.records)},), got {keep.shape}")
        new_index = np.cumsum(keep) - 1
        windows = keep[self.window_record]
        kept = {r.path for r, k in zip(self.records, keep, strict=True) if k}
        return Cohort(
            signals=self.signals[windows],
            rpeaks=self.rpeaks[windows],
            window_record=new_index[self.window_record[windows]].astype(np.int64),
            records=[r for r, k in zip(self.records, keep, strict=True) if k],
            fs=self.fs,
            preprocessing=dict(self.preprocessing),
            rejected=list(self.rejected),
            warnings=[w for w in self.warnings if w.path in kept],
        )
