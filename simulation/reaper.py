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
import time
from collections.abc import Collection
from pathlib import Path
from types import TracebackType

TOKEN_VAR = "ACLECG_SIMULATION_TOKEN"
PROC = Path("/proc")


def processes_with(var: str, value: str, exclude: Collection[int] = ()) -> list[int]:
    """The ids of this user's processes whose environment has ``var=value``."""
    needle = f"{var}={value}".encode()
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def with_descendants(pids: list[int]) -> list[int]:
    """``pids`` and every process below them: Ray's agents are children of the raylet whose
    own environment listing does not always show the token (they rewrite it)."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(pids), list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return sorted(found)


def in_ray_session_of(driver: int, exclude: Collection[int] = ()) -> list[int]:
    """Processes with a file open in the Ray session started by process ``driver`` (Ray names
    the folder ``session_<date>_<time>_<driver pid>``): Ray's agents are built from the
    driver's start-up environment, without the token, and can outlive a killed raylet."""
    marker = f"_{driver}/"
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            targets = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if any("/session_" in t and marker in t for t in targets):
            found.append(int(entry.name))
    return found


def terminate(pids: list[int], grace_s: float = 3.0) -> None:
    """SIGTERM ``pids``, then SIGKILL those still alive after ``grace_s`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        end = time.monotonic() + grace_s
        while alive and time.monotonic() < end:
            alive = [p for p in alive if PROC.joinpath(str(p)).exists() and not _zombie(p)]
            time.sleep(0.1)
        pids = alive
        if not pids:
            return


def _zombie(pid: int) -> bool:
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class Reaper:
    """Context manager: marks this process's environment and starts the watchdog; on exit
    closes the pipe and waits for the watchdog to clean up. A no-op without ``/proc``."""

    def __init__(self, timeout_s: float = 20.0) -> None:
        self.timeout_s = timeout_s
        self.token = os.urandom(8).hex()
        self.process: subprocess.Popen[bytes] | None = None
        self.saved: str | None = None

    def __enter__(self) -> Reaper:
        if not PROC.is_dir():
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
    (Ray's raylet starting a worker) spawned after the previous scan is caught by the next."""
    for _ in range(passes):
        marked = processes_with(TOKEN_VAR, token, exclude=exclude)
        pids = [p for p in with_descendants(marked + in_ray_session_of(driver, exclude))
                if p not in exclude]
        if not pids:
            return
        terminate(pids)


if __name__ == "__main__":
    main(sys.argv[1:])
