"""The report's differential-privacy statement follows the run config's ``dp`` mode only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aclecg_core.report import dp_statement, flatten_config, write_report

DP_OFF_WITH_SETTINGS = {"run": {"dp": "off", "dp-noise-multiplier": 1.0, "dp-clipping-norm": 1.0,
                                "dp-target-quantile": 0.5, "dp-clip-norm-lr": 0.2,
                                "dp-clipped-count-stddev": 0.0}}


def _statement(config: dict[str, Any]) -> str:
    return dp_statement(flatten_config(config))


def test_off_mode_is_off_whatever_the_dp_settings() -> None:
    assert _statement(DP_OFF_WITH_SETTINGS) == "Differential privacy: off (dp = off)."


def test_other_dp_named_keys_do_not_turn_it_on() -> None:
    config = {**DP_OFF_WITH_SETTINGS, "probe": {"dp": "fixed"}, "preprocessing": {"dp": True}}
    assert _statement(config) == "Differential privacy: off (dp = off)."
    assert "sets no dp mode" in _statement({"probe": {"dp": "fixed"}, "dp-clipping-norm": 2.0})


def test_mode_other_than_off_fixed_adaptive_is_not_reported_as_on() -> None:
    for mode in ("on", True, "OFF", 1):
        statement = _statement({"run": {"dp": mode}})
        assert statement.startswith("Differential privacy: unknown (dp = "), statement
        assert "is not one of off, fixed, adaptive" in statement


def test_on_lists_only_the_settings_of_its_mode() -> None:
    fixed = _statement({"run": {**DP_OFF_WITH_SETTINGS["run"], "dp": "fixed",
                                "dp-clipping-norm": 0.5}})
    assert fixed.startswith("Differential privacy: on (dp = fixed; dp-noise-multiplier = 1, "
                            "dp-clipping-norm = 0.5). The server clips")
    adaptive = _statement({"run": {**DP_OFF_WITH_SETTINGS["run"], "dp": "adaptive"}})
    assert adaptive.startswith(
        "Differential privacy: on (dp = adaptive; dp-noise-multiplier = 1, dp-clipping-norm = 1, "
        "dp-target-quantile = 0.5, dp-clip-norm-lr = 0.2, dp-clipped-count-stddev = 0).")


def test_report_of_a_dp_run_states_it(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps({"rounds": [], "final_round": 0}))
    config = {"run": {**DP_OFF_WITH_SETTINGS["run"], "dp": "fixed"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    md_path, html_path = write_report(tmp_path)
    expected = ("Differential privacy: on (dp = fixed; dp-noise-multiplier = 1, "
                "dp-clipping-norm = 1)")
    assert expected in md_path.read_text() and expected in html_path.read_text()
