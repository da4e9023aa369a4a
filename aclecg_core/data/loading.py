"""Loading source folders into a preprocessed :class:`Cohort`: ingest, cache, rejections."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from aclecg_core.data.amplitude import AMPLITUDE_WARNING, GainEvidence, shared_gain_warnings
from aclecg_core.data.cache import cache_key, load_cached, save_cohort
from aclecg_core.data.cohort import Cohort, DataError, RecordInfo, RecordWarning, Rejection
from aclecg_core.data.preprocess import (
    MAX_FLAT_LEADS,
    PreprocessConfig,
    cut_windows,
    filter_signal,
    normalize,
    normalize_record,
    resample,
    window_starts,
)
from aclecg_core.data.rpeaks import detect_rpeaks, window_rpeaks
from aclecg_core.data.sources import RecordSource, discover, header_info, ptbxl_sources
from aclecg_core.data.wfdb_io import RecordError, header_path, read_wfdb

__all__ = ["DataError", "PreprocessConfig", "ingest", "load_cohort", "load_sources",
           "read_record"]

log = logging.getLogger(__name__)
LOGGED_IN_FULL = 10  # rejections and warnings logged one by one at warning level


@dataclass(frozen=True)
class ProcessedRecord:
    """One record after preprocessing: windows (k, 12, w), R-peaks per window, metadata,
    warnings (problems it was kept despite), header gain and likely gain error (as read)."""

    info: RecordInfo
    windows: np.ndarray
    rpeaks: list[np.ndarray]
    warnings: tuple[str, ...] = ()
    gain: str = ""
    amplitude_factor: float = 1.0


def ingest_record(source: RecordSource, cfg: PreprocessConfig) -> ProcessedRecord | Rejection:
    """Read, check and preprocess one record; any problem becomes a :class:`Rejection`."""
    try:
        raw = read_wfdb(source.header, cfg.max_flat_leads)
        signal, warnings = raw.signal, raw.warnings
        if cfg.rescale_amplitude and raw.amplitude_factor != 1:
            signal = signal / np.float32(raw.amplitude_factor)
            warnings = tuple(f"{w} (rescaled x{1 / raw.amplitude_factor:g})"
                             if w.startswith(AMPLITUDE_WARNING) else w for w in warnings)
        signal = filter_signal(resample(signal, raw.fs, cfg.target_fs), cfg)
        starts = window_starts(signal.shape[1], cfg)
        peaks = detect_rpeaks(signal, cfg.target_fs)
        signal = normalize_record(signal, cfg.normalization)
        windows = normalize(cut_windows(signal, starts, cfg), cfg.normalization)
        info = header_info(source, raw.fs, raw.comments)
        return ProcessedRecord(info, windows, window_rpeaks(peaks, starts, cfg.window_samples),
                               warnings, raw.gain, raw.amplitude_factor)
    except RecordError as exc:
        return Rejection(str(source.header), exc.reason)
    except DataError as exc:
        return Rejection(str(source.header), str(exc))
    except Exception as exc:  # a reader bug or exotic file must not end the run
        return Rejection(str(source.header), f"unreadable record: {type(exc).__name__}: {exc}")


def ingest(sources: list[RecordSource], cfg: PreprocessConfig, workers: int | None = None,
           progress: bool = False) -> list[ProcessedRecord | Rejection]:
    """Process ``sources`` in order, over ``workers`` processes (default: all cores), then
    warn about the records whose header gain their folder shows to be wrong."""
    return _folder_checked(_processed(sources, cfg, workers, progress))


def _folder_checked(results: list[ProcessedRecord | Rejection]
                    ) -> list[ProcessedRecord | Rejection]:
    done = [r for r in results if isinstance(r, ProcessedRecord)]
    extra = shared_gain_warnings([GainEvidence(r.info.path, r.gain, r.amplitude_factor)
                                  for r in done])
    return [replace(r, warnings=(*r.warnings, extra[r.info.path]))
            if isinstance(r, ProcessedRecord) and r.info.path in extra else r for r in results]


def _processed(sources: list[RecordSource], cfg: PreprocessConfig, workers: int | None,
               progress: bool) -> list[ProcessedRecord | Rejection]:
    workers = min(workers or os.cpu_count() or 1, max(1, len(sources) // 8))
    task = partial(ingest_record, cfg=cfg)
    if workers <= 1:
        return list(_progress(map(task, sources), len(sources), progress))
    # fork is fast (no re-import) but unsafe beside other threads (gRPC, torch): spawn then.
    single = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if single else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        chunks = max(1, len(sources) // (workers * 8))
        results = pool.map(task, sources, chunksize=chunks)
        return list(_progress(results, len(sources), progress))


def _progress(items: Iterable[ProcessedRecord | Rejection], total: int,
              enabled: bool) -> Iterator[ProcessedRecord | Rejection]:
    if not enabled:
        return iter(items)
    from tqdm import tqdm

    return iter(tqdm(items, total=total, desc="ingest", unit="rec"))


def assemble(results: list[ProcessedRecord | Rejection], cfg: PreprocessConfig) -> Cohort:
    """Stack processed records into a :class:`Cohort` (with its rejections and warnings)."""
    done = [r for r in results if isinstance(r, ProcessedRecord)]
    rejected = [r for r in results if isinstance(r, Rejection)]
    if not done:
        first = f" (first: {rejected[0].path}: {rejected[0].reason})" if rejected else ""
        raise DataError(f"no usable records: all {len(results)} rejected{first}")
    per_window = [peaks for r in done for peaks in r.rpeaks]
    rpeaks = np.full((len(per_window), max(1, *map(len, per_window))), -1, dtype=np.int32)
    for row, peaks in enumerate(per_window):
        rpeaks[row, : len(peaks)] = peaks
    return Cohort(
        signals=np.concatenate([r.windows for r in done]).astype(np.float32, copy=False),
        rpeaks=rpeaks,
        window_record=np.repeat(np.arange(len(done)), [len(r.windows) for r in done]),
        records=[r.info for r in done],
        fs=cfg.target_fs,
        preprocessing=cfg.to_dict(),
        rejected=rejected,
        warnings=_warnings(done),
    )


def _warnings(results: Iterable[ProcessedRecord | Rejection]) -> list[RecordWarning]:
    return [RecordWarning(r.info.path, message) for r in results
            if isinstance(r, ProcessedRecord) for message in r.warnings]


def _report(rejected: list[Rejection], warnings: list[RecordWarning], total: int,
            strict: bool) -> None:
    """Log rejections and warnings, counted by category; raise on a rejection if ``strict``."""
    if rejected and strict:
        first = rejected[0]
        raise DataError(f"{first.path}: {first.reason}"
                        + (f" (and {len(rejected) - 1} more rejected records)"
                           if len(rejected) > 1 else ""))
    for kind, items in (("rejected", [(r.path, r.reason) for r in rejected]),
                        ("kept with a warning", [(w.path, w.message) for w in warnings])):
        if not items:
            continue
        counts = Counter(text.partition(":")[0] for _, text in items)
        log.warning("%s %d of %d records: %s", kind, len({path for path, _ in items}), total,
                    ", ".join(f"{category} ({n})" for category, n in counts.most_common()))
        for i, (path, text) in enumerate(items):  # the first few in full at warning level
            log.log(logging.WARNING if i < LOGGED_IN_FULL else logging.INFO, "%s %s: %s", kind,
                    path, text)


def load_cohort(paths: list[Path], layout: str = "auto",
                preprocessing: PreprocessConfig | None = None, cache_dir: Path | None = None,
                strict: bool = False, workers: int | None = None,
                progress: bool = False) -> Cohort:
    """Load every record below ``paths`` into one preprocessed cohort.

    Bad records are skipped and listed in ``Cohort.rejected`` (logged), or raise
    :class:`DataError` naming the file and the problem when ``strict``. Records kept despite a
    problem (a few flat leads) are listed in ``Cohort.warnings`` (logged), also when ``strict``.
    With ``cache_dir`` the result is cached, keyed by the source files (path, size, mtime) and
    all parameters.
    """
    cfg = preprocessing or PreprocessConfig()
    paths = [Path(p) for p in paths]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise DataError(f"{missing[0]}: no such file or folder")
    folder = None
    if cache_dir is not None:
        folder = Path(cache_dir) / f"cohort-{cache_key(paths, layout, cfg.to_dict())}"
        if (cached := _cached(folder, strict)) is not None:
            return cached
    sources = discover(paths, layout)
    if not sources:
        raise DataError(f"no WFDB records found in {', '.join(map(str, paths))}")
    return _ingested(sources, cfg, folder, strict, workers, progress)


def load_sources(sources: list[RecordSource], preprocessing: PreprocessConfig | None = None,
                 cache_dir: Path | None = None, strict: bool = False,
                 workers: int | None = None) -> Cohort:
    """Load the records ``sources`` (e.g. one simulated site's share of :func:`discover`) like
    :func:`load_cohort`; cached by the sources' files and metadata."""
    cfg = preprocessing or PreprocessConfig()
    if not sources:
        raise DataError("no records to load: the list of sources is empty")
    folder = None
    if cache_dir is not None:
        described = [[s.layout, s.record_id, s.site, s.patient_id, s.fold, list(s.labels)]
                     for s in sources]
        key = cache_key([s.header for s in sources], "sources", cfg.to_dict(), described)
        folder = Path(cache_dir) / f"cohort-{key}"
        if (cached := _cached(folder, strict)) is not None:
            return cached
    return _ingested(sources, cfg, folder, strict, workers, progress=False)


def _cached(folder: Path, strict: bool) -> Cohort | None:
    """The cohort cached in ``folder`` (its rejections and warnings reported again), or None."""
    cached = load_cached(folder)
    if cached is not None:
        _report(cached.rejected, cached.warnings, len(cached.records) + len(cached.rejected),
                strict)
    return cached


def _ingested(sources: list[RecordSource], cfg: PreprocessConfig, folder: Path | None,
              strict: bool, workers: int | None, progress: bool) -> Cohort:
    start = time.perf_counter()
    results = ingest(sources, cfg, workers, progress)
    _report([r for r in results if isinstance(r, Rejection)], _warnings(results), len(results),
            strict)
    cohort = assemble(results, cfg)
    log.info("ingested %d records (%d windows) in %.1f s", len(cohort.records), len(cohort),
             time.perf_counter() - start)
    if folder is not None:
        save_cohort(cohort, folder)
    return cohort


def _source_for(header: Path, layout: str) -> RecordSource:
    """The source of one header, with PTB-XL metadata when it lies below a PTB-XL folder."""
    if layout in ("auto", "ptbxl"):
        for root in list(header.resolve().parents)[:4]:
            if (root / "ptbxl_database.csv").is_file():
                for source in ptbxl_sources(root):
                    if source.header.resolve() == header.resolve():
                        return source
    if layout == "ptbxl":
        raise DataError(f"{header}: not listed in a PTB-XL table")
    return RecordSource(header, "wfdb" if layout == "wfdb" else "cinc", header.stem)


def read_record(path: Path, layout: str = "auto",
                max_flat_leads: int = MAX_FLAT_LEADS) -> tuple[np.ndarray, float, RecordInfo]:
    """One checked record: ((12, n) float32 mV in canonical order, fs in Hz, metadata).

    Raises :class:`DataError` naming the file and the problem; logs its warnings.
    """
    source = _source_for(header_path(Path(path)), layout)
    raw = read_wfdb(source.header, max_flat_leads)
    for message in raw.warnings:
        log.warning("%s: %s", source.header, message)
    return raw.signal, raw.fs, header_info(source, raw.fs, raw.comments)
