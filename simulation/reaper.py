"""Stops every process a simulation started, also when its driver is killed (Linux).

Before Ray starts, the driver puts a fresh token into its environment; every process Ray starts
on this machine (GCS, raylet, agents, workers) inherits it. A watchdog process in its own
session (so Ctrl-C and the driver's death leave it running) waits for the end of a pipe from
the driver, which comes with the driver's normal exit as well as with its death, then
terminates every process that still carries the token. Processes of an existing Ray cluster
(``ray-address``) never carry it and are left alone.

Run as ``python -m simulation.reaper TOKEN DRIVER_PID`` by :class:`Reaper`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path
from types import TracebackType

import psutil

from aclecg_runtime.processes import (
    processes_with_env,
    processes_with_open_file,
    terminate,
    with_descendants,
)

TOKEN_VAR = "ACLECG_SIMULATION_TOKEN"


def in_ray_session_of(driver: int, exclude: Collection[int] = ()) -> list[int]:
    """Processes with a file open in the Ray session started by process ``driver`` (Ray names
    the folder ``session_<date>_<time>_<driver pid>``): Ray's agents are built from the
    driver's start-up environment, without the token, and can outlive a killed raylet."""
    marker = f"_{driver}/"
    return processes_with_open_file(lambda path: "/session_" in path and marker in path, exclude)


class Reaper:
    """Context manager: marks this process's environment and starts the watchdog; on exit
    closes the pipe and waits for the watchdog to clean up. A no-op off Linux."""

    def __init__(self, timeout_s: float = 20.0) -> None:
        self.timeout_s = timeout_s
        self.token = os.urandom(8).hex()
        self.process: subprocess.Popen[bytes] | None = None
        self.saved: str | None = None

    def __enter__(self) -> Reaper:
        if not psutil.LINUX:
            return self
        env = {k: v for k, v in os.environ.items() if k != TOKEN_VAR}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "simulation.reaper", self.token, str(os.getpid())],
            stdin=subprocess.PIPE, env=env, cwd=Path(__file__).resolve().parents[1],
            start_new_session=True)
        self.saved = os.environ.get(TOKEN_VAR)
        os.environ[TOKEN_VAR] = self.token
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.process is None:
            return
        if self.saved is None:
            os.environ.pop(TOKEN_VAR, None)
        else:
            os.environ[TOKEN_VAR] = self.saved
        assert self.process.stdin is not None
        self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(self.timeout_s)


def main(argv: list[str]) -> None:
    token, driver = argv[0], int(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdin.buffer.read()  # returns at EOF: the driver closed the pipe or died
    sweep(token, driver, exclude={os.getpid(), driver})


def sweep(token: str, driver: int, exclude: Collection[int], passes: int = 5) -> None:
    """Terminate the token's processes until a scan finds none: a process that a dying parent
    (Ray's raylet starting a worker) spawned after the previous scan is caught by the next.
    Descendants count too: Ray's agents are children of the raylet whose own environment
    listing does not always show the token (they rewrite it)."""
    for _ in range(passes):
        marked = processes_with_env(TOKEN_VAR, token, exclude=exclude)
        found = with_descendants(marked + in_ray_session_of(driver, exclude))
        pids = sorted(found - set(exclude))
        if not pids:
            return
        terminate(pids)


if __name__ == "__main__":
    main(sys.argv[1:])
