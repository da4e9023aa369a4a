"""The run report: files written, self-contained HTML, key numbers, tables, clear errors, CLI."""

from __future__ import annotations

import argparse
import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from aclecg_cli import report as report_cli
from aclecg_core.report import (
    ReportError,
    aggregation_statement,
    dp_statement,
    flatten_config,
    fmt_seconds,
    load_metrics,
    plots,
    write_report,
)

CLASSES = ["NORM", "MI", "STTC", "CD", "HYP"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def probe(macro_auroc: float, n_test: int = 120) -> dict[str, Any]:
    """A ``ProbeResult.to_dict()``-shaped probe with per-class scores around ``macro_auroc``."""
    per_class = {c: round(macro_auroc + 0.02 * (i - 1.5), 4) for i, c in enumerate(CLASSES[:4])}
    return {
        "macro_auroc": macro_auroc, "macro_auprc": macro_auroc - 0.3,
        "auroc_ci": [macro_auroc - 0.04, macro_auroc + 0.035],
        "auprc_ci": [macro_auroc - 0.35, macro_auroc - 0.26],
        "per_class_auroc": per_class,
        "per_class_auprc": {c: v - 0.3 for c, v in per_class.items()},
        "skipped": ["HYP"], "n_test": n_test, "n_train": 480, "constant": [], "n_val": 60,
        "c": 0.01, "val_auroc": macro_auroc + 0.01, "vs_round0": None,
    }


def make_metrics(status: str = "finished") -> dict[str, Any]:
    """Five rounds after round 0: probes on 0, 2, 4 and 5 (3 unprobed), a failure in round 3."""
    sites = ["site0", "site1", "site2"]
    aurocs = {0: 0.6012, 2: 0.7034, 4: 0.7811, 5: 0.7779}
    rounds = []
    for r in range(6):
        clients = [] if r == 0 else [
            {"site": s, "loss": round(4.5 - 0.3 * r - 0.1 * i, 4), "num-examples": 60 + 10 * i,
             "seconds": 8.0 + i, "samples-per-second": (60 + 10 * i) / (8.0 + i)}
            for i, s in enumerate(sites) if not (r == 3 and s == "site2")
        ]
        failures = ([{"site": "site2", "error": "DataError: no WFDB records in /data/site2 | x"}]
                    if r == 3 else [])
        rounds.append({"round": r, "wall_seconds": 3.1 if r == 0 else 40.0 + r,
                       "clients": clients, "failures": failures,
                       "probe": probe(aurocs[r]) if r in aurocs else None})
    return {
        "run": {"name": "20250101-120000-fedavg", "started": "2025-01-01T12:00:00+00:00",
                "finished": "2025-01-01T12:05:30+00:00" if status == "finished" else None,
                "status": status},
        "sites": [{"site": s, "records": 60 + 10 * i, "windows": 120 + 20 * i, "fs": 100.0,
                   "label_counts": {"NORM": 30, "MI": 7 + i, "STTC": 5, "CD": 4, "HYP": 2,
                                    "AFIB": 1}}
                  for i, s in enumerate(sites)],
        "rounds": rounds,
        "best": {"round": 4, "macro_auroc": 0.7811},
        "final_round": 5,
    }


CONFIG = {  # FederationConfig.to_dict() plus the dp settings
    "run": {"num-server-rounds": 5, "method": "acl", "strategy": "fedavg", "encoder": "tiny",
            "lr": 0.001, "local-epochs": 1, "dp": "off"},
    "cohort": {"source": "synthetic", "sites": 3, "classes": ["NORM", "MI"]},
    "probe": {"source": "synthetic-holdout", "bootstrap": 200},
    "preprocessing": {"fs": 100.0, "window-seconds": 2.5},
    "base-dir": "/work/main",
}


def make_run(tmp_path: Path, metrics: Any = None, config: Any = CONFIG) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    payload = make_metrics() if metrics is None else metrics
    (run_dir / "metrics.json").write_text(json.dumps(payload))
    if config is not None:
        (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


def test_write_report_files_and_plots(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    md_path, html_path = write_report(run_dir)
    assert (md_path, html_path) == (run_dir / "report.md", run_dir / "report.html")
    for name in plots_written(run_dir):
        assert (run_dir / "plots" / name).read_bytes().startswith(PNG_MAGIC)
    assert plots_written(run_dir) == sorted(
        ["probe.png", "site-loss.png", "round-time.png", "per-class-auroc.png"])


def plots_written(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "plots").iterdir())


def test_html_is_self_contained(tmp_path: Path) -> None:
    _, html_path = write_report(make_run(tmp_path))
    text = html_path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*['"]?\s*(https?:)?//""", text)
    assert "<link" not in text and "<script" not in text
    images = re.findall(r"<img[^>]*src='([^']*)'", text)
    assert len(images) == 4
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)


def test_reports_contain_key_numbers(tmp_path: Path) -> None:
    md_path, html_path = write_report(make_run(tmp_path))
    md, page = md_path.read_text(), html_path.read_text()
    for text in (md, page):
        assert "Final macro AUROC" in text
        assert "0.778" in text  # final (round 5) macro AUROC
        assert "0.738–0.813" in text  # its 95 % CI
        assert "0.478" in text  # final macro AUPRC
        assert "0.781" in text  # best macro AUROC (round 4)
        assert "+0.177" in text  # round 0 -> final change
        assert "5 min 30 s" in text  # finished - started
        assert "DataError: no WFDB records in /data/site2" in text
        assert "20250101-120000-fedavg" in text
        assert "Differential privacy: off (dp = off)" in text
        assert "2025-01-01 12:05:30 UTC" in text
    assert "- **Method**: method acl, strategy fedavg, encoder tiny" in md
    assert "- **Aggregation**: weighted mean of the sites' models (examples as weights, " \
        "strategy fedavg)" in md
    assert "120 test records (synthetic-holdout; server-held)" in md


def test_markdown_tables(tmp_path: Path) -> None:
    md = write_report(make_run(tmp_path))[0].read_text()
    assert "| Site | Records | Windows | Sampling rate | Label mix (records) |" in md
    assert "| site1 | 70 | 140 | 100 Hz | NORM 30 (43 %), MI 8 (11 %)" in md
    assert "| **Total** | **210** | **420** |  |  |" in md
    assert "| Round | Clients | Failed | Examples | Loss | Wall time |" in md
    assert ("| 0 (initial) |  |  |  |  | 3.1 s | 0.601 [0.561–0.636] | 0.301 [0.251–0.341] | "
            "0.01 |") in md
    # round 3 had two clients and one failure, no probe; the pipe in the error is escaped
    assert re.search(r"^\| 3 \| 2 \| 1 \| 130 \| [0-9.]+ \| 43\.0 s \|  \|  \|  \|$", md,
                     re.M)
    assert "| 3 | site2 | DataError: no WFDB records in /data/site2 \\| x |" in md
    assert "| run.strategy | fedavg |" in md
    assert '| cohort.classes | ["NORM", "MI"] |' in md
    assert "![Per-class AUROC, round 5](plots/per-class-auroc.png)" in md
    assert "Left out of the macro averages" in md and "HYP" in md


def test_sites_show_the_name_they_gave_beside_their_label(tmp_path: Path) -> None:
    metrics = make_metrics()
    metrics["sites"][1]["name"] = "Georgia"  # a hospital's simulated site
    metrics["sites"][2]["name"] = "site2"  # a name that is its label: shown once
    md = write_report(make_run(tmp_path, metrics))[0].read_text()
    assert "- **Sites**: 3: site0, site1 (Georgia), site2\n" in md
    assert "| site1 (Georgia) | 70 | 140 | 100 Hz |" in md


@pytest.mark.parametrize(("ci", "verdict"), [
    ((0.12, 0.23), "beats"),
    ((-0.02, 0.3), "does not clearly beat"),
    ((-0.3, -0.1), "is worse than"),
])
def test_summary_says_whether_the_final_encoder_beats_round_0(
        tmp_path: Path, ci: tuple[float, float], verdict: str) -> None:
    metrics = make_metrics()
    metrics["rounds"][-1]["probe"]["vs_round0"] = {
        "auroc_a": 0.7779, "auroc_b": 0.6012, "auroc_diff": 0.1767, "auroc_diff_ci": list(ci),
        "auprc_a": 0.4779, "auprc_b": 0.3012, "auprc_diff": 0.1767,
        "auprc_diff_ci": [0.1, 0.25], "n_test": 120, "n_bootstrap": 200}
    md = write_report(make_run(tmp_path, metrics))[0].read_text()
    summary = md.split("## ")[1]
    assert (f"The final encoder (round 5) {verdict} the random-init encoder of round 0 on the "
            f"server's probe: macro AUROC +0.177 [{ci[0]:+.3f}, {ci[1]:+.3f}], macro AUPRC "
            "+0.177 [+0.100, +0.250]") in summary
    assert "on the same 120 test records" in summary
    assert "**Final − round 0 (random init)**: +0.177" in summary
    assert "C chosen each round on 60 validation records (round 5: C = 0.01)" in summary


def test_summary_without_a_paired_comparison_says_so(tmp_path: Path) -> None:
    md = write_report(make_run(tmp_path))[0].read_text()
    assert "has no paired comparison with round 0 in metrics.json" in md.split("## ")[1]


def test_run_in_progress_without_probes_or_config(tmp_path: Path) -> None:
    metrics = make_metrics(status="running")
    for rd in metrics["rounds"]:
        rd["probe"] = None
    metrics["best"] = None
    del metrics["rounds"][0]["failures"]
    run_dir = make_run(tmp_path, metrics, config=None)
    md_path, html_path = write_report(run_dir)
    md = md_path.read_text()
    assert "status is “running”" in md
    assert "No round has a probe result yet" in md
    assert "No config.json in the run folder." in md
    assert plots_written(run_dir) == ["round-time.png", "site-loss.png"]
    assert html_path.read_text().count("data:image/png;base64,") == 2


def test_stale_plots_removed(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    write_report(run_dir)
    metrics = make_metrics()
    for rd in metrics["rounds"]:
        rd["probe"] = None
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    write_report(run_dir)
    assert "probe.png" not in plots_written(run_dir)


def test_round_zero_only(tmp_path: Path) -> None:
    metrics = make_metrics(status="running")
    metrics["rounds"] = metrics["rounds"][:1]
    metrics["final_round"] = 0
    md = write_report(make_run(tmp_path, metrics))[0].read_text()
    assert "**Latest macro AUROC**: 0.601" in md and "AUROC change" not in md
    assert "**Wall time so far**: 3.1 s" in md
    assert "0 training rounds of 5" in md


def test_missing_metrics_names_file(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"metrics\.json: not found"):
        write_report(tmp_path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "top level: expected an object"),
        ('{"sites": []}', "has no 'rounds' list"),
        ('{"rounds": {"round": 0}}', r"rounds: expected a list"),
        ('{"rounds": [{"wall_seconds": 1}]}', r"rounds\[0\]: has no 'round' number"),
        ('{"rounds": [{"round": 1, "clients": [{"site": "a", "loss": "high"}]}]}',
         r"rounds\[0\]\.clients\[0\]\.loss: expected a number, got 'high'"),
        ('{"rounds": [{"round": 0, "probe": {"macro_auroc": 0.7, "auroc_ci": [0.6]}}]}',
         r"rounds\[0\]\.probe\.auroc_ci: expected \[low, high\]"),
        ('{"rounds": [], "sites": [{"site": "a", "records": -3}]}',
         r"sites\[0\]\.records: expected a count"),
    ],
)
def test_malformed_metrics_names_file_and_field(tmp_path: Path, content: str,
                                                problem: str) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(content)
    expected = re.escape(str(run_dir / "metrics.json")) + ".*" + problem
    with pytest.raises(ReportError, match=expected):
        load_metrics(run_dir)


def test_malformed_config_names_file(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, config=None)
    (run_dir / "config.json").write_text("num-server-rounds = 3")
    with pytest.raises(ReportError, match=r"config\.json: cannot be read as JSON"):
        write_report(run_dir)


def test_dp_statement() -> None:
    on = flatten_config({"run": {"dp": "fixed", "dp-noise-multiplier": 1.1,
                                 "dp-clipping-norm": 0.5}, "lr": 0.1})
    assert dp_statement(on).startswith(
        "Differential privacy: on (dp = fixed; dp-noise-multiplier = 1.1, dp-clipping-norm = 0.5)")
    assert dp_statement({"dp": "off"}) == "Differential privacy: off (dp = off)."
    assert "sets no dp mode" in dp_statement({"lr": 0.1})
    assert "unknown" in dp_statement(None)


def test_aggregation_statement_names_the_robust_aggregation_and_the_update_bound() -> None:
    median = flatten_config({"run": {"strategy": "fedavg", "robust-aggregation": "median",
                                     "max-update-ratio": 10.0}})
    assert aggregation_statement(median) == (
        "the coordinate-wise median of the sites' models; updates that were not finite, did "
        "not fit the model or moved it more than 10 × its size (max-update-ratio) were refused")
    krum = flatten_config({"run": {"robust-aggregation": "krum", "robust-byzantine-sites": 1}})
    assert aggregation_statement(krum).startswith(
        "Krum: the one site model closest to the others (robust-byzantine-sites = 1)")
    plain = flatten_config({"run": {"strategy": "fedavg", "robust-aggregation": "off",
                                    "secure-aggregation": True}})
    assert aggregation_statement(plain) == ("weighted mean of the sites' models (examples as "
                                            "weights, strategy fedavg) under secure aggregation")
    momentum = flatten_config({"run": {"strategy": "fedavgm", "server-lr": 1.0,
                                       "server-momentum": 0.5, "robust-aggregation": "off"}})
    assert aggregation_statement(momentum) == (
        "weighted mean of the sites' models (examples as weights, strategy fedavgm), then a "
        "server step with momentum (server-lr = 1, server-momentum = 0.5)")
    cyclic = flatten_config({"run": {"strategy": "cyclic", "robust-aggregation": "off"}})
    assert aggregation_statement(cyclic).startswith(
        "cyclic weight transfer (strategy cyclic): each round the sites trained one after "
        "another in a seeded order, each from the previous site's model")
    assert aggregation_statement(None) == "not recorded (no config.json)"


def test_fmt_seconds() -> None:
    assert [fmt_seconds(s) for s in (4.25, 330, 3725)] == ["4.2 s", "5 min 30 s", "1 h 02 min"]


def test_per_class_plot_with_intervals(tmp_path: Path) -> None:
    path = plots.plot_per_class(["A", "B", "C"], [0.9, float("nan"), 0.6],
                                [(0.85, 0.95), None, (0.5, 0.7)], "AUROC", tmp_path / "pc.png")
    assert path.read_bytes().startswith(PNG_MAGIC)


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    report_cli.register(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_prints_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = make_run(tmp_path)
    assert cli(["report", str(run_dir)]) == 0
    assert capsys.readouterr().out.split() == [str(run_dir / "report.md"),
                                               str(run_dir / "report.html")]


def test_cli_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "metrics.json" in err and str(tmp_path) in err


def test_suppressed_counts_and_the_audit_trail_link(tmp_path: Path) -> None:
    metrics = make_metrics()
    metrics["sites"][0]["label_counts"] = {"NORM": 30, "MI": "<5"}
    run_dir = make_run(tmp_path, metrics, {**CONFIG, "run": {**CONFIG["run"],
                                                             "share-site-stats": True}})
    (run_dir / "audit.jsonl").write_text("{}\n")
    md_path, html_path = write_report(run_dir)
    md, html = md_path.read_text(), html_path.read_text()
    assert "NORM 30 (50 %), MI <5" in md
    assert "[audit.jsonl](audit.jsonl) is the run's audit trail" in md
    assert "<a href='audit.jsonl'>audit.jsonl</a>" in html
    assert "share-site-stats on; counts below 5 sent as <5" in md
    assert "secure aggregation off: the server saw each site's weights" in md
    (tmp_path / "secure").mkdir()
    run_dir = make_run(tmp_path / "secure", config={**CONFIG, "run": {
        **CONFIG["run"], "secure-aggregation": True}})
    md_path, _ = write_report(run_dir)
    assert "the server learned only their weighted mean" in md_path.read_text()
