"""ECG-paper plots of synthetic records (standard 3×4 layout plus a lead II rhythm strip)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aclecg_core.data.leads import CANONICAL_LEADS
from aclecg_core.data.synth.conditions import SYNTHETIC_CLASSES
from aclecg_core.data.synth.generate import SyntheticRecord, generate_record
from aclecg_core.data.synth.sites import synthetic_site_spec

_LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
_ROW_MV = 3.0  # vertical space per row


def plot_record(record: SyntheticRecord, path: Path, title: str | None = None) -> None:
    """Save a 12-lead plot of the first 10 s of ``record`` at 25 mm/s and 10 mm/mV."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fs, seconds = record.fs, 10.0
    n = int(seconds * fs)
    signal = record.signal[:, :n]
    rows = len(_LAYOUT) + 1
    height = rows * _ROW_MV
    fig = plt.figure(figsize=(11.5, 6.4), dpi=130)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.9))
    x0, x1, y0, y1 = -0.5, seconds, -0.5 * _ROW_MV, height - 0.5 * _ROW_MV
    for x in np.arange(x0, x1 + 1e-9, 0.04):
        major = abs(round(x / 0.2) * 0.2 - x) < 1e-6
        ax.axvline(x, color="#e8a0a0" if major else "#f7dcdc", lw=0.6 if major else 0.3, zorder=0)
    for y in np.arange(y0, y1 + 1e-9, 0.1):
        major = abs(round(y / 0.5) * 0.5 - y) < 1e-6
        ax.axhline(y, color="#e8a0a0" if major else "#f7dcdc", lw=0.6 if major else 0.3, zorder=0)
    segment = n // 4
    for row, leads in enumerate(_LAYOUT):
        base = (rows - 1 - row) * _ROW_MV
        for col, lead in enumerate(leads):
            part = signal[CANONICAL_LEADS.index(lead), col * segment:(col + 1) * segment]
            t = (col * segment + np.arange(len(part))) / fs
            ax.plot(t, part - np.median(part) + base, color="k", lw=0.7)
            ax.text(col * segment / fs + 0.05, base + 0.9, lead, fontsize=9)
            if col:
                ax.plot([col * segment / fs] * 2, [base - 0.3, base + 0.3], color="k", lw=0.7)
    rhythm = signal[CANONICAL_LEADS.index("II")]
    ax.plot(np.arange(len(rhythm)) / fs, rhythm - np.median(rhythm), color="k", lw=0.7)
    ax.text(0.05, 0.9, "II", fontsize=9)
    for row in range(rows):  # 1 mV calibration pulses
        base = row * _ROW_MV
        pulse = np.array([0, 0, 1, 1, 0, 0]) + base
        ax.plot([-0.45, -0.4, -0.4, -0.2, -0.2, -0.15], pulse, color="k", lw=0.7)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect(0.4)  # 1 mV (10 mm) against 1 s (25 mm)
    ax.axis("off")
    heading = title or ", ".join(record.labels)
    rate = 60.0 * fs / np.diff(record.rpeaks).mean()
    fig.suptitle(f"{heading} — {record.name} ({record.site}, {fs} Hz), {rate:.0f} bpm; "
                 "25 mm/s, 10 mm/mV", fontsize=10, y=0.97)
    fig.savefig(path)
    plt.close(fig)


def draw_label_figures(out_dir: Path, seed: int = 0) -> list[Path]:
    """One figure per label (site 1 recorder), ``out_dir/synthetic_<label>.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = synthetic_site_spec(1, seed)
    paths = []
    for k, label in enumerate(SYNTHETIC_CLASSES):
        record = generate_record(spec, 1 + k, seed, labels=(label,))
        path = out_dir / f"synthetic_{label}.png"
        plot_record(record, path)
        paths.append(path)
    return paths
