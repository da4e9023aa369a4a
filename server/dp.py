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

from dataclasses import dataclass, fields
from typing import Any

from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    Strategy,
)

from aclecg_core.fed.config import RunSettings
from aclecg_core.settings import DP_MODE_KEYS


@dataclass(frozen=True)
class DpSettings:
    """The differential-privacy settings of a run: field ``x`` is the run section's ``dp_x``
    (``mode``: ``dp``), checked there (:class:`RunSettings`)."""

    mode: str = RunSettings.dp
    noise_multiplier: float = RunSettings.dp_noise_multiplier
    clipping_norm: float = RunSettings.dp_clipping_norm
    target_quantile: float = RunSettings.dp_target_quantile
    clip_norm_lr: float = RunSettings.dp_clip_norm_lr
    clipped_count_stddev: float = RunSettings.dp_clipped_count_stddev

    @classmethod
    def from_run(cls, run: RunSettings) -> DpSettings:
        """The ``dp*`` settings of a validated run section."""
        return cls(run.dp, **{f.name: getattr(run, f"dp_{f.name}")
                              for f in fields(cls) if f.name != "mode"})

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def to_config(self) -> dict[str, Any]:
        """The run-config keys of this mode (:data:`DP_MODE_KEYS`), for ``config.json`` and the
        report: only ``dp`` when DP is off."""
        return {"dp": self.mode, **{key: getattr(self, key.removeprefix("dp-").replace("-", "_"))
                                    for key in DP_MODE_KEYS[self.mode]}}


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
