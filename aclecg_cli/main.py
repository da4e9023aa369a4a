"""Entry point of the ``aclecg`` command: each command group lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module defines ``register(subparsers)``; its parsers set ``func(args) -> int``.
COMMAND_MODULES: tuple[str, ...] = (
    "aclecg_cli.data",
    "aclecg_cli.train",
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
