"""A Flower daemon started the project's way writes plain text to its log file."""

from __future__ import annotations

from pathlib import Path

from deploy import launch

PROJECT = Path(__file__).resolve().parents[2]


def test_a_superlink_logging_to_a_file_writes_no_colour_codes(tmp_path: Path) -> None:
    port = launch.free_port()
    cmd = [*launch.flower_daemon("flower-superlink"), "--insecure", "--host", launch.LOOPBACK,
           "--port", str(port), "--database", str(tmp_path / "state.db")]
    env = launch.flower_env(tmp_path / "flwr-home", PYTHONPATH=str(PROJECT))
    log = tmp_path / "superlink.log"
    with launch.Daemon("superlink", cmd, env, log, cwd=tmp_path) as daemon:
        launch.wait_for_port(launch.LOOPBACK, port, 60, daemon)
    text = log.read_text()
    assert "INFO :      Starting Flower SuperLink" in text
    assert "\x1b[" not in text, text[:500]
