"""The pooled reference of a simulation: ``RUN_DIR/pooled.json`` (``aclecg compare-pooled``:
the same initial model pretrained centrally on the sites' pooled records with the same samples,
probed beside the final encoder) as a table of federated − pooled with paired intervals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aclecg_core.report.blocks import Section, Table
from aclecg_core.report.fmt import fmt_diff_ci, fmt_int, fmt_score
from aclecg_core.report.runlog import Interval, _read_json_file, _Reader, _required

POOLED_FILE = "pooled.json"
TOLERANCE = 0.005  # federated "as good as pooled": within this much macro AUROC


@dataclass(frozen=True)
class PooledComparison:
    """One label fraction: mean macro AUROC / AUPRC over its draws, federated and pooled, and
    federated − pooled with paired bootstrap 95 % intervals."""

    fraction: float
    draws: int
    federated_auroc: float
    pooled_auroc: float
    auroc_diff: float
    auroc_diff_ci: Interval | None
    federated_auprc: float
    pooled_auprc: float
    auprc_diff: float
    auprc_diff_ci: Interval | None


@dataclass(frozen=True)
class PooledEvidence:
    """Content of ``pooled.json``."""

    epochs: int
    records: int
    windows: int
    n_train: int
    n_val: int
    n_test: int
    comparisons: list[PooledComparison]


def _comparison(r: _Reader, raw: object, where: str) -> PooledComparison:
    c = r.obj(raw, where)
    fed, pooled = (r.obj(c.get(k), f"{where}.{k}") for k in ("federated", "pooled"))
    diff = r.obj(c.get("difference"), f"{where}.difference")

    def mean(probe: dict[str, object], metric: str, name: str) -> float:
        spread = r.obj(probe.get(metric), f"{where}.{name}.{metric}")
        return _required(r.num(spread, "mean", f"{where}.{name}.{metric}"))

    return PooledComparison(
        fraction=_required(r.num(c, "fraction", where)), draws=r.count(c, "draws", where) or 1,
        federated_auroc=mean(fed, "auroc", "federated"),
        pooled_auroc=mean(pooled, "auroc", "pooled"),
        auroc_diff=_required(r.num(diff, "auroc_diff", f"{where}.difference")),
        auroc_diff_ci=r.interval(diff, "auroc_diff_ci", f"{where}.difference"),
        federated_auprc=mean(fed, "auprc", "federated"),
        pooled_auprc=mean(pooled, "auprc", "pooled"),
        auprc_diff=_required(r.num(diff, "auprc_diff", f"{where}.difference")),
        auprc_diff_ci=r.interval(diff, "auprc_diff_ci", f"{where}.difference"))


def load_pooled_evidence(run_dir: Path) -> PooledEvidence | None:
    """``run_dir/pooled.json``, ``None`` when absent; :class:`ReportError` if malformed."""
    read = _read_json_file(Path(run_dir) / POOLED_FILE)
    if read is None:
        return None
    r, d = read
    top = "top level"
    return PooledEvidence(
        epochs=r.count(d, "epochs", top) or 0, records=r.count(d, "records", top) or 0,
        windows=r.count(d, "windows", top) or 0,
        n_train=r.count(d, "n_train", top) or 0, n_val=r.count(d, "n_val", top) or 0,
        n_test=r.count(d, "n_test", top) or 0,
        comparisons=[_comparison(r, c, f"comparisons[{i}]")
                     for i, c in enumerate(r.items(d, "comparisons", top))])


def _reading(c: PooledComparison) -> str:
    """How federated − pooled reads at one fraction."""
    ci = c.auroc_diff_ci
    where = ("measurably behind pooled" if ci and ci[1] < 0 else
             "measurably ahead of pooled" if ci and ci[0] > 0 else
             "not distinguishable from pooled")
    close = "within" if abs(c.auroc_diff) <= TOLERANCE else "not within"
    return (f"{_labels(c)}: federated is {where} (the interval's verdict) and {close} "
            f"{TOLERANCE:g} of it (the point estimate)")


def _labels(c: PooledComparison) -> str:
    share = f"{c.fraction:.0%} of the labels"
    return share if c.draws == 1 else f"{share} ({c.draws} draws)"


def pooled_section(e: PooledEvidence | None) -> Section | None:
    """The section: federated vs the pooled reference at each label fraction."""
    if e is None or not e.comparisons:
        return None
    rows = [[_labels(c), fmt_score(c.federated_auroc), fmt_score(c.pooled_auroc),
             fmt_diff_ci(c.auroc_diff, c.auroc_diff_ci), fmt_score(c.federated_auprc),
             fmt_score(c.pooled_auprc), fmt_diff_ci(c.auprc_diff, c.auprc_diff_ci)]
            for c in e.comparisons]
    table = Table(["Labels", "Federated AUROC", "Pooled AUROC",
                   "Federated − pooled AUROC [paired 95 % CI]", "Federated AUPRC",
                   "Pooled AUPRC", "Federated − pooled AUPRC [paired 95 % CI]"],
                  rows, right={1, 2, 3, 4, 5, 6})
    return Section("Federated vs pooled", [
        f"The pooled reference (`aclecg compare-pooled`): the same initial model pretrained "
        f"centrally on the sites' pooled records ({fmt_int(e.records)} records, "
        f"{fmt_int(e.windows)} windows, those the sites reported) for {e.epochs} epochs, the "
        "run's rounds × local epochs: the same samples seen. Both encoders are probed on the "
        f"server's data ({fmt_int(e.n_train)} train, {fmt_int(e.n_val)} validation (chooses C), "
        f"{fmt_int(e.n_test)} test records) on the same label draws; intervals: paired "
        "bootstrap over the test records.",
        table,
        "; ".join(_reading(c) for c in e.comparisons) + ".",
    ])
