"""``aclecg data check | synth``: checking ECG source folders and writing synthetic cohorts."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import aclecg_cli.data_synth
from aclecg_core.data.preprocess import MAX_FLAT_LEADS, PreprocessConfig
from aclecg_core.data.sources import LAYOUTS


def register(subparsers: Any) -> None:
    data = subparsers.add_parser("data", help="ECG data sources: check, synthesize")
    data_subparsers = data.add_subparsers(dest="data_command", required=True)
    check = data_subparsers.add_parser(
        "check", help="read every record below PATH(s); list OK or the reason it is unusable")
    check.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    check.add_argument("--layout", choices=LAYOUTS, default="auto")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    check.add_argument("--max-flat-leads", type=int, default=MAX_FLAT_LEADS, metavar="N",
                       help="keep records with up to N constant (dead) leads, with a warning; "
                            f"reject those with more (0: any; default {MAX_FLAT_LEADS})")
    check.set_defaults(func=run_check)
    aclecg_cli.data_synth.register(data_subparsers)


def run_check(args: argparse.Namespace) -> int:
    """List each record as OK or with its reason; exit 0 only if every record is usable."""
    from aclecg_core.data.check import check_sources

    logging.getLogger("aclecg_core").setLevel(logging.ERROR)
    try:
        cfg = PreprocessConfig(max_flat_leads=args.max_flat_leads)
    except ValueError as exc:
        print(f"error: --max-flat-leads: {exc}", file=sys.stderr)
        return 2
    report = check_sources(args.paths, args.layout, cfg, args.workers)
    summary = report.summary()
    if args.json:
        records = [{"path": r.path, "record_id": r.record_id, "ok": r.reason is None,
                    "reason": r.reason, "warnings": list(r.warnings), "windows": r.windows,
                    "labels": list(r.labels)}
                   for r in report.records]
        print(json.dumps({"records": records, "summary": summary}, indent=1))
    else:
        for r in report.records:
            warning = "".join(f"  (warning: {w})" for w in r.warnings)
            print(f"OK    {r.path}{warning}" if r.reason is None
                  else f"FAIL  {r.path}: {r.reason}")
        reasons = "".join(f"\n  {n:5d}  {reason}" for reason, n in summary["reasons"].items())
        print(f"{summary['records']} records: {summary['ok']} OK "
              f"({summary['warnings']} with warnings), {summary['rejected']} rejected{reasons}")
    return 0 if report.ok else 1
