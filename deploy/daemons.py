"""Start, watch and stop Flower daemons (SuperLink, SuperNodes): their commands, ports and TLS
files.

Every daemon runs in its own process group with the project's Flower environment (telemetry, update
checks and runtime dependency installation off) and is stopped together with everything it spawned
(``flower-superexec`` and the app processes, which Flower detaches into sessions of their own).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

from aclecg_runtime.processes import descendants, group_members, running, with_descendants
from deploy.flwr_cli import format_node_config, strip_ansi

LOOPBACK = "127.0.0.1"


def flower_daemon(name: str) -> list[str]:
    """The command running Flower's console script ``name`` with colour only on a terminal."""
    return [sys.executable, "-m", "deploy.flower_script", name]


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
        self._family = with_descendants(self._family) | group_members(self.proc.pid)
        for pid in self._family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _living(self) -> set[int]:
        """Processes of the daemon still running. The daemon counts until reaped (a
        multi-threaded leader shows "Z" before its threads end); the others until they are
        zombies (orphans are reparented to PID 1, which may never reap them)."""
        alive = {self.proc.pid} if self.proc.poll() is None else set()
        others = (self._family | group_members(self.proc.pid)) - {self.proc.pid}
        return alive | {pid for pid in others if running(pid)}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
