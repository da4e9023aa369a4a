"""Diagnostic labels of the synthetic cohort and how each one changes beats and rhythm."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from aclecg_core.data.synth.leadfield import SOURCE_DIM, region_source
from aclecg_core.data.synth.waves import P_WAVE, QRS, REPOL, Lobes, add_t_wave

# Must match aclecg_core.data.labels.SYNTHETIC_CLASSES exactly.
SYNTHETIC_CLASSES: tuple[str, ...] = (
    "NSR", "MI-INF", "MI-SEP", "MI-ANT", "MI-LAT", "LBBB", "RBBB", "AF", "LVH", "SB", "STach",
)
MI_REGIONS: dict[str, str] = {
    "MI-INF": "inferior", "MI-SEP": "septal", "MI-ANT": "anterior", "MI-LAT": "lateral",
}

RngFor = Callable[[str], np.random.Generator]


def sample_labels(prevalence: dict[str, float], rng: np.random.Generator) -> tuple[str, ...]:
    """Draw a consistent multi-label set: one Bernoulli per abnormal label, then clinical
    exclusions (one bundle branch block; LBBB masks MI and LVH; AF excludes SB/STach; at most
    two MI regions). No abnormality gives ``("NSR",)``."""
    draws = rng.random(len(SYNTHETIC_CLASSES))
    chosen = {c for c, u in zip(SYNTHETIC_CLASSES, draws, strict=True)
              if c != "NSR" and u < prevalence.get(c, 0.0)}
    tie = rng.random()
    if {"LBBB", "RBBB"} <= chosen:
        chosen.discard("RBBB" if tie < 0.5 else "LBBB")
    if "LBBB" in chosen:
        chosen -= {"LVH", *MI_REGIONS}
    if "AF" in chosen:
        chosen -= {"SB", "STach"}
    if {"SB", "STach"} <= chosen:
        chosen.discard("STach" if tie < 0.5 else "SB")
    infarcts = [c for c in SYNTHETIC_CLASSES if c in MI_REGIONS and c in chosen]
    chosen -= set(infarcts[2:])
    if not chosen:
        return ("NSR",)
    return tuple(c for c in SYNTHETIC_CLASSES if c in chosen)


def check_labels(labels: tuple[str, ...]) -> None:
    """Raise ValueError for labels outside :data:`SYNTHETIC_CLASSES` or NSR with others."""
    unknown = [c for c in labels if c not in SYNTHETIC_CLASSES]
    if unknown or not labels:
        raise ValueError(f"unknown synthetic labels {unknown or labels}; "
                         f"choose from {SYNTHETIC_CLASSES}")
    if "NSR" in labels and len(labels) > 1:
        raise ValueError(f"NSR cannot be combined with other labels: {labels}")
    if "SB" in labels and "STach" in labels:
        raise ValueError("SB and STach exclude each other")


def heart_rate(labels: tuple[str, ...], rng: np.random.Generator) -> float:
    """Mean heart rate (bpm): SB 38–57, STach 103–150, AF 60–130, otherwise 60–98."""
    if "SB" in labels:
        return float(rng.uniform(38, 57))
    if "STach" in labels:
        return float(rng.uniform(103, 150))
    if "AF" in labels:
        return float(rng.uniform(60, 130))
    return float(rng.uniform(61, 98))


def rr_intervals(rate: float, irregular: bool, total_s: float,
                 rng: np.random.Generator) -> np.ndarray:
    """RR intervals (s) covering ``total_s``: sinus arrhythmia (respiratory, ±3 %) or, for AF,
    independent log-normal intervals (coefficient of variation ≈ 0.2)."""
    mean_rr = 60.0 / rate
    n = int(np.ceil(total_s / mean_rr * 1.6)) + 2
    if irregular:
        rr = mean_rr * rng.lognormal(-0.02, 0.2, n)
        return np.clip(rr, 0.28, 2.0)
    breath = rng.uniform(3.0, 5.0)
    phase = rng.uniform(0, 2 * np.pi)
    beat_times = np.arange(n) * mean_rr
    rsa = 0.03 * np.sin(2 * np.pi * beat_times / breath + phase)
    return mean_rr * (1 + rsa + rng.normal(0, 0.008, n))


def apply_conduction(lobes: Lobes, labels: tuple[str, ...], rng_for: RngFor) -> None:
    """Bundle branch blocks, LVH and AF (no P waves): changes in the heart's own frame."""
    if "AF" in labels:
        lobes.drop(P_WAVE)
    if "LBBB" in labels:
        rng = rng_for("LBBB")
        lobes.drop(QRS)
        lobes.drop(REPOL)
        width = rng.uniform(0.018, 0.023)
        lobes.add(QRS, -0.03, width, np.array([0.70, -0.05, -0.80]) * rng.uniform(0.9, 1.3))
        lobes.add(QRS, 0.025, width, np.array([1.05, 0.05, -0.80]) * rng.uniform(0.9, 1.3))
        lobes.add(REPOL, 0.14, 0.05, np.array([-0.15, 0.0, 0.15]))
        add_t_wave(lobes, np.array([-0.40, 0.0, 0.35]) * rng.uniform(0.8, 1.2), delay=0.04)
    if "RBBB" in labels:
        rng = rng_for("RBBB")
        lobes.add(QRS, rng.uniform(0.05, 0.06), rng.uniform(0.016, 0.02),
                  np.array([-0.45, -0.05, 0.55]) * rng.uniform(0.8, 1.2))
        lobes.offset[lobes.kind == REPOL] += 0.025
        add_t_wave(lobes, np.array([0.05, 0.0, -0.20]))
    if "LVH" in labels:
        rng = rng_for("LVH")
        qrs = lobes.kind == QRS
        lobes.vector[qrs] *= rng.uniform(1.4, 2.3)
        lobes.sigma[qrs] *= 1.1
        strain = np.array([-0.9, -0.1, 0.4]) * rng.uniform(0.1, 0.7)
        add_t_wave(lobes, strain)
        lobes.add(REPOL, 0.13, 0.045, 0.3 * strain)


