"""The audit trail of a federated run: ``audit.jsonl``, an append-only SHA-256 hash chain.

One JSON object per line; every line carries ``prev``, the SHA-256 of the previous line's bytes
(:data:`GENESIS` for the first), so editing, removing or inserting a line breaks the chain at the
next line. Events: ``start`` / ``resume`` (config and code), ``round`` (one per finished round:
sites asked, answered and failed, digests of the arrays sent, of each reply or only the
aggregate under secure aggregation, of the aggregate and of the checkpoint files, the server
optimiser's state file included) and ``finish``.
:func:`verify_run` re-hashes the chain and the checkpoints on disk. Format: docs/federation.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aclecg_core.fed.arrays import select_keys, to_numpy
from aclecg_core.fed.serverstate import is_server_state
from aclecg_core.method.checkpoint import CheckpointError, checkpoint_paths, load_checkpoint

AUDIT_FILE = "audit.jsonl"
GENESIS = "0" * 64
SOURCE_DIRS = ("aclecg_core", "client", "server")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def array_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of named arrays, independent of their order: per key (sorted) its name, dtype,
    shape and C-order bytes."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(json.dumps([key, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def config_digest(config: Mapping[str, Any]) -> str:
    """SHA-256 of a config as canonical JSON (sorted keys, no whitespace)."""
    return sha256_bytes(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())


def code_version(root: Path) -> dict[str, str]:
    """``source-sha256`` of the Python sources of the apps and the core below ``root`` (works
    in an app bundle without git) and the ``git`` commit when ``root`` is a checkout."""
    h = hashlib.sha256()
    for folder in SOURCE_DIRS:
        for path in sorted((root / folder).rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode() + b"\0")
            h.update(path.read_bytes())
    version = {"source-sha256": h.hexdigest()}
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return version
    if done.returncode == 0:
        version["git"] = done.stdout.strip()
    return version


@dataclass
class RoundExchange:
    """What crossed the network in one round, as the server saw it."""

    asked: list[str] = field(default_factory=list)  # "node-<id>" of every node sent a task
    answered: list[dict[str, Any]] = field(default_factory=list)  # site, node, arrays-sha256
    failed: list[dict[str, str]] = field(default_factory=list)  # site, error
    sent_sha256: str | None = None  # the global arrays sent to the sites
    secure_aggregation: bool = False  # replies' arrays hidden: only the aggregate is known


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class AuditTrail:
    """Appends hash-chained lines to ``RUN_DIR/audit.jsonl`` (never rewrites one)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / AUDIT_FILE
        self.head = GENESIS
        if self.path.is_file():
            lines = self.path.read_bytes().splitlines()
            if lines:
                self.head = sha256_bytes(lines[-1])

    def append(self, event: str, **fields: Any) -> str:
        """Write one line (``event``, UTC ``time``, ``prev``, ``fields``); its hash."""
        line = json.dumps({"event": event, "time": _now(), "prev": self.head, **fields},
                          sort_keys=True, allow_nan=True).encode()
        with open(self.path, "ab") as f:
            f.write(line + b"\n")
            f.flush()
            os.fsync(f.fileno())
        self.head = sha256_bytes(line)
        return self.head

    def start(self, event: str, run_dir: Path, config: Mapping[str, Any],
              code: Mapping[str, str]) -> None:
        """``start`` or ``resume``: the config in effect, ``config.json`` on disk, the code."""
        self.append(event, config_sha256=config_digest(config),
                    config_json_sha256=file_digest(Path(run_dir) / "config.json"),
                    code=dict(code))

    def round(self, server_round: int, exchange: RoundExchange, aggregate: Mapping[str, np.ndarray],
              checkpoint: Path, config: Mapping[str, Any], code: Mapping[str, str],
              server_state: Path | None = None) -> None:
        """One finished round: the exchange, the aggregate and the checkpoint files written
        (with the server optimiser's state file, when the strategy keeps one)."""
        paths = [*checkpoint_paths(checkpoint), *([server_state] if server_state else [])]
        files = {p.name: file_digest(p) for p in paths}
        self.append("round", round=server_round, sites_asked=exchange.asked,
                    sites_answered=exchange.answered, sites_failed=exchange.failed,
                    global_sent_sha256=exchange.sent_sha256,
                    secure_aggregation=exchange.secure_aggregation,
                    aggregate_sha256=array_digest(aggregate), checkpoint=files,
                    config_sha256=config_digest(config), code=dict(code))


@dataclass
class AuditResult:
    """The outcome of :func:`verify_run`: ``problems`` empty means verified."""

    rounds: int
    head: str
    problems: list[str]

    @property
    def verified(self) -> bool:
        return not self.problems


