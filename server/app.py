"""ServerApp: runs the strategy, probes and checkpoints the global encoder after every round.

Thin: the strategy and the replies' checks are in ``server/strategy.py`` and
``server/replies.py``, the round bookkeeping in ``server/recorder.py``; configuration, data,
probe, run folder and audit trail live in ``aclecg_core``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from logging import INFO, WARNING
from pathlib import Path
from typing import Any, cast

from flwr.app import Array, ArrayRecord, ConfigRecord, Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from aclecg_core.fed.arrays import select_keys, to_numpy
from aclecg_core.fed.config import FederationConfig, load_config
from aclecg_core.fed.console import colour_only_on_terminals
from aclecg_core.fed.evidence import write_evidence
from aclecg_core.fed.probe import ServerProbe
from aclecg_core.fed.rounds import fit_to_federation, settled_node_count
from aclecg_core.fed.rundir import RunFolder, default_run_dir
from aclecg_core.fed.sites import ensure_synthetic_cohort
from aclecg_core.fed.training import initial_model, train_instructions
from server.cyclic import CyclicStrategy
from server.recorder import RoundRecorder
from server.secagg import SecureAggregationGrid
from server.strategy import RecordingStrategy, build_strategy

APP_DIR = Path(__file__).resolve().parents[1]


def run_federation(grid: Grid, cfg: FederationConfig) -> Path:
    """The whole federated run on ``grid``; returns the run folder."""
    nodes = settled_node_count(lambda: len(list(grid.get_node_ids())), cfg.cohort.sites,
                               cfg.run.min_sites)
    fitted = fit_to_federation(cfg, nodes)
    if fitted.cohort.sites != cfg.cohort.sites:
        log(INFO, "[aclecg] the federation has %d nodes: simulating %d sites (cohort.sites "
            "was %d)", nodes, nodes, cfg.cohort.sites)
    cfg = fitted
    if cfg.cohort.source == "synthetic":
        ensure_synthetic_cohort(cfg)
    run_dir = default_run_dir(cfg)
    folder = RunFolder.resume(run_dir, cfg) if cfg.run.resume else RunFolder.create(run_dir, cfg)
    log(INFO, "[aclecg] run folder %s", run_dir)
    probe = ServerProbe(cfg)
    try:
        template = to_numpy(initial_model(cfg).state_dict())
        offset = folder.last_round
        state = folder.load_round(offset) if offset > 0 else template
        remaining = cfg.run.num_server_rounds - offset
        if remaining > 0:
            recorder = RoundRecorder(cfg, folder, template, offset, probe)
            strategy = build_strategy(cfg, select_keys(template, cfg.run.aggregate),
                                      recorder.on_replies)
            initial = ArrayRecord({k: Array(v) for k, v in
                                   select_keys(state, cfg.run.aggregate).items()})
            if offset > 0 and strategy.optimiser is not None:  # momentum, moments: exact resume
                strategy.optimiser.restore(folder.load_server_state(offset), initial, offset)
            try:
                strategy.start(
                    grid=_training_grid(grid, cfg, strategy),
                    initial_arrays=initial,
                    num_rounds=remaining,
                    timeout=cfg.run.round_timeout,
                    train_config=ConfigRecord(cast(dict[str, Any],
                                                   train_instructions(cfg, offset).encode())),
                    evaluate_fn=lambda server_round, arrays: recorder.evaluate(
                        server_round, arrays, strategy.server_state()),
                )
            finally:  # the rounds already trained are probed and written, even after a failure
                recorder.close()
        folder.finish("finished")
    except BaseException as exc:
        folder.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    _write_evidence(cfg, run_dir, probe)
    _write_report(run_dir)
    return run_dir


def _training_grid(grid: Grid, cfg: FederationConfig, strategy: RecordingStrategy) -> Grid:
    """The grid the rounds run on: secure aggregation's, the cyclic chain's, or ``grid``."""
    if cfg.run.secure_aggregation:
        return SecureAggregationGrid(grid, cfg.run)
    if isinstance(strategy.inner, CyclicStrategy):
        return strategy.inner.chain(grid, strategy.accepts)
    return grid


def _write_evidence(cfg: FederationConfig, run_dir: Path, probe: ServerProbe) -> None:
    """The probe of round 0, the best and the final encoder on all the probe data, and the
    per-region probe of the final encoder and round 0's; a failure costs the report its
    panels, not the run."""
    start = time.perf_counter()
    try:
        holdout, regions = write_evidence(cfg, run_dir, probe)
    except (ValueError, OSError) as exc:  # CheckpointError is a ValueError
        log(WARNING, "[aclecg] no hold-out evidence: %s", exc)
        return
    if holdout is not None:
        log(INFO, "[aclecg] round 0 / best / final on all %d test records: macro AUROC %s",
            holdout["n_test"], " / ".join(f"{e['macro_auroc']:.3f}" for e in holdout["encoders"]))
    log(INFO, "[aclecg] per-region probe: best region per class %s (evidence: %.1f s)",
        regions.best, time.perf_counter() - start)


def _write_report(run_dir: Path) -> None:
    try:
        from aclecg_core.report import write_report
    except ImportError:
        log(WARNING, "[aclecg] no report writer available; run folder %s", run_dir)
        return
    md, html = write_report(run_dir)
    log(INFO, "[aclecg] report: %s (and %s)", html, md)


def make_app(run_config: Mapping[str, Any] | None = None,
             wrap_grid: Callable[[Grid], Grid] | None = None) -> ServerApp:
    """A ServerApp; ``run_config`` fills keys missing from ``context.run_config`` (used by the
    in-process simulation, whose context carries an empty run config); ``wrap_grid`` wraps the
    grid (the simulation's progress bar)."""
    colour_only_on_terminals(logging.getLogger("flwr"))
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg = load_config({**(run_config or {}), **dict(context.run_config)}, APP_DIR)
        run_federation(wrap_grid(grid) if wrap_grid else grid, cfg)

    return server_app


app = make_app()
