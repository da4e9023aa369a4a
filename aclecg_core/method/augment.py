"""ECG augmentations: pure functions of ``(x: (batch, leads, samples), fs, generator)``.

Each augmentation first samples its random parameters from the explicit ``generator`` and then
applies a deterministic kernel (also public, for testing and reuse). Nothing reads the global
RNG and the input is never modified. Parameters are drawn on the generator's device (usually
the CPU, so CPU and CUDA runs draw identical parameters) and moved to ``x.device``; the kernels
are batched tensor operations on ``x.device``. Widths and shifts are given in seconds.

Order matters for the physiology-aware views: cardiac-cycle masking needs the R-peak positions
of the original window, so :class:`ViewPipeline` masks beats *before* cropping and shifting
(which move samples) and never transforms the peaks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


def _check(x: Tensor) -> None:
    if x.ndim != 3:
        raise ValueError(f"expected (batch, leads, samples), got shape {tuple(x.shape)}")


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator,
             device: torch.device) -> Tensor:
    u = torch.rand(shape, generator=generator, device=generator.device)
    return (low + (high - low) * u).to(device)


# --- random scale cropping -------------------------------------------------------------------

def crop_resize(x: Tensor, start: Tensor, length: Tensor) -> Tensor:
    """Kernel: crop ``x[b, :, start[b] : start[b] + length[b]]`` and resize it to ``samples``.

    ``start``/``length`` are float tensors (batch,) in samples; linear interpolation maps output
    sample ``t`` to source position ``start + t * (length - 1) / (samples - 1)``.
    """
    _check(x)
    b, leads, t = x.shape
    steps = torch.arange(t, device=x.device, dtype=torch.float32) / max(t - 1, 1)
    pos = start.to(x.device, torch.float32)[:, None] + steps[None] * (
        length.to(x.device, torch.float32)[:, None] - 1
    )
    pos = pos.clamp(0, t - 1)
    left = pos.floor().long().clamp(max=t - 1)
    right = (left + 1).clamp(max=t - 1)
    frac = (pos - left).to(x.dtype)[:, None, :]
    gather_l = x.gather(2, left[:, None, :].expand(b, leads, t))
    gather_r = x.gather(2, right[:, None, :].expand(b, leads, t))
    return gather_l + frac * (gather_r - gather_l)


def random_scale_crop(x: Tensor, fs: float, generator: torch.Generator,
                      min_scale: float = 0.5, max_scale: float = 1.0) -> Tensor:
    """Crop a contiguous ``U(min_scale, max_scale)`` fraction of each window, resize it back."""
    _check(x)
    if not 0 < min_scale <= max_scale <= 1:
        raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got {min_scale}, {max_scale}")
    t = x.shape[2]
    length = (_uniform((x.shape[0],), min_scale, max_scale, generator, x.device) * t).round()
    length = length.clamp(2, t)
    start = (_uniform((x.shape[0],), 0, 1, generator, x.device) * (t - length + 1)).floor()
    return crop_resize(x, start, length)


# --- cardiac-cycle masking -------------------------------------------------------------------

def beat_boundaries(rpeaks: Tensor, samples: int) -> tuple[Tensor, Tensor]:
    """(starts, ends) (batch, max_beats) of each beat: ``[start, end)`` in samples.

    Beat ``j`` runs from the midpoint (floor) between R-peaks ``j-1`` and ``j`` to the midpoint
    between ``j`` and ``j+1``; the first beat starts at 0 and the last ends at ``samples``.
    Peaks must be increasing with the ``-1`` padding at the end; padded beats get
    ``start = end = samples``.
    """
    if rpeaks.ndim != 2:
        raise ValueError(f"rpeaks must be (batch, max_beats), got {tuple(rpeaks.shape)}")
    peaks = rpeaks.long()
    valid = peaks >= 0
    if bool((valid[:, 1:] & ~valid[:, :-1]).any()):
        raise ValueError("rpeaks padding (-1) must come after all valid peaks")
    if bool((valid[:, 1:] & (peaks[:, 1:] <= peaks[:, :-1])).any()):
        raise ValueError("rpeaks must be strictly increasing")
    if bool((peaks >= samples).any()):
        raise ValueError(f"rpeaks must be < samples ({samples})")
    mid = torch.div(peaks[:, :-1] + peaks[:, 1:], 2, rounding_mode="floor")
    nxt_valid = valid[:, 1:]
    ends = torch.full_like(peaks, samples)
    ends[:, :-1] = torch.where(nxt_valid, mid, ends[:, :-1])
    starts = torch.zeros_like(peaks)
    starts[:, 1:] = torch.where(nxt_valid, mid, starts[:, 1:])
    starts = torch.where(valid, starts, torch.full_like(starts, samples))
    ends = torch.where(valid, ends, torch.full_like(ends, samples))
    return starts, ends


def mask_beats(x: Tensor, rpeaks: Tensor, beat_mask: Tensor) -> Tensor:
    """Kernel: zero, in every lead, the samples of the beats where ``beat_mask`` is true.

    ``beat_mask``: bool (batch, max_beats); beats are :func:`beat_boundaries`.
    """
    _check(x)
    b, _, t = x.shape
    starts, ends = beat_boundaries(rpeaks.to(x.device), t)
    positions = torch.arange(t, device=x.device).expand(b, t).contiguous()
    beat = torch.searchsorted(starts.contiguous(), positions, right=True) - 1
    beat = beat.clamp(min=0)
    inside = positions < ends.gather(1, beat)
    masked = beat_mask.to(x.device).gather(1, beat) & inside & (starts.gather(1, beat) < t)
    return x.masked_fill(masked[:, None, :], 0.0)


def cardiac_cycle_mask(x: Tensor, rpeaks: Tensor, fs: float, generator: torch.Generator,
                       fraction: float = 0.2) -> Tensor:
    """Zero ``round(fraction * n_beats)`` whole beats (at least one if any) in all leads.

    ``rpeaks``: (batch, max_beats) R-peak sample indices, ``-1`` padded. The beats are chosen
    uniformly without replacement per window; windows without peaks are left unchanged.
    """
    _check(x)
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    valid = rpeaks >= 0
    n_beats = valid.sum(dim=1).to(generator.device)
    keys = torch.rand(rpeaks.shape, generator=generator, device=generator.device)
    keys = keys.masked_fill(~valid.to(generator.device), 2.0)
    rank = keys.argsort(dim=1).argsort(dim=1)
    n_mask = (n_beats * fraction).round().clamp(min=1 if fraction > 0 else 0)
    n_mask = torch.minimum(n_mask, n_beats)
    beat_mask = rank < n_mask[:, None]
    return mask_beats(x, rpeaks, beat_mask)


# --- temporal shifting -----------------------------------------------------------------------

def shift(x: Tensor, offsets: Tensor, circular: bool = True) -> Tensor:
    """Kernel: delay window ``b`` by ``offsets[b]`` samples (all leads alike).

    ``out[..., t] = x[..., t - offset]``, wrapped around when ``circular`` else zero-filled.
    """
    _check(x)
    b, leads, t = x.shape
    source = torch.arange(t, device=x.device)[None] - offsets.to(x.device).long()[:, None]
    inside = (source >= 0) & (source < t)
    out = x.gather(2, (source % t)[:, None, :].expand(b, leads, t))
    return out if circular else out * inside[:, None, :].to(x.dtype)


def temporal_shift(x: Tensor, fs: float, generator: torch.Generator, max_shift_s: float = 0.5,
                   circular: bool = True) -> Tensor:
    """Shift each window by a uniform integer offset in ``[-max_shift_s, max_shift_s]``."""
    _check(x)
    limit = round(max_shift_s * fs)
    if limit < 0:
        raise ValueError(f"max_shift_s must be >= 0, got {max_shift_s}")
    offsets = torch.randint(-limit, limit + 1, (x.shape[0],), generator=generator,
                            device=generator.device)
    return shift(x, offsets, circular)


# --- baseline (SimCLR-for-ECG) augmentations -------------------------------------------------

def gaussian_noise(x: Tensor, fs: float, generator: torch.Generator, std: float = 0.05) -> Tensor:
    """Add i.i.d. Gaussian noise of standard deviation ``std`` (mV)."""
    _check(x)
    noise = torch.randn(x.shape, generator=generator, device=generator.device)
    return x + std * noise.to(x.device, x.dtype)


def amplitude_scale(x: Tensor, fs: float, generator: torch.Generator, low: float = 0.5,
                    high: float = 1.5) -> Tensor:
    """Multiply each window (all leads alike) by a factor drawn from ``U(low, high)``."""
    _check(x)
    factor = _uniform((x.shape[0],), low, high, generator, x.device)
    return x * factor.to(x.dtype)[:, None, None]


def zero_segment(x: Tensor, start: Tensor, width: Tensor) -> Tensor:
    """Kernel: zero samples ``[start[b], start[b] + width[b])`` of window ``b`` in all leads."""
    _check(x)
    t = torch.arange(x.shape[2], device=x.device)[None]
    start = start.to(x.device).long()[:, None]
    inside = (t >= start) & (t < start + width.to(x.device).long()[:, None])
    return x.masked_fill(inside[:, None, :], 0.0)


def time_out(x: Tensor, fs: float, generator: torch.Generator, max_width_s: float = 1.0) -> Tensor:
    """Zero a random segment of width ``U(0, max_width_s)`` at a random position."""
    _check(x)
    t = x.shape[2]
    width = (_uniform((x.shape[0],), 0, max_width_s * fs, generator, x.device)).round()
    width = width.clamp(0, t)
    start = (_uniform((x.shape[0],), 0, 1, generator, x.device) * (t - width + 1)).floor()
    return zero_segment(x, start, width)


def baseline_wander(x: Tensor, fs: float, generator: torch.Generator,
                    max_amplitude: float = 0.1, freq_range: tuple[float, float] = (0.05, 0.5),
                    ) -> Tensor:
    """Add a slow sinusoid per window and lead: amplitude ``U(0, max_amplitude)`` mV,
    frequency ``U(freq_range)`` Hz (shared by the leads of a window), random phase."""
    _check(x)
    b, leads, t = x.shape
    amplitude = _uniform((b, leads, 1), 0, max_amplitude, generator, x.device)
    freq = _uniform((b, 1, 1), freq_range[0], freq_range[1], generator, x.device)
    phase = _uniform((b, leads, 1), 0, 2 * math.pi, generator, x.device)
    seconds = torch.arange(t, device=x.device, dtype=torch.float32) / fs
    wave = amplitude * torch.sin(2 * math.pi * freq * seconds + phase)
    return x + wave.to(x.dtype)


# --- views -----------------------------------------------------------------------------------

VIEW_KINDS = ("acl", "simclr")


class Views(Protocol):
    """Two views of a batch ``x`` (batch, leads, samples) for contrastive pretraining."""

    def __call__(self, x: Tensor, rpeaks: Tensor, fs: float,
                 generator: torch.Generator) -> tuple[Tensor, Tensor]: ...


@dataclass(frozen=True)
class ViewPipeline:
    """Two random views of a batch for contrastive pretraining.

    ``method="acl"``: cardiac-cycle masking, then random scale cropping, then temporal
    shifting (masking first: it needs the original R-peak positions). ``method="simclr"``:
    Gaussian noise, amplitude scaling, baseline wander and time-out.
    """

    method: str = "acl"
    mask_fraction: float = 0.2
    crop_min_scale: float = 0.5
    max_shift_s: float = 0.5
    noise_std: float = 0.05
    scale_range: tuple[float, float] = (0.5, 1.5)
    wander_amplitude: float = 0.1
    timeout_max_s: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in VIEW_KINDS:
            raise ValueError(f"view method must be 'acl' or 'simclr', got {self.method!r}")

    def view(self, x: Tensor, rpeaks: Tensor, fs: float, generator: torch.Generator) -> Tensor:
        """One random view of ``x`` (batch, leads, samples)."""
        if self.method == "acl":
            out = cardiac_cycle_mask(x, rpeaks, fs, generator, self.mask_fraction)
            out = random_scale_crop(out, fs, generator, self.crop_min_scale, 1.0)
            return temporal_shift(out, fs, generator, self.max_shift_s)
        out = gaussian_noise(x, fs, generator, self.noise_std)
        out = amplitude_scale(out, fs, generator, *self.scale_range)
        out = baseline_wander(out, fs, generator, self.wander_amplitude)
        return time_out(out, fs, generator, self.timeout_max_s)

    def __call__(self, x: Tensor, rpeaks: Tensor, fs: float,
                 generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.view(x, rpeaks, fs, generator), self.view(x, rpeaks, fs, generator)


@dataclass(frozen=True)
class AdjacentSegments:
    """CLOCS's views: the first and the second half of each window (no augmentation, nothing
    drawn from the generator; an odd last sample is dropped)."""

    def __call__(self, x: Tensor, rpeaks: Tensor, fs: float,
                 generator: torch.Generator) -> tuple[Tensor, Tensor]:
        _check(x)
        half = x.shape[2] // 2
        return x[..., :half], x[..., half : 2 * half]


def make_views(x: Tensor, rpeaks: Tensor, fs: float, generator: torch.Generator,
               method: str = "acl") -> tuple[Tensor, Tensor]:
    """Two views of ``x`` with the default :class:`ViewPipeline` of ``method``."""
    return ViewPipeline(method=method)(x, rpeaks, fs, generator)
