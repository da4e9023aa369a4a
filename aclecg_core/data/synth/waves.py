"""Parametric beats: each wave (P, QRS, ST, T) is a sum of Gaussian lobes of a cardiac source.

A lobe is ``vector * exp(-(t - R - offset)^2 / (2 sigma^2))`` with ``vector`` in source
space (:data:`~aclecg_core.data.synth.leadfield.SOURCE_DIM` components, the first three the
heart dipole in mV). Offsets are relative to the beat's R time (the centre of the QRS complex).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aclecg_core.data.synth.leadfield import SOURCE_DIM

# Lobe kinds: atrial, ventricular depolarisation, repolarisation (ST and T scale with QT).
P_WAVE, QRS, REPOL = 0, 1, 2


@dataclass
class Lobes:
    """Gaussian lobes of one beat template (arrays of equal length)."""

    kind: np.ndarray  # int (n,): P_WAVE, QRS or REPOL
    offset: np.ndarray  # float (n,) seconds from the R time
    sigma: np.ndarray  # float (n,) seconds
    vector: np.ndarray  # float (n, SOURCE_DIM)

    @staticmethod
    def empty() -> Lobes:
        return Lobes(np.zeros(0, int), np.zeros(0), np.zeros(0), np.zeros((0, SOURCE_DIM)))

    def add(self, kind: int, offset: float, sigma: float, vector: np.ndarray) -> None:
        """Append one lobe; a 3-vector is a pure dipole."""
        full = np.zeros(SOURCE_DIM)
        full[: len(vector)] = vector
        self.kind = np.append(self.kind, kind)
        self.offset = np.append(self.offset, offset)
        self.sigma = np.append(self.sigma, sigma)
        self.vector = np.vstack([self.vector, full])

    def drop(self, kind: int) -> None:
        """Remove every lobe of ``kind``."""
        keep = self.kind != kind
        self.kind, self.offset = self.kind[keep], self.offset[keep]
        self.sigma, self.vector = self.sigma[keep], self.vector[keep]


def normal_beat(pr: float) -> Lobes:
    """The normal sinus beat at 60 bpm: P (right then left atrium), QRS (septal, anterior,
    left-ventricular free wall, basal), asymmetric concordant T; ``pr`` is P onset to QRS onset."""
    lobes = Lobes.empty()
    p_centre = 0.005 - pr
    lobes.add(P_WAVE, p_centre, 0.02, np.array([0.03, 0.09, 0.06]))
    lobes.add(P_WAVE, p_centre + 0.025, 0.02, np.array([0.08, 0.07, -0.04]))
    lobes.add(QRS, -0.028, 0.008, np.array([-0.10, 0.04, 0.20]))
    lobes.add(QRS, -0.012, 0.009, np.array([0.25, 0.30, 0.45]))
    lobes.add(QRS, 0.0, 0.011, np.array([0.85, 0.65, -0.50]))
    lobes.add(QRS, 0.026, 0.010, np.array([-0.20, -0.25, -0.15]))
    add_t_wave(lobes, np.array([0.32, 0.18, 0.22]))
    return lobes


def add_t_wave(lobes: Lobes, vector: np.ndarray, delay: float = 0.0) -> None:
    """Append an asymmetric T wave (slow upstroke, faster downstroke) along ``vector``."""
    lobes.add(REPOL, 0.21 + delay, 0.055, 0.45 * vector)
    lobes.add(REPOL, 0.265 + delay, 0.035, 0.75 * vector)


def render(lobes: Lobes, r_times: np.ndarray, rr: np.ndarray, n_samples: int, fs: float,
           scale: np.ndarray | None = None) -> np.ndarray:
    """Sum the lobes of every beat into a source signal (SOURCE_DIM, n_samples).

    Repolarisation offsets and widths scale with the preceding RR interval (Fridericia,
    ``(rr / 1 s) ** (1/3)``). Lobes are widened by the sampling kernel (area kept), which keeps
    narrow QRS lobes from aliasing at low sampling rates. ``scale`` (n_beats,) multiplies each
    beat (respiratory modulation).
    """
    n_beats, n_lobes = len(r_times), len(lobes.offset)
    qt_factor = np.where(lobes.kind[None, :] == REPOL, np.cbrt(rr)[:, None], 1.0)
    centre = (r_times[:, None] + lobes.offset[None, :] * qt_factor).ravel()
    sigma = (lobes.sigma[None, :] * qt_factor).ravel()
    kernel = 0.45 / fs
    wide = np.sqrt(sigma**2 + kernel**2)
    beat_scale = np.ones(n_beats) if scale is None else scale
    weight = np.repeat(beat_scale, n_lobes) * sigma / wide
    vectors = np.tile(lobes.vector, (n_beats, 1)) * weight[:, None]

    half = int(np.ceil(4 * wide.max() * fs)) if len(wide) else 0
    index = np.rint(centre * fs).astype(np.int64)[:, None] + np.arange(-half, half + 1)[None, :]
    shape = np.exp(-0.5 * ((index / fs - centre[:, None]) / wide[:, None]) ** 2)
    valid = (index >= 0) & (index < n_samples)
    flat_index, flat_shape = index[valid], shape[valid]
    rows = np.broadcast_to(np.arange(len(centre))[:, None], index.shape)[valid]
    source = np.empty((vectors.shape[1], n_samples))
    for d in range(vectors.shape[1]):
        source[d] = np.bincount(flat_index, weights=flat_shape * vectors[rows, d],
                                minlength=n_samples)
    return source
