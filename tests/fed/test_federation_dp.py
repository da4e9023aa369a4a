"""The run config's ``dp`` keys: validation, the strategy they build, failures under DP."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    Metadata,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAvgM,
    FedProx,
)

from aclecg_core.fed.config import ConfigError, FederationConfig, load_config
from server.strategy import RecordingStrategy, RepliesHook, build_strategy

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, run: Mapping[str, object], sites: int = 4) -> FederationConfig:
    yaml = tmp_path / "sites.yaml"
    yaml.write_text(f"cohort:\n  sites: {sites}\n")
    return load_config({"config-file": str(yaml), **run}, ROOT)


def _meta(node: int) -> Metadata:
    return Metadata(run_id=1, message_id=f"m{node}", src_node_id=node, dst_node_id=0,
                    reply_to_message_id=f"q{node}", group_id="1", created_at=0.0, ttl=60.0,
                    message_type="train")


def _reply(values: list[float], node: int) -> Message:
    content = RecordDict({
        "arrays": ArrayRecord({"encoder.w": Array(np.array(values, np.float32))}),
        "metrics": MetricRecord({"num-examples": 10, "site-index": node, "loss": 1.0,
                                 "seconds": 1.0, "samples-per-second": 10.0}),
    })
    return Message(content=content, metadata=_meta(node))  # type: ignore[call-overload]


def _error(node: int) -> Message:
    error = Error(code=1, reason=f"site{node}: DataError: no WFDB records")
    return Message(error=error, metadata=_meta(node))  # type: ignore[call-overload]


def _hook(log: list[tuple[int, list[bool]]]) -> RepliesHook:
    return lambda r, replies, silent: log.append((r, [m.has_error() for m in replies]))


TEMPLATE = {"encoder.w": np.zeros(2, np.float32)}


def test_dp_off_by_default_leaves_the_strategy_unwrapped(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {})
    assert cfg.run.dp == "off"
    strategy = build_strategy(cfg, TEMPLATE, _hook([]))
    assert isinstance(strategy, RecordingStrategy) and type(strategy.inner) is FedAvgM


def test_dp_fixed_wraps_the_configured_strategy(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"dp": "fixed", "strategy": "fedprox", "dp-noise-multiplier": 0.7,
                             "dp-clipping-norm": 2.5, "fraction-train": 0.5, "min-sites": 1})
    strategy = build_strategy(cfg, TEMPLATE, _hook([]))
    assert isinstance(strategy, RecordingStrategy)
    dp = strategy.inner
    assert isinstance(dp, DifferentialPrivacyServerSideFixedClipping)
    assert isinstance(dp.strategy, FedProx)
    # 4 sites × fraction-train 0.5: 2 sites sampled per round calibrate the noise
    assert (dp.noise_multiplier, dp.clipping_norm, dp.num_sampled_clients) == (0.7, 2.5, 2)


def test_dp_adaptive_wraps_with_the_adaptive_settings(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"dp": "adaptive", "dp-clipped-count-stddev": 1.0,
                             "dp-target-quantile": 0.7, "dp-clip-norm-lr": 0.1})
    dp = build_strategy(cfg, TEMPLATE, _hook([])).inner
    assert isinstance(dp, DifferentialPrivacyServerSideAdaptiveClipping)
    assert (dp.num_sampled_clients, dp.target_clipped_quantile, dp.clip_norm_lr) == (4, 0.7, 0.1)
    assert dp.clipped_count_stddev == 1.0


def test_dp_fixed_clips_updates_and_still_records_failures(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"dp": "fixed", "dp-noise-multiplier": 0.0,
                             "dp-clipping-norm": 0.5, "strategy": "fedavg"}, sites=2)
    log: list[tuple[int, list[bool]]] = []
    strategy = build_strategy(cfg, TEMPLATE, _hook(log))
    assert isinstance(strategy, RecordingStrategy)
    strategy.inner.current_arrays = ArrayRecord(  # type: ignore[attr-defined]
        {"encoder.w": Array(np.zeros(2, np.float32))})  # set by configure_train in a run
    arrays, _ = strategy.aggregate_train(1, [_reply([3.0, 4.0], 2), _reply([0.0, 0.1], 1)])
    assert arrays is not None
    # site 2's update (norm 5) is clipped to norm 0.5; site 1's (norm 0.1) is kept
    np.testing.assert_allclose(arrays["encoder.w"].numpy(), [0.15, 0.25], rtol=1e-6)
    assert arrays["encoder.w"].numpy().dtype == np.float32
    # A site error: Flower's DP wrapper skips the round, the failure is still reported
    arrays, _ = strategy.aggregate_train(2, [_error(2), _reply([1.0, 1.0], 1)])
    assert arrays is None
    assert log == [(1, [False, False]), (2, [False, True])]


class _Nodes:
    """What FedAvg's node sampling asks of a grid."""

    def get_node_ids(self) -> list[int]:
        return [1, 2]


