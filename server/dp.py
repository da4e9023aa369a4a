"""Opt-in central differential privacy: Flower's server-side DP wrappers around the strategy.

Run config keys (all optional; DP is off unless ``dp`` says otherwise):

* ``dp``: ``off`` | ``fixed`` | ``adaptive``: server-side clipping of each site's update (its
  difference to the current global weights), then Gaussian noise on the aggregate.
* ``dp-noise-multiplier`` (default 1.0): noise std = multiplier × clipping norm / sampled sites.
* ``dp-clipping-norm`` (default 1.0): the L2 clipping norm (``fixed``) or its start (``adaptive``).
* ``dp-target-quantile`` (default 0.5), ``dp-clip-norm-lr`` (default 0.2),
  ``dp-clipped-count-stddev`` (default 0: Flower's sampled sites / 20): ``adaptive`` only. With
  few sites Flower refuses a noise multiplier >= 2 × this stddev.

Noise is calibrated to the number of sites sampled per round; rounds where a site replies with an
error are not aggregated by Flower's DP wrappers (the global weights stay as they were).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    Strategy,
)

DP_MODES: tuple[str, ...] = ("off", "fixed", "adaptive")


@dataclass(frozen=True)
class DpSettings:
    """Validated differential-privacy settings of one run."""

    mode: str = "off"
    noise_multiplier: float = 1.0
    clipping_norm: float = 1.0
    target_quantile: float = 0.5
    clip_norm_lr: float = 0.2
    clipped_count_stddev: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in DP_MODES:
            raise ValueError(f"run config dp={self.mode!r}: expected one of {', '.join(DP_MODES)}")
        if self.noise_multiplier < 0:
            raise ValueError(f"dp-noise-multiplier={self.noise_multiplier}: must be >= 0")
        if self.clipping_norm <= 0:
            raise ValueError(f"dp-clipping-norm={self.clipping_norm}: must be > 0")
        if not 0 <= self.target_quantile <= 1:
            raise ValueError(f"dp-target-quantile={self.target_quantile}: must be in [0, 1]")
        if self.clip_norm_lr <= 0:
            raise ValueError(f"dp-clip-norm-lr={self.clip_norm_lr}: must be > 0")
        if self.clipped_count_stddev < 0:
            raise ValueError(f"dp-clipped-count-stddev={self.clipped_count_stddev}: must be >= 0")

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> DpSettings:
        """Read the ``dp*`` keys of a Flower run config (missing keys take the defaults)."""
        mode = str(run_config.get("dp", "off")).strip().lower()
        return cls(
            mode=mode,
            noise_multiplier=_number(run_config, "dp-noise-multiplier", cls.noise_multiplier),
            clipping_norm=_number(run_config, "dp-clipping-norm", cls.clipping_norm),
            target_quantile=_number(run_config, "dp-target-quantile", cls.target_quantile),
            clip_norm_lr=_number(run_config, "dp-clip-norm-lr", cls.clip_norm_lr),
            clipped_count_stddev=_number(run_config, "dp-clipped-count-stddev",
                                         cls.clipped_count_stddev),
        )

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def to_config(self) -> dict[str, Any]:
        """The settings for ``config.json`` and the report: only ``dp`` when DP is off."""
        if not self.enabled:
            return {"dp": "off"}
        out: dict[str, Any] = {
            "dp": self.mode,
            "dp-noise-multiplier": self.noise_multiplier,
            "dp-clipping-norm": self.clipping_norm,
        }
        if self.mode == "adaptive":
            out["dp-target-quantile"] = self.target_quantile
            out["dp-clip-norm-lr"] = self.clip_norm_lr
            out["dp-clipped-count-stddev"] = self.clipped_count_stddev
        return out


def _number(run_config: Mapping[str, Any], key: str, default: float) -> float:
    value = run_config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"run config {key}={value!r}: expected a number")
    return float(value)


def wrap_with_dp(strategy: Strategy, settings: DpSettings, num_sampled_sites: int) -> Strategy:
    """``strategy`` wrapped in Flower's server-side DP wrapper (unchanged when DP is off)."""
    if not settings.enabled:
        return strategy
    if num_sampled_sites <= 0:
        raise ValueError(f"differential privacy needs >= 1 sampled site, got {num_sampled_sites}")
    if settings.mode == "fixed":
        return DifferentialPrivacyServerSideFixedClipping(
            strategy,
            noise_multiplier=settings.noise_multiplier,
            clipping_norm=settings.clipping_norm,
            num_sampled_clients=num_sampled_sites,
        )
    return DifferentialPrivacyServerSideAdaptiveClipping(
        strategy,
        noise_multiplier=settings.noise_multiplier,
        num_sampled_clients=num_sampled_sites,
        initial_clipping_norm=settings.clipping_norm,
        target_clipped_quantile=settings.target_quantile,
        clip_norm_lr=settings.clip_norm_lr,
        clipped_count_stddev=settings.clipped_count_stddev or None,
    )
