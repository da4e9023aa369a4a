"""Drive the ``flwr`` CLI: SuperLink connections, node registration, run submission, status and
logs; and the text formats it speaks (TOML config strings, JSON answers, colour codes)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from aclecg_runtime.environment import executable

FINISHED_OK = "finished:completed"


def format_node_config(values: Mapping[str, str | int | float | bool]) -> str:
    """Flower's ``--node-config`` (and ``--run-config``) string: ``key=value`` pairs, strings
    quoted for TOML."""
    parts = []
    for key, value in values.items():
        if not key or any(c.isspace() or c in "='\"" for c in key):
            raise ValueError(f"node config key {key!r} is not a plain name")
        parts.append(f"{key}={_toml_scalar(value)}")
    return " ".join(parts)


def _toml_scalar(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    if '"' not in value and "\\" not in value and "\n" not in value:
        return f'"{value}"'
    raise ValueError(f"node config value {value!r} mixes quote characters")


def strip_ansi(text: str) -> str:
    """Remove terminal colour codes (Flower logs carry them whatever NO_COLOR says)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def write_connection(flwr_home: Path, name: str, address: str, root_cert: Path,
                     make_default: bool = True) -> Path:
    """Write (or replace) the SuperLink connection ``name`` in ``$FLWR_HOME/config.toml``.

    Other connections in the file are kept.
    """
    import tomllib

    path = flwr_home / "config.toml"
    config: dict[str, dict[str, object]] = {}
    if path.is_file():
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    links = config.setdefault("superlink", {})
    links[name] = {"address": address, "root-certificates": str(root_cert.resolve())}
    if make_default or "default" not in links:
        links["default"] = name
    flwr_home.mkdir(parents=True, exist_ok=True)
    flwr_home.chmod(0o700)
    path.write_text(_superlink_toml(links), encoding="utf-8")
    return path


def _superlink_toml(links: Mapping[str, object]) -> str:
    lines = ["[superlink]", f"default = {json.dumps(links['default'])}"]
    for name, conn in links.items():
        if name == "default" or not isinstance(conn, Mapping):
            continue
        lines += ["", f"[superlink.{name}]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in conn.items()]
    return "\n".join(lines) + "\n"


def flwr(args: Sequence[str], env: Mapping[str, str], timeout: float = 120,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``flwr`` CLI and capture its output (never raises on a non-zero exit)."""
    return subprocess.run(
        [executable("flwr"), *args], env=dict(env), cwd=cwd, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL, check=False,
    )


def _json_output(proc: subprocess.CompletedProcess[str], what: str) -> dict[str, object]:
    text = strip_ansi(proc.stdout).strip()
    start = text.find("{")
    try:
        data = json.loads(text[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        data = None
    if proc.returncode != 0 or not isinstance(data, dict) or data.get("success") is False:
        detail = (data or {}).get("error-message") if isinstance(data, dict) else None
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): "
                           f"{detail or (text + strip_ansi(proc.stderr)).strip()[-2000:]}")
    return data


def register_node(public_key: Path, connection: str, name: str, env: Mapping[str, str],
                  timeout: float = 60) -> int:
    """Register a hospital's public key with the SuperLink; the new node id."""
    proc = flwr(["supernode", "register", str(public_key), connection, "--name", name,
                 "--format", "json"], env, timeout)
    data = _json_output(proc, f"registering {public_key}")
    return int(str(data["node-id"]))


def list_nodes(connection: str, env: Mapping[str, str],
               timeout: float = 60) -> list[dict[str, object]]:
    """The SuperLink's registered nodes (``flwr supernode list --format json``)."""
    data = _json_output(flwr(["supernode", "list", connection, "--format", "json"], env, timeout),
                        "listing nodes")
    nodes = data.get("nodes", [])
    return list(nodes) if isinstance(nodes, list) else []


def submit_run(app_dir: Path, connection: str, env: Mapping[str, str],
               run_config: Mapping[str, str | int | float | bool] | None = None,
               timeout: float = 120) -> int:
    """Submit the app in ``app_dir`` to the SuperLink; the run id."""
    args = ["run", str(app_dir), connection, "--format", "json"]
    if run_config:
        args += ["--run-config", format_node_config(run_config)]
    data = _json_output(flwr(args, env, timeout), f"submitting {app_dir}")
    return int(str(data["run-id"]))


def _run_entry(run_id: int, connection: str, env: Mapping[str, str],
               timeout: float) -> dict[str, object]:
    data = _json_output(flwr(["list", connection, "--run-id", str(run_id), "--format", "json"],
                             env, timeout), f"listing run {run_id}")
    runs = data.get("runs")
    if not isinstance(runs, list) or not runs or not isinstance(runs[0], dict):
        raise RuntimeError(f"run {run_id} not found on {connection}")
    return runs[0]


def run_status(run_id: int, connection: str, env: Mapping[str, str], timeout: float = 60) -> str:
    """The run's status, e.g. ``running`` or ``finished:completed``."""
    return str(_run_entry(run_id, connection, env, timeout)["status"])


def run_outcome(run_id: int, connection: str, env: Mapping[str, str],
                timeout: float = 60) -> tuple[str, str]:
    """(status, one-line reason) of the run; the reason is empty unless it failed."""
    entry = _run_entry(run_id, connection, env, timeout)
    status = str(entry["status"])
    if status == FINISHED_OK or not status.startswith("finished"):
        return status, ""
    return status, failure_reason(str(entry.get("status-details") or ""))


SERVERAPP_FAILED = "ServerApp failed with exception: "


def failure_reason(details: str) -> str:
    """The first line of Flower's status details, without its exception prefix."""
    reason = strip_ansi(details).strip().removeprefix(SERVERAPP_FAILED).strip()
    return reason.splitlines()[0] if reason else "no reason recorded"


def without_tracebacks(lines: Iterable[str]) -> Iterator[str]:
    """``lines`` minus Python tracebacks: their frames and the exception line ending each."""
    skipping = False
    for line in lines:
        text = strip_ansi(line)
        if text.startswith("Traceback (most recent call last):"):
            skipping = True
        elif skipping:
            skipping = text.startswith((" ", "\t"))  # frames are indented
        elif not text.startswith(_CHAINED):
            yield line


_CHAINED = ("During handling of the above exception", "The above exception was the direct")


def wait_for_run(run_id: int, connection: str, env: Mapping[str, str], timeout: float,
                 poll: float = 2.0) -> str:
    """Poll until the run is finished; its final status. TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    status = "unknown"
    while time.monotonic() < deadline:
        status = run_status(run_id, connection, env)
        if status.startswith("finished"):
            return status
        time.sleep(poll)
    raise TimeoutError(f"run {run_id} still {status!r} after {timeout:.0f} s")


def run_log(run_id: int, connection: str, env: Mapping[str, str], timeout: float = 60) -> str:
    """The run's ServerApp log so far (``flwr log --show``)."""
    proc = flwr(["log", str(run_id), connection, "--show"], env, timeout)
    return strip_ansi(proc.stdout + proc.stderr)
