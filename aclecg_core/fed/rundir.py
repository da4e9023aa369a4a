"""The run folder of a federated run: config.json, metrics.json, checkpoints, resume.

The format is specified in docs/federation.md ("Run folder format").
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aclecg_core.fed.arrays import select_keys, to_numpy, to_torch
from aclecg_core.fed.audit import AuditTrail, RoundExchange, code_version
from aclecg_core.fed.config import ConfigError, FederationConfig
from aclecg_core.fed.serverstate import load_server_state, save_server_state, server_state_path
from aclecg_core.method.checkpoint import (
    CheckpointError,
    checkpoint_paths,
    corpus_summary,
    encoder_metadata,
    load_checkpoint,
    save_checkpoint,
)
from aclecg_core.method.model import EncoderConfig

# Run-config keys that may differ between a run and its resumption; a change of those that
# shape the training (CHANGE_RECORDED_KEYS, e.g. a lower lr after a diverged round) is recorded.
RESUME_FREE_KEYS = ("resume", "run-dir", "num-server-rounds", "round-timeout", "device",
                    "client-cpus", "client-gpus", "ray-address", "lr", "max-update-ratio")
CHANGE_RECORDED_KEYS = ("lr", "max-update-ratio")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_json(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, allow_nan=True)
        f.write("\n")
    os.replace(tmp, path)


def default_run_dir(cfg: FederationConfig, runs: Path | None = None) -> Path:
    """``run-dir`` if set; otherwise a new ``runs/<time>-<strategy>`` (or, when resuming,
    the most recent run folder below ``runs/``)."""
    if cfg.run.run_dir:
        return cfg.path(cfg.run.run_dir)
    runs = runs or cfg.path("runs")
    if cfg.run.resume:
        found = sorted(runs.glob("*/metrics.json"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise ConfigError(f"--resume: no run folder with metrics.json below {runs}")
        return found[-1].parent
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return runs / f"{stamp}-{cfg.run.strategy}"


class RunFolder:
    """Writes one run's folder; round numbers are global (a resumed run continues them)."""

    def __init__(self, path: Path, cfg: FederationConfig) -> None:
        self.path = Path(path)
        self.cfg = cfg
        self.checkpoints = self.path / "checkpoints"
        self.audit = AuditTrail(self.path)
        self.code = code_version(Path(cfg.base_dir))
        self.metrics: dict[str, Any] = {}

    @classmethod
    def create(cls, path: Path, cfg: FederationConfig) -> RunFolder:
        """A fresh run folder; an existing run there is an error (use resume)."""
        folder = cls(path, cfg)
        if (folder.path / "metrics.json").exists():
            raise ConfigError(f"run-dir {folder.path} already holds a run; pass --resume to "
                              "continue it or choose another --run-dir")
        folder.checkpoints.mkdir(parents=True, exist_ok=True)
        _write_json(folder.path / "config.json", cfg.to_dict())
        folder.metrics = {
            "run": {"name": folder.path.name, "started": _now(), "finished": None,
                    "status": "running"},
            "sites": [], "rounds": [], "best": None, "final_round": 0,
        }
        folder._save_metrics()
        folder.audit.start("start", folder.path, cfg.to_dict(), folder.code)
        return folder

    @classmethod
    def resume(cls, path: Path, cfg: FederationConfig) -> RunFolder:
        """Reopen ``path``: its config must match ``cfg`` (except RESUME_FREE_KEYS)."""
        folder = cls(path, cfg)
        try:
            saved = json.loads((folder.path / "config.json").read_text())
            folder.metrics = json.loads((folder.path / "metrics.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot resume {folder.path}: {exc}") from None
        current = cfg.to_dict()
        changed = {k: [saved["run"].get(k), current["run"][k]] for k in CHANGE_RECORDED_KEYS
                   if saved["run"].get(k) != current["run"][k]}
        for section in (saved, current):
            for key in RESUME_FREE_KEYS:
                section["run"].pop(key, None)
        if saved != current:
            diff = [f"{s}.{k}" for s in current if isinstance(current[s], dict)
                    for k in sorted(set(current[s]) | set(saved.get(s, {})))
                    if current[s].get(k) != saved.get(s, {}).get(k)]
            raise ConfigError(f"cannot resume {folder.path}: config differs from its "
                              f"config.json in {diff or 'base-dir'}")
        last = int(folder.metrics["final_round"])
        # A run that stopped before round 1 finished starts again from round 0.
        folder.metrics["rounds"] = [r for r in folder.metrics["rounds"]
                                    if r["round"] <= last] if last > 0 else []
        if last == 0:
            folder.metrics["best"] = None
        folder.metrics["run"].update(status="running", finished=None)
        folder.metrics["run"].pop("error", None)
        if changed:
            folder.metrics["run"].setdefault("changes", []).append(
                {"after_round": last, "changed": changed})
        folder._save_metrics()
        folder.audit.start("resume", folder.path, cfg.to_dict(), folder.code)
        return folder

    @property
    def last_round(self) -> int:
        return int(self.metrics["final_round"])

    def round_path(self, server_round: int) -> Path:
        return self.checkpoints / f"round-{server_round:04d}"

    def load_round(self, server_round: int) -> dict[str, np.ndarray]:
        """The full model state (numpy) checkpointed after ``server_round``."""
        state, _ = load_checkpoint(self.round_path(server_round))
        return to_numpy(state)

    def load_server_state(self, server_round: int) -> dict[str, np.ndarray]:
        """The server optimiser's state saved after ``server_round``, which an exact resume
        needs; :class:`ConfigError` naming the file when it cannot be read (run folders written
        before the state was saved have none)."""
        path = server_state_path(self.round_path(server_round))
        try:
            return load_server_state(path, self.cfg.run.strategy, server_round)
        except CheckpointError as exc:
            raise ConfigError(f"cannot resume {self.path}: {exc}; strategy "
                              f"'{self.cfg.run.strategy}' continues exactly only from the server "
                              f"optimiser's state after round {server_round} (run folders "
                              "written before it was saved have none): start a new run") from None

    def add_sites(self, sites: list[dict[str, Any]]) -> None:
        """Record per-site aggregate counts (the first report of each site is kept)."""
        known = {s["site"] for s in self.metrics["sites"]}
        for site in sites:
            if site["site"] not in known:
                self.metrics["sites"].append(site)
                known.add(site["site"])
        self.metrics["sites"].sort(key=lambda s: s["site"])

    def finish_round(self, server_round: int, state: dict[str, np.ndarray],
                     wall_seconds: float, clients: list[dict[str, Any]],
                     failures: list[dict[str, Any]], probe: dict[str, Any] | None,
                     exchange: RoundExchange | None = None,
                     timing: dict[str, float] | None = None,
                     server_state: Mapping[str, np.ndarray] | None = None) -> None:
        """Checkpoint the global model of ``server_round`` (and ``server_state``, the server
        optimiser's state, when the strategy keeps one), add the round to the audit trail
        (``exchange``: what was sent and received; None for round 0), append its metrics with
        ``timing`` (seconds of the round's phases) and ``write_s``, the time of this write."""
        start = time.perf_counter()
        auroc = None if probe is None else probe.get("macro_auroc")
        metadata = encoder_metadata(
            method=self.cfg.run.method, encoder=EncoderConfig(size=self.cfg.run.encoder),
            preprocessing=self.cfg.preprocessing, round=server_round,
            metrics={"macro_auroc": auroc,
                     "macro_auprc": None if probe is None else probe.get("macro_auprc")},
            config=self.cfg.to_dict(), corpus=self._corpus(), aggregate=self.cfg.run.aggregate)
        save_checkpoint(self.round_path(server_round), to_torch(state), metadata)
        state_file = None
        if server_state is not None:
            state_file = server_state_path(self.round_path(server_round))
            save_server_state(state_file, server_state, self.cfg.run.strategy, server_round)
        self.audit.round(server_round, exchange or RoundExchange(),
                         select_keys(state, self.cfg.run.aggregate), self.round_path(server_round),
                         self.cfg.to_dict(), self.code, state_file)
        self._copy(self.round_path(server_round), "final")
        best = self.metrics["best"]  # chosen on the probe's validation score, never on test
        val = None if probe is None else probe.get("val_auroc")
        if val is not None and np.isfinite(val) and (
                best is None or val > best.get("val_auroc", -np.inf)):
            self.metrics["best"] = {"round": server_round, "val_auroc": float(val),
                                    "macro_auroc": float(auroc) if auroc is not None else None}
            self._copy(self.round_path(server_round), "best")
        self.metrics["rounds"].append({
            "round": server_round, "wall_seconds": round(wall_seconds, 3),
            "clients": sorted(clients, key=lambda c: c["site"]),
            "failures": sorted(failures, key=lambda f: f["site"]), "probe": probe,
            "timing": {**{k: round(v, 3) for k, v in (timing or {}).items()},
                       "write_s": round(time.perf_counter() - start, 3)},
        })
        self.metrics["final_round"] = server_round
        self._save_metrics()

    def _corpus(self) -> dict[str, Any]:
        """The training corpus as far as the server knows it: the sites' aggregate counts."""
        c = self.cfg.cohort
        if c.source == "synthetic":
            source = (f"synthetic cohort (seed {c.synthetic_seed}, {c.sites} sites x "
                      f"{c.records_per_site} records)")
        else:
            source = f"{self.cfg.path(c.path)} (layout {c.layout}, partition {c.partition})"
        sites = [{"site": s["site"], "records": s.get("records"), "windows": s.get("windows")}
                 for s in self.metrics["sites"]]
        return corpus_summary("federated", source, sites)

    def finish(self, status: str, error: str | None = None) -> None:
        """Mark the run ``finished`` or ``failed`` (with the ``error`` that stopped it)."""
        self.metrics["run"].update(status=status, finished=_now())
        if error is not None:
            self.metrics["run"]["error"] = error
        self._save_metrics()
        self.audit.append("finish", status=status, **({} if error is None else {"error": error}))

    def _copy(self, source: Path, name: str) -> None:
        for src, dst in zip(checkpoint_paths(source), checkpoint_paths(self.checkpoints / name),
                            strict=True):
            tmp = dst.with_name(f".{dst.name}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)

    def _save_metrics(self) -> None:
        _write_json(self.path / "metrics.json", self.metrics)
