"""Colour only on a terminal: the project's lines and Flower's, as the project prints them."""

from __future__ import annotations

import io
import logging
import os
import pty
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flwr.common.logger import ConsoleHandler, log

from aclecg_core.fed.console import ColourOnTerminals, colour_only_on_terminals

PROJECT = Path(__file__).resolve().parents[2]
ESC = "\x1b["


@pytest.fixture
def flwr_console() -> Iterator[ConsoleHandler]:
    """Flower's own console handler, on the real ``flwr`` logger, as Flower sets it up (without
    the switch an app imported earlier in this process put on it); restored after."""
    (handler,) = [h for h in logging.getLogger("flwr").handlers if isinstance(h, ConsoleHandler)]
    stream, colored, filters = handler.stream, handler.colored, list(handler.filters)
    for switch in [f for f in filters if isinstance(f, ColourOnTerminals)]:
        handler.removeFilter(switch)
    flwr_logger = logging.getLogger("flwr")
    level, flwr_logger.level = flwr_logger.level, logging.INFO  # whatever ran before
    yield handler
    handler.stream, handler.colored, handler.filters = stream, colored, filters
    flwr_logger.setLevel(level)


def test_flower_colours_a_pipe_unless_told(flwr_console: ConsoleHandler) -> None:
    flwr_console.stream = io.StringIO()
    flwr_console.colored = True
    log(logging.INFO, "[aclecg] round 1/2")
    assert ESC in flwr_console.stream.getvalue()  # why the project has to step in
    colour_only_on_terminals(logging.getLogger("flwr"))
    colour_only_on_terminals(logging.getLogger("flwr"))  # once is enough, twice is harmless
    log(logging.INFO, "[aclecg] round 2/2")
    log(logging.WARNING, "[aclecg] round 2: site1 failed")
    lines = flwr_console.stream.getvalue().splitlines()[1:]
    assert lines == ["INFO :      [aclecg] round 2/2",
                     "WARNING :   [aclecg] round 2: site1 failed"]


def test_colour_stays_on_a_terminal(flwr_console: ConsoleHandler) -> None:
    colour_only_on_terminals(logging.getLogger("flwr"))
    leader, follower = pty.openpty()
    with open(follower, "w", closefd=True) as terminal:
        flwr_console.stream = terminal
        log(logging.INFO, "[aclecg] report: x.html")
        terminal.flush()
        ready, _, _ = select.select([leader], [], [], 10)  # nothing written: fail, not hang
        written = os.read(leader, 4096).decode() if ready else ""
    os.close(leader)
    assert written.startswith(f"{ESC}92mINFO ") and "[aclecg] report: x.html" in written


def test_a_server_process_logging_to_a_pipe_writes_plain_text(tmp_path: Path) -> None:
    code = ("import logging, server.app\n"
            "from flwr.common.logger import log\n"
            "log(logging.INFO, '[aclecg] run folder /x')\n"
            "log(logging.WARNING, '[aclecg] round 1: site2 failed: no data')\n")
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "INFO :      [aclecg] run folder /x" in done.stderr
    assert "WARNING :   [aclecg] round 1: site2 failed: no data" in done.stderr
    assert ESC not in done.stderr + done.stdout
