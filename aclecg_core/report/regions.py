"""The per-region panel: ``RUN_DIR/regions.json`` (the server's probe of the final encoder on
each anatomical region's features alone) as a region × class heat map with a one-line reading,
and whether each class with a known region (a regional infarct) is detected best from it."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from aclecg_core.report import plots
from aclecg_core.report.blocks import Image, Section, Table
from aclecg_core.report.fmt import fmt_diff_ci, fmt_int, fmt_score_ci
from aclecg_core.report.runlog import Interval, _read_json_file, _Reader

REGIONS_FILE = "regions.json"
PLOT_NAME = "region-auroc.png"
FEW_POSITIVES = 30  # below this many positive test records a class's AUROC is weak evidence
T = TypeVar("T")


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
    margin: dict[str, Margin] = field(default_factory=dict)
    auroc_ci: list[list[Interval | None]] = field(default_factory=list)
    round0: RegionEvidence | None = None
    diff: list[list[float]] = field(default_factory=list)  # minus round 0
    diff_ci: list[list[Interval | None]] = field(default_factory=list)


@dataclass(frozen=True)
class Margin:
    """A class's own region's AUROC minus the best other region's, with its paired interval."""

    region: str
    other: str
    diff: float
    ci: Interval | None


def load_region_evidence(run_dir: Path) -> RegionEvidence | None:
    """``run_dir/regions.json``, ``None`` when absent; :class:`ReportError` if malformed."""
    read = _read_json_file(Path(run_dir) / REGIONS_FILE)
    if read is None:
        return None
    r, d = read
    evidence = _evidence(r, d, "top level")
    if d.get("round0") is not None:
        start = _evidence(r, r.obj(d["round0"], "round0"), "round0")
        changes = r.obj(d.get("vs_round0") or {}, "vs_round0")
        evidence = replace(evidence, round0=start,
                           diff=_grid(r, changes, "auroc_diff", evidence, _score),
                           diff_ci=_grid(r, changes, "auroc_diff_ci", evidence, _interval))
    return evidence


def _evidence(r: _Reader, d: dict[str, Any], where: str) -> RegionEvidence:
    regions = [str(x) for x in r.items(d, "regions", where)]
    classes = [str(x) for x in r.items(d, "classes", where)]
    leads = r.obj(d.get("region_leads") or {}, f"{where}.region_leads")
    best = r.obj(d.get("best") or {}, f"{where}.best")
    positives = r.obj(d.get("positives") or {}, f"{where}.positives")
    margins = r.obj(d.get("margin") or {}, f"{where}.margin")
    e = RegionEvidence(
        round=r.count(d, "round", where), regions=regions,
        region_leads={str(k): [str(x) for x in v] for k, v in leads.items()},
        classes=classes, auroc=[],
        expected={str(k): str(v) for k, v in r.obj(d.get("expected") or {},
                                                    f"{where}.expected").items()},
        best={str(k): [str(x) for x in r.items(best, k, f"{where}.best")] for k in best},
        holds={str(k): bool(v) for k, v in r.obj(d.get("holds") or {}, f"{where}.holds").items()},
        positives={str(k): r.count(positives, k, f"{where}.positives") or 0 for k in positives},
        n_test=r.count(d, "n_test", where),
        margin={str(k): Margin(str(m.get("region")), str(m.get("other")),
                               _score(r, m.get("diff")), r.interval(m, "ci", f"margin.{k}"))
                for k, m in ((k, r.obj(v, f"{where}.margin.{k}")) for k, v in margins.items())})
    auroc = _grid(r, d, "auroc", e, _score)
    if not auroc:
        raise r.fail(f"{where}.auroc", f"expected {len(regions)} rows of {len(classes)} values")
    return replace(e, auroc=auroc, auroc_ci=_grid(r, d, "auroc_ci", e, _interval))


def _grid(r: _Reader, d: dict[str, Any], key: str, e: RegionEvidence,
          cell: Callable[[_Reader, Any], T]) -> list[list[T]]:
    """The region × class grid ``d[key]`` (empty when absent) read cell by cell."""
    rows = r.items(d, key, key)
    if not rows and key != "auroc":
        return []
    if len(rows) != len(e.regions) or any(not isinstance(row, list)
                                          or len(row) != len(e.classes) for row in rows):
        raise r.fail(key, f"expected {len(e.regions)} rows of {len(e.classes)} values")
    return [[cell(r, v) for v in row] for row in rows]


def _interval(r: _Reader, value: Any) -> Interval | None:
    return r.interval({"ci": value}, "ci", "interval")


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


def _held(e: RegionEvidence) -> int:
    return sum(e.holds.values())


