"""Finding records in source folders (layouts "wfdb", "ptbxl", "cinc", "auto") and their metadata.

* ``ptbxl``: a folder with ``ptbxl_database.csv`` + ``scp_statements.csv``; records are the
  100 Hz ``filename_lr`` files of the table's rows.
* ``cinc``: PhysioNet/CinC challenge headers; labels from ``#Dx:``/``# Dx:``, site from
  ``# Site:``, ``# Source:`` (Challenge 2025: CODE-15%, SaMi-Trop), ``CODE-15%`` for an exam
  exported without ``# Source:`` (it carries ``# Exam ID:``) or the record-name prefix,
  patient from ``# Patient:``/``# Patient ID:`` or the record id, ``# Age:``/``# Sex:``, and the
  label ``Chagas`` for ``# Chagas label: True`` (Challenge 2025).
* ``wfdb``: any folder of WFDB records (searched recursively); ``Dx``/``Site``/``Patient``
  comments are used when present, otherwise site = folder name, patient = record id.
* ``auto``: ``ptbxl`` below every folder holding ``ptbxl_database.csv``, ``cinc`` elsewhere.
"""

from __future__ import annotations

import ast
import csv
import os
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from aclecg_core.data.cohort import DataError, RecordInfo
from aclecg_core.data.labels import CHAGAS_LABEL, PTBXL_SCP_TO_LABEL, map_dx

LAYOUTS: tuple[str, ...] = ("auto", "wfdb", "ptbxl", "cinc")
CODE15 = "CODE-15%"
PTBXL_TABLE = "ptbxl_database.csv"
SCP_TABLE = "scp_statements.csv"
# Record-name prefixes of the PhysioNet/CinC 2020/2021 sources (longest prefix wins).
CINC_SITE_PREFIXES: dict[str, str] = {
    "HR": "PTB-XL", "JS": "Ningbo", "A": "CPSC", "Q": "CPSC-Extra", "I": "StPetersburg",
    "S": "PTB", "E": "Georgia",
}


@dataclass(frozen=True)
class RecordSource:
    """One record to read: its header, layout and the metadata known before reading it."""

    header: Path
    layout: str
    record_id: str
    site: str = ""
    patient_id: str = ""
    fold: int | None = None
    labels: tuple[str, ...] = ()
    device: str = ""
    age: float | None = None
    sex: str = ""


def cinc_site(record_id: str) -> str | None:
    """The challenge source hospital of a record name (A0001 → CPSC), or None."""
    for prefix in sorted(CINC_SITE_PREFIXES, key=len, reverse=True):
        rest = record_id[len(prefix):]
        if record_id.startswith(prefix) and rest[:1].isdigit():
            return CINC_SITE_PREFIXES[prefix]
    return None


def _cinc_site(record_id: str, fields: dict[str, str]) -> str | None:
    """A challenge record's hospital where its header names none: a CODE-15% exam (the
    Challenge 2025 export keeps its ``# Exam ID:``), else the record-name prefix."""
    return CODE15 if "Exam ID" in fields else cinc_site(record_id)


def header_info(source: RecordSource, fs: float, comments: tuple[str, ...]) -> RecordInfo:
    """The :class:`RecordInfo` of a read record (header comments complete WFDB/CinC metadata)."""
    from aclecg_core.data.wfdb_io import comment_fields

    if source.layout == "ptbxl":
        return RecordInfo(source.record_id, str(source.header), "ptbxl", source.site,
                          source.patient_id, source.fold, fs, source.labels, source.device,
                          source.age, source.sex)
    fields = comment_fields(comments)
    labels = map_dx(fields.get("Dx", "").split(",")) if "Dx" in fields else ()
    if fields.get("Chagas label", "").lower() == "true":
        labels = tuple(sorted({*labels, CHAGAS_LABEL}))
    site = fields.get("Site") or fields.get("Source") or (
        _cinc_site(source.record_id, fields) if source.layout == "cinc" else None)
    return RecordInfo(
        record_id=source.record_id,
        path=str(source.header),
        source=source.layout,
        site=site or source.header.parent.name,
        patient_id=fields.get("Patient") or fields.get("Patient ID") or source.record_id,
        fold=None,
        fs=fs,
        labels=labels,
        device=fields.get("Device", ""),
        age=_age(fields.get("Age", "")),
        sex=_sex(fields.get("Sex", "")),
    )


def with_header_metadata(source: RecordSource) -> RecordSource:
    """``source`` with the site, patient and labels that its header comments give (what
    :func:`header_info` will give once the record is read), without reading the signal; PTB-XL
    sources (metadata from the table) and unreadable headers come back unchanged."""
    from aclecg_core.data.wfdb_io import read_header

    if source.layout == "ptbxl":
        return source
    try:
        header = read_header(source.header)
    except DataError:
        return source
    info = header_info(source, header.fs, tuple(header.comments))
    return replace(source, site=info.site, patient_id=info.patient_id, labels=info.labels)


@cache
def described(paths: tuple[Path, ...], layout: str) -> list[RecordSource]:
    """Every record below ``paths`` with its header metadata (:func:`with_header_metadata`),
    found once per process: each simulated site and the run's config split the same folders."""
    return [with_header_metadata(s) for s in discover(list(paths), layout)]


