"""The evaluation report of a federated run: ``report.md`` and a self-contained ``report.html``.

Reads ``RUN_DIR/metrics.json`` (required) and ``RUN_DIR/config.json`` (optional), writes the
figures to ``RUN_DIR/plots/`` and both reports to ``RUN_DIR``. The HTML embeds its figures as
base64 data URIs and carries its own CSS, so it can be mailed or archived on its own.
Reads files only: imports no other package of the core.

Modules: ``runlog`` (the run folder's JSON files as typed records), ``content`` (the sections),
``blocks`` (their building blocks), ``regions`` (the per-region panel), ``holdout`` (the
whole hold-out's evidence), ``pooled`` (federated vs the pooled reference), ``fmt`` (number and time
formats), ``render`` (Markdown, HTML).
"""

from __future__ import annotations

from pathlib import Path

from aclecg_core.report.content import (
    PLOT_NAMES,
    aggregation_statement,
    build_sections,
    dp_statement,
    flatten_config,
)
from aclecg_core.report.fmt import fmt_ci, fmt_score, fmt_score_ci, fmt_seconds, fmt_time
from aclecg_core.report.holdout import HoldoutEvidence, load_holdout_evidence
from aclecg_core.report.pooled import PooledEvidence, load_pooled_evidence
from aclecg_core.report.regions import RegionEvidence, load_region_evidence
from aclecg_core.report.render import render_html, render_markdown
from aclecg_core.report.runlog import (
    ClientFit,
    ProbeScores,
    ReportError,
    RoundMetrics,
    RunMetrics,
    SiteSummary,
    load_metrics,
    read_run_config,
)

__all__ = [
    "ClientFit", "HoldoutEvidence", "PooledEvidence", "ProbeScores", "RegionEvidence",
    "ReportError", "RoundMetrics", "RunMetrics", "SiteSummary", "aggregation_statement",
    "build_sections", "dp_statement", "flatten_config", "fmt_ci", "fmt_score", "fmt_score_ci",
    "fmt_seconds", "fmt_time", "load_holdout_evidence", "load_metrics", "load_pooled_evidence",
    "load_region_evidence", "read_run_config", "render_html", "render_markdown", "write_report",
]


def write_report(run_dir: Path) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` into ``run_dir``.

    Returns ``(markdown_path, html_path)``. Raises :class:`ReportError` naming the file when
    ``metrics.json`` is missing or malformed (or ``config.json``, ``regions.json``,
    ``holdout.json`` or ``pooled.json``, the optional per-region, whole-hold-out and pooled
    evidence, is malformed).
    """
    run_dir = Path(run_dir)
    metrics = load_metrics(run_dir)
    config = read_run_config(run_dir)
    plots_dir = run_dir / "plots"
    for name in PLOT_NAMES:  # figures of an earlier report that may not apply any more
        (plots_dir / name).unlink(missing_ok=True)
    audit = "audit.jsonl" if (run_dir / "audit.jsonl").is_file() else None
    sections = build_sections(metrics, config, plots_dir, audit, load_region_evidence(run_dir),
                              load_holdout_evidence(run_dir), load_pooled_evidence(run_dir))
    title = f"Federated run report: {metrics.name}"
    md_path, html_path = run_dir / "report.md", run_dir / "report.html"
    md_path.write_text(render_markdown(title, sections, run_dir), encoding="utf-8")
    html_path.write_text(render_html(title, sections), encoding="utf-8")
    return md_path, html_path