@pytest.mark.usefixtures("task_identity")
def test_dp_fixed_clips_the_updates_that_the_default_fedavgm_steps_with_momentum(
        tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"dp": "fixed", "dp-noise-multiplier": 0.0,
                             "dp-clipping-norm": 0.5}, sites=2)
    assert (cfg.run.strategy, cfg.run.server_momentum, cfg.run.server_lr) == ("fedavgm", 0.5, 1)
    strategy = build_strategy(cfg, TEMPLATE, _hook([]))
    assert isinstance(strategy.inner, DifferentialPrivacyServerSideFixedClipping)
    assert isinstance(strategy.inner.strategy, FedAvgM)
    start = ArrayRecord({"encoder.w": Array(np.ones(2, np.float32))})
    list(strategy.configure_train(1, start, ConfigRecord(), cast(Grid, _Nodes())))
    arrays, _ = strategy.aggregate_train(1, [_reply([4.0, 5.0], 2), _reply([1.0, 1.1], 1)])
    assert arrays is not None  # clipped mean step [0.15, 0.25]; the first step is the mean's
    np.testing.assert_allclose(arrays["encoder.w"].numpy(), [1.15, 1.25], rtol=1e-6)
    list(strategy.configure_train(2, arrays, ConfigRecord(), cast(Grid, _Nodes())))
    moved = (arrays["encoder.w"].numpy() + np.array([0.1, 0.0], np.float32)).tolist()
    arrays, _ = strategy.aggregate_train(2, [_reply(moved, 2), _reply(moved, 1)])
    assert arrays is not None  # momentum 0.5 × [0.15, 0.25] + [0.1, 0] added to what was sent
    np.testing.assert_allclose(arrays["encoder.w"].numpy(), [1.325, 1.375], rtol=1e-6)
    assert set(strategy.server_state() or {}) == {"momentum/encoder.w"}


@pytest.mark.parametrize(("run", "expected"), [
    ({"dp": "on"}, "key 'dp' must be one of ['off', 'fixed', 'adaptive'], got 'on'"),
    ({"dp": True}, "key 'dp' must be of type str"),
    ({"dp-noise-multiplier": -1.0}, "key 'dp-noise-multiplier' must be >= 0"),
    ({"dp-noise-multiplier": "x"}, "key 'dp-noise-multiplier' must be of type float"),
    ({"dp-clipping-norm": 0}, "key 'dp-clipping-norm' must be > 0"),
    ({"dp-target-quantile": 1.5}, "key 'dp-target-quantile' must be in [0, 1]"),
    ({"dp-clip-norm-lr": 0.0}, "key 'dp-clip-norm-lr' must be > 0"),
    ({"dp-clipped-count-stddev": -0.1}, "key 'dp-clipped-count-stddev' must be >= 0"),
    ({"dp-noise": 1.0}, "unknown key(s) ['dp-noise']"),
    ({"dp": "adaptive"}, "key 'dp-noise-multiplier' (1) must be < 2 × dp-clipped-count-stddev"
                         " = 0.4 (0: 4 sampled sites / 20)"),
])
def test_bad_dp_config_names_the_key(tmp_path: Path, run: dict[str, object],
                                     expected: str) -> None:
    with pytest.raises(ConfigError, match=r"^run config: ") as info:
        _config(tmp_path, run)
    assert expected in str(info.value)


def test_dp_settings_are_part_of_the_config_snapshot(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"dp": "fixed", "dp-clipping-norm": 0.3})
    run = cfg.to_dict()["run"]
    assert (run["dp"], run["dp-clipping-norm"]) == ("fixed", 0.3)
    assert FederationConfig.from_json(cfg.to_json()) == cfg
