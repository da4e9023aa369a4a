"""Preprocessing of a 12-lead record: resampling, filtering, fixed-length windows, normalisation.

Default: 100 Hz, 0.5–40 Hz zero-phase Butterworth band-pass, no notch, 10 s windows with a 10 s
stride, records shorter than a window (but at least 5 s) zero-padded, normalisation "none"
(values stay in mV, so amplitude differences between leads and records — diagnostic for e.g.
LVH or low voltage — are kept). "lead-zscore" standardises each lead of each window,
"record-zscore" each lead of each record (over the whole record, for amplitude-free inputs).
``rescale_amplitude`` (default off) divides records whose QRS amplitude points to a wrong header
gain (:mod:`aclecg_core.data.amplitude`) by the likely factor, bringing them to a typical size.
``max_flat_leads`` (default 3) is how many constant (dead) leads a record may have and still be
kept, with a warning; records with more, or with all leads flat, are rejected (0: any flat lead).
The study's pretraining preprocessing (:data:`STUDY_PREPROCESSING`, the default of ``aclecg
pretrain`` and federated runs) takes 5 s windows, one per 10 s of record; evaluation tiles whole
records with them (:func:`whole_records`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from functools import cache
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field, PositiveFloat

# scipy.signal (0.7 s to import) is imported where it is used: a ClientApp worker whose site is
# cached never needs it.
from aclecg_core.data.cohort import DataError
from aclecg_core.data.leads import CANONICAL_LEADS
from aclecg_core.settings import Settings, from_dict, one_of

SHORT_POLICIES = ("pad", "reject")
NORMALIZATIONS = ("none", "lead-zscore", "record-zscore")
MAX_FLAT_LEADS = 3  # flat (dead) leads a record may have and be kept, with a warning


@dataclass(frozen=True)
class PreprocessConfig(Settings):
    """Preprocessing parameters; values are checked on construction (:class:`SettingsError`)."""

    WHAT = "preprocessing"
    TITLES: ClassVar[dict[str, str]] = {"max_flat_leads": "flat leads a kept record may have"}

    target_fs: Annotated[float, Field(gt=0, le=2000)] = 100.0
    bandpass_hz: tuple[float, float] | None = (0.5, 40.0)
    filter_order: Annotated[int, Field(ge=1, le=8)] = 3
    notch_hz: Annotated[float | None, Field(gt=0)] = None
    window_s: PositiveFloat = 10.0
    stride_s: Annotated[float | None, Field(gt=0)] = None
    short_policy: Annotated[str, one_of(SHORT_POLICIES)] = "pad"
    min_length_s: PositiveFloat = 5.0
    normalization: Annotated[str, one_of(NORMALIZATIONS)] = "none"
    max_flat_leads: Annotated[int, Field(ge=0, le=len(CANONICAL_LEADS))] = MAX_FLAT_LEADS
    rescale_amplitude: bool = False

    def problems(self) -> list[str]:
        nyquist = self.target_fs / 2
        out = []
        if self.bandpass_hz is not None and not 0 <= self.bandpass_hz[0] < self.bandpass_hz[1] \
                < nyquist:
            out.append(f"bandpass_hz must satisfy 0 <= low < high < {nyquist} (target_fs/2), "
                       f"got {self.bandpass_hz}")
        if self.notch_hz is not None and not self.notch_hz < nyquist:
            out.append(f"notch_hz must be in (0, {nyquist}) Hz (target_fs/2), got {self.notch_hz}")
        if self.window_s * self.target_fs < 8:
            out.append(f"window_s too short: {self.window_s}")
        if not self.min_length_s <= self.window_s:
            out.append(f"min_length_s must be in (0, window_s], got {self.min_length_s}")
        return out

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.target_fs)

    @property
    def stride_samples(self) -> int:
        return round((self.stride_s or self.window_s) * self.target_fs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (stored in ``Cohort.preprocessing``)."""
        data = asdict(self)
        if self.bandpass_hz is not None:
            data["bandpass_hz"] = list(self.bandpass_hz)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        values = dict(data)
        if values.get("bandpass_hz") is not None:
            values["bandpass_hz"] = tuple(values["bandpass_hz"])
        return from_dict(cls, values)


