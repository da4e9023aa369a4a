"""Amplitude plausibility of a record: a robust QRS amplitude against the range of surface ECGs.

A wrong header gain scales a whole record by a constant factor, which no per-sample check
notices. The record's QRS amplitude (:func:`qrs_amplitude`) is compared with the range of real
12-lead ECGs. On the 2,531 readable records of ``../shared/data`` it is 0.47-2.8 mV for 98 % of
them (median 1.0 mV; PTB-XL and CinC about 0.95, CODE-15% 1.7) and 0.27-4.7 mV at the extremes:

* inside [:data:`WARN_LOW_MV`, :data:`WARN_HIGH_MV`]: plausible;
* outside it but inside [:data:`REJECT_LOW_MV`, :data:`REJECT_HIGH_MV`]: kept with a warning
  that names the header gain and the likely factor (and, with ``rescale_amplitude``, divided by
  that factor);
* past those hard limits: rejected, with the same message.

A per-record check cannot see a wrong gain on a record whose true amplitude is far from typical
(a high-voltage ECG under a gain 5x too large looks plausible); its folder can:
:func:`shared_gain_warnings` gives the records that share a header gain with a majority of
mis-scaled records of their folder the same warning.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

# scipy.signal (0.7 s to import) is imported where it is used: a ClientApp worker whose site is
# cached never needs it.

TYPICAL_QRS_MV = 1.0
WARN_LOW_MV, WARN_HIGH_MV = 0.25, 4.0
REJECT_LOW_MV, REJECT_HIGH_MV = 0.05, 15.0
QRS_BAND_HZ = (5.0, 40.0)
WINDOW_S = 2.0
MIN_AGREEING = 2  # mis-scaled records of a folder that make its shared gain suspect
AMPLITUDE_WARNING = "amplitude:"  # the warning of a record whose gain looks wrong
_FACTORS = (2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)


@dataclass(frozen=True)
class AmplitudeVerdict:
    """``qrs_mv``: the record's QRS amplitude; ``factor``: how many times too large (> 1) or
    too small (< 1) the samples likely are (1 when plausible); ``message``: the warning or
    rejection text, empty when plausible; ``reject``: past the hard limits."""

    qrs_mv: float
    factor: float = 1.0
    message: str = ""
    reject: bool = False


def qrs_amplitude(signal: np.ndarray, fs: float, leads: np.ndarray | None = None) -> float | None:
    """Median over ``leads`` (default all) of each lead's typical QRS peak-to-peak, in mV.

    ``signal`` is (leads, n) in mV. A lead's typical QRS peak-to-peak is the median over 2 s
    windows of the peak-to-peak of its QRS band (5-40 Hz: no baseline wander, little of the
    P and T waves); each window holds at least one beat above 30 bpm. Needs no R-peak detector,
    so a lead full of artefacts cannot derail it. None for no leads or too low a rate.
    """
    from scipy import signal as sps
    rows = signal if leads is None else signal[leads]
    high = min(QRS_BAND_HZ[1], 0.45 * fs)
    if len(rows) == 0 or high <= QRS_BAND_HZ[0]:
        return None
    band = sps.sosfiltfilt(_band_sos(fs, high), rows, axis=1)
    width = min(band.shape[1], round(WINDOW_S * fs))
    count = band.shape[1] // width
    windows = band[:, : count * width].reshape(len(rows), count, width)
    return float(np.median(np.median(np.ptp(windows, axis=2), axis=1)))


@cache
def _band_sos(fs: float, high: float) -> np.ndarray:
    from scipy import signal as sps
    return sps.butter(2, (QRS_BAND_HZ[0], high), btype="bandpass", fs=fs, output="sos")


def likely_factor(qrs_mv: float) -> float:
    """The gain error (1-2-5 series, > 1: samples too large) nearest to ``qrs_mv`` / typical."""
    ratio = qrs_mv / TYPICAL_QRS_MV
    size = ratio if ratio >= 1 else 1 / ratio
    best = min(_FACTORS, key=lambda f: abs(math.log(size / f)))
    return best if ratio >= 1 else 1 / best


def judge_amplitude(qrs_mv: float, gain: str) -> AmplitudeVerdict:
    """The verdict on a record with QRS amplitude ``qrs_mv`` and header gain text ``gain``."""
    if WARN_LOW_MV <= qrs_mv <= WARN_HIGH_MV:
        return AmplitudeVerdict(qrs_mv)
    factor = likely_factor(qrs_mv)
    guess = _guess(gain, factor)
    reject = not REJECT_LOW_MV <= qrs_mv <= REJECT_HIGH_MV
    if reject and factor > 1:  # over 15 mV in most leads: as often noise as a wrong gain
        guess += ", or the leads carry noise"
    low, high = (REJECT_LOW_MV, REJECT_HIGH_MV) if reject else (WARN_LOW_MV, WARN_HIGH_MV)
    return AmplitudeVerdict(qrs_mv, factor, f"median QRS {_mv(qrs_mv)} mV: {guess} "
                                            f"(plausible {low:g}-{high:g} mV)", reject)


def _mv(value: float) -> str:
    return f"{value:.2g}" if value < 0.1 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _guess(gain: str, factor: float) -> str:
    size = f"{factor:g}x too small" if factor > 1 else f"{1 / factor:g}x too large"
    return f"header gain {gain} may be {size}"


@dataclass(frozen=True)
class GainEvidence:
    """One usable record's header ``gain`` (as written, ``4880/mV``) and its likely gain error
    ``factor`` (1: its amplitude is plausible)."""

    path: str
    gain: str
    factor: float


def shared_gain_warnings(records: list[GainEvidence]) -> dict[str, str]:
    """Warnings (by path) for the plausible-looking records of a folder whose header gain is
    shared by mis-scaled records of that folder.

    Records are grouped by folder and header gain. When at least :data:`MIN_AGREEING` records
    of a group, and more than half of it, agree on one gain error, the group's other
    plausible-looking records get the same warning, naming the gain and the count.
    """
    groups: defaultdict[tuple[Path, str], list[GainEvidence]] = defaultdict(list)
    for record in records:
        groups[Path(record.path).parent, record.gain].append(record)
    found: dict[str, str] = {}
    for (folder, gain), group in groups.items():
        flagged = Counter(r.factor for r in group if r.factor != 1).most_common(1)
        if not flagged:
            continue
        factor, agree = flagged[0]
        if agree < MIN_AGREEING or 2 * agree <= len(group):
            continue
        for record in group:
            if record.factor == 1:
                found[record.path] = (
                    f"{AMPLITUDE_WARNING} {_guess(gain, factor)}: so say {agree} of the "
                    f"{len(group)} records with this gain in {folder} (this record looks "
                    f"plausible, as a {'low' if factor > 1 else 'high'}-voltage ECG would)")
    return found