def expectation(e: RegionEvidence, who: str = "this run") -> str:
    """Whether each class with a known region is detected best from its own region's leads
    (by ``who``'s encoder), with each margin over the best other region where recorded."""
    if not e.expected:
        return ("No probe class has a known region (the synthetic cohort's regional infarcts "
                "MI-INF/SEP/ANT/LAT do), so this run cannot show whether each regional "
                "infarct is detected best from its own leads.")
    checks, missing = [], []
    for cls, region in e.expected.items():
        others = [b for b in e.best.get(cls, []) if b != region]
        m = e.margin.get(cls)
        by = "" if m is None else f" by {fmt_diff_ci(m.diff, m.ci)}"
        if cls not in e.holds:
            missing.append(cls)
        elif e.holds[cls]:
            checks.append(f"{cls} from {region} ✓" + (f" (tied with {', '.join(others)})"
                                                       if others else by))
        else:
            checks.append(f"{cls} from {'/'.join(others)} instead of {region} ✗{by}")
    held = _held(e)
    verdict = ("holds" if held == len(e.holds) and not missing and held else
               "does not hold" if not held else "holds only in part")
    text = (f"Each regional infarct detected best from its own region's leads: {verdict} for "
            f"{who} ({held} of {len(e.expected)}: {', '.join(checks) or 'none evaluable'}).")
    if missing:
        text += f" Not evaluable on the test split: {', '.join(missing)}."
    few = [f"{c} {e.positives[c]}" for c in e.holds if e.positives.get(c, 0) < FEW_POSITIVES]
    if few:
        text += (f" Weak evidence: fewer than {FEW_POSITIVES} positive test records "
                 f"({', '.join(few)}).")
    return text


def against_round0(e: RegionEvidence) -> list[str | Table]:
    """The final encoder's regional-infarct evidence next to round 0's random-init encoder
    (probed the same way on the same records): what training changed, with paired intervals."""
    start = e.round0
    if start is None or not e.expected:
        return []
    rows = []
    for cls, region in e.expected.items():
        r, c = e.regions.index(region), e.classes.index(cls)
        cells = []
        for ev in (e, start):
            ci = ev.auroc_ci[r][c] if ev.auroc_ci else None
            m = ev.margin.get(cls)
            cells += [fmt_score_ci(ev.auroc[r][c], ci),
                      "–" if m is None else fmt_diff_ci(m.diff, m.ci)]
        change = fmt_diff_ci(e.diff[r][c], e.diff_ci[r][c]) if e.diff else "–"
        rows.append([cls, region, fmt_int(e.positives.get(cls)), *cells, change])
    table = Table(["Class", "Own region", "Test positives", "Final: AUROC [95 % CI]",
                   "Final: own − best other", "Round 0: AUROC [95 % CI]",
                   "Round 0: own − best other", "Own region: final − round 0"], rows,
                  right={2, 3, 4, 5, 6, 7})
    held, held0 = _held(e), _held(start)
    if held0 and held0 >= held:
        reading = (f"Round 0's random-init encoder already detects {held0} of "
                   f"{len(e.expected)} regional infarcts best from their own region (the final "
                   f"one: {held}): each region's features come from its own leads only, so the "
                   "panel shows the encoder's lead grouping, not what federated pretraining "
                   "learned. What pretraining changed is the last column (paired bootstrap 95 % "
                   "intervals on the same test records).")
    else:
        reading = (f"Round 0's random-init encoder detects {held0} of {len(e.expected)} "
                   f"regional infarcts best from their own region, the final one {held}: the "
                   "difference is what federated pretraining added (last column: paired "
                   "bootstrap 95 % intervals on the same test records).")
    return [expectation(start, "round 0's random-init encoder"), table, reading]


def region_section(e: RegionEvidence | None, plots_dir: Path) -> Section | None:
    """The report section, writing the heat map into ``plots_dir``; None without evidence."""
    if e is None or not e.regions or not e.classes:
        return None
    path = plots.plot_region_heatmap(e.regions, e.classes, e.auroc, plots_dir / PLOT_NAME)
    leads = "; ".join(f"{k}: {', '.join(v)}" for k, v in e.region_leads.items())
    after = "" if e.round is None else f" after round {e.round}"
    who = "this run" if e.round0 is None else "the final encoder"
    return Section("Per-region evidence", [
        f"A linear probe of the final encoder{after} on each anatomical region's features "
        f"alone ({leads}), test AUROC per class on {e.n_test} test records; framed: the best "
        "region(s) of each class, blank: not evaluable.",
        Image(path, "Region × class AUROC of the final encoder"),
        f"Reading: {reading(e)}",
        expectation(e, who),
        *against_round0(e),
    ])
