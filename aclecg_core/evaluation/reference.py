"""A probe next to its random-init reference: label-fraction draws and the paired difference.

Every draw fits both probes on the same training subset (C chosen on the validation part for
each), and the difference is bootstrapped on the same resampled test records for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from aclecg_core.data.cohort import Cohort
from aclecg_core.evaluation.metrics import PairedDifference, paired_bootstrap
from aclecg_core.evaluation.probe import (
    C_GRID,
    ProbeData,
    ProbeResult,
    fit_probe,
    label_fraction_mask,
    probe_result,
    split_features,
)
from aclecg_core.method.model import AclEcgModel, build_model


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation (0 for one draw), minimum and maximum over draws."""

    mean: float
    std: float
    min: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        v = np.asarray(values, dtype=np.float64)
        return cls(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                   float(v.min()), float(v.max()))


@dataclass
class FractionProbe:
    """Linear probes of one encoder on ``len(draws)`` label-fraction subsets of the training
    part; ``test_scores`` (draws, n_test, C) are kept for paired comparisons, not serialised."""

    fraction: float
    draws: list[ProbeResult]
    auroc: Spread
    auprc: Spread
    test_scores: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "auroc": asdict(self.auroc),
                "auprc": asdict(self.auprc), "draws": [d.to_dict() for d in self.draws]}


@dataclass
class ReferenceComparison:
    """An encoder's probe, the reference's probes on the same subsets and split (every draw of
    every reference initialisation), and the paired difference (encoder minus reference; means
    over draws and initialisations). ``reference_inits``: the macro AUROC of each reference
    initialisation (mean over draws): how much the reference itself depends on its seed."""

    encoder: FractionProbe
    reference: FractionProbe
    difference: PairedDifference
    reference_inits: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder.to_dict(), "reference": self.reference.to_dict(),
                "difference": self.difference.to_dict(),
                "reference_inits": self.reference_inits}


def fraction_masks(train_y: np.ndarray, fraction: float, draws: int, seed: int = 0
                   ) -> list[np.ndarray]:
    """The training rows of each draw: :func:`label_fraction_mask` with seeds ``seed + i``;
    a single draw of every row when ``fraction`` is 1 (further draws would be identical)."""
    if not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive integer, got {draws!r}")
    if fraction == 1:
        return [label_fraction_mask(train_y, 1.0)]
    return [label_fraction_mask(train_y, fraction, seed + i) for i in range(draws)]


def probe_fraction(data: ProbeData, classes: list[str], fraction: float = 1.0, draws: int = 1,
                   seed: int = 0, n_bootstrap: int = 1000,
                   c_grid: tuple[float, ...] = C_GRID) -> FractionProbe:
    """One linear probe per draw of :func:`fraction_masks` (C chosen on the validation part for
    each), scored on the test part."""
    results, scores = [], []
    for mask in fraction_masks(data.train_y, fraction, draws, seed):
        subset = data.with_train_rows(mask)
        fit = fit_probe(subset, c_grid)
        results.append(probe_result(subset, fit, classes, seed, n_bootstrap))
        scores.append(fit.test_scores)
    return FractionProbe(fraction=fraction, draws=results,
                         auroc=Spread.of([r.macro_auroc for r in results]),
                         auprc=Spread.of([r.macro_auprc for r in results]),
                         test_scores=np.stack(scores))


