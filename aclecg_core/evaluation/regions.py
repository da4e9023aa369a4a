"""Per-region evidence: a linear probe on each anatomical region's features alone.

A region's features are its part of the encoder's representation (by the encoder's region map):
its leads' features side by side (representation ``leads``) or their mean (``regions``),
averaged over each record's windows. Which region detects a class
best shows what the encoder learned about each wall of the heart; for classes with a known
region (the synthetic cohort's regional infarcts) the expectation is that their own region wins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from aclecg_core.data.cohort import Cohort
from aclecg_core.data.leads import CANONICAL_LEADS
from aclecg_core.data.synth.conditions import MI_REGIONS
from aclecg_core.evaluation.metrics import column_intervals, column_scores
from aclecg_core.evaluation.probe import ProbeData, aggregate_by_record, fit_probe, record_labels
from aclecg_core.method.model import AclEcgModel


@dataclass
class RegionProbeResult:
    """Test AUROC of a linear probe per (region, class); ``None`` where not evaluable.

    ``auroc_ci``: each cell's bootstrap 95 % interval. ``expected`` maps the classes with a
    known region to it; ``best`` each evaluable class to the regions whose features detect it
    best (several when tied); ``holds`` each evaluable expected class to whether its own region
    is among them; ``margin`` each of them to its own region's AUROC minus the best other
    region's, with the paired bootstrap interval (same test records); ``positives`` the test
    records of each class (a handful of positives makes an AUROC of 1.0 easy, so read it with
    them). ``scores`` (region -> test probabilities) and ``test_y`` are kept for paired
    comparisons (:func:`region_differences`), not serialised.
    """

    regions: list[str]
    region_leads: dict[str, list[str]]
    classes: list[str]
    auroc: list[list[float | None]]
    n_train: int
    n_test: int
    expected: dict[str, str] = field(default_factory=dict)
    best: dict[str, list[str]] = field(default_factory=dict)
    holds: dict[str, bool] = field(default_factory=dict)
    positives: dict[str, int] = field(default_factory=dict)
    auroc_ci: list[list[tuple[float, float] | None]] = field(default_factory=list)
    margin: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_val: int = 0
    scores: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    test_y: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("scores", "test_y")}


@torch.no_grad()
def record_lead_features(model: AclEcgModel, cohort: Cohort, device: str | torch.device = "cpu",
                         batch_size: int = 256) -> np.ndarray:
    """Each record's per-lead encoder features, averaged over its windows: (n_records, 12, D)
    float32. Region and global features are linear poolings of them
    (:func:`region_features`, :func:`global_features`), so one encoder pass serves both."""
    was_training = model.training
    model.to(device).eval()
    chunks = [np.zeros((0, len(CANONICAL_LEADS) * model.encoder.embed_dim), dtype=np.float32)]
    for begin in range(0, len(cohort), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(cohort.signals[begin : begin + batch_size]))
        chunks.append(model.encoder(x.to(device, torch.float32)).float().cpu().flatten(1).numpy())
    model.train(was_training)
    features = aggregate_by_record(np.concatenate(chunks), cohort.window_record,
                                   len(cohort.records))
    return features.reshape(len(cohort.records), len(CANONICAL_LEADS), -1)


@torch.no_grad()
def global_features(model: AclEcgModel, leads: np.ndarray) -> np.ndarray:
    """The record-level global representation (``model.embed`` averaged over each record's
    windows) from :func:`record_lead_features`: (n_records, embed_dim) float32."""
    return model.encoder.pool_global(torch.from_numpy(leads)).numpy()


@torch.no_grad()
def region_features(model: AclEcgModel, cohort: Cohort, device: str | torch.device = "cpu",
                    batch_size: int = 256, leads: np.ndarray | None = None
                    ) -> dict[str, np.ndarray]:
    """Record-level features of each region: region name -> (n_records, F_r) float32;
    ``leads``: the cohort's :func:`record_lead_features`, if already computed."""
    if leads is None:
        leads = record_lead_features(model, cohort, device, batch_size)
    regions = model.encoder.regions
    lead_features = torch.from_numpy(leads)
    pooled = model.encoder.pool_regions(lead_features)
    pooled_form = model.config.representation == "regions"
    return {name: (pooled[:, r] if pooled_form else lead_features[:, list(group)]
                   ).flatten(1).numpy()
            for r, (name, group) in enumerate(zip(regions.names, regions.leads, strict=True))}


