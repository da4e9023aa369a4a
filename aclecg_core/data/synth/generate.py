"""One synthetic 12-lead record: patient, rhythm, beat model, noise and lead field together."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aclecg_core.data.synth.conditions import (
    SYNTHETIC_CLASSES,
    apply_conduction,
    apply_infarcts,
    check_labels,
    fibrillation_waves,
    heart_rate,
    rr_intervals,
    sample_labels,
)
from aclecg_core.data.synth.leadfield import project
from aclecg_core.data.synth.noise import electrode_noise
from aclecg_core.data.synth.sites import SiteSpec
from aclecg_core.data.synth.waves import P_WAVE, QRS, REPOL, normal_beat, render

_LABELS, _PATIENT, _RHYTHM, _NOISE, _CONDITION = range(5)


@dataclass(frozen=True)
class SyntheticRecord:
    """A generated record: ``signal`` float32 (12, samples) in mV, canonical lead order."""

    name: str
    site: str
    patient_id: str
    labels: tuple[str, ...]
    fs: int
    signal: np.ndarray
    rpeaks: np.ndarray  # int64 sample indices of the QRS centres
    age: int
    sex: str
    lead_reversal: bool

    @property
    def duration_s(self) -> float:
        return self.signal.shape[1] / self.fs


def _rng(seed: int, site: int, number: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(site, 1, number, *stream)))


def _rotation(frontal: float, horizontal: float, sagittal: float) -> np.ndarray:
    """Rotation of the heart about the sagittal (z), vertical (y) and transverse (x) axes."""
    cz, sz = np.cos(frontal), np.sin(frontal)
    cy, sy = np.cos(horizontal), np.sin(horizontal)
    cx, sx = np.cos(sagittal), np.sin(sagittal)
    about_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    about_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return about_z @ about_y @ about_x


def generate_record(spec: SiteSpec, number: int, seed: int = 0,
                    labels: tuple[str, ...] | None = None, noise: bool = True) -> SyntheticRecord:
    """Generate record ``number`` (1-based) of site ``spec`` deterministically from ``seed``.

    ``labels`` overrides the drawn diagnosis while keeping the same patient, rhythm and noise
    (e.g. the same patient with and without an infarct); ``noise=False`` gives the clean
    signal without noise or lead reversal.
    """
    if number < 1:
        raise ValueError(f"records are numbered from 1, got {number}")
    drawn = sample_labels(spec.prevalence, _rng(seed, spec.index, number, _LABELS))
    if labels is None:
        labels = drawn
    check_labels(labels)

    patient = _rng(seed, spec.index, number, _PATIENT)
    sick = any(c in labels for c in ("MI-INF", "MI-SEP", "MI-ANT", "MI-LAT", "AF", "LBBB", "LVH"))
    age = int(np.clip(patient.normal(spec.age_mean + (8 if sick else 0), 13), 18, 95))
    sex = "Male" if patient.random() < spec.male_fraction + (0.1 if sick else 0) else "Female"
    pr = patient.uniform(0.13, 0.19)
    rotation = _rotation(*np.deg2rad(patient.uniform([-25, -20, -10], [25, 20, 10])))
    amplitude = patient.lognormal(0, [0.15, 0.18, 0.18])  # P, QRS, T
    duration = int(patient.integers(spec.duration_s[0], spec.duration_s[1] + 1))
    reversed_arms = bool(patient.random() < spec.lead_reversal_rate) and noise

    def rng_for(label: str) -> np.random.Generator:
        return _rng(seed, spec.index, number, _CONDITION, SYNTHETIC_CLASSES.index(label))

    lobes = normal_beat(pr)
    apply_conduction(lobes, labels, rng_for)
    for kind in (P_WAVE, QRS, REPOL):
        lobes.vector[lobes.kind == kind] *= amplitude[kind]
    lobes.vector[:, :3] = lobes.vector[:, :3] @ rotation.T
    apply_infarcts(lobes, labels, rng_for)

    rhythm = _rng(seed, spec.index, number, _RHYTHM)
    fibrillation = "AF" in labels
    rr = rr_intervals(heart_rate(labels, rhythm), fibrillation, duration + 2.0, rhythm)
    r_times = rhythm.uniform(0.0, rr[0]) - rr[0] + np.concatenate([[0.0], np.cumsum(rr[1:])])
    keep = r_times < duration + 1.0
    r_times, rr = r_times[keep], rr[keep]
    breath = rhythm.uniform(3.0, 5.0)
    scale = 1 + 0.05 * np.sin(2 * np.pi * r_times / breath + rhythm.uniform(0, 2 * np.pi))

    n_samples = duration * spec.fs
    source = render(lobes, r_times, rr, n_samples, spec.fs, scale)
    if fibrillation:
        source += amplitude[P_WAVE] * fibrillation_waves(n_samples, spec.fs, rhythm)
    noise_mv = None
    if noise:
        noise_mv = electrode_noise(n_samples, spec.fs, spec.baseline_mv, spec.powerline_hz,
                                   spec.powerline_mv, spec.emg_mv,
                                   _rng(seed, spec.index, number, _NOISE))
    signal = project(source, noise_mv, swap_arms=reversed_arms).astype(np.float32)
    rpeaks = np.rint(r_times * spec.fs).astype(np.int64)
    return SyntheticRecord(
        name=f"S{spec.index}_{number:05d}",
        site=spec.name,
        patient_id=f"{spec.name}-p{number:05d}",
        labels=labels,
        fs=spec.fs,
        signal=signal,
        rpeaks=rpeaks[(rpeaks >= 0) & (rpeaks < n_samples)],
        age=age,
        sex=sex,
        lead_reversal=reversed_arms,
    )


def generate_site(spec: SiteSpec, records: int, seed: int = 0,
                  noise: bool = True) -> list[SyntheticRecord]:
    """Records 1..``records`` of one site, in memory."""
    return [generate_record(spec, number, seed, noise=noise) for number in range(1, records + 1)]