def compare_with_reference(encoder: ProbeData, reference: ProbeData | Sequence[ProbeData],
                           classes: list[str], fraction: float = 1.0, draws: int = 1,
                           seed: int = 0, n_bootstrap: int = 1000,
                           c_grid: tuple[float, ...] = C_GRID) -> ReferenceComparison:
    """Probe ``encoder`` and ``reference`` features of the same records on the same
    label-fraction draws; the difference with its paired bootstrap 95 % interval.

    ``reference`` may hold several initialisations of the reference encoder: their probes are
    pooled (the reference score is the mean over initialisations and draws), which keeps one
    lucky or unlucky random initialisation from deciding the comparison.
    """
    references = [reference] if isinstance(reference, ProbeData) else list(reference)
    if not references:
        raise ValueError("compare_with_reference needs at least one reference")
    for ref in references:
        for part in ("train_y", "val_y", "test_y"):
            if not np.array_equal(getattr(encoder, part), getattr(ref, part)):
                raise ValueError(f"encoder and reference probe data differ in {part}: they "
                                 "must hold the same records")
    mine = probe_fraction(encoder, classes, fraction, draws, seed, n_bootstrap, c_grid)
    inits = [probe_fraction(ref, classes, fraction, draws, seed, n_bootstrap, c_grid)
             for ref in references]
    pooled = [result for probe in inits for result in probe.draws]
    ref_probe = FractionProbe(fraction=fraction, draws=pooled,
                              auroc=Spread.of([r.macro_auroc for r in pooled]),
                              auprc=Spread.of([r.macro_auprc for r in pooled]),
                              test_scores=np.concatenate([p.test_scores for p in inits]))
    difference = paired_bootstrap(encoder.test_y, mine.test_scores, ref_probe.test_scores,
                                  seed, n_bootstrap)
    return ReferenceComparison(mine, ref_probe, difference, [p.auroc.mean for p in inits])


class ReferenceProbe:
    """Linear probes of a sequence of encoders on fixed train/validation/test parts (a server's
    probe after every round), each compared with the reference encoder's probe (round 0's
    random-init encoder) by a paired bootstrap on the same test records."""

    def __init__(self, train: Cohort, val: Cohort, test: Cohort, classes: list[str],
                 seed: int = 0, n_bootstrap: int = 200, device: str | torch.device = "cpu",
                 c_grid: tuple[float, ...] = C_GRID) -> None:
        self.parts, self.classes = (train, val, test), classes
        self.seed, self.n_bootstrap, self.device, self.c_grid = seed, n_bootstrap, device, c_grid
        self.reference_scores: np.ndarray | None = None

    def _fit(self, model: AclEcgModel | ProbeData) -> tuple[ProbeResult, np.ndarray, np.ndarray]:
        data = (model if isinstance(model, ProbeData)
                else split_features(model, *self.parts, self.classes, self.device))
        fit = fit_probe(data, self.c_grid)
        result = probe_result(data, fit, self.classes, self.seed, self.n_bootstrap)
        return result, fit.test_scores, data.test_y

    def set_reference(self, model: AclEcgModel | ProbeData) -> ProbeResult:
        """Probe the reference encoder (or its features of the parts) and keep its test
        scores."""
        result, self.reference_scores, _ = self._fit(model)
        return result

    def probe(self, model: AclEcgModel | ProbeData) -> tuple[ProbeResult, PairedDifference | None]:
        """Probe ``model`` (or its features of the parts); its difference from the reference
        (``model`` minus reference), ``None`` while no reference was probed."""
        result, scores, test_y = self._fit(model)
        if self.reference_scores is None:
            return result, None
        return result, paired_bootstrap(test_y, scores, self.reference_scores, self.seed,
                                        self.n_bootstrap)


def random_init_like(model: AclEcgModel, seed: int = 0) -> AclEcgModel:
    """A freshly initialised model with ``model``'s encoder configuration."""
    return build_model(model.config, seed=seed)


def probe_against_random_init(model: AclEcgModel, train: Cohort, val: Cohort, test: Cohort,
                              classes: list[str], fraction: float = 1.0, draws: int = 1,
                              seed: int = 0, device: str | torch.device = "cpu",
                              n_bootstrap: int = 1000, inits: int = 3,
                              c_grid: tuple[float, ...] = C_GRID) -> ReferenceComparison:
    """:func:`compare_with_reference` of ``model`` against ``inits`` random initialisations of
    its architecture (:func:`random_init_like`, seeds ``seed`` ..) on the cohorts' record-level
    features."""
    if inits < 1:
        raise ValueError(f"inits must be at least 1, got {inits}")
    mine = split_features(model, train, val, test, classes, device)
    refs = [split_features(random_init_like(model, seed + i), train, val, test, classes, device)
            for i in range(inits)]
    return compare_with_reference(mine, refs, classes, fraction, draws, seed, n_bootstrap, c_grid)