def region_probe(model: AclEcgModel, train: Cohort, val: Cohort, test: Cohort,
                 classes: list[str], device: str | torch.device = "cpu",
                 seed: int = 0, n_bootstrap: int = 200,
                 leads: Sequence[np.ndarray] | None = None) -> RegionProbeResult:
    """A linear probe per region (its features alone) and class, trained on ``train`` with its
    regularisation chosen on ``val``, scored on ``test`` (intervals: ``n_bootstrap``
    replicates of the test records); ``leads``: the three parts' :func:`record_lead_features`,
    if already computed."""
    if len(train) == 0 or len(val) == 0 or len(test) == 0:
        raise ValueError("the region probe needs windows in train, validation and test")
    parts = (train, val, test)
    xs = [region_features(model, part, device, leads=None if leads is None else leads[i])
          for i, part in enumerate(parts)]
    ys = [record_labels(part, classes) for part in parts]
    names = list(model.encoder.regions.names)
    rows: list[list[float | None]] = []
    scores: dict[str, np.ndarray] = {}
    for name in names:
        data = ProbeData(xs[0][name], ys[0], xs[1][name], ys[1], xs[2][name], ys[2])
        scores[name] = fit_probe(data).test_scores
        auroc = column_scores(ys[2], scores[name])[0]
        rows.append([None if math.isnan(v) else float(v) for v in auroc])
    expected = {c: r for c, r in MI_REGIONS.items() if c in classes and r in names}
    best = _best_regions(names, classes, rows)
    return RegionProbeResult(
        regions=names,
        region_leads={k: list(v) for k, v in model.encoder.regions.lead_names().items()},
        classes=list(classes), auroc=rows, n_train=len(train.records),
        n_test=len(test.records), expected=expected, best=best,
        holds={c: r in best[c] for c, r in expected.items() if c in best},
        positives={c: int(n) for c, n in zip(classes, ys[2].sum(axis=0), strict=True)},
        auroc_ci=[column_intervals(ys[2], scores[name], seed=seed, n_bootstrap=n_bootstrap)
                  for name in names],
        margin=_margins(names, classes, rows, expected, scores, ys[2], seed, n_bootstrap),
        n_val=len(val.records), scores=scores, test_y=ys[2])


def _margins(names: list[str], classes: list[str], rows: list[list[float | None]],
             expected: dict[str, str], scores: dict[str, np.ndarray], test_y: np.ndarray,
             seed: int, n_bootstrap: int) -> dict[str, dict[str, Any]]:
    """Each evaluable expected class: its own region's AUROC minus the best other region's,
    with the paired bootstrap 95 % interval."""
    out: dict[str, dict[str, Any]] = {}
    for cls, own in expected.items():
        c = classes.index(cls)
        others = {r: v for r, row in zip(names, rows, strict=True)
                  if r != own and (v := row[c]) is not None}
        mine = rows[names.index(own)][c]
        if mine is None or not others:
            continue
        other = max(others, key=lambda r: others[r])
        ci = column_intervals(test_y[:, [c]], scores[own][:, [c]], scores[other][:, [c]],
                              seed, n_bootstrap)[0]
        out[cls] = {"region": own, "other": other, "diff": mine - others[other],
                    "ci": list(ci) if ci else None}
    return out


def region_differences(final: RegionProbeResult, start: RegionProbeResult, seed: int = 0,
                       n_bootstrap: int = 200) -> dict[str, Any]:
    """``final`` minus ``start`` (e.g. round 0's random-init encoder) per (region, class), on
    the same test records: AUROC differences and their paired bootstrap 95 % intervals."""
    if (final.test_y is None or start.test_y is None
            or not np.array_equal(final.test_y, start.test_y) or final.regions != start.regions):
        raise ValueError("region probes of different test records or regions cannot be paired")
    diff = [[None if a is None or b is None else a - b for a, b in zip(ra, rb, strict=True)]
            for ra, rb in zip(final.auroc, start.auroc, strict=True)]
    ci = [column_intervals(final.test_y, final.scores[r], start.scores[r], seed, n_bootstrap)
          for r in final.regions]
    return {"auroc_diff": diff, "auroc_diff_ci": ci}


def _best_regions(names: list[str], classes: list[str],
                  rows: list[list[float | None]]) -> dict[str, list[str]]:
    """Each evaluable class -> the regions with its highest AUROC (ties: all of them)."""
    best: dict[str, list[str]] = {}
    for c, name in enumerate(classes):
        scores = {region: v for row, region in zip(rows, names, strict=True)
                  if (v := row[c]) is not None}
        if scores:
            top = max(scores.values())
            best[name] = [region for region, v in scores.items() if v == top]
    return best
