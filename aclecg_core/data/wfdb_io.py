"""Validated reading of one WFDB record (``.hea`` + ``.dat``/``.mat``) into 12 leads in mV.

Single-segment records in the common formats are read with numpy (or ``wfdb`` for packed
formats) after checking the signal files against the header; multi-segment records and
compressed (FLAC, formats 508/516/524) signal files are read with ``wfdb.rdrecord``. The same
value checks follow: NaN, flat (dead) leads, the record's QRS amplitude
(:mod:`aclecg_core.data.amplitude`: wrong header gains) and single-lead artefacts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import wfdb

from aclecg_core.data.amplitude import AMPLITUDE_WARNING, judge_amplitude, qrs_amplitude
from aclecg_core.data.cohort import DataError
from aclecg_core.data.leads import CANONICAL_LEADS, LeadError, to_canonical_order
from aclecg_core.data.preprocess import MAX_FLAT_LEADS

MAX_FS_HZ = 20_000.0
MAX_ABS_MV = 25.0  # beyond this (after removing the median) a lead is not a surface ECG in mV
ARTEFACT_PTP_MV = 20.0  # a lead spanning more than this is kept, with a warning (artefact)
FLAT_PTP_MV = 0.01  # a lead whose whole range is below 10 µV carries no signal ...
FLAT_MAX_STEPS = 100  # ... unless it spans this many ADC steps (then the header gain is wrong)
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "nv": 1e-6, "v": 1e3}
_BYTES_PER_SAMPLE = {
    "8": 1.0, "16": 2.0, "61": 2.0, "80": 1.0, "160": 2.0, "212": 1.5, "310": 4 / 3,
    "311": 4 / 3, "24": 3.0, "32": 4.0,
}
_INVALID_SAMPLE = {"8": -128, "16": -32768, "61": -32768, "80": -128, "160": -32768,
                   "212": -2048, "310": -512, "311": -512, "24": -(2**23), "32": -(2**31),
                   "508": -128, "516": -32768, "524": -(2**23)}


@dataclass(frozen=True)
class RawRecord:
    """A record read from disk: (12, n) float32 mV in canonical order, rate, header comments.

    ``warnings`` name problems the record was kept despite (e.g. a few flat leads);
    ``amplitude_factor`` is how many times too large its samples likely are (a wrong header
    ``gain``, its most common one as written; 1 when the amplitude is plausible).
    """

    name: str
    signal: np.ndarray
    fs: float
    comments: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    amplitude_factor: float = 1.0
    gain: str = ""


def header_path(path: Path) -> Path:
    """The ``.hea`` file of a record given as header, signal file or extension-less stem."""
    return path if path.suffix == ".hea" else path.with_name(path.stem + ".hea") \
        if path.suffix in (".dat", ".mat") else path.with_name(path.name + ".hea")


def comment_fields(comments: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``Key: value`` header comments (``#Dx:`` or ``# Dx:``) as a dict, keys as written."""
    fields: dict[str, str] = {}
    for line in comments:
        key, sep, value = line.strip().lstrip("#").partition(":")
        if sep and key.strip():
            fields.setdefault(key.strip(), value.strip())
    return fields


