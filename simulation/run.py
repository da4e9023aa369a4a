"""Run the federation in-process with Flower's simulation engine (Ray backend).

``flwr.simulation.run_simulation`` is used rather than ``flwr run . local``: it needs no
detached SuperLink, no FAB build, re-raises ServerApp errors, and starts in seconds. Its
contexts carry an empty run config, so the run config (pyproject defaults + overrides) is
handed to both apps: the ServerApp, and the ClientApp, whose simulated sites take their share
of the cohort it names (the train messages say only how to train).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aclecg_core.fed.config import FederationConfig, load_config, read_pyproject_defaults
from aclecg_core.fed.console import (
    DropMessages,
    ProjectLines,
    colour_only_on_terminals,
    filtered,
)
from aclecg_core.fed.rounds import FederationError
from aclecg_core.fed.rundir import default_run_dir
from aclecg_core.fed.sites import ensure_synthetic_cohort
from aclecg_runtime.environment import FLOWER_ENV
from simulation.progress import ProgressGrid
from simulation.reaper import Reaper

PROJECT_DIR = Path(__file__).resolve().parents[1]

# Flower 1.41 has no other in-process simulation (docs/federation.md, "Launching"): the banner
# is dropped, the function kept.
RUN_SIMULATION_DEPRECATION = "DEPRECATED FEATURE: The `run_simulation` function"


class SimulationError(RuntimeError):
    """The simulated federation did not finish."""


# A local Ray instance's workers import torch, torch._dynamo (which the first optimizer of a
# process imports: 1.5 s) and the ClientApp when Ray prestarts them, rather than on the first
# message of round 1. Ray starts its workers at niceness 15, below the driver: the simulated
# sites would yield to the server's probe thread; at 0 they train first and the probe
# (niceness 10: aclecg_core.fed.probe.yield_cpu_to_training) takes the cores they leave idle.
LOCAL_RAY_ENV = {"RAY_preload_python_modules": "torch,torch._dynamo,client.app",
                 "RAY_worker_niceness": "0"}


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` (unless already set there) for the duration of the block."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def backend_config(cfg: FederationConfig, gpus: int) -> dict[str, Any]:
    """Flower's Ray backend settings: a fresh local Ray instance without dashboard (``address
    "local"``, never an instance found on the machine), or the cluster at ``ray-address``."""
    init: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR",
                            "log_to_driver": True}
    if cfg.run.ray_address:
        init["address"] = cfg.run.ray_address
    else:
        init.update(address="local", num_cpus=usable_cpus(), num_gpus=gpus)
    return {
        "client_resources": {"num_cpus": cfg.run.client_cpus,
                             "num_gpus": cfg.run.client_gpus if gpus or cfg.run.ray_address
                             else 0.0},
        "init_args": init,
    }


def import_apps() -> None:
    """Import Flower's simulation engine and the two apps."""
    for module in ("flwr.simulation", "client.app", "server.app"):
        importlib.import_module(module)


def start_local_ray(init_args: Mapping[str, Any]) -> None:
    """Start the local Ray instance before Flower would, as the first step of the run: Ray's
    prestarted workers import torch and the ClientApp while the driver imports Flower and the
    server probes round 0.

    Without Flower's per-job ``runtime_env`` (PYTHONPATH, inherited here through the
    environment instead), the prestarted workers can host the client actors; Flower sees Ray
    running and keeps it (and shuts it down at the end).
    """
    import ray

    paths = [str(PROJECT_DIR), *sys.path, *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    ray.init(**init_args)


def simulate(overrides: Mapping[str, Any], project_dir: Path = PROJECT_DIR,
             verbose: bool = False) -> Path:
    """Run the federation described by pyproject defaults + ``overrides``; returns the run folder.

    The synthetic cohort is generated first when missing; the run folder is fixed before the
    start (a new one under ``runs/``, or the latest one when resuming). The console shows the
    project's lines and problems only (``verbose``: Flower's log too); no process of the run
    outlives it (:class:`simulation.reaper.Reaper`). Raises :class:`SimulationError` when the
    run fails (e.g. a round in which no site succeeded).
    """
    run_config = {**read_pyproject_defaults(project_dir / "pyproject.toml"), **overrides}
    cfg = load_config(run_config, project_dir)
    run_dir = default_run_dir(cfg)
    run_config["run-dir"] = str(run_dir)
    if cfg.cohort.source == "synthetic":
        ensure_synthetic_cohort(cfg)
    for key, value in FLOWER_ENV.items():
        os.environ.setdefault(key, value)
    # Ray's socket paths must stay under 107 bytes: keep its temp folder short.
    ray_tmp = Path(tempfile.gettempdir()) / f"aclecg-ray-{os.getuid()}"
    os.environ.setdefault("RAY_TMPDIR", str(ray_tmp))
    Path(os.environ["RAY_TMPDIR"]).mkdir(parents=True, exist_ok=True)

    import torch

    flwr_logger = logging.getLogger("flwr")
    colour_only_on_terminals(flwr_logger)
    console = [DropMessages(RUN_SIMULATION_DEPRECATION), *([] if verbose else [ProjectLines()])]
    logging.getLogger("ray").setLevel(logging.ERROR)
    progress = ProgressGrid if sys.stderr.isatty() else None
    try:
        local_env = {} if cfg.run.ray_address else LOCAL_RAY_ENV
        with filtered(flwr_logger, *console), Reaper(), environment(local_env):
            backend = backend_config(cfg, torch.cuda.device_count())
            if not cfg.run.ray_address:
                import ray  # noqa: F401  (here, not in both threads at once: Flower imports it)

                with ThreadPoolExecutor(1, "aclecg-imports") as imports:
                    pending = imports.submit(import_apps)  # ≈ 2 s, while Ray starts (≈ 3.5 s)
                    start_local_ray(backend["init_args"])
                    pending.result()
            from flwr.simulation import run_simulation

            from client.app import make_client_app
            from server.app import make_app

            run_simulation(server_app=make_app(run_config, progress),
                           client_app=make_client_app(run_config),
                           num_supernodes=cfg.cohort.sites, backend_config=backend)
    except FederationError as exc:
        raise SimulationError(f"{exc} (run folder {run_dir})") from None
    try:
        status = json.loads((run_dir / "metrics.json").read_text())["run"]["status"]
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise SimulationError(f"the run wrote no readable {run_dir / 'metrics.json'}: {exc}") \
            from None
    if status != "finished":
        raise SimulationError(f"the run in {run_dir} ended with status {status!r}")
    return run_dir
