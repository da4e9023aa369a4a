"""Numbers, intervals, durations and timestamps as the report prints them (``–``: missing)."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from aclecg_core.report.runlog import Interval


def fmt_score(x: float | None) -> str:
    """AUROC/AUPRC with 3 decimals, ``–`` when missing."""
    return "–" if x is None or math.isnan(x) else f"{x:.3f}"


def fmt_ci(ci: Interval | None) -> str:
    return "–" if ci is None else f"{ci[0]:.3f}–{ci[1]:.3f}"


def fmt_score_ci(x: float | None, ci: Interval | None) -> str:
    return fmt_score(x) if ci is None else f"{fmt_score(x)} [{fmt_ci(ci)}]"


def fmt_seconds(s: float | None) -> str:
    if s is None or math.isnan(s):
        return "–"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def fmt_int(n: int | None) -> str:
    return "–" if n is None else f"{n:,}".replace(",", " ")


def fmt_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value)


def parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def fmt_time(text: str | None) -> str:
    """An ISO timestamp as ``2025-01-01 12:05:30 UTC`` (other offsets kept); raw if unparsable."""
    t = parse_time(text)
    if t is None:
        return text or "–"
    offset = t.utcoffset()
    zone = "" if offset is None else " UTC" if not offset else t.strftime(" UTC%z")
    return t.strftime("%Y-%m-%d %H:%M:%S") + zone


def fmt_signed_interval(ci: Interval | None) -> str:
    return "–" if ci is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def fmt_diff_ci(x: float | None, ci: Interval | None) -> str:
    """A signed difference with its interval: ``+0.032 [+0.011, +0.054]``."""
    if x is None or math.isnan(x):
        return "–"
    return f"{x:+.3f}" if ci is None else f"{x:+.3f} {fmt_signed_interval(ci)}"


def comparison_words(ci: Interval) -> str:
    """How a 95 % interval of A − B reads: A ``beats`` B (above 0), A ``is worse than`` B
    (below 0), or A ``does not clearly beat`` B (0 inside)."""
    if ci[0] > 0:
        return "beats"
    if ci[1] < 0:
        return "is worse than"
    return "does not clearly beat"
