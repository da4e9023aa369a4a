"""The simulation on an existing Ray cluster: a head and a worker node on the loopback interface
(`ray start`), joined with run setting ``ray-address``.

The cluster is stopped by ending the processes that carry this test's environment mark, not
with ``ray stop``, which stops every Ray process of the user on the machine (other runs too).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aclecg_runtime.processes import processes_with_env, terminate
from simulation.run import simulate

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")]

MARK = "ACLECG_TEST_CLUSTER"
RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _actors(mark: str) -> set[int]:
    """Flower client actors among the processes carrying ``MARK=mark``."""
    found = set()
    for pid in processes_with_env(MARK, mark):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::ClientAppActor"):
                found.add(pid)
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """(``127.0.0.1:PORT``, the environment mark of each node) of a 2-node Ray cluster with
    one CPU per node."""
    marks = {"head": os.urandom(6).hex(), "worker": os.urandom(6).hex()}
    temp = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))  # socket paths stay short
    address = f"127.0.0.1:{_free_port()}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0",
              "--disable-usage-stats"]
    try:
        subprocess.run([RAY, "start", "--head", f"--port={address.split(':')[1]}",
                        "--include-dashboard=false", f"--temp-dir={temp}", *common],
                       env={**os.environ, MARK: marks["head"]}, check=True,
                       capture_output=True, timeout=180)
        subprocess.run([RAY, "start", f"--address={address}", *common],
                       env={**os.environ, MARK: marks["worker"]}, check=True,
                       capture_output=True, timeout=180)
        yield address, marks
    finally:
        for mark in marks.values():
            terminate(processes_with_env(MARK, mark))
        shutil.rmtree(temp, ignore_errors=True)


def test_simulation_runs_on_an_existing_two_node_cluster(
        cluster: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    address, marks = cluster
    seen: dict[str, set[int]] = {node: set() for node in marks}
    done = threading.Event()

    def watch() -> None:  # which node's raylet started the client actors
        while not done.wait(0.2):
            for node, mark in marks.items():
                seen[node] |= _actors(mark)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    yaml = tmp_path / "sites.yaml"
    yaml.write_text(f"cohort:\n  sites: 2\n  records-per-site: 8\n  cache-dir: {tmp_path}/c\n"
                    "probe:\n  test-fraction: 0.5\n  val-fraction: 0.5\n  bootstrap: 10\n")
    # Two clients of one CPU each on two one-CPU nodes: Ray must place one on each node.
    run_dir = simulate({"config-file": str(yaml), "batch-size": 4, "num-server-rounds": 1,
                        "seed": 3, "encoder": "tiny",
                        "client-cpus": 1, "ray-address": address,
                        "run-dir": str(tmp_path / "run")})
    done.set()
    watcher.join()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["run"]["status"] == "finished"
    assert [c["site"] for c in metrics["rounds"][1]["clients"]] == ["site1", "site2"]
    assert seen["head"] and seen["worker"], seen  # clients ran on both nodes
    assert processes_with_env(MARK, marks["worker"])  # the cluster outlives the run
