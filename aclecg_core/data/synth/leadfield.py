"""Torso lead field: electrode lead vectors and the projection of cardiac sources onto 12 leads.

The source has 7 components: the heart dipole (x to the patient's left, y to the feet, z
anterior) plus one non-dipolar "proximity" source per clinical region, which reaches only the
precordial electrodes over that region (an infarct close to the chest wall is seen mostly by
the electrodes above it). Lead vectors are Dower-like (inverse Dower transform, z flipped to
point forward). Every lead is built from electrode potentials, so Einthoven's and Goldberger's
laws hold exactly, also for noise, which is added per electrode.
"""

from __future__ import annotations

import numpy as np

from aclecg_core.data.regions import CLINICAL_REGIONS

ELECTRODES: tuple[str, ...] = ("RA", "LA", "LL", "V1", "V2", "V3", "V4", "V5", "V6")
REGIONS: tuple[str, ...] = CLINICAL_REGIONS.names
SOURCE_DIM = 3 + len(REGIONS)

# Lead vectors (mV of lead per unit dipole) of I, II and the precordial leads.
_LEAD_I = np.array([0.63, -0.24, -0.06])
_LEAD_II = np.array([0.24, 1.07, 0.13])
_PRECORDIAL = np.array([
    [-0.52, 0.16, 0.92],
    [0.04, 0.16, 1.39],
    [0.88, 0.10, 1.28],
    [1.21, 0.13, 0.60],
    [1.13, 0.13, 0.09],
    [0.83, 0.08, -0.23],
])


def electrode_vectors() -> np.ndarray:
    """(9, 3) lead vectors of the electrodes RA, LA, LL, V1..V6 (Wilson terminal at zero)."""
    right_arm = -(_LEAD_I + _LEAD_II) / 3
    return np.vstack([right_arm, right_arm + _LEAD_I, right_arm + _LEAD_II, _PRECORDIAL])


def lead_matrix() -> np.ndarray:
    """(12, 9) matrix turning electrode potentials into the 12 leads in canonical order."""
    m = np.zeros((12, 9))
    ra, la, ll = 0, 1, 2
    m[0, [la, ra]] = [1, -1]  # I
    m[1, [ll, ra]] = [1, -1]  # II
    m[2, [ll, la]] = [1, -1]  # III
    m[3, [ra, la, ll]] = [1, -0.5, -0.5]  # aVR
    m[4, [la, ra, ll]] = [1, -0.5, -0.5]  # aVL
    m[5, [ll, ra, la]] = [1, -0.5, -0.5]  # aVF
    for k in range(6):  # V1..V6 against Wilson's central terminal
        m[6 + k, 3 + k] = 1
        m[6 + k, [ra, la, ll]] = -1 / 3
    return m


def source_matrix() -> np.ndarray:
    """(9, SOURCE_DIM) electrode potentials per unit source: dipole columns, then one
    proximity column per clinical region (1 on its precordial electrodes, 0.35 on neighbours)."""
    local = np.zeros((9, len(CLINICAL_REGIONS)))
    for r, group in enumerate(CLINICAL_REGIONS.leads):
        chest = [i - 6 for i in group if i >= 6]
        for k in range(6):
            if k in chest:
                local[3 + k, r] = 1.0
            elif any(abs(k - c) == 1 for c in chest):
                local[3 + k, r] = 0.35
    return np.hstack([electrode_vectors(), local])


def lead_vectors() -> np.ndarray:
    """(12, 3) lead vectors of the 12 leads in canonical order."""
    return lead_matrix() @ electrode_vectors()


def project(source: np.ndarray, electrode_noise: np.ndarray | None = None,
            swap_arms: bool = False) -> np.ndarray:
    """Project a source (SOURCE_DIM, samples) onto the 12 leads (12, samples) in mV.

    ``electrode_noise`` (9, samples) is added to the electrode potentials; ``swap_arms``
    simulates an LA/RA cable reversal.
    """
    potentials = source_matrix() @ source
    if electrode_noise is not None:
        potentials = potentials + electrode_noise
    if swap_arms:
        potentials = potentials[[1, 0, 2, 3, 4, 5, 6, 7, 8]]
    return lead_matrix() @ potentials


def region_direction(region: str) -> np.ndarray:
    """Unit dipole direction whose projections best match the leads of a clinical region.

    Least-squares fit of lead projections to 1 on the region's leads and 0 on the leads of the
    other clinical regions, so a change along it shows mainly in that region.
    """
    names = CLINICAL_REGIONS.names
    if region not in names:
        raise ValueError(f"unknown region {region!r}; choose one of {names}")
    vectors = lead_vectors()
    rows = [i for group in CLINICAL_REGIONS.leads for i in group]
    own = set(CLINICAL_REGIONS.leads[names.index(region)])
    target = np.array([1.0 if i in own else 0.0 for i in rows])
    direction, *_ = np.linalg.lstsq(vectors[rows], target, rcond=None)
    return direction / np.linalg.norm(direction)


def region_source(region: str) -> np.ndarray:
    """(SOURCE_DIM,) source pattern of a regional change: dipole along
    :func:`region_direction` plus that region's proximity source."""
    source = np.zeros(SOURCE_DIM)
    source[:3] = 0.7 * region_direction(region)
    source[3 + CLINICAL_REGIONS.names.index(region)] = 0.7
    return source
