"""A Flower daemon started the project's way writes plain text to its log file."""

from __future__ import annotations

from pathlib import Path

from aclecg_runtime import environment
from deploy import daemons

PROJECT = Path(__file__).resolve().parents[2]


def test_a_superlink_logging_to_a_file_writes_no_colour_codes(tmp_path: Path) -> None:
    port = daemons.free_port()
    cmd = [*daemons.flower_daemon("flower-superlink"), "--insecure", "--host", daemons.LOOPBACK,
           "--port", str(port), "--database", str(tmp_path / "state.db")]
    env = environment.flower_env(tmp_path / "flwr-home", PYTHONPATH=str(PROJECT))
    log = tmp_path / "superlink.log"
    with daemons.Daemon("superlink", cmd, env, log, cwd=tmp_path) as daemon:
        daemons.wait_for_port(daemons.LOOPBACK, port, 60, daemon)
    text = log.read_text()
    assert "INFO :      Starting Flower SuperLink" in text
    assert "\x1b[" not in text, text[:500]
