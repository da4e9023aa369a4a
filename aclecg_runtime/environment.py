"""The environment of every Flower command, daemon and simulation: telemetry, update checks and
runtime dependency installation off (``scripts/env.sh`` exports the same values; a test keeps
the two in step)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

FLOWER_ENV: dict[str, str] = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def flower_env(flwr_home: Path | None = None, base: Mapping[str, str] | None = None,
               **extra: str) -> dict[str, str]:
    """The environment for a Flower command: ``base`` (default ``os.environ``) + ``FLOWER_ENV``."""
    env = dict(os.environ if base is None else base)
    env.update(FLOWER_ENV)
    # Flower daemons start flower-superexec / flwr-clientapp by name: put the venv first on PATH.
    bindir = str(Path(sys.executable).parent)
    if env.get("PATH", "").split(os.pathsep)[0] != bindir:
        env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")]).rstrip(os.pathsep)
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    env.update(extra)
    return env


def executable(name: str) -> str:
    """Path of a Flower console script: beside this interpreter (the venv), else on ``PATH``."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else name
