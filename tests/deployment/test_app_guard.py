"""Approved code only: app identities (deploy.app_identity) and the SuperNode guard."""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import shutil
import subprocess
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flwr.app import Message, Metadata, RecordDict
from flwr.app.message import make_message
from flwr.cli.build import build_fab_from_disk
from flwr.supercore.fab import Fab
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supercore.run import Run
from flwr.supernode import start_client_internal as node_loop
from flwr.supernode.nodestate import NodeStateFactory

from aclecg_cli import deploy as deploy_cli
from aclecg_cli.main import main as aclecg
from deploy import app_guard, pki
from deploy.app_identity import MANIFEST, app_identity, parse_identity, project_app_identity

PROJECT = Path(__file__).resolve().parents[2]
RUN_ID = 7
NODE_ID = 42


def copy_tracked_tree(dest: Path) -> Path:
    """The project's git-tracked files (as a fresh checkout has them) copied to ``dest``."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / name, target)
    return dest


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_tracked_tree(tmp_path_factory.mktemp("a") / "aclecg")


@pytest.fixture(scope="module")
def fab(tree: Path) -> bytes:
    return build_fab_from_disk(tree)


def rezip(fab: bytes, change: Callable[[dict[str, bytes]], object],
          compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """``fab`` with its members (name -> bytes) passed through ``change``."""
    with zipfile.ZipFile(io.BytesIO(fab)) as source:
        members = {name: source.read(name) for name in source.namelist()}
    change(members)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as target:
        for name, content in members.items():
            target.writestr(name, content)
    return out.getvalue()


def test_identity_is_the_same_for_two_copies_of_the_tree(tree: Path, fab: bytes,
                                                         tmp_path: Path) -> None:
    identity = project_app_identity(tree)
    assert identity == project_app_identity(copy_tracked_tree(tmp_path / "b" / "aclecg"))
    assert identity == app_identity(fab)
    with zipfile.ZipFile(io.BytesIO(fab)) as bundle:
        assert identity == hashlib.sha256(bundle.read(MANIFEST)).hexdigest()
    # The zip's compression does not enter the identity.
    stored = rezip(fab, lambda members: None, zipfile.ZIP_STORED)
    assert stored != fab and app_identity(stored) == identity


def test_identity_changes_with_one_line_of_code(tree: Path, tmp_path: Path) -> None:
    changed = copy_tracked_tree(tmp_path / "aclecg")
    with (changed / "client" / "app.py").open("a") as code:
        code.write("SOMETHING_ELSE = 1\n")
    assert project_app_identity(changed) != project_app_identity(tree)


def test_tampered_or_malformed_bundles_are_refused(fab: bytes) -> None:
    def tamper(members: dict[str, bytes]) -> None:
        members["client/app.py"] += b"\nimport os; os.system('true')\n"

    def add(members: dict[str, bytes]) -> None:
        members["client/extra.py"] = b"print('not reviewed')\n"

    def remove(members: dict[str, bytes]) -> None:
        del members["client/app.py"]

    for change in (tamper, add, remove):
        with pytest.raises(ValueError, match="manifest does not match contents"):
            app_identity(rezip(fab, change))
    with pytest.raises(ValueError, match=r"no \.info/CONTENT"):
        app_identity(rezip(fab, lambda members: members.pop(MANIFEST)))
    with pytest.raises(ValueError, match="malformed app bundle"):
        app_identity(b"not a zip")


def test_parse_identity() -> None:
    identity = "ab" * 32
    assert parse_identity(identity.upper()) == identity
    assert parse_identity(f" sha256:{identity}\n") == identity
    for bad in ("", "ab" * 31, "xy" * 32, f"md5:{identity}", identity + "0"):
        with pytest.raises(ValueError, match="not an app identity"):
            parse_identity(bad)


def test_app_hash_cli_prints_the_identity(tree: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert aclecg(["deploy", "app-hash", str(tree)]) == 0
    assert capsys.readouterr().out.strip() == project_app_identity(tree)
    assert aclecg(["deploy", "app-hash", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip()
    assert "not a Flower app folder" in err and len(err.splitlines()) == 1


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aclecg")
    deploy_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_supernode_runs_under_the_guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    key = pki.make_site_key(tmp_path, "site1").private
    pki.make_ca(tmp_path / "pki")
    launched: list[list[str]] = []

    def record(cmd: list[str], env: object) -> int:
        launched.append(cmd)
        return 0

    monkeypatch.setattr(deploy_cli, "_exec", record)
    base = ["deploy", "supernode", "--site", "site1", "--key", str(key), "--ca-cert",
            str(tmp_path / "pki" / "ca.crt"), "--data-dir", str(tmp_path), "--skip-check"]
    identity = "cd" * 32
    assert _cli([*base, "--allow-app", f"sha256:{identity.upper()}"]) == 0
    assert _cli(base) == 0
    allowed, open_node = launched
    assert allowed[1:3] == ["-m", "deploy.app_guard"]
    assert allowed[allowed.index("--allow-app") + 1] == identity
    flower_args = allowed[allowed.index("--") + 1:]
    assert flower_args[0] == "--superlink" and "--root-certificates" in flower_args
    assert open_node[1:3] == ["-m", "deploy.app_guard"] and "--allow-app" not in open_node
    assert _cli([*base, "--allow-app", identity, "--allow-app", "deadbeef"]) == 1
    assert "'deadbeef' is not an app identity" in capsys.readouterr().err
    assert len(launched) == 2


class FakeSuperLink:
    """What Flower's SuperNode loop receives from the SuperLink: one message of run RUN_ID."""

    def __init__(self, fab: bytes) -> None:
        self.fab = Fab(hashlib.sha256(fab).hexdigest(), fab, {})
        self.fab_fetches = 0
        self.confirmed: list[str] = []

    def message(self) -> Message:
        metadata = Metadata(run_id=RUN_ID, message_id="", src_node_id=1, dst_node_id=NODE_ID,
                            reply_to_message_id="", group_id="1", created_at=time.time(),
                            ttl=3600.0, message_type="train")
        message = make_message(metadata, RecordDict())
        message.metadata.__dict__["_message_id"] = message.object_id
        return message

    def node_loop_arguments(self) -> dict[str, Any]:
        """A fresh node (state, object store) and the connection's functions."""
        message = self.message()
        objects = get_all_nested_objects(message)
        state = NodeStateFactory(objectstore_factory=ObjectStoreFactory()).state()
        state.set_node_id(NODE_ID)

        def get_fab(fab_hash: str, run_id: int) -> Fab:
            assert (fab_hash, run_id) == (self.fab.hash_str, RUN_ID)
            self.fab_fetches += 1
            return self.fab

        return {
            "state": state, "object_store": ObjectStoreFactory().store(), "node_config": {},
            "receive": lambda: (message, get_object_tree(message)),
            "get_run": lambda run_id: self.run(),
            "get_fab": get_fab,
            "pull_object": lambda run_id, obj_id: objects[obj_id].deflate(),
            "confirm_message_received": lambda run_id, msg_id: self.confirmed.append(msg_id),
            "trusted_entities": None,
        }

    def run(self) -> Run:
        run = Run.create_empty(RUN_ID)
        run.fab_hash = self.fab.hash_str
        return run


