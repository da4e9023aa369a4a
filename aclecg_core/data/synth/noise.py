"""Recording noise, added per electrode so that lead relations stay exact."""

from __future__ import annotations

import numpy as np

N_ELECTRODES = 9


def electrode_noise(n_samples: int, fs: float, baseline_mv: float, powerline_hz: float,
                    powerline_mv: float, emg_mv: float, rng: np.random.Generator) -> np.ndarray:
    """(9, n_samples) noise in mV: baseline wander (respiration and slow drift), powerline
    interference with its third harmonic (only where the sampling rate can carry it; below
    that the recorder's anti-aliasing filter removed it) and bursty muscle (EMG) noise."""
    t = np.arange(n_samples) / fs
    shape = (N_ELECTRODES, 1)
    noise = np.zeros((N_ELECTRODES, n_samples))
    breath = rng.uniform(0.15, 0.35)
    drift, sway = rng.uniform(0.03, 0.1), rng.uniform(0.4, 0.8)
    for freq, weight in ((breath, 1.0), (drift, 0.7), (sway, 0.3)):
        amp = baseline_mv * weight * rng.uniform(0.2, 1.0, shape)
        noise += amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi, shape))
    if fs > 2.5 * powerline_hz:
        amp = powerline_mv * rng.uniform(0.2, 1.0, shape)
        phase = rng.uniform(0, 2 * np.pi, shape)
        noise += amp * np.sin(2 * np.pi * powerline_hz * t + phase)
        if fs > 2.5 * 3 * powerline_hz:
            noise += 0.2 * amp * np.sin(2 * np.pi * 3 * powerline_hz * t + 3 * phase)
    bursts = 0.4 + np.clip(np.sin(2 * np.pi * t / rng.uniform(2, 6) + rng.uniform(0, 6)), 0, None)
    noise += emg_mv * rng.uniform(0.3, 1.0, shape) * bursts * rng.standard_normal(noise.shape)
    return noise