def _age(text: str) -> float | None:
    """Age in years; PTB-XL v1.0.3 codes "over 89" as 300, read as 90; junk is unknown."""
    try:
        age = float(text)
    except ValueError:
        return None
    if age >= 300:
        return 90.0
    return age if 0 <= age < 130 else None


def _sex(text: str) -> str:
    """"F", "M" or "" from header text (Female/Male/F/M) or PTB-XL's code (1 female, 0 male)."""
    key = text.strip().lower()
    if key in ("f", "female", "1", "1.0"):
        return "F"
    if key in ("m", "male", "0", "0.0"):
        return "M"
    return ""


@cache
def _scp_classes(folder: Path) -> dict[str, tuple[str, str]]:
    """Diagnostic SCP code → (superclass, subclass) from ``scp_statements.csv``."""
    table = folder / SCP_TABLE
    if not table.is_file():
        raise DataError(f"{table}: PTB-XL statement table missing")
    classes = {}
    with table.open(newline="") as f:
        for row in csv.DictReader(f):
            code = row.get("") or row.get("Unnamed: 0") or ""
            if row.get("diagnostic") in ("1", "1.0") and row.get("diagnostic_class"):
                classes[code] = (row["diagnostic_class"], row["diagnostic_subclass"])
    return classes


def ptbxl_labels(scp_codes: dict[str, float], classes: dict[str, tuple[str, str]],
                 min_likelihood: float = 0.0) -> tuple[str, ...]:
    """Superclasses + subclasses of the diagnostic statements (likelihood ≥ ``min_likelihood``;
    0 = every listed statement, as the PTB-XL benchmark does) + vocabulary labels of mapped
    rhythm/conduction/hypertrophy statements (PTB-XL gives those likelihood 0)."""
    labels: set[str] = set()
    for code, likelihood in scp_codes.items():
        if code in classes and likelihood >= min_likelihood:
            labels.update(classes[code])
        if code in PTBXL_SCP_TO_LABEL:
            labels.add(PTBXL_SCP_TO_LABEL[code])
    return tuple(sorted(labels))


def _int_or_none(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:
        return None


def ptbxl_sources(folder: Path) -> list[RecordSource]:
    """The records of a PTB-XL folder (100 Hz files), with labels, fold, patient, site, device."""
    table = folder / PTBXL_TABLE
    classes = _scp_classes(folder)
    sources = []
    with table.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                codes = ast.literal_eval(row["scp_codes"])
                ecg_id = int(float(row["ecg_id"]))
                header = folder / (row["filename_lr"] + ".hea")
            except (KeyError, ValueError, SyntaxError, TypeError) as exc:
                raise DataError(f"{table}: malformed row at line {line}: {exc}") from None
            patient = _int_or_none(row.get("patient_id", ""))
            site = _int_or_none(row.get("site", ""))
            sources.append(RecordSource(
                header=header,
                layout="ptbxl",
                record_id=f"ptbxl-{ecg_id:05d}",
                site=f"PTB-XL-{site}" if site is not None else "PTB-XL",
                patient_id=f"ptbxl-{patient}" if patient is not None else f"ptbxl-ecg{ecg_id}",
                fold=_int_or_none(row.get("strat_fold", "")),
                labels=ptbxl_labels(codes, classes),
                device=row.get("device", "").strip(),
                age=_age(row.get("age", "")),
                sex=_sex(row.get("sex", "")),
            ))
    return sources


def _headers_below(folder: Path, skip: list[Path]) -> list[Path]:
    headers = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if here / d not in skip)
        names = set(files)
        headers += [here / name for name in sorted(names) if name.endswith(".hea")]
        # a signal file without its header is reported (as "header file missing"), not skipped
        headers += [here / (name[:-4] + ".hea") for name in sorted(names)
                    if name.endswith((".dat", ".mat")) and name[:-4] + ".hea" not in names]
    return sorted(set(headers))


def discover(paths: list[Path], layout: str = "auto") -> list[RecordSource]:
    """All records below ``paths`` (folders or ``.hea`` files), sorted and de-duplicated."""
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    found: dict[Path, RecordSource] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        if path.is_file():
            if path.suffix != ".hea":
                raise DataError(f"{path}: not a WFDB header (.hea) or folder")
            kind = "wfdb" if layout == "wfdb" else "cinc"
            found.setdefault(path, RecordSource(path, kind, path.stem))
            continue
        if layout == "ptbxl" and not (path / PTBXL_TABLE).is_file():
            raise DataError(f"{path}: no {PTBXL_TABLE} for layout 'ptbxl'")
        roots = [] if layout in ("wfdb", "cinc") else sorted(
            table.parent for table in path.rglob(PTBXL_TABLE))
        for root in roots:
            for source in ptbxl_sources(root):
                found.setdefault(source.header, source)
        if layout == "ptbxl":
            continue
        kind = "wfdb" if layout == "wfdb" else "cinc"
        for header in _headers_below(path, roots):
            found.setdefault(header, RecordSource(header, kind, header.stem))
    return [found[key] for key in sorted(found)]
