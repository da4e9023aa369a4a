"""Loopback deployment: a TLS SuperLink with node authentication and two hospital SuperNodes.

One SuperLink and two SuperNodes (started through ``aclecg deploy``) are shared by the module;
the tests run in file order: refusals first, then a SuperLink restart from its database (the
nodes stay registered and reconnect), then a two-site run served by the restarted SuperLink.
Every process started here is stopped (with everything it spawned) by the fixtures.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aclecg_core.fed.config import load_config
from aclecg_core.fed.cyclic import visit_order
from aclecg_core.fed.sites import ensure_synthetic_cohort
from aclecg_runtime import environment
from deploy import daemons, flwr_cli, pki

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]
CONNECTION = "hospitals"
SITES = ("site1", "site2")
RUN_TIMEOUT = 240.0


@dataclass
class Federation:
    root: Path
    port: int
    env: dict[str, str]
    keys: dict[str, pki.SiteKeyFiles]
    data: dict[str, Path]
    config_file: Path
    superlink: daemons.Daemon
    nodes: dict[str, daemons.Daemon] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return daemons.host_port(daemons.LOOPBACK, self.port)

    @property
    def tls(self) -> daemons.TlsFiles:
        return daemons.TlsFiles.in_dir(self.root / "pki")

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "aclecg_cli", "deploy", *args]

    def start_superlink(self, tag: str) -> None:
        self.superlink = daemons.Daemon(
            "superlink",
            self.cli("superlink", "--pki-dir", str(self.root / "pki"), "--database",
                     str(self.root / "state" / "superlink.db"), "--port", str(self.port)),
            self.env, self.root / "logs" / f"superlink-{tag}.log")
        daemons.wait_for_port(daemons.LOOPBACK, self.port, 60, self.superlink)

    def start_node(self, site: str, key: Path | None = None, tag: str = "") -> daemons.Daemon:
        node = daemons.Daemon(
            site,
            self.cli("supernode", "--site", site, "--key", str(key or self.keys[site].private),
                     "--data-dir", str(self.data.get(site, self.data["site1"])),
                     "--layout", "wfdb", "--superlink", self.address,
                     "--ca-cert", str(self.tls.ca_cert),
                     "--clientapp-port", str(daemons.free_port())),
            self.env, self.root / "logs" / f"{site}{tag}.log")
        return node

    def online(self) -> set[str]:
        return {str(n["node-id"]) for n in flwr_cli.list_nodes(CONNECTION, self.env)
                if n["status"] == "online"}

    def wait_online(self, count: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while len(self.online()) < count:
            for node in self.nodes.values():
                assert node.poll() is None, f"{node.name} exited: {node.log_text()[-2000:]}"
            assert time.monotonic() < deadline, f"fewer than {count} SuperNodes online"
            time.sleep(1)

    def submit(self, run_dir: Path, **overrides: str | int | float | bool) -> int:
        config = {"run-dir": str(run_dir), "config-file": str(self.config_file),
                  "num-server-rounds": 2, "encoder": "tiny", "batch-size": 8, "min-sites": 2,
                  "round-timeout": 120.0, **overrides}
        return flwr_cli.submit_run(PROJECT, CONNECTION, self.env, config)


def _write_yaml(path: Path, cache: Path) -> None:
    path.write_text(
        "cohort:\n  source: synthetic\n  sites: 2\n  records-per-site: 12\n"
        f"  synthetic-seed: 0\n  cache-dir: '{cache}'\n"
        "probe:\n  source: synthetic-holdout\n  test-fraction: 0.3\n  val-fraction: 0.5\n"
        "  bootstrap: 20\n")


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("deploy")
    config_file = root / "federation.yaml"
    _write_yaml(config_file, root / "cache")
    # The hospitals' data: the synthetic cohort the server's probe also uses (site3 = hold-out).
    cohort = ensure_synthetic_cohort(load_config({"config-file": str(config_file),
                                                  "min-sites": 1}, PROJECT))
    pki.make_ca(root / "pki")
    pki.make_server_certificate(root / "pki", root / "pki")
    keys = {site: pki.make_site_key(root / "hospitals" / site, site) for site in (*SITES, "rogue")}
    env = environment.flower_env(root / "flwr-home", RAY_TMPDIR=str(root / "ray"))
    fed = Federation(root=root, port=daemons.free_port(), env=env, keys=keys,
                     data={site: cohort / site for site in SITES}, config_file=config_file,
                     superlink=None)  # type: ignore[arg-type]
    try:
        fed.start_superlink("first")
        flwr_cli.write_connection(root / "flwr-home", CONNECTION, fed.address, fed.tls.ca_cert)
        for site in SITES:
            flwr_cli.register_node(keys[site].public, CONNECTION, site, env)
        start = time.monotonic()
        for site in SITES:
            fed.nodes[site] = fed.start_node(site)
        fed.wait_online(2)
        fed.timings["nodes-online"] = time.monotonic() - start
        yield fed
    finally:
        for node in fed.nodes.values():
            node.stop()
        if fed.superlink is not None:
            fed.superlink.stop()


def test_plain_connection_to_tls_port_is_refused(federation: Federation) -> None:
    plain = http.client.HTTPConnection(daemons.LOOPBACK, federation.port, timeout=10)
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        plain.request("POST", "/v1/control/list-runs", body=b"{}")
        plain.getresponse()
    plain.close()
    # The same port over TLS, verified against the federation's CA, answers.
    context = ssl.create_default_context(cafile=str(federation.tls.ca_cert))
    with socket.create_connection((daemons.LOOPBACK, federation.port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname="localhost") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # A CLI connection that is not TLS fails too.
    flwr_cli.write_connection(federation.root / "plain-home", "plain", federation.address,
                              federation.tls.ca_cert)
    config = federation.root / "plain-home" / "config.toml"
    config.write_text(config.read_text().replace('root-certificates = ', 'insecure = true\n# '))
    plain_env = {**federation.env, "FLWR_HOME": str(federation.root / "plain-home")}
    proc = flwr_cli.flwr(["list", "plain", "--format", "json"], plain_env, timeout=60)
    answer = json.loads(flwr_cli.strip_ansi(proc.stdout))
    assert answer["success"] is False and "unavailable" in answer["error-message"]


def test_unregistered_node_is_refused(federation: Federation) -> None:
    rogue = federation.start_node("rogue", federation.keys["rogue"].private)
    try:
        code = rogue.wait(timeout=90)
    finally:
        rogue.stop()
    log = rogue.log_text()
    assert code != 0
    assert "Exit Code: 305" in log and "Failed to activate SuperNode" in log
    assert "No SuperNode found with the given public key" in federation.superlink.log_text()
    assert len(flwr_cli.list_nodes(CONNECTION, federation.env)) == 2  # the rogue was not added


def _rounds(run_dir: Path) -> list[dict[str, Any]]:
    return list(json.loads((run_dir / "metrics.json").read_text())["rounds"])


def test_restarted_superlink_keeps_its_nodes(federation: Federation) -> None:
    # Restart the SuperLink from its database: registered nodes persist, SuperNodes reconnect;
    # the next test's run is served by the restarted SuperLink.
    # (A site killed mid-run: tests/deployment/test_separate_hospitals.py.)
    federation.superlink.stop()
    federation.start_superlink("restarted")
    nodes = flwr_cli.list_nodes(CONNECTION, federation.env)
    assert len(nodes) == 2, nodes
    federation.wait_online(2)


def test_two_sites_complete_a_cyclic_run_over_tls(federation: Federation) -> None:
    """Under ``strategy = cyclic`` (the default strategy runs over TLS in
    test_separate_hospitals.py): the chain asks each SuperNode its site name (a query message)
    and visits the sites in the order the seed gives their names, whatever node ids Flower
    drew."""
    run_dir = federation.root / "runs" / "two-sites"
    start = time.monotonic()
    run_id = federation.submit(run_dir, **{"num-server-rounds": 1, "strategy": "cyclic",
                                           "seed": 5})
    status = flwr_cli.wait_for_run(run_id, CONNECTION, federation.env, RUN_TIMEOUT)
    federation.timings["run-seconds"] = time.monotonic() - start
    log = flwr_cli.run_log(run_id, CONNECTION, federation.env)
    assert status == flwr_cli.FINISHED_OK, log
    order = visit_order(dict(enumerate(SITES)), seed=5, global_round=1)
    assert f"round 1 visits {' -> '.join(SITES[i] for i in order)}" in log
    for name in ("round-0000", "round-0001", "final"):
        assert (run_dir / "checkpoints" / f"{name}.safetensors").is_file()
    assert (run_dir / "report.md").is_file()
    database = federation.root / "state" / "superlink.db"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert stat.S_IMODE(database.parent.stat().st_mode) == 0o700
    rounds = _rounds(run_dir)
    assert [r["round"] for r in rounds] == [0, 1]
    for r in rounds[1:]:
        assert sorted(c["site"] for c in r["clients"]) == ["site1", "site2"]
        assert r["failures"] == []
    federation.timings["round-seconds"] = float(rounds[1]["wall_seconds"])
    print(f"\nTLS deployment timings: {federation.timings}")