STUDY_PREPROCESSING = PreprocessConfig(window_s=5.0, stride_s=10.0)
"""The study's preprocessing (docs/results.md, issue 11), the default of ``aclecg pretrain`` and
of federated runs: the defaults above with 5 s windows, one per 10 s of record."""


def whole_records(cfg: PreprocessConfig) -> PreprocessConfig:
    """``cfg`` with windows tiling each record (stride = window): how a probe, fine-tuning or a
    record's embedding sees every record whole (its feature: the mean over its windows)."""
    return replace(cfg, stride_s=None)


def resample(signal: np.ndarray, fs: float, target_fs: float) -> np.ndarray:
    """Polyphase resampling of (leads, n) from ``fs`` to ``target_fs`` (fs >= target_fs)."""
    from scipy import signal as sps
    if fs < target_fs:
        raise DataError(f"sampling rate too low: {fs:g} Hz is below the target {target_fs:g} Hz")
    ratio = Fraction(target_fs / fs).limit_denominator(1000)
    if ratio == 1:
        return signal.astype(np.float32)
    out = sps.resample_poly(signal, ratio.numerator, ratio.denominator, axis=1)
    return out.astype(np.float32)


@cache
def _bandpass_sos(low: float, high: float, order: int, fs: float) -> np.ndarray:
    from scipy import signal as sps
    if low > 0:
        return sps.butter(order, (low, high), btype="bandpass", fs=fs, output="sos")
    return sps.butter(order, high, btype="lowpass", fs=fs, output="sos")


def filter_signal(signal: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Zero-phase band-pass and optional notch of (leads, n) at ``cfg.target_fs``."""
    from scipy import signal as sps
    out = signal
    # even reflection over up to 3 s lets the 0.5 Hz high-pass settle before the record begins
    pad = min(signal.shape[1] - 1, round(3 * cfg.target_fs))
    if cfg.bandpass_hz is not None:
        out = sps.sosfiltfilt(_bandpass_sos(*cfg.bandpass_hz, cfg.filter_order, cfg.target_fs),
                              out, axis=1, padtype="even", padlen=pad)
    if cfg.notch_hz is not None:
        b, a = sps.iirnotch(cfg.notch_hz, 30.0, fs=cfg.target_fs)
        out = sps.filtfilt(b, a, out, axis=1, padtype="even", padlen=pad)
    return np.ascontiguousarray(out, dtype=np.float32)


def window_starts(n: int, cfg: PreprocessConfig) -> list[int]:
    """Start samples of the windows of an n-sample record (the tail after the last is dropped).

    Raises :class:`DataError` for a record too short under ``cfg.short_policy``.
    """
    w = cfg.window_samples
    if n < w:
        if cfg.short_policy == "reject":
            raise DataError(f"record too short: {n / cfg.target_fs:.2f} s < window "
                            f"{cfg.window_s:g} s (short_policy 'reject')")
        if n < round(cfg.min_length_s * cfg.target_fs):
            raise DataError(f"record too short: {n / cfg.target_fs:.2f} s < minimum "
                            f"{cfg.min_length_s:g} s")
        return [0]
    return list(range(0, n - w + 1, cfg.stride_samples))


def cut_windows(signal: np.ndarray, starts: list[int], cfg: PreprocessConfig) -> np.ndarray:
    """(n_windows, leads, window_samples) windows, zero-padded at the end where short."""
    w = cfg.window_samples
    out = np.zeros((len(starts), signal.shape[0], w), dtype=np.float32)
    for k, start in enumerate(starts):
        part = signal[:, start:start + w]
        out[k, :, : part.shape[1]] = part
    return out


def _standardize(x: np.ndarray, axis: int) -> np.ndarray:
    mean = x.mean(axis=axis, keepdims=True)
    std = x.std(axis=axis, keepdims=True)
    return ((x - mean) / np.maximum(std, 1e-6)).astype(np.float32)


def normalize_record(signal: np.ndarray, mode: str) -> np.ndarray:
    """Standardise each lead of a (leads, n) record for ``mode`` "record-zscore"."""
    return _standardize(signal, axis=1) if mode == "record-zscore" else signal


def normalize(windows: np.ndarray, mode: str) -> np.ndarray:
    """Standardise each lead of (n, leads, samples) windows for ``mode`` "lead-zscore"."""
    return _standardize(windows, axis=2) if mode == "lead-zscore" else windows
