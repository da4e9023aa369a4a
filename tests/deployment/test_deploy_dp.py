"""Opt-in server-side differential privacy (server.dp) around Flower's FedAvg."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, Metadata, MetricRecord, RecordDict
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
)

from aclecg_core.fed.config import RunSettings
from aclecg_core.settings import from_mapping
from server.dp import DpSettings, wrap_with_dp


def _reply(values: np.ndarray, node: int) -> Message:
    content = RecordDict({"arrays": ArrayRecord({"w": Array(values.astype(np.float32))}),
                          "metrics": MetricRecord({"num-examples": 10})})
    meta = Metadata(run_id=1, message_id=f"m{node}", src_node_id=node, dst_node_id=0,
                    reply_to_message_id=f"q{node}", group_id="1", created_at=0.0, ttl=60.0,
                    message_type="train")
    return Message(content=content, metadata=meta)  # type: ignore[call-overload]


def test_settings_from_run_section() -> None:
    assert not DpSettings.from_run(RunSettings()).enabled
    assert DpSettings.from_run(RunSettings()).to_config() == {"dp": "off"}
    run = from_mapping(RunSettings, {"dp": "adaptive", "dp-noise-multiplier": 0.5,
                                     "dp-clipping-norm": 2}, "run config")
    s = DpSettings.from_run(run)
    assert (s.mode, s.noise_multiplier, s.clipping_norm) == ("adaptive", 0.5, 2.0)
    assert s.to_config()["dp-target-quantile"] == 0.5
    for bad, match in (({"dp": "on"}, "'dp' must be one of .*, got 'on'"),
                       ({"dp": "fixed", "dp-clipping-norm": 0}, "> 0"),
                       ({"dp": "fixed", "dp-noise-multiplier": -1}, ">= 0"),
                       ({"dp": "fixed", "dp-noise-multiplier": "x"}, "of type float")):
        with pytest.raises(ValueError, match=match):
            from_mapping(RunSettings, bad, "run config")


def test_wrap_picks_flower_wrapper() -> None:
    base = FedAvg()
    assert wrap_with_dp(base, DpSettings(), 2) is base
    fixed = wrap_with_dp(base, DpSettings("fixed", 1.0, 0.5), 3)
    assert isinstance(fixed, DifferentialPrivacyServerSideFixedClipping)
    assert (fixed.clipping_norm, fixed.num_sampled_clients) == (0.5, 3)
    adaptive = wrap_with_dp(base, DpSettings("adaptive", 0.1, 0.5), 2)
    assert isinstance(adaptive, DifferentialPrivacyServerSideAdaptiveClipping)
    with pytest.raises(ValueError, match="clipped_count_stddev"):  # 2 sites: stddev 0.1 too low
        wrap_with_dp(base, DpSettings("adaptive", 1.0, 0.5), 2)
    stronger = DpSettings("adaptive", 1.0, 0.5, clipped_count_stddev=1.0)
    wrapped = wrap_with_dp(base, stronger, 2)
    assert isinstance(wrapped, DifferentialPrivacyServerSideAdaptiveClipping)
    with pytest.raises(ValueError, match="sampled site"):
        wrap_with_dp(base, DpSettings("fixed"), 0)


def test_fixed_clipping_bounds_each_site_update() -> None:
    settings = DpSettings("fixed", noise_multiplier=0.0, clipping_norm=0.5)
    strategy = wrap_with_dp(FedAvg(), settings, 2)
    assert isinstance(strategy, DifferentialPrivacyServerSideFixedClipping)
    strategy.current_arrays = ArrayRecord({"w": Array(np.ones(4, dtype=np.float32))})
    # Updates of norm 10 and 6 around the current weights (all ones) are clipped to norm 0.5.
    replies = [_reply(np.full(4, 6.0), 1), _reply(np.full(4, 4.0), 2)]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None
    (w,) = arrays.to_numpy_ndarrays()
    np.testing.assert_allclose(w, np.full(4, 1.25), rtol=1e-6)


def test_fixed_clipping_adds_calibrated_noise() -> None:
    np.random.seed(0)
    settings = DpSettings("fixed", noise_multiplier=2.0, clipping_norm=1.0)
    strategy = wrap_with_dp(FedAvg(), settings, 2)
    assert isinstance(strategy, DifferentialPrivacyServerSideFixedClipping)
    strategy.current_arrays = ArrayRecord({"w": Array(np.zeros(20000, dtype=np.float32))})
    tiny = np.full(20000, 1e-6)  # updates far below the clipping norm: the aggregate is ~ noise
    arrays, _ = strategy.aggregate_train(1, [_reply(tiny, 1), _reply(-tiny, 2)])
    assert arrays is not None
    (w,) = arrays.to_numpy_ndarrays()
    assert abs(float(w.std()) - 2.0 * 1.0 / 2) < 0.02  # std = multiplier * norm / sampled sites