def test_guard_refuses_an_app_outside_the_allow_list(fab: bytes,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    link = FakeSuperLink(fab)
    allowed = frozenset({"ab" * 32, "cd" * 32})
    guard = app_guard.AppGuard("site1", allowed, node_loop._pull_and_store_message)
    with caplog.at_level(logging.INFO, logger="flwr"):
        for _ in range(2):  # two messages of the same run
            args = link.node_loop_arguments()
            assert guard(**args) == RUN_ID
            state = args["state"]
            assert state.get_run(RUN_ID) is None  # never stored: no FAB install, no ClientApp
            (reply,) = state.get_messages_legacy(is_reply=True)
            assert reply.has_error() and reply.error.code == app_guard.REFUSED_APP_CODE
            assert reply.error.reason == (
                f"site1: refused app {app_identity(fab)}: not in this site's allowed apps "
                f"[{'ab' * 32}, {'cd' * 32}]")
    assert link.fab_fetches == 1 and link.confirmed == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once per run, not once per message
    assert app_identity(fab) in errors[0] and "ab" * 32 in errors[0] and "cd" * 32 in errors[0]


def test_guard_refuses_a_tampered_bundle(fab: bytes) -> None:
    def tamper(members: dict[str, bytes]) -> None:
        members["server/app.py"] += b"\n# changed after review\n"

    link = FakeSuperLink(rezip(fab, tamper))
    guard = app_guard.AppGuard("site1", frozenset({app_identity(fab)}),
                               node_loop._pull_and_store_message)
    args = link.node_loop_arguments()
    assert guard(**args) == RUN_ID
    (reply,) = args["state"].get_messages_legacy(is_reply=True)
    assert reply.error.reason.startswith(f"site1: refused app (FAB {link.fab.hash_str}): "
                                         "malformed app bundle: manifest does not match")
    assert args["state"].get_run(RUN_ID) is None


def test_guard_lets_an_allowed_app_through(fab: bytes, caplog: pytest.LogCaptureFixture) -> None:
    link = FakeSuperLink(fab)
    guard = app_guard.AppGuard("site1", frozenset({app_identity(fab)}),
                               node_loop._pull_and_store_message)
    args = link.node_loop_arguments()
    with caplog.at_level(logging.INFO, logger="flwr"):
        assert guard(**args) == RUN_ID
    state = args["state"]
    assert state.get_run(RUN_ID) is not None  # Flower stored the run: its task will start
    assert state.get_messages_legacy(is_reply=True) == []
    assert len(link.confirmed) == 1
    assert f"app {app_identity(fab)} is allowed" in caplog.text


def test_guard_without_allow_list_logs_each_app(fab: bytes,
                                                caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_loop, app_guard.GUARDED, node_loop._pull_and_store_message)
    with caplog.at_level(logging.INFO, logger="flwr"):
        guard = app_guard.install("site1", frozenset())
    assert getattr(node_loop, app_guard.GUARDED) is guard
    assert "this site runs any app the coordinator submits" in caplog.text
    link = FakeSuperLink(fab)
    args = link.node_loop_arguments()
    with caplog.at_level(logging.INFO, logger="flwr"):
        assert guard(**args) == RUN_ID
    assert args["state"].get_run(RUN_ID) is not None
    assert f"running app {app_identity(fab)}" in caplog.text


def test_guard_refuses_to_start_on_another_flower(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    app_guard.check_flower()
    monkeypatch.setattr(app_guard.flwr, "__version__", "1.42.0")
    with pytest.raises(RuntimeError, match=r"supports only 1\.41\."):
        app_guard.check_flower()
    monkeypatch.undo()

    def changed(state: object, object_store: object) -> None:
        return None

    monkeypatch.setattr(node_loop, app_guard.GUARDED, changed)
    with pytest.raises(RuntimeError, match="unguarded"):
        app_guard.install("site1", frozenset())
    assert getattr(node_loop, app_guard.GUARDED) is changed
    with pytest.raises(SystemExit) as stopped:
        app_guard.main(["--site", "site1", "--", "--version"])
    assert stopped.value.code == 1
    assert "refusing to run a SuperNode unguarded" in capsys.readouterr().err
