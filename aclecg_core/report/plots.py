"""PNG figures of a federated run's report (matplotlib, Agg canvas only, no pyplot state).

Each function takes plain sequences, writes one PNG and returns its path. Missing values are
``nan``; confidence intervals are ``(low, high)`` pairs or ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

Interval = tuple[float, float]

WIDTH_IN = 8.0
DPI = 150
BLUE = "#1f5fa8"
ORANGE = "#d9822b"
GREY = "#8a8f98"
RED = "#b8322a"


def _figure(height_in: float, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(True, color="#e3e5e8", linewidth=0.8)
        ax.set_axisbelow(True)
    return fig, list(axes)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", facecolor="white")
    return path


def _ci_arrays(cis: Sequence[Interval | None]) -> tuple[np.ndarray, np.ndarray]:
    low = np.array([ci[0] if ci else np.nan for ci in cis], dtype=float)
    high = np.array([ci[1] if ci else np.nan for ci in cis], dtype=float)
    return low, high


def plot_probe_curves(
    rounds: Sequence[int],
    series: Mapping[str, tuple[Sequence[float], Sequence[Interval | None]]],
    best_round: int | None,
    path: Path,
) -> Path:
    """One panel per metric (``{"Macro AUROC": (values, cis)}``): value vs round, CI band."""
    fig, axes = _figure(3.4, ncols=len(series))
    x = np.asarray(rounds, dtype=float)
    for ax, (name, (values, cis)) in zip(axes, series.items(), strict=True):
        y = np.asarray(values, dtype=float)
        low, high = _ci_arrays(cis)
        ax.fill_between(x, low, high, color=BLUE, alpha=0.18, linewidth=0, label="95 % CI")
        ax.plot(x, y, color=BLUE, marker="o", markersize=4, linewidth=1.8, label=name)
        if best_round is not None and best_round in rounds:
            i = list(rounds).index(best_round)
            ax.plot([x[i]], [y[i]], marker="*", markersize=13, color=ORANGE, linestyle="none",
                    label=f"best (round {best_round})")
        ax.set_title(name, fontsize=11, loc="left")
        ax.set_xlabel("round")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8, frameon=False, loc="lower right")
    axes[0].set_ylabel("server probe (test split)")
    return _save(fig, path)


def plot_site_loss(losses: Mapping[str, tuple[Sequence[int], Sequence[float]]], path: Path) -> Path:
    """Local training loss of each site vs round (``{site: (rounds, losses)}``)."""
    fig, (ax,) = _figure(3.4)
    for site, (rounds, values) in sorted(losses.items()):
        ax.plot(rounds, values, marker="o", markersize=3.5, linewidth=1.6, label=site)
    ax.set_xlabel("round")
    ax.set_ylabel("training loss")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8, frameon=False, ncols=min(4, max(1, len(losses))), loc="upper right")
    return _save(fig, path)


def plot_per_class(
    labels: Sequence[str],
    values: Sequence[float],
    cis: Sequence[Interval | None],
    metric: str,
    path: Path,
) -> Path:
    """Horizontal bars of a per-class score, sorted, with CI whiskers and the 0.5 chance line."""
    order = np.argsort(np.nan_to_num(np.asarray(values, dtype=float), nan=-1.0))
    y = np.arange(len(order))
    vals = np.asarray(values, dtype=float)[order]
    low, high = _ci_arrays([cis[i] for i in order])
    fig, (ax,) = _figure(max(2.2, 0.32 * len(order) + 1.0))
    ax.barh(y, vals, color=BLUE, height=0.65)
    for yi, v, hi in zip(y, vals, high, strict=True):
        if not np.isnan(v):
            ax.text((v if np.isnan(hi) else hi) + 0.01, yi, f"{v:.3f}", va="center", fontsize=8)
    has_ci = ~np.isnan(low) & ~np.isnan(high)
    if has_ci.any():
        err = np.vstack([vals - low, high - vals])[:, has_ci]
        ax.errorbar(vals[has_ci], y[has_ci], xerr=err, fmt="none", ecolor="#222", elinewidth=1,
                    capsize=2.5, label="95 % CI")
        ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.axvline(0.5, color=GREY, linestyle="--", linewidth=1)
    ax.set_yticks(y, [labels[i] for i in order], fontsize=8.5)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel(metric)
    ax.grid(False, axis="y")
    return _save(fig, path)


def plot_round_time(
    rounds: Sequence[int], seconds: Sequence[float], failed: Sequence[bool], path: Path
) -> Path:
    """Wall time of each round; rounds with client failures in red."""
    fig, (ax,) = _figure(2.8)
    colors = [RED if f else BLUE for f in failed]
    ax.bar(rounds, seconds, color=colors, width=0.7)
    ax.set_xlabel("round")
    ax.set_ylabel("wall time (s)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    if any(failed):
        ax.legend(handles=[Patch(color=BLUE, label="all clients ok"),
                           Patch(color=RED, label="with client failures")],
                  fontsize=8, frameon=False)
    ax.grid(False, axis="x")
    return _save(fig, path)


def plot_region_heatmap(regions: Sequence[str], classes: Sequence[str],
                        values: Sequence[Sequence[float]], path: Path) -> Path:
    """Region × class heat map of a score (``values[r][c]``, nan: blank), each value printed
    and each class's best region(s) framed."""
    grid = np.asarray(values, dtype=float)
    fig, (ax,) = _figure(max(2.4, 0.5 * len(regions) + 1.4))
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlBu_r", vmin=0.5, vmax=1.0,
                      aspect="auto")
    fig.colorbar(image, ax=ax, label="AUROC", fraction=0.04)
    for c in range(grid.shape[1]):
        column = grid[:, c]
        if np.isnan(column).all():
            continue
        for r in range(grid.shape[0]):
            if not np.isnan(column[r]):
                ax.text(c, r, f"{column[r]:.2f}", ha="center", va="center", fontsize=7.5)
        for best in np.flatnonzero(column == np.nanmax(column)):
            ax.add_patch(Rectangle((c - 0.5, best - 0.5), 1, 1, fill=False, edgecolor="#111",
                                   linewidth=1.8))
    ax.set_xticks(range(len(classes)), list(classes), rotation=45, ha="right", fontsize=8.5)
    ax.set_yticks(range(len(regions)), list(regions), fontsize=8.5)
    ax.grid(False)
    ax.spines[:].set_visible(False)
    return _save(fig, path)