def _read_chain(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    prev = GENESIS
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            entry = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            problems.append(f"{path.name} line {number}: not JSON")
            entry = {}
        if not isinstance(entry, dict):
            problems.append(f"{path.name} line {number}: not a JSON object")
            entry = {}
        if entry and entry.get("prev") != prev:
            where = f" (round {entry['round']})" if "round" in entry else ""
            problems.append(f"{path.name} line {number}{where}: the previous line's hash does "
                            f"not match: line {number - 1} was changed, or a line was removed "
                            "or inserted")
        entry["_line"] = number
        entries.append(entry)
        prev = sha256_bytes(raw)
    return entries


def _check_round(run_dir: Path, entry: dict[str, Any], aggregate: str,
                 problems: list[str]) -> str | None:
    """Re-hash one round's checkpoint files; the digest of the aggregate on disk."""
    r = entry.get("round")
    files: dict[str, str] = entry.get("checkpoint") or {}
    for name, digest in files.items():
        path = run_dir / "checkpoints" / name
        if not path.is_file():
            problems.append(f"round {r}: checkpoints/{name} is missing")
        elif file_digest(path) != digest:
            problems.append(f"round {r}: checkpoints/{name} differs from the audit trail")
    tensors = next((n for n in files if n.endswith(".safetensors") and not is_server_state(n)),
                   None)
    if tensors is None:
        problems.append(f"round {r} (line {entry['_line']}): no checkpoint recorded")
        return None
    try:
        state, _ = load_checkpoint(run_dir / "checkpoints" / tensors)
    except CheckpointError:
        return None  # already reported as missing or different
    on_disk = array_digest(select_keys(to_numpy(state), aggregate))
    if on_disk != entry.get("aggregate_sha256"):
        problems.append(f"round {r}: checkpoints/{tensors} does not hold the aggregate "
                        "recorded for the round")
    return on_disk


def verify_run(run_dir: Path) -> AuditResult:
    """Re-hash ``run_dir``'s audit chain, ``config.json`` and every checkpoint it names, and
    check that each round sent the previous round's aggregate and that ``final``/``best``
    copies match an audited round. Problems name the round and the file."""
    run_dir = Path(run_dir)
    path = run_dir / AUDIT_FILE
    if not path.is_file():
        return AuditResult(0, GENESIS, [f"{path} not found (runs before the audit trail have "
                                        "none)"])
    problems: list[str] = []
    entries = _read_chain(path, problems)
    head = sha256_bytes(path.read_bytes().splitlines()[-1]) if entries else GENESIS
    starts = [e for e in entries if e.get("event") in ("start", "resume")]
    if not starts:
        problems.append(f"{AUDIT_FILE}: no start line")
    elif (run_dir / "config.json").is_file() and \
            file_digest(run_dir / "config.json") != starts[0].get("config_json_sha256"):
        problems.append("config.json differs from the audit trail")
    aggregate = _aggregate_setting(run_dir)
    rounds: dict[int, dict[str, Any]] = {}
    for entry in entries:
        if entry.get("event") == "round":
            rounds[int(entry["round"])] = entry  # a resumed run may redo a round: last wins
    audited = {d for e in entries if e.get("event") == "round"
               for d in (e.get("checkpoint") or {}).values()}
    previous: str | None = None
    for r in sorted(rounds):
        entry = rounds[r]
        on_disk = _check_round(run_dir, entry, aggregate, problems)
        sent = entry.get("global_sent_sha256")
        if r > 0 and sent is not None and previous is not None and sent != previous:
            problems.append(f"round {r}: the global arrays sent are not round {r - 1}'s "
                            "aggregate")
        previous = entry.get("aggregate_sha256") if on_disk is None else on_disk
    for name in ("final", "best"):
        for copy in checkpoint_paths(run_dir / "checkpoints" / name):
            if copy.is_file() and file_digest(copy) not in audited:
                problems.append(f"checkpoints/{copy.name} matches no audited round")
    for orphan in _unaudited(run_dir, rounds):
        problems.append(f"checkpoints/{orphan} is not in the audit trail")
    return AuditResult(len(rounds), head, problems)


def _aggregate_setting(run_dir: Path) -> str:
    try:
        config = json.loads((run_dir / "config.json").read_text())
        return str(config["run"]["aggregate"])
    except (OSError, ValueError, KeyError, TypeError):
        return "encoder+projectors"


def _unaudited(run_dir: Path, rounds: Mapping[int, dict[str, Any]]) -> Iterable[str]:
    named = {n for e in rounds.values() for n in (e.get("checkpoint") or {})}
    for path in sorted((run_dir / "checkpoints").glob("round-*")):
        if path.name not in named:
            yield path.name
