"""``aclecg report RUN_DIR``: write the evaluation report of a federated run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aclecg_core.report import ReportError, write_report


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write report.md and a self-contained report.html for a run folder",
        description="Write RUN_DIR/report.md, RUN_DIR/report.html and RUN_DIR/plots/*.png "
        "from RUN_DIR/metrics.json and RUN_DIR/config.json.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        md_path, html_path = write_report(args.run_dir)
    except ReportError as exc:
        print(f"aclecg report: error: {exc}", file=sys.stderr)
        return 1
    print(md_path)
    print(html_path)
    return 0
