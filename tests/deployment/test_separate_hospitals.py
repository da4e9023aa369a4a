"""Hospitals as separate machines: two OS users, a private coordinator, TLS + node authentication.

The coordinator (this test's user, root in CI) keeps its copy of the project, ``FLWR_HOME``,
PKI, SuperLink database, run folders and probe data in a private (0700) folder. Each hospital is
an OS user the test creates, with its own home (0700) holding its own reviewed copy of the
project, ``FLWR_HOME``, node key, the federation's CA certificate, its ECGs and its cache; it
pins the app identity it computes from its own copy (``--allow-app``). Nothing of the
coordinator is readable by a site. The hospitals run the system's Python 3.11 (the project's
interpreter may live in root's home), in a virtual environment that reads the project venv's
installed packages (no multi-GB reinstall per test run) and has Flower's commands.
Tests run in file order: (a) secure aggregation, (b) a coordinator's modified app is refused at
both sites and never runs, (c) plain FedAvg over three rounds in which a site killed mid-run and
restarted rejoins a later round; after it, no hospital's user has written outside its own home.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from aclecg_core.fed.config import load_config
from aclecg_core.fed.sites import ensure_synthetic_cohort
from aclecg_runtime import environment
from deploy import daemons, flwr_cli, pki

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]
CONNECTION = "hospitals"
SITES = ("site1", "site2")
RUN_TIMEOUT = 300.0
# Where a site's process could write outside its home (scanned for files it owns).
SCANNED = [Path(tempfile.gettempdir()), Path("/var/tmp"), Path("/dev/shm"), PROJECT]


def _can_create_users() -> str | None:
    """Why this machine cannot play separate hospitals, or None."""
    if os.geteuid() != 0:
        return "creating OS users for the hospitals needs root (CI runs as root)"
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        return "useradd/userdel not found"
    return None


def _copy_project(dest: Path) -> None:
    """The project's files as a checkout holds them (tracked + not ignored), nothing built."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=PROJECT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = PROJECT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def _hospital_python(shared: Path) -> Path | str:
    """A Python for the hospitals' users: a venv of the system's Python 3.11 that sees the
    project venv's packages and has Flower's console scripts; or why there is none."""
    base = shutil.which("python3.11", path="/usr/local/bin:/usr/bin:/bin")
    packages = Path(sysconfig.get_paths()["purelib"])
    if base is None:
        return "no system-wide python3.11 for the hospitals' users"
    venv = shared / "python"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    own = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                               "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip())
    (own / "project-packages.pth").write_text(f"{packages}\n")
    for script in metadata.distribution("flwr").entry_points:
        if script.group == "console_scripts":
            module, _, function = script.value.partition(":")
            path = venv / "bin" / script.name
            path.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {module} import "
                            f"{function}\nsys.exit({function}())\n")
            path.chmod(0o755)
    return venv / "bin" / "python"


@dataclass
class Hospital:
    name: str
    user: str
    home: Path
    env: dict[str, str]
    python: Path
    identity: str = ""
    found_before: list[str] = field(default_factory=list)  # a reused uid's leftovers
    node: daemons.Daemon | None = None

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.user).pw_uid

    def run(self, *args: str) -> str:
        """``aclecg`` as this hospital's user, in its copy of the project."""
        proc = subprocess.run([str(self.python), "-m", "aclecg_cli", *args], env=self.env,
                              cwd=self.home / "project", user=self.user,
                              group=pwd.getpwnam(self.user).pw_gid, extra_groups=[],
                              capture_output=True, text=True, timeout=180, check=False)
        assert proc.returncode == 0, f"{self.name}: aclecg {args}: {proc.stderr[-2000:]}"
        return proc.stdout


