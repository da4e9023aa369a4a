"""Round checks, the federation's size and console filters (no Flower run)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from aclecg_core.fed.config import load_config
from aclecg_core.fed.console import DropMessages, ProjectLines
from aclecg_core.fed.rounds import (
    FederationError,
    aggregate_client_metrics,
    check_round,
    fit_to_federation,
    settled_node_count,
)

ROOT = Path(__file__).resolve().parents[2]


def test_a_round_without_any_success_stops_the_run_naming_each_reason() -> None:
    check_round(3, 1, [{"site": "site2", "error": "DataError: x"}])
    with pytest.raises(FederationError, match=r"round 3: no site succeeded.*"
                       r"site1: DataError: gone; site2: x; node-7: no reply"):
        check_round(3, 0, [{"site": "node-7", "error": "no reply within round-timeout"},
                           {"site": "site2", "error": "x"},
                           {"site": "site1", "error": "DataError: gone"}])


def test_only_loss_examples_and_seconds_are_aggregated() -> None:
    out = aggregate_client_metrics([
        {"loss": 1.0, "num-examples": 1, "seconds": 2.0, "site-index": 1, "fs": 100.0,
         "label-count/MI": 3},
        {"loss": 4.0, "num-examples": 3, "seconds": 5.0, "site-index": 2, "fs": 500.0,
         "label-count/MI": 0},
    ])
    assert out == {"loss": 3.25, "num-examples": 4, "seconds": 5.0}
    assert aggregate_client_metrics([]) == {}


def _cfg(tmp_path: Path, cohort: str, **run: object):
    yaml = tmp_path / "sites.yaml"
    yaml.write_text(cohort)
    return load_config({"config-file": str(yaml), **run}, ROOT)


def test_synthetic_and_free_partitions_follow_the_federation(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "cohort:\n  sites: 4\n")
    assert fit_to_federation(cfg, 2).cohort.sites == 2
    assert fit_to_federation(cfg, 4) is cfg
    folder = _cfg(tmp_path, f"cohort:\n  sites: 4\n  source: folder\n  path: {tmp_path}\n"
                  f"probe:\n  source: cinc\n  path: {tmp_path}\n")
    assert fit_to_federation(folder, 2) is folder  # its own sites fix the number
    iid = _cfg(tmp_path, f"cohort:\n  sites: 4\n  source: folder\n  path: {tmp_path}\n"
               f"  partition: iid\nprobe:\n  source: cinc\n  path: {tmp_path}\n")
    assert fit_to_federation(iid, 3).cohort.sites == 3
    with pytest.raises(FederationError, match="min-sites is 2: run with --set min-sites=1"):
        fit_to_federation(cfg, 1)


def test_node_count_settles() -> None:
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    counts = iter([0, 0, 1, 2, 2, 2])
    assert settled_node_count(lambda: next(counts), 2, 1, clock=lambda: now[0],
                              sleep=sleep) == 2
    seen = iter([0, 1, 3] + [3] * 100)
    assert settled_node_count(lambda: next(seen), 4, 2, settle_s=1.0, clock=lambda: now[0],
                              sleep=sleep) == 3


def _record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("flwr", level, "x", 1, message, None, None)


def test_console_keeps_project_lines_and_problems() -> None:
    lines, noise = ProjectLines(), DropMessages("fraction_evaluate is set")
    assert lines.filter(_record("[aclecg] round 1/5"))
    assert not lines.filter(_record("[ROUND 1/5]"))
    assert lines.filter(_record("site failed", logging.WARNING))
    assert not noise.filter(_record("fraction_evaluate is set to 0.0.", logging.WARNING))
    assert noise.filter(_record("something else", logging.WARNING))


def test_progress_grid_collects_every_reply_and_respects_the_timeout() -> None:
    from types import SimpleNamespace
    from unittest.mock import MagicMock

    from simulation.progress import ProgressGrid

    def reply(to: str) -> SimpleNamespace:
        return SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=to))

    inner = MagicMock()
    inner.push_messages.return_value = ["a", "b", "c"]
    inner.pull_messages.side_effect = [[reply("b")], [], [reply("a"), reply("c")]]
    grid = ProgressGrid(inner, poll_s=0.0)
    replies = list(grid.send_and_receive(["m1", "m2", "m3"], timeout=5))  # type: ignore[list-item]
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["a", "b", "c"]
    inner.pull_messages.side_effect = None
    inner.pull_messages.return_value = []
    start = time.monotonic()
    assert list(ProgressGrid(inner, poll_s=0.01).send_and_receive([], timeout=0.2)) == []
    assert time.monotonic() - start < 2
    assert grid.get_node_ids() is inner.get_node_ids.return_value
