"""``aclecg audit RUN_DIR``: re-hash a run's audit trail and checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from aclecg_core.fed.audit import verify_run


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="verify a run folder's audit trail (audit.jsonl) against its checkpoints",
        description="Re-hash RUN_DIR/audit.jsonl (each line carries the SHA-256 of the line "
        "before it), config.json and every checkpoint the trail names. Prints 'verified' and "
        "the chain head, or each round and file that disagrees (exit status 1).",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = verify_run(args.run_dir)
    if result.verified:
        print(f"verified: {args.run_dir} ({result.rounds} rounds; chain head {result.head})")
        return 0
    print(f"NOT verified: {args.run_dir}")
    for problem in result.problems:
        print(f"  {problem}")
    return 1
