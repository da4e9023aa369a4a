"""``aclecg simulate``: the whole federation on this machine, ending in a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aclecg_core.data.cohort import DataError
from aclecg_core.fed.config import ConfigError, parse_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run the federated pretraining in Flower's simulation engine",
        description="Federated pretraining of the ACL-ECG encoder on simulated sites (default: "
        "the synthetic cohort, 4 sites), with a linear probe per round, checkpoints, "
        "metrics.json and a report in the run folder. Defaults: [tool.flwr.app.config] in "
        "pyproject.toml and configs/default.yaml.",
    )
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="YAML site/data settings (run config key config-file)")
    parser.add_argument("--run-dir", type=Path, metavar="DIR",
                        help="run folder (default: a new runs/<time>-<strategy>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir (default: the latest under runs/) "
                        "from its last finished round")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a run config key, e.g. --set num-server-rounds=5 "
                        "(repeatable; values are TOML: strings may be bare)")
    parser.add_argument("--verbose", action="store_true",
                        help="also show Flower's own log (sampling, aggregation, summaries)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simulation.run import SimulationError, simulate

    try:
        overrides = parse_overrides(args.set)
        if args.config is not None:
            overrides["config-file"] = str(args.config.resolve())
        if args.run_dir is not None:
            overrides["run-dir"] = str(args.run_dir.resolve())
        if args.resume:
            overrides["resume"] = True
        run_dir = simulate(overrides, verbose=args.verbose)
    except (ConfigError, DataError, SimulationError) as exc:
        print(f"aclecg simulate: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(f"run folder: {run_dir}")
    for name in ("report.html", "report.md"):
        if (run_dir / name).is_file():
            print(f"report: {run_dir / name}")
    return 0