class RecordError(DataError):
    """A record that cannot be used: ``path`` and ``reason`` ("category: detail")."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _fail(path: Path, reason: str) -> RecordError:
    return RecordError(path, reason)


_FORMAT = re.compile(r"^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$")
_GAIN = re.compile(r"^([-+0-9.eE]+)(?:\((-?\d+)\))?(?:/(\S+))?$")


@dataclass
class Header:
    """The fields of a WFDB header that this reader uses (``segments`` > 0: a multi-segment
    record, whose signal fields live in the segment headers)."""

    name: str
    fs: float
    sig_len: int
    segments: int = 0
    files: list[str] = field(default_factory=list)
    fmts: list[str] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    skews: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    gains: list[float] = field(default_factory=list)
    baselines: list[int] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    checksums: list[int | None] = field(default_factory=list)
    leads: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


def _parse_signal_line(header: Header, tokens: list[str]) -> None:
    fmt = _FORMAT.match(tokens[1]) if len(tokens) > 1 else None
    if fmt is None:
        raise ValueError(f"bad format field {tokens[1:2]}")
    gain = _GAIN.match(tokens[2]) if len(tokens) > 2 else None
    if len(tokens) > 2 and gain is None:
        raise ValueError(f"bad gain field {tokens[2]!r}")
    adc_zero = int(tokens[4]) if len(tokens) > 4 else 0
    header.files.append(tokens[0])
    header.fmts.append(fmt[1])
    header.frames.append(int(fmt[2] or 1))
    header.skews.append(int(fmt[3] or 0))
    header.offsets.append(int(fmt[4] or 0))
    header.gains.append(float(gain[1]) if gain and float(gain[1]) != 0 else 200.0)
    header.baselines.append(int(gain[2]) if gain and gain[2] is not None else adc_zero)
    header.units.append(gain[3] if gain and gain[3] else "mV")
    header.checksums.append(int(tokens[6]) if len(tokens) > 6 else None)
    header.leads.append(" ".join(tokens[8:]) if len(tokens) > 8 else f"signal {len(header.leads)}")


def parse_header(text: str) -> Header:
    """Parse a WFDB header (signal lines of single-segment records only); ValueError on
    anything malformed."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    comments = [line.lstrip("#").strip() for line in lines if line.startswith("#")]
    fields = [line.split() for line in lines if not line.startswith("#")]
    if not fields or len(fields[0]) < 2:
        raise ValueError("no record line")
    record = fields[0]
    name, _, segments = record[0].partition("/")
    n_sig = int(record[1])
    fs = float(record[2].split("/")[0].split("(")[0]) if len(record) > 2 else 250.0
    header = Header(name, fs, int(record[3]) if len(record) > 3 else 0, comments=comments,
                    segments=int(segments or 0))
    if segments:
        if header.segments < 1 or len(fields) - 1 != header.segments:
            raise ValueError(f"record line announces {segments} segments, "
                             f"found {len(fields) - 1}")
        return header
    if n_sig < 1 or len(fields) - 1 != n_sig:
        raise ValueError(f"record line announces {n_sig} signals, found {len(fields) - 1}")
    for tokens in fields[1:]:
        _parse_signal_line(header, tokens)
    return header


def read_header(hea: Path) -> Header:
    """The parsed and checked header ``hea``; :class:`RecordError` naming it otherwise."""
    if not hea.is_file():
        raise _fail(hea, "header file missing")
    try:
        header = parse_header(hea.read_text(errors="replace"))
    except (ValueError, IndexError) as exc:
        raise _fail(hea, f"malformed header: {exc}") from None
    if not math.isfinite(header.fs) or header.fs <= 0 or header.fs > MAX_FS_HZ:
        raise _fail(hea, f"implausible sampling rate: {header.fs:g} Hz")
    if header.sig_len <= 0:
        raise _fail(hea, "malformed header: no signal length")
    return header


def _check_signal_files(hea: Path, header: Header) -> None:
    """Missing, truncated or oversized signal files (a header/signal mismatch) are errors."""
    per_file: dict[str, list[int]] = {}
    for i, name in enumerate(header.files):
        per_file.setdefault(name, []).append(i)
    for name, idx in per_file.items():
        file = hea.parent / name
        if not file.is_file():
            raise _fail(hea, f"signal file missing: {file.name}")
        fmt = header.fmts[idx[0]]
        if fmt not in _BYTES_PER_SAMPLE:
            continue  # compressed (FLAC) or exotic: wfdb checks what it reads
        frame = sum(header.frames[i] for i in idx)
        expected = header.offsets[idx[0]] + math.ceil(
            header.sig_len * frame * _BYTES_PER_SAMPLE[fmt])
        size = file.stat().st_size
        if size < expected:
            raise _fail(hea, f"truncated signal file: {file.name} has {size} bytes, "
                             f"header implies {expected}")
        if size > expected + 8 and file.suffix != ".mat":
            raise _fail(hea, f"header/signal mismatch: {file.name} has {size} bytes, "
                             f"header implies {expected}")