def apply_infarcts(lobes: Lobes, labels: tuple[str, ...], rng_for: RngFor) -> None:
    """Regional myocardial infarction, fixed to the torso: loss of forces towards the region
    (pathological Q, smaller R), mild ST elevation and T inversion in that region's leads."""
    for label, region in MI_REGIONS.items():
        if label not in labels:
            continue
        rng = rng_for(label)
        pattern = region_source(region)
        q_depth = rng.uniform(0.2, 0.8)
        lobes.add(QRS, -0.025, 0.012, -q_depth * pattern)
        lobes.add(QRS, 0.006, 0.012, -0.5 * q_depth * pattern)
        lobes.add(REPOL, 0.13, 0.05, rng.uniform(0.03, 0.15) * pattern)
        add_t_wave(lobes, -rng.uniform(0.1, 0.6) * pattern)


def fibrillation_waves(n_samples: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Atrial fibrillatory activity (SOURCE_DIM, n_samples): 4–9 Hz waves of drifting frequency
    and amplitude (≈0.05–0.1 mV in V1), along a wandering atrial axis."""
    t = np.arange(n_samples) / fs
    source = np.zeros((SOURCE_DIM, n_samples))
    for axis in (np.array([0.025, 0.07, 0.06]), np.array([0.05, 0.025, 0.05])):
        freq = rng.uniform(4.5, 8.5) + 0.8 * np.sin(2 * np.pi * t / rng.uniform(2, 6))
        phase = 2 * np.pi * np.cumsum(freq) / fs + rng.uniform(0, 2 * np.pi)
        envelope = 0.6 + 0.4 * np.sin(2 * np.pi * t / rng.uniform(1.5, 4) + rng.uniform(0, 6))
        source[:3] += axis[:, None] * (rng.uniform(0.6, 1.2) * envelope * np.sin(phase))[None]
    return source
