"""The identity of a Flower app bundle (FAB): what a hospital reviews, pins and checks.

``flwr run`` builds the FAB deterministically (``flwr.cli.build.build_fab_from_disk``) with a
manifest ``.info/CONTENT`` of lines ``path,sha256,size_bits``, one per file. The identity is the
SHA-256 (hex) of that manifest: it names every file's content and path and does not depend on the
zip's compression, so the same project tree gives the same identity on every machine. Computed
from received bytes, it counts only once the zip is checked to hold exactly the files the manifest
lists, with those digests and sizes.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path

MANIFEST = ".info/CONTENT"
PREFIX = "sha256:"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def parse_identity(text: str) -> str:
    """An app identity as written by an operator (64 hex digits, optional ``sha256:``)."""
    value = text.strip().lower().removeprefix(PREFIX)
    if not _HEX64.fullmatch(value):
        raise ValueError(f"{text!r} is not an app identity: expected 64 hex digits as printed by "
                         "'aclecg deploy app-hash'")
    return value


def app_identity(fab_bytes: bytes) -> str:
    """The identity of a FAB; ValueError if it is not a zip whose files match its manifest."""
    try:
        with zipfile.ZipFile(io.BytesIO(fab_bytes)) as fab:
            names = fab.namelist()
            if len(set(names)) != len(names):
                raise ValueError("malformed app bundle: duplicate file names")
            if MANIFEST not in names:
                raise ValueError(f"malformed app bundle: no {MANIFEST} manifest")
            manifest = fab.read(MANIFEST)
            expected = _parse_manifest(manifest)
            members = set(names) - {MANIFEST}
            unlisted, missing = sorted(members - expected.keys()), sorted(expected.keys() - members)
            if unlisted or missing:
                raise ValueError(f"malformed app bundle: manifest does not match contents "
                                 f"(unlisted: {unlisted[:5]}, missing: {missing[:5]})")
            for name in sorted(members):
                if _digest_and_bits(fab, name) != expected[name]:
                    raise ValueError(f"malformed app bundle: manifest does not match contents "
                                     f"({name}: digest or size differs)")
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
        raise ValueError(f"malformed app bundle: {exc}") from exc
    return hashlib.sha256(manifest).hexdigest()


def project_app_identity(project_dir: Path) -> str:
    """The identity of the FAB that ``flwr run`` (``aclecg deploy submit``) builds from a folder.

    ValueError if Flower cannot build an app from the folder.
    """
    from flwr.cli.build import build_fab_from_disk

    folder = project_dir.expanduser().resolve()
    if not (folder / "pyproject.toml").is_file():
        raise ValueError(f"{folder}: not a Flower app folder (no pyproject.toml)")
    return app_identity(build_fab_from_disk(folder))


def _parse_manifest(manifest: bytes) -> dict[str, tuple[str, int]]:
    """``{path: (sha256, size_bits)}``; ValueError on a line that is not ``path,sha256,bits``."""
    entries: dict[str, tuple[str, int]] = {}
    try:
        lines = manifest.decode("utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise ValueError(f"malformed app bundle: {MANIFEST} is not UTF-8") from exc
    for line in lines:
        fields = line.rsplit(",", 2)
        if (len(fields) != 3 or not fields[0] or fields[0] in entries
                or not _HEX64.fullmatch(fields[1]) or not fields[2].isdigit()):
            raise ValueError(f"malformed app bundle: bad {MANIFEST} line {line[:200]!r}")
        entries[fields[0]] = (fields[1], int(fields[2]))
    return entries


def _digest_and_bits(fab: zipfile.ZipFile, name: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with fab.open(name) as member:
        while chunk := member.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size * 8
