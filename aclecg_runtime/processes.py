"""Find and end process trees (psutil): a process's descendants, a process group, the processes
whose environment carries a mark or which hold a file open."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Collection, Iterable

import psutil


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def descendants(pid: int) -> set[int]:
    """All descendants of ``pid`` (none once it is gone)."""
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def with_descendants(pids: Iterable[int]) -> set[int]:
    """``pids`` and every process below them."""
    found = set(pids)
    for pid in list(found):
        found |= descendants(pid)
    return found


def group_members(pgid: int) -> set[int]:
    """Processes (zombies included) in process group ``pgid``."""
    members = set()
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid:
                members.add(pid)
        except ProcessLookupError:
            continue
    return members


def processes_with_env(var: str, value: str, exclude: Collection[int] = ()) -> list[int]:
    """The ids of this user's processes whose environment has ``var=value``."""
    return [proc.pid for proc in psutil.process_iter(["environ"])
            if proc.pid not in exclude and (proc.info["environ"] or {}).get(var) == value]


def processes_with_open_file(match: Callable[[str], bool],
                             exclude: Collection[int] = ()) -> list[int]:
    """The ids of this user's processes holding open a regular file whose path ``match``es."""
    return [proc.pid for proc in psutil.process_iter(["open_files"])
            if proc.pid not in exclude
            and any(match(file.path) for file in proc.info["open_files"] or ())]


def terminate(pids: Iterable[int], grace_s: float = 3.0) -> None:
    """SIGTERM ``pids``, then SIGKILL those still running after ``grace_s`` seconds."""
    left = list(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        signalled = []
        for pid in left:
            try:
                os.kill(pid, sig)
                signalled.append(pid)
            except ProcessLookupError:
                pass
        end = time.monotonic() + grace_s
        while signalled and time.monotonic() < end:
            signalled = [pid for pid in signalled if running(pid)]
            time.sleep(0.1)
        left = signalled
        if not left:
            return