@dataclass
class Federation:
    root: Path  # the coordinator's private folder
    shared: Path  # parent of the hospitals' homes (not listable)
    port: int
    env: dict[str, str]
    hospitals: dict[str, Hospital] = field(default_factory=dict)
    superlink: daemons.Daemon | None = None

    @property
    def address(self) -> str:
        return daemons.host_port(daemons.LOOPBACK, self.port)

    def start_node(self, hospital: Hospital, tag: str = "") -> None:
        h = hospital.home
        cmd = [str(hospital.python), "-m", "aclecg_cli", "deploy", "supernode",
               "--site", hospital.name,
               "--key", str(h / "keys" / hospital.name), "--data-dir", str(h / "ecg"),
               "--layout", "wfdb", "--superlink", self.address, "--ca-cert", str(h / "ca.crt"),
               "--clientapp-port", str(daemons.free_port()), "--allow-app", hospital.identity]
        hospital.node = daemons.Daemon(hospital.name, cmd, hospital.env,
                                       self.root / "logs" / f"{hospital.name}{tag}.log",
                                       cwd=h / "project", user=hospital.user)

    def wait_online(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while sum(n["status"] == "online"
                  for n in flwr_cli.list_nodes(CONNECTION, self.env)) < count:
            for hospital in self.hospitals.values():
                node = hospital.node
                assert node is None or node.poll() is None, \
                    f"{hospital.name} exited: {node.log_text()[-3000:]}"
            assert time.monotonic() < deadline, f"fewer than {count} SuperNodes online"
            time.sleep(1)

    def aclecg(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``aclecg`` as the coordinator."""
        return subprocess.run([sys.executable, "-m", "aclecg_cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=180, check=False)

    def submit(self, project: Path, run_dir: Path, **overrides: Any) -> int:
        config = {"run-dir": str(run_dir), "config-file": str(self.root / "federation.yaml"),
                  "num-server-rounds": 2, "batch-size": 8, "min-sites": 2,
                  "round-timeout": 120.0, **overrides}
        sets = [arg for key, value in config.items()
                for arg in ("--set", f"{key}={json.dumps(value)}")]
        proc = self.aclecg("deploy", "submit", "--app", str(project), "--connection",
                           CONNECTION, *sets)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.strip())

    def finish(self, run_id: int) -> str:
        return flwr_cli.wait_for_run(run_id, CONNECTION, self.env, RUN_TIMEOUT)


def _add_hospital(fed: Federation, name: str, ecg: Path, ca_cert: Path,
                  python: Path) -> Hospital:
    user = f"acl{name}{secrets.token_hex(3)}"
    home = fed.shared / name
    subprocess.run(["useradd", "--create-home", "--home-dir", str(home), "--user-group",
                    "--shell", "/usr/sbin/nologin", user], check=True, capture_output=True)
    home.chmod(0o700)
    _copy_project(home / "project")
    shutil.copytree(ecg, home / "ecg")
    shutil.copy2(ca_cert, home / "ca.crt")  # the coordinator sends the public CA certificate
    subprocess.run(["chown", "-R", f"{user}:{user}", str(home)], check=True)
    base = {"PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
            "USER": user, "LOGNAME": user, "LANG": "C.UTF-8"}
    env = {**base, **environment.FLOWER_ENV, "FLWR_HOME": str(home / ".flwr")}
    hospital = Hospital(name, user, home, env, python)
    hospital.found_before = _owned_outside(hospital.uid, home, SCANNED)
    fed.hospitals[name] = hospital
    return hospital


def _prepare_hospital(hospital: Hospital) -> None:
    """As the hospital's user: check the packages are usable, make the node key, compute the
    identity of its copy of the app."""
    probe = subprocess.run([str(hospital.python), "-c", "import flwr, torch"],
                           env=hospital.env, user=hospital.user, capture_output=True,
                           text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"the project's packages are not usable by another OS user: "
                    f"{probe.stderr.strip()[-300:]}")
    hospital.run("deploy", "make-site-key", hospital.name, "--out-dir",
                 str(hospital.home / "keys"))
    hospital.identity = hospital.run("deploy", "app-hash", str(hospital.home / "project")).strip()


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    reason = _can_create_users()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("coordinator")
    root.chmod(0o700)
    shared = Path(tempfile.mkdtemp(prefix="aclecg-hospitals-"))
    shared.chmod(0o711)
    (shared / "marks").mkdir(mode=0o1777)
    (shared / "marks").chmod(0o1777)
    (root / "federation.yaml").write_text(
        "cohort:\n  source: synthetic\n  sites: 2\n  records-per-site: 12\n"
        f"  cache-dir: '{root / 'cache'}'\n"
        "probe:\n  source: synthetic-holdout\n  test-fraction: 0.3\n  val-fraction: 0.5\n"
        "  bootstrap: 20\n")
    cohort = ensure_synthetic_cohort(load_config(
        {"config-file": str(root / "federation.yaml"), "min-sites": 1}, PROJECT))
    _copy_project(root / "project")
    pki.make_ca(root / "pki")
    pki.make_server_certificate(root / "pki", root / "pki")
    tls = daemons.TlsFiles.in_dir(root / "pki")
    fed = Federation(root=root, shared=shared, port=daemons.free_port(),
                     env=environment.flower_env(root / "flwr-home"))
    try:
        python = _hospital_python(shared)
        if isinstance(python, str):
            pytest.skip(python)
        # The SuperLink starts while the hospitals prepare (each in its own thread: their
        # commands are separate processes).
        fed.superlink = daemons.Daemon(
            "superlink", [sys.executable, "-m", "aclecg_cli", "deploy", "superlink",
                          "--pki-dir", str(root / "pki"), "--database",
                          str(root / "state" / "superlink.db"), "--port", str(fed.port)],
            fed.env, root / "logs" / "superlink.log")
        hospitals = [_add_hospital(fed, name, cohort / name, tls.ca_cert, python)
                     for name in SITES]
        with ThreadPoolExecutor(len(hospitals)) as pool:
            list(pool.map(_prepare_hospital, hospitals))
        daemons.wait_for_port(daemons.LOOPBACK, fed.port, 60, fed.superlink)
        flwr_cli.write_connection(root / "flwr-home", CONNECTION, fed.address, tls.ca_cert)
        for name, hospital in fed.hospitals.items():
            public = root / "received" / f"{name}.pub"  # the key file the hospital sent
            public.parent.mkdir(exist_ok=True)
            shutil.copy2(hospital.home / "keys" / f"{name}.pub", public)
            registered = fed.aclecg("deploy", "register-site", str(public), "--connection",
                                    CONNECTION)
            assert registered.returncode == 0, registered.stderr
        for hospital in fed.hospitals.values():
            fed.start_node(hospital)
        fed.wait_online(len(SITES))
        yield fed
    finally:
        for hospital in fed.hospitals.values():
            if hospital.node is not None:
                hospital.node.stop()
        if fed.superlink is not None:
            fed.superlink.stop()
        for hospital in fed.hospitals.values():
            subprocess.run(["pkill", "-KILL", "-u", hospital.user], check=False)
            subprocess.run(["userdel", "--remove", hospital.user], check=False,
                           capture_output=True)
        shutil.rmtree(shared, ignore_errors=True)


def _rounds(run_dir: Path) -> list[dict[str, Any]]:
    return list(json.loads((run_dir / "metrics.json").read_text())["rounds"])


def _owned_outside(uid: int, own: Path, roots: list[Path]) -> list[str]:
    """Files and folders below ``roots`` owned by ``uid`` that are not below ``own``."""
    found = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = Path(folder) / name
                try:
                    owner = path.lstat().st_uid
                except OSError:
                    continue
                if owner == uid and not path.is_relative_to(own):
                    found.append(str(path))
    return found


def test_secure_aggregation_over_the_tls_deployment(federation: Federation) -> None:
    fed = federation
    run_dir = fed.root / "runs" / "secure"
    run_id = fed.submit(fed.root / "project", run_dir,
                        **{"num-server-rounds": 1, "secure-aggregation": True})
    status = fed.finish(run_id)
    assert status == flwr_cli.FINISHED_OK, flwr_cli.run_log(run_id, CONNECTION, fed.env)
    (round1,) = [r for r in _rounds(run_dir) if r["round"] == 1]
    assert sorted(c["site"] for c in round1["clients"]) == list(SITES)
    assert round1["failures"] == []
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    exchange = next(e for e in audit if e.get("round") == 1)
    assert exchange["secure_aggregation"] is True
    assert sorted(s["site"] for s in exchange["sites_answered"]) == list(SITES)


def test_a_modified_app_is_refused_at_both_sites_and_never_runs(
        federation: Federation) -> None:
    fed = federation
    modified = fed.root / "project-modified"
    shutil.copytree(fed.root / "project", modified)
    mark = fed.shared / "marks"
    with (modified / "client" / "app.py").open("a") as f:  # one line that leaves a mark
        f.write(f"Path('{mark}', f'ran-as-{{os.getuid()}}').touch()\nimport os\n")
    run_id = fed.submit(modified, fed.root / "runs" / "modified", **{"num-server-rounds": 1})
    status = fed.finish(run_id)
    assert status.startswith("finished:") and status != flwr_cli.FINISHED_OK
    follow = fed.aclecg("deploy", "follow", str(run_id), "--connection", CONNECTION)
    assert follow.returncode == 1
    assert "Traceback" not in follow.stdout + follow.stderr
    reason = follow.stderr.strip().splitlines()[-1]
    assert f"run {run_id} failed" in reason and reason.count("refused") == len(SITES), reason
    status_cmd = fed.aclecg("deploy", "status", str(run_id), "--connection", CONNECTION)
    assert status_cmd.returncode == 1 and status_cmd.stderr.strip() == reason
    assert list(mark.iterdir()) == []
    for hospital in fed.hospitals.values():
        log = hospital.node.log_text() if hospital.node else ""
        assert "refused" in log and hospital.identity in log
        apps = hospital.home / ".flwr" / "apps"
        installed = list(apps.iterdir()) if apps.is_dir() else []
        assert len(installed) == 1, installed  # only the approved app was ever installed


def test_a_killed_site_rejoins_and_the_hospitals_write_only_their_own_folders(
        federation: Federation) -> None:
    """Both hospitals train rounds 1 and 3 of a plain FedAvg run; site2, killed after round 1
    and restarted, misses round 2 only."""
    fed = federation
    assert fed.hospitals["site1"].identity == fed.hospitals["site2"].identity
    assert stat.S_IMODE(fed.root.stat().st_mode) == 0o700
    run_dir = fed.root / "runs" / "rejoin"
    # The SuperLink holds a vanished node online until it misses 2 heartbeats (<= 60 s), then
    # fails the round's message to it; with min-sites 2 the next round waits until it is back.
    run_id = fed.submit(fed.root / "project", run_dir,
                        **{"num-server-rounds": 3, "round-timeout": 90.0})
    checkpoint = run_dir / "checkpoints" / "round-0001.safetensors"
    deadline = time.monotonic() + RUN_TIMEOUT
    while not checkpoint.is_file():
        assert time.monotonic() < deadline, flwr_cli.run_log(run_id, CONNECTION, fed.env)
        time.sleep(0.5)
    site2 = fed.hospitals["site2"]
    assert site2.node is not None
    site2.node.stop(grace=0)
    # A restart is refused while the SuperLink still holds the node online.
    while sum(n["status"] == "online" for n in flwr_cli.list_nodes(CONNECTION, fed.env)) > 1:
        assert time.monotonic() < deadline, "site2 stays online after it was killed"
        time.sleep(1)
    fed.start_node(site2, tag="-restarted")
    status = fed.finish(run_id)
    assert status == flwr_cli.FINISHED_OK, flwr_cli.run_log(run_id, CONNECTION, fed.env)
    rounds = _rounds(run_dir)
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]
    for r in (rounds[1], rounds[3]):  # site2 was down in round 2 and is back in round 3
        assert sorted(c["site"] for c in r["clients"]) == list(SITES), r
        assert r["failures"] == []
    assert [c["site"] for c in rounds[2]["clients"]] == ["site1"]
    assert (run_dir / "report.md").is_file()
    for hospital in fed.hospitals.values():  # after every run of this module
        cache = hospital.home / ".cache" / "aclecg" / "cohorts"
        assert any(cache.iterdir()), f"{hospital.name} cached nothing in its own cache"
        written = _owned_outside(hospital.uid, hospital.home, SCANNED)
        assert sorted(set(written) - set(hospital.found_before)) == []
        log = hospital.node.log_text() if hospital.node else ""
        assert hospital.identity in log  # the site names the app it runs
