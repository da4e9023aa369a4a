"""Process-tree tools (aclecg_runtime.processes) on real child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aclecg_runtime.processes import (
    descendants,
    group_members,
    processes_with_env,
    processes_with_open_file,
    running,
    terminate,
    with_descendants,
)

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")

# A child in its own session that starts a grandchild holding ``sys.argv[1]`` open.
PARENT = ("import subprocess, sys, time; "
          "subprocess.Popen([sys.executable, '-c', 'import sys, time; f = open(sys.argv[1]); "
          "time.sleep(60)', sys.argv[1]]); time.sleep(60)")


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    held = tmp_path / "session_x_4242" / "held.log"
    held.parent.mkdir()
    held.touch()
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(held)], start_new_session=True)
    try:
        yield parent, held
    finally:
        terminate(with_descendants([parent.pid]), grace_s=5.0)
        parent.wait(5)


def _grandchild(parent: int) -> int:
    end = time.monotonic() + 20
    while not (found := descendants(parent)) and time.monotonic() < end:
        time.sleep(0.05)
    (pid,) = found
    return pid


def test_the_tree_group_and_open_files_of_a_process(
        tree: tuple[subprocess.Popen[bytes], Path]) -> None:
    parent, held = tree
    child = _grandchild(parent.pid)
    assert with_descendants([parent.pid]) == {parent.pid, child}
    assert group_members(parent.pid) == {parent.pid, child}
    assert os.getpid() not in group_members(parent.pid)
    end = time.monotonic() + 20
    while not processes_with_open_file(lambda path: path == str(held)) \
            and time.monotonic() < end:
        time.sleep(0.05)
    assert processes_with_open_file(lambda path: path == str(held)) == [child]
    assert processes_with_open_file(lambda path: path == str(held), exclude={child}) == []


def test_a_zombie_or_a_gone_process_is_not_running() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert running(os.getpid())
    end = time.monotonic() + 20
    while running(child.pid) and time.monotonic() < end:
        time.sleep(0.05)
    assert not running(child.pid)  # exited, not yet reaped: a zombie
    assert group_members(os.getpgid(0)) >= {os.getpid(), child.pid}  # zombies count
    child.wait()
    assert not running(child.pid) and descendants(child.pid) == set()


def test_marked_processes_are_found_and_ended() -> None:
    mark = os.urandom(6).hex()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             env={**os.environ, "ACLECG_TEST_MARK": mark})
    try:
        assert processes_with_env("ACLECG_TEST_MARK", mark) == [child.pid]
        start = time.monotonic()
        terminate([child.pid], grace_s=5.0)
        assert child.wait(5) != 0 and time.monotonic() - start < 5
    finally:
        child.kill()
