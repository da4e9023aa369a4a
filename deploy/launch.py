"""Start, watch and stop Flower daemons (SuperLink, SuperNodes) and drive the ``flwr`` CLI.

Every daemon runs in its own process group with the project's Flower environment (telemetry, update
checks and runtime dependency installation off) and is stopped together with everything it spawned
(``flower-superexec`` and the app processes, which Flower detaches into sessions of their own).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

# Same values as scripts/env.sh (a test keeps the two in step).
FLOWER_ENV: dict[str, str] = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
LOOPBACK = "127.0.0.1"
FINISHED_OK = "finished:completed"


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


def flower_daemon(name: str) -> list[str]:
    """The command running Flower's console script ``name`` with colour only on a terminal."""
    return [sys.executable, "-m", "deploy.flower_script", name]


def executable(name: str) -> str:
    """Path of a Flower console script: beside this interpreter (the venv), else on ``PATH``."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else name


def host_port(host: str, port: int) -> str:
    """``host:port`` with IPv6 hosts bracketed."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, daemon: Daemon | None = None) -> None:
    """Wait until something accepts TCP connections on ``host:port``.

    Raises RuntimeError if ``daemon`` exits first and TimeoutError after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while time.monotonic() < deadline:
        if daemon is not None and daemon.poll() is not None:
            raise RuntimeError(f"{daemon.name} exited with code {daemon.poll()} before listening "
                               f"on {host_port(host, port)}; see {daemon.log_path}")
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {host_port(host, port)} after {timeout:.0f} s")


def format_node_config(values: Mapping[str, str | int | float | bool]) -> str:
    """Flower's ``--node-config`` string: ``key=value`` pairs, strings quoted for TOML."""
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


@dataclass(frozen=True)
class TlsFiles:
    """The SuperLink's TLS material: CA certificate, server certificate and key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def in_dir(cls, directory: Path) -> TlsFiles:
        """The files as ``aclecg deploy make-ca/make-server-cert`` name them in one folder."""
        return cls(directory / "ca.crt", directory / "server.pem", directory / "server.key")

    def check(self) -> None:
        """Raise FileNotFoundError naming the first missing file."""
        for path in (self.ca_cert, self.server_cert, self.server_key):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: TLS file not found")


def superlink_command(tls: TlsFiles, database: Path, port: int, host: str = LOOPBACK,
                      node_auth: bool = True, log_file: Path | None = None) -> list[str]:
    """``flower-superlink`` over TLS with node authentication and no runtime installs."""
    cmd = [
        *flower_daemon("flower-superlink"),
        "--ssl-ca-certfile", str(tls.ca_cert),
        "--ssl-certfile", str(tls.server_cert),
        "--ssl-keyfile", str(tls.server_key),
        "--host", host,
        "--port", str(port),
        "--database", str(database),
        "--disable-runtime-dependency-installation",
    ]
    if node_auth:
        cmd.append("--enable-supernode-auth")
    if log_file is not None:
        cmd += ["--log-file", str(log_file)]
    return cmd


def supernode_command(superlink: str, root_cert: Path, private_key: Path | None,
                      node_config: Mapping[str, str | int | float | bool], clientapp_port: int,
                      max_wait_time: float | None = None) -> list[str]:
    """``flower-supernode`` connecting out over TLS, authenticated by the site's private key.

    ``clientapp_port`` is the node's local Runtime API port (loopback only; one per node).
    """
    cmd = [
        *flower_daemon("flower-supernode"),
        "--superlink", superlink,
        "--root-certificates", str(root_cert),
        "--host", LOOPBACK,
        "--port", str(clientapp_port),
        "--node-config", format_node_config(node_config),
    ]
    if private_key is not None:
        cmd += ["--auth-supernode-private-key", str(private_key)]
    if max_wait_time is not None:
        cmd += ["--max-wait-time", str(max_wait_time)]
    return cmd


def guarded_supernode_command(supernode_cmd: Sequence[str], site: str,
                              allowed_apps: Sequence[str]) -> list[str]:
    """``supernode_cmd`` run under the app guard (``deploy.app_guard``) instead of as is.

    With ``allowed_apps`` (identities) the node refuses every other app; without, it logs them.
    """
    prefix = flower_daemon("flower-supernode")
    if list(supernode_cmd[:len(prefix)]) != prefix:
        raise ValueError(f"not a supernode_command: {list(supernode_cmd[:len(prefix)])}")
    allow = [arg for app in allowed_apps for arg in ("--allow-app", app)]
    return [sys.executable, "-m", "deploy.app_guard", "--site", site, *allow, "--",
            *supernode_cmd[len(prefix):]]


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


class Daemon:
    """A long-running Flower process in its own process group, logging to a file; ``user``:
    run it as that OS user, with its primary group only (needs root)."""

    def __init__(self, name: str, cmd: Sequence[str], env: Mapping[str, str], log_path: Path,
                 cwd: Path | None = None, user: str | None = None) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = log_path.open("ab")
        self.proc = subprocess.Popen(
            self.cmd, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True, user=user,
            group=None if user is None else pwd.getpwnam(user).pw_gid,
            extra_groups=None if user is None else [],
        )
        self._family: set[int] = {self.proc.pid}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""
        return self.proc.poll()

    def log_text(self) -> str:
        """Everything the daemon has logged so far (colour codes removed)."""
        return strip_ansi(self.log_path.read_text(encoding="utf-8", errors="replace"))

    def wait(self, timeout: float) -> int:
        """Wait for the daemon to exit by itself; its exit code."""
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the daemon alone (a crash), leaving its children to notice."""
        self._family |= descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> None:
        """Stop the daemon and every process it started: SIGTERM, then SIGKILL after ``grace``."""
        self._signal_all(signal.SIGTERM)
        self._wait_gone(grace)
        self._signal_all(signal.SIGKILL)  # stragglers (and anything forked meanwhile)
        if not self._wait_gone(10.0):
            raise RuntimeError(f"{self.name}: processes {sorted(self._living())} survive SIGKILL")
        self._log.close()

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._living():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _signal_all(self, sig: signal.Signals) -> None:
        for pid in list(self._family):
            self._family |= descendants(pid)
        self._family |= group_members(self.proc.pid)
        for pid in self._family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _living(self) -> set[int]:
        """Processes of the daemon still running. The daemon counts until reaped (a
        multi-threaded leader shows "Z" before its threads end); the others until they are
        zombies (orphans are reparented to PID 1, which may never reap them)."""
        alive = {self.proc.pid} if self.proc.poll() is None else set()
        others = (self._family | group_members(self.proc.pid)) - {self.proc.pid}
        return alive | {pid for pid in others if _running(pid)}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _proc_stats() -> dict[int, list[str]]:
    """``/proc/PID/stat`` fields after the command name (state, ppid, pgrp, ...) by pid."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    return stats


def group_members(pgid: int) -> set[int]:
    """Processes (zombies included) in process group ``pgid``."""
    return {pid for pid, fields in _proc_stats().items() if int(fields[2]) == pgid}


def descendants(pid: int) -> set[int]:
    """All descendants of ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for child, fields in _proc_stats().items():
        children.setdefault(int(fields[1]), []).append(child)
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def strip_ansi(text: str) -> str:
    """Remove terminal colour codes (Flower logs carry them whatever NO_COLOR says)."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


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
