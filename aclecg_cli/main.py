"""Entry point of the ``aclecg`` command: each command group lives in its own module.

Known errors (bad data, config or checkpoint files, missing files and folders: the project's
error types, all ``ValueError``, and ``OSError``) end a command with one line on stderr,
``aclecg <command>: error: <message naming the file>``, and exit status 1. Set
``ACLECG_TRACEBACK=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

MAX_MESSAGE = 400  # characters of an error line
# Each module defines ``register(subparsers)``; its parsers set ``func(args) -> int``.
COMMAND_MODULES: tuple[str, ...] = (
    "aclecg_cli.data",
    "aclecg_cli.train",
    "aclecg_cli.encoder",
    "aclecg_cli.report",
    "aclecg_cli.audit",
    "aclecg_cli.deploy",
    "aclecg_cli.federation",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aclecg",
        description="Anatomy-aware contrastive ECG pretraining, federated with Flower.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    from aclecg_core.data.gan import GanUnavailableError
    from simulation.run import SimulationError

    return (ValueError, OSError, GanUnavailableError, SimulationError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as exc:
        if os.environ.get("ACLECG_TRACEBACK") or not isinstance(exc, _known_errors()):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 4] + " ..."
        print(f"aclecg {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
