"""Checking source folders record by record (the ``aclecg data check`` command's core)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aclecg_core.data.cohort import DataError, Rejection
from aclecg_core.data.loading import ingest
from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.data.sources import discover


@dataclass(frozen=True)
class RecordCheck:
    """The outcome for one record: ``reason`` is None when it is usable, ``warnings`` name
    problems a usable record is kept despite."""

    path: str
    record_id: str
    reason: str | None
    windows: int = 0
    labels: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass
class CheckReport:
    """All record outcomes of a check, in path order."""

    records: list[RecordCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.records) and all(r.reason is None for r in self.records)

    def summary(self) -> dict[str, Any]:
        """Counts of usable, rejected and warned-about records, rejections by reason category."""
        bad = [r for r in self.records if r.reason is not None]
        return {
            "records": len(self.records),
            "ok": len(self.records) - len(bad),
            "rejected": len(bad),
            "warnings": sum(1 for r in self.records if r.warnings),
            "reasons": dict(Counter(r.reason.partition(":")[0] for r in bad if r.reason)),
        }


def check_sources(paths: list[Path], layout: str = "auto",
                  preprocessing: PreprocessConfig | None = None,
                  workers: int | None = None) -> CheckReport:
    """Read and preprocess every record below ``paths`` exactly as :func:`load_cohort` would."""
    sources = discover([Path(p) for p in paths], layout)
    if not sources:
        raise DataError(f"no WFDB records found in {', '.join(map(str, paths))}")
    results = ingest(sources, preprocessing or PreprocessConfig(), workers)
    report = CheckReport()
    for source, result in zip(sources, results, strict=True):
        if isinstance(result, Rejection):
            report.records.append(RecordCheck(result.path, source.record_id, result.reason))
        else:
            report.records.append(RecordCheck(str(source.header), result.info.record_id, None,
                                              len(result.windows), result.info.labels,
                                              result.warnings))
    return report
