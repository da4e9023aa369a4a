"""The per-region panel: ``RUN_DIR/regions.json`` (the server's probe of the final encoder on
each anatomical region's features alone) as a region × class heat map with a one-line reading,
and whether each class with a known region (a regional infarct) is detected best from it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aclecg_core.report import plots
from aclecg_core.report.blocks import Image, Section
from aclecg_core.report.runlog import ReportError, _Reader

REGIONS_FILE = "regions.json"
PLOT_NAME = "region-auroc.png"
FEW_POSITIVES = 5  # below this many positive test records a class's AUROC is weak evidence


@dataclass(frozen=True)
class RegionEvidence:
    """Content of ``regions.json``; ``auroc[r][c]`` is nan where class c was not evaluable."""

    round: int | None
    regions: list[str]
    region_leads: dict[str, list[str]]
    classes: list[str]
    auroc: list[list[float]]
    expected: dict[str, str]
    best: dict[str, list[str]]
    holds: dict[str, bool]
    positives: dict[str, int]
    n_test: int | None


def load_region_evidence(run_dir: Path) -> RegionEvidence | None:
    """``run_dir/regions.json``, ``None`` when absent; :class:`ReportError` if malformed."""
    path = Path(run_dir) / REGIONS_FILE
    if not path.exists():
        return None
    r = _Reader(path)
    try:
        d = r.obj(json.loads(path.read_text(encoding="utf-8")), "top level")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot be read as JSON: {exc}") from exc
    regions = [str(x) for x in r.items(d, "regions", "top level")]
    classes = [str(x) for x in r.items(d, "classes", "top level")]
    rows = r.items(d, "auroc", "top level")
    if len(rows) != len(regions) or any(not isinstance(row, list) or len(row) != len(classes)
                                        for row in rows):
        raise r.fail("auroc", f"expected {len(regions)} rows of {len(classes)} values")
    auroc = [[_score(r, v) for v in row] for row in rows]
    leads = r.obj(d.get("region_leads") or {}, "region_leads")
    best = r.obj(d.get("best") or {}, "best")
    positives = r.obj(d.get("positives") or {}, "positives")
    return RegionEvidence(
        round=r.count(d, "round", "top level"), regions=regions,
        region_leads={str(k): [str(x) for x in v] for k, v in leads.items()},
        classes=classes, auroc=auroc,
        expected={str(k): str(v) for k, v in r.obj(d.get("expected") or {}, "expected").items()},
        best={str(k): [str(x) for x in r.items(best, k, "best")] for k in best},
        holds={str(k): bool(v) for k, v in r.obj(d.get("holds") or {}, "holds").items()},
        positives={str(k): r.count(positives, k, "positives") or 0 for k in positives},
        n_test=r.count(d, "n_test", "top level"))


def _score(r: _Reader, value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise r.fail("auroc", f"expected numbers or null, got {value!r}")
    return float(value)


def _value(e: RegionEvidence, region: str, cls: str) -> float:
    return e.auroc[e.regions.index(region)][e.classes.index(cls)]


def reading(e: RegionEvidence) -> str:
    """One line: the region that detects each class best, and where regions differ most."""
    if not e.best:
        return "No class was evaluable on the test split, so no region can be compared."
    parts = [f"{c} {'/'.join(e.best[c])} ({_value(e, e.best[c][0], c):.2f})"
             for c in e.classes if c in e.best]
    spread = {c: max(v for v in col if not math.isnan(v)) - min(v for v in col
                                                                 if not math.isnan(v))
              for c, col in ((c, [row[i] for row in e.auroc]) for i, c in enumerate(e.classes))
              if c in e.best}
    widest = max(spread, key=lambda c: spread[c])
    return (f"Best region per class: {', '.join(parts)}; the regions differ most for {widest} "
            f"(AUROC range {spread[widest]:.2f}).")


def expectation(e: RegionEvidence) -> str:
    """Whether each class with a known region is detected best from its own region's leads."""
    if not e.expected:
        return ("No probe class has a known region (the synthetic cohort's regional infarcts "
                "MI-INF/SEP/ANT/LAT do), so this run cannot show whether each regional "
                "infarct is detected best from its own leads.")
    checks, missing = [], []
    for cls, region in e.expected.items():
        others = [b for b in e.best.get(cls, []) if b != region]
        if cls not in e.holds:
            missing.append(cls)
        elif e.holds[cls]:
            checks.append(f"{cls} from {region} ✓" + (f" (tied with {', '.join(others)})"
                                                       if others else ""))
        else:
            checks.append(f"{cls} from {'/'.join(others)} instead of {region} ✗")
    held = sum(e.holds.values())
    verdict = ("holds" if held == len(e.holds) and not missing and held else
               "does not hold" if not held else "holds only in part")
    text = (f"Each regional infarct detected best from its own region's leads: {verdict} for "
            f"this run ({held} of {len(e.expected)}: {', '.join(checks) or 'none evaluable'}).")
    if missing:
        text += f" Not evaluable on the test split: {', '.join(missing)}."
    few = [f"{c} {e.positives[c]}" for c in e.holds if e.positives.get(c, 0) < FEW_POSITIVES]
    if few:
        text += (f" Weak evidence: few positive test records ({', '.join(few)}), where an "
                 "AUROC of 1.00 comes easily.")
    return text


def region_section(e: RegionEvidence | None, plots_dir: Path) -> Section | None:
    """The report section, writing the heat map into ``plots_dir``; None without evidence."""
    if e is None or not e.regions or not e.classes:
        return None
    path = plots.plot_region_heatmap(e.regions, e.classes, e.auroc, plots_dir / PLOT_NAME)
    leads = "; ".join(f"{k}: {', '.join(v)}" for k, v in e.region_leads.items())
    after = "" if e.round is None else f" after round {e.round}"
    return Section("Per-region evidence", [
        f"A linear probe of the final encoder{after} on each anatomical region's features "
        f"alone ({leads}), test AUROC per class on {e.n_test} test records; framed: the best "
        "region(s) of each class, blank: not evaluable.",
        Image(path, "Region × class AUROC of the final encoder"),
        f"Reading: {reading(e)}",
        expectation(e),
    ])