def _unit_scale(hea: Path, units: str) -> float:
    key = units.strip().lower()
    if key not in _UNIT_TO_MV:
        raise _fail(hea, f"unknown signal units: {units!r}")
    return _UNIT_TO_MV[key]


def _read_digital(hea: Path, header: Header) -> np.ndarray:
    """(sig_len, n_sig) integer samples: numpy fast path for one interleaved 16-bit file."""
    simple = (len(set(header.files)) == 1 and set(header.fmts) == {"16"}
              and set(header.frames) == {1} and set(header.skews) == {0})
    try:
        if simple:
            n = header.sig_len * len(header.files)
            data = np.fromfile(hea.parent / header.files[0], dtype="<i2", count=n,
                               offset=header.offsets[0])
            return data.reshape(header.sig_len, len(header.files))
        record = wfdb.rdrecord(str(hea.with_suffix("")), physical=False)
        return np.asarray(record.d_signal)
    except Exception as exc:
        raise _fail(hea, f"unreadable signal: {type(exc).__name__}: {exc}") from None


def _per_mv(hea: Path, gains: list[float], units: list[str], leads: list[str]) -> np.ndarray:
    """ADC steps per mV of each signal; implausible gains are an error."""
    per_mv = np.array([g / _unit_scale(hea, u) for g, u in zip(gains, units, strict=True)])
    bad = ~np.isfinite(per_mv) | (per_mv < 1.0) | (per_mv > 1e7)
    if bad.any():
        i = int(np.argmax(bad))
        raise _fail(hea, f"implausible gain: {gains[i]:g}/{units[i]} in lead {leads[i]}")
    return per_mv


def _read_single(hea: Path, header: Header) -> np.ndarray:
    """(sig_len, n_sig) mV of a single-segment record, invalid samples NaN."""
    _check_signal_files(hea, header)
    per_mv = _per_mv(hea, header.gains, header.units, header.leads)
    digital = _read_digital(hea, header)
    if digital.shape != (header.sig_len, len(header.leads)):
        raise _fail(hea, f"header/signal mismatch: signal {digital.shape}, "
                         f"header ({header.sig_len}, {len(header.leads)})")
    sums = digital.astype(np.int64).sum(axis=0) % 65536
    for i, expected in enumerate(header.checksums):
        if expected is not None and int(sums[i]) != expected % 65536:
            raise _fail(hea, f"header/signal mismatch: checksum of lead "
                             f"{header.leads[i]} differs from the header")
    physical = (digital - np.asarray(header.baselines, dtype=float)) / per_mv
    for i, fmt in enumerate(header.fmts):
        if fmt in _INVALID_SAMPLE:
            physical[digital[:, i] == _INVALID_SAMPLE[fmt], i] = np.nan
    return physical


def _read_segments(hea: Path, header: Header) -> np.ndarray:
    """(sig_len, n_sig) mV of a multi-segment record (``wfdb.rdrecord``); fills ``header``'s
    signal fields from the merged record."""
    try:
        record = wfdb.rdrecord(str(hea.with_suffix("")))
        physical = np.asarray(record.p_signal, dtype=float)
    except Exception as exc:
        raise _fail(hea, f"unreadable multi-segment record: {type(exc).__name__}: {exc}") \
            from None
    header.leads = list(record.sig_name)
    header.units = [u or "mV" for u in record.units]
    header.gains = [float(g) for g in (record.adc_gain or [200.0] * len(header.leads))]
    return physical * np.array([_unit_scale(hea, u) for u in header.units])


