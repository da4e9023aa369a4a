"""Approved code only: Flower's SuperNode, refusing every app the site has not pinned.

``python -m deploy.app_guard --site NAME [--allow-app ID ...] -- FLOWER_SUPERNODE_ARGS`` runs
``flower-supernode`` in this process with a guard around
``flwr.supernode.start_client_internal._pull_and_store_message``: the step that, for the first
message of a run the node does not know, fetches the run and its app bundle (FAB) and only then
stores them, so that the FAB is installed and a ClientApp process started. The guard computes
the FAB's identity (:func:`deploy.app_identity.app_identity`) as it arrives; an app outside the
allow-list is never stored, installed or imported: the site logs the received and allowed
identities and answers the message with an error the coordinator records for this site.
Without an allow-list the guard only logs each new app's identity.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from collections.abc import Callable, Sequence

import flwr
from flwr.app import Error, Message
from flwr.app.user_config import UserConfig
from flwr.proto.message_pb2 import ObjectTree
from flwr.supercore.fab import Fab
from flwr.supercore.object_store import ObjectStore
from flwr.supercore.run import Run
from flwr.supernode import start_client_internal as node_loop
from flwr.supernode.nodestate import NodeState

from aclecg_core.fed.console import colour_only_on_terminals
from deploy.app_identity import app_identity, parse_identity

PINNED_FLOWER = "1.41."
REFUSED_APP_CODE = 1005
GUARDED = "_pull_and_store_message"
GUARDED_PARAMETERS = ("state", "object_store", "node_config", "receive", "get_run", "get_fab",
                      "pull_object", "confirm_message_received", "trusted_entities")
_LOG = logging.getLogger("flwr")  # Flower's logger: the lines land in the SuperNode's log

Pull = Callable[..., int | None]


class _Refused(Exception):
    def __init__(self, run_id: int, fab_hash: str) -> None:
        super().__init__(run_id, fab_hash)
        self.run_id, self.fab_hash = run_id, fab_hash


class AppGuard:
    """Stands in for Flower's ``_pull_and_store_message``; apps outside ``allowed`` are refused.

    An empty ``allowed`` lets every app through (and logs its identity).
    """

    def __init__(self, site: str, allowed: frozenset[str], pull: Pull) -> None:
        self.site, self.allowed, self._pull = site, allowed, pull
        self._refusals: dict[str, str] = {}  # FAB hash -> error reason
        self._logged_runs: set[int] = set()  # runs whose refusal was logged

    def __call__(
        self, *, state: NodeState, object_store: ObjectStore, node_config: UserConfig,
        receive: Callable[[], tuple[Message, ObjectTree] | None],
        get_run: Callable[[int], Run], get_fab: Callable[[str, int], Fab],
        pull_object: Callable[[int, str], bytes],
        confirm_message_received: Callable[[int, str], None],
        trusted_entities: dict[str, str] | None,
    ) -> int | None:
        received: list[Message] = []

        def remembering_receive() -> tuple[Message, ObjectTree] | None:
            pulled = receive()
            if pulled is not None:
                received.append(pulled[0])
            return pulled

        def checked_get_fab(fab_hash: str, run_id: int) -> Fab:
            if fab_hash in self._refusals:  # known: no need to fetch and verify it again
                raise _Refused(run_id, fab_hash)
            fab = get_fab(fab_hash, run_id)
            self._check(fab, fab_hash, run_id)
            return fab

        try:
            return self._pull(
                state=state, object_store=object_store, node_config=node_config,
                receive=remembering_receive, get_run=get_run, get_fab=checked_get_fab,
                pull_object=pull_object, confirm_message_received=confirm_message_received,
                trusted_entities=trusted_entities)
        except _Refused as refused:
            reason = self._refusals[refused.fab_hash]
            if refused.run_id not in self._logged_runs:
                self._logged_runs.add(refused.run_id)
                _LOG.error("[RUN %s] %s", refused.run_id, reason)
            reply = Message(Error(REFUSED_APP_CODE, reason), reply_to=received[-1])
            node_loop._insert_message(reply, state, object_store)
            return refused.run_id

    def _check(self, fab: Fab, fab_hash: str, run_id: int) -> None:
        """Raise ``_Refused`` (after recording why) unless the site accepts the app."""
        try:
            identity = app_identity(fab.content)
        except ValueError as exc:
            if not self.allowed:
                _LOG.warning("[RUN %s] app without a valid identity (%s); running it anyway: "
                             "this site runs any app the coordinator submits", run_id, exc)
                return
            self._refusals[fab_hash] = f"{self.site}: refused app (FAB {fab_hash}): {exc}"
            raise _Refused(run_id, fab_hash) from exc
        if not self.allowed:
            _LOG.info("[RUN %s] running app %s (no --allow-app: any app is accepted)",
                      run_id, identity)
        elif identity in self.allowed:
            _LOG.info("[RUN %s] app %s is allowed", run_id, identity)
        else:
            self._refusals[fab_hash] = (
                f"{self.site}: refused app {identity}: not in this site's allowed apps "
                f"[{', '.join(sorted(self.allowed))}]")
            raise _Refused(run_id, fab_hash)


def check_flower() -> None:
    """RuntimeError unless the installed Flower is the one the guard was written against."""
    if not flwr.__version__.startswith(PINNED_FLOWER):
        raise RuntimeError(f"flwr {flwr.__version__} is installed; the app guard supports only "
                           f"{PINNED_FLOWER}x: refusing to run a SuperNode unguarded")
    pull = getattr(node_loop, GUARDED, None)
    if (pull is None or not hasattr(node_loop, "_insert_message")
            or tuple(inspect.signature(pull).parameters) != GUARDED_PARAMETERS
            or GUARDED not in node_loop.start_client_internal.__code__.co_names):
        raise RuntimeError(f"flwr {flwr.__version__}: {node_loop.__name__}.{GUARDED} is not as "
                           "the app guard expects: refusing to run a SuperNode unguarded")


def install(site: str, allowed: frozenset[str]) -> AppGuard:
    """Put the guard in place of Flower's function (before the SuperNode starts)."""
    check_flower()
    guard = AppGuard(site, allowed, getattr(node_loop, GUARDED))
    setattr(node_loop, GUARDED, guard)
    if allowed:
        _LOG.info("%s: runs only the apps %s", site, ", ".join(sorted(allowed)))
    else:
        _LOG.warning("%s: no --allow-app given: this site runs any app the coordinator submits",
                     site)
    return guard


def main(argv: Sequence[str] | None = None) -> int:
    """Install the guard, then run ``flower-supernode`` with the arguments after ``--``."""
    from flwr.supernode.cli import flower_supernode

    parser = argparse.ArgumentParser(prog="python -m deploy.app_guard", description=__doc__)
    parser.add_argument("--site", required=True, help="site name (in logs and error replies)")
    parser.add_argument("--allow-app", action="append", default=[], metavar="ID",
                        help="identity of an approved app (repeatable)")
    parser.add_argument("flower_args", nargs="*", help="flower-supernode arguments (after --)")
    args = parser.parse_args(argv)
    try:
        allowed = frozenset(parse_identity(value) for value in args.allow_app)
        install(args.site, allowed)
    except (ValueError, RuntimeError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    colour_only_on_terminals(logging.getLogger("flwr"))
    sys.argv = ["flower-supernode", *args.flower_args]
    flower_supernode()
    return 0


if __name__ == "__main__":
    sys.exit(main())
