"""``aclecg simulate``: the whole federation on this machine, ending in a report;
``aclecg compare-pooled``: a simulation's final encoder against pooling the sites' records."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from aclecg_core.data.cohort import DataError
from aclecg_core.fed.config import ConfigError, FederationConfig, parse_overrides
from aclecg_core.method.checkpoint import CheckpointError
from aclecg_core.report import ReportError


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
    parser.add_argument("--compare-pooled", action="store_true",
                        help="then run `aclecg compare-pooled` on the run folder")
    parser.set_defaults(func=run)
    compare = subparsers.add_parser(
        "compare-pooled",
        help="compare a simulation's final encoder with pooling the sites' records",
        description="Pretrain the run's initial model centrally on the union of its simulated "
        "sites' records with the same samples (rounds x local epochs epochs, the run's "
        "settings and seed), probe it and the final encoder on the server's probe data on the "
        "same label draws, and write RUN_DIR/pooled.json, RUN_DIR/pooled/encoder.safetensors "
        "and the report's 'Federated vs pooled' section. Simulations only: a deployment's "
        "server never holds the sites' records.",
    )
    compare.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run folder")
    compare.add_argument("--fractions", default="0.1,1", metavar="F,F",
                         help="label fractions of the probe's training part (default 0.1,1)")
    compare.add_argument("--draws", type=int, default=5,
                         help="stratified label draws per fraction below 1 (default 5)")
    compare.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    compare.set_defaults(func=run_compare)


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
    if args.compare_pooled:
        return compare_pooled(run_dir, (0.1, 1.0), 5, "auto")
    for name in ("report.html", "report.md"):
        if (run_dir / name).is_file():
            print(f"report: {run_dir / name}")
    return 0


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--fractions {text!r}: expected numbers like 0.1,1") from None
    if not values or not all(0 < v <= 1 for v in values):
        raise ValueError(f"--fractions {text!r}: every fraction must be in (0, 1]")
    return values


def run_compare(args: argparse.Namespace) -> int:
    try:
        fractions = _fractions(args.fractions)
    except ValueError as exc:
        print(f"aclecg compare-pooled: error: {exc}", file=sys.stderr)
        return 2
    if args.draws < 1:
        print("aclecg compare-pooled: error: --draws must be at least 1", file=sys.stderr)
        return 2
    return compare_pooled(args.run_dir, fractions, args.draws, args.device)


def compare_pooled(run_dir: Path, fractions: tuple[float, ...], draws: int, device: str) -> int:
    """:func:`aclecg_core.fed.pooled.compare_pooled` of ``run_dir``, then its report again."""
    from aclecg_core.fed.pooled import compare_pooled as compare
    from aclecg_core.report import write_report
    from aclecg_core.report.pooled import load_pooled_evidence, pooled_section

    config = run_dir / "config.json"
    try:
        try:
            cfg = FederationConfig.from_json(config.read_text())
        except OSError as exc:
            raise ConfigError(f"{config}: cannot be read ({exc.strerror}): is {run_dir} a "
                              "run folder?") from None
        print(f"pooled reference of {run_dir}: pretraining on the sites' pooled records ...",
              flush=True)
        # the per-record data warnings past the first few stay at INFO, as in `aclecg pretrain`
        logging.getLogger("aclecg_core.data.loading").setLevel(logging.WARNING)
        compare(cfg, run_dir, fractions, draws, device, progress=sys.stderr.isatty())
        md_path, _ = write_report(run_dir)
    except (ConfigError, DataError, CheckpointError, ReportError, ValueError) as exc:
        print(f"aclecg compare-pooled: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    section = pooled_section(load_pooled_evidence(run_dir))
    if section is not None:
        print(section.blocks[-1])
    print(f"pooled reference: {run_dir / 'pooled.json'}")
    print(f"report: {md_path}")
    return 0