def read_wfdb(path: Path, max_flat_leads: int = MAX_FLAT_LEADS) -> RawRecord:
    """Read and validate one WFDB record; raise :class:`DataError` naming file and problem.

    Leads that are constant over the whole record (dead electrodes) are an error when there
    are more than ``max_flat_leads`` of them or when all leads are flat; fewer are kept and
    named in ``RawRecord.warnings``.
    """
    if not 0 <= max_flat_leads <= len(CANONICAL_LEADS):
        raise ValueError(f"max_flat_leads must be 0..{len(CANONICAL_LEADS)}, got {max_flat_leads}")
    hea = header_path(Path(path))
    header = read_header(hea)
    physical = _read_segments(hea, header) if header.segments else _read_single(hea, header)
    per_mv = _per_mv(hea, header.gains, header.units, header.leads)
    try:
        signal = to_canonical_order(physical, header.leads)
    except LeadError as exc:
        raise _fail(hea, f"unusable leads: {exc}") from None
    gain = _gain_text(header)
    warnings, factor = _check_values(hea, signal, header.fs, max_flat_leads,
                                     1 / float(np.median(per_mv)), gain)
    return RawRecord(header.name, signal, header.fs, tuple(header.comments), warnings, factor,
                     gain)


def _gain_text(header: Header) -> str:
    """The most common gain of the header's signals, as written (``200/mV``)."""
    gain, units = max(zip(header.gains, header.units, strict=True),
                      key=list(zip(header.gains, header.units, strict=True)).count)
    return f"{gain:.10g}/{units}"


def _check_values(hea: Path, signal: np.ndarray, fs: float, max_flat_leads: int,
                  step_mv: float, gain: str) -> tuple[tuple[str, ...], float]:
    """NaN, too many flat leads, an implausible QRS amplitude (a wrong header ``gain``) and
    implausibly large single leads are errors; returns the warnings and the likely gain factor.

    A lead is flat when its range is below :data:`FLAT_PTP_MV` and spans fewer than
    :data:`FLAT_MAX_STEPS` ADC steps of ``step_mv``.
    """
    finite = np.isfinite(signal).all(axis=1)
    if not finite.all():
        names = [CANONICAL_LEADS[i] for i in np.flatnonzero(~finite)]
        raise _fail(hea, f"invalid samples: NaN or out-of-range values in lead(s) "
                         f"{', '.join(names)}")
    ranges = np.ptp(signal, axis=1)
    flat = (ranges < FLAT_PTP_MV) & (ranges < FLAT_MAX_STEPS * step_mv)
    flat_names = ", ".join(CANONICAL_LEADS[i] for i in np.flatnonzero(flat))
    if flat.all() or flat.sum() > max_flat_leads:
        limit = "all leads" if flat.all() else f"more than max-flat-leads={max_flat_leads}"
        raise _fail(hea, f"flat leads: {flat_names} (range below {FLAT_PTP_MV} mV; {limit})")
    warnings = [f"flat leads: {flat_names} (kept; max-flat-leads={max_flat_leads})"] \
        if flat.any() else []
    qrs = qrs_amplitude(signal, fs, ~flat)
    verdict = judge_amplitude(qrs, gain) if qrs is not None else None
    if verdict is not None and verdict.reject:
        raise _fail(hea, f"implausible amplitude: {verdict.message}")
    factor = verdict.factor if verdict is not None else 1.0
    scale = max(1.0, factor)  # large leads are judged as if rescaled by the likely gain error
    deviation = np.abs(signal - np.median(signal, axis=1, keepdims=True))
    peaks = deviation.max(axis=1)
    at = np.argmax(deviation, axis=1) / fs
    if peaks.max() > MAX_ABS_MV * scale:
        i = int(np.argmax(peaks))
        raise _fail(hea, f"implausible amplitude: {peaks[i]:.1f} mV in lead "
                         f"{CANONICAL_LEADS[i]} at {at[i]:.2f} s (limit {MAX_ABS_MV * scale:g} mV)")
    wild = np.flatnonzero(ranges > ARTEFACT_PTP_MV * scale)
    if len(wild):
        spans = ", ".join(f"{CANONICAL_LEADS[i]} {ranges[i]:.1f} mV at {at[i]:.2f} s"
                          for i in wild)
        warnings.append(f"artefact: {spans} (range over {ARTEFACT_PTP_MV * scale:g} mV)")
    if verdict is not None and verdict.message:
        warnings.append(f"{AMPLITUDE_WARNING} {verdict.message}")
    return tuple(warnings), factor
