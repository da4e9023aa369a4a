"""Simulated hospitals: recorders, noise, record lengths and case mix differ per site."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

# Population prevalence of each abnormal label before site case-mix and exclusions.
BASE_PREVALENCE: dict[str, float] = {
    "MI-INF": 0.09, "MI-SEP": 0.06, "MI-ANT": 0.07, "MI-LAT": 0.06, "LBBB": 0.05, "RBBB": 0.07,
    "AF": 0.10, "LVH": 0.08, "SB": 0.08, "STach": 0.07,
}

# The reference case mix (:func:`reference_site_spec`): every abnormal label at 15 % before the
# exclusions, so that each one, the four regional infarcts included, has about 11-15 % of the
# records (NSR about 19 %), against 3-10 % in the training sites.
REFERENCE_PREVALENCE = 0.15

# Recorder profiles of the first four sites; later sites draw from the same choices.
_PROFILES: tuple[dict[str, float], ...] = (
    {"fs": 500, "gain": 1000, "powerline_hz": 50, "min_s": 10, "max_s": 10,
     "baseline_mv": 0.05, "powerline_mv": 0.01, "emg_mv": 0.004},
    {"fs": 250, "gain": 200, "powerline_hz": 60, "min_s": 10, "max_s": 20,
     "baseline_mv": 0.12, "powerline_mv": 0.03, "emg_mv": 0.008},
    {"fs": 100, "gain": 500, "powerline_hz": 50, "min_s": 10, "max_s": 10,
     "baseline_mv": 0.2, "powerline_mv": 0.0, "emg_mv": 0.006},
    {"fs": 500, "gain": 400, "powerline_hz": 60, "min_s": 10, "max_s": 30,
     "baseline_mv": 0.15, "powerline_mv": 0.05, "emg_mv": 0.015},
)


@dataclass(frozen=True)
class SiteSpec:
    """Everything that makes one simulated hospital different from another."""

    index: int
    fs: int
    gain: float  # ADC units per mV
    powerline_hz: float
    duration_s: tuple[int, int]  # shortest and longest record
    baseline_mv: float
    powerline_mv: float
    emg_mv: float
    lead_reversal_rate: float  # fraction of records with LA/RA swapped
    age_mean: float
    male_fraction: float
    prevalence: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"site{self.index}"


def synthetic_site_spec(site: int, seed: int = 0) -> SiteSpec:
    """The spec of site ``site`` (1-based) of the cohort drawn with ``seed``.

    Sites 1–4 use fixed recorder profiles (500 Hz/50 Hz mains, 250 Hz/60 Hz, 100 Hz, 500 Hz with
    long noisy records); case mix, demographics and lead-reversal rate are drawn from the seed.
    """
    if site < 1:
        raise ValueError(f"sites are numbered from 1, got {site}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(site, 0)))
    if site <= len(_PROFILES):
        profile = _PROFILES[site - 1]
    else:
        profile = dict(_PROFILES[int(rng.integers(len(_PROFILES)))])
        profile["gain"] = float(rng.choice([100, 200, 400, 500, 1000]))
        profile["powerline_hz"] = float(rng.choice([50, 60]))
    mix = rng.lognormal(0.0, 0.45, len(BASE_PREVALENCE))
    prevalence = {c: float(min(0.3, p * m))
                  for (c, p), m in zip(BASE_PREVALENCE.items(), mix, strict=True)}
    return SiteSpec(
        index=site,
        fs=int(profile["fs"]),
        gain=float(profile["gain"]),
        powerline_hz=float(profile["powerline_hz"]),
        duration_s=(int(profile["min_s"]), int(profile["max_s"])),
        baseline_mv=float(profile["baseline_mv"]),
        powerline_mv=float(profile["powerline_mv"]),
        emg_mv=float(profile["emg_mv"]),
        lead_reversal_rate=float(rng.choice([0.0, 0.01, 0.02, 0.03])),
        age_mean=float(rng.uniform(52, 66)),
        male_fraction=float(rng.uniform(0.45, 0.6)),
        prevalence=prevalence,
    )


def reference_site_spec(site: int, seed: int = 0) -> SiteSpec:
    """Site ``site`` of :func:`synthetic_site_spec` with the reference case mix: every abnormal
    label at :data:`REFERENCE_PREVALENCE` (a curated evaluation set, e.g. the server's labeled
    hold-out, where rare classes would otherwise have too few positives to be scored)."""
    spec = synthetic_site_spec(site, seed)
    return replace(spec, prevalence=dict.fromkeys(BASE_PREVALENCE, REFERENCE_PREVALENCE))
