"""Label-fraction draws and the comparison with a random-init reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aclecg_core.data.cohort import Cohort
from aclecg_core.evaluation.probe import ProbeData, label_fraction_mask, probe_cohorts
from aclecg_core.evaluation.reference import (
    ReferenceProbe,
    compare_with_reference,
    fraction_masks,
    probe_against_random_init,
    random_init_like,
)
from aclecg_core.method.model import EncoderConfig, build_model

CLASSES = ["A", "B", "C"]


def _pair(seed: int = 0) -> tuple[ProbeData, ProbeData]:
    """(informative features, noise features) of the same labeled records."""
    rng = np.random.default_rng(seed)
    good: list[np.ndarray] = []
    noise: list[np.ndarray] = []
    for n in (300, 120, 150):
        y = (rng.random((n, 3)) < [0.4, 0.3, 0.05]).astype(np.uint8)
        good += [np.hstack([1.5 * y, rng.standard_normal((n, 6))]), y]
        noise += [rng.standard_normal((n, 9)), y]
    return ProbeData(*good), ProbeData(*noise)


def test_fraction_draws_are_deterministic_per_seed_and_keep_rare_positives() -> None:
    y = _pair()[0].train_y
    first = fraction_masks(y, 0.1, draws=4, seed=7)
    again = fraction_masks(y, 0.1, draws=4, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert len({m.tobytes() for m in first}) == 4  # the draws differ
    for mask in first:
        assert 30 <= mask.sum() <= 33 and (y[mask].sum(axis=0) > 0).all()
    assert not np.array_equal(first[0], fraction_masks(y, 0.1, 1, seed=8)[0])
    assert len(fraction_masks(y, 1.0, draws=5)) == 1 and fraction_masks(y, 1.0, 5)[0].all()
    assert np.array_equal(label_fraction_mask(y, 0.1, seed=7), first[0])
    with pytest.raises(ValueError, match="draws"):
        fraction_masks(y, 0.1, draws=0)


def test_informative_features_beat_the_reference_with_a_paired_interval() -> None:
    good, noise = _pair()
    result = compare_with_reference(good, noise, CLASSES, fraction=0.2, draws=3, seed=1,
                                    n_bootstrap=200)
    d = result.difference
    assert d.auroc_diff > 0.2 and d.auroc_diff_ci[0] > 0 and d.auprc_diff_ci[0] > 0
    assert d.auroc_a == pytest.approx(result.encoder.auroc.mean)
    assert d.auroc_b == pytest.approx(result.reference.auroc.mean)
    assert len(result.encoder.draws) == len(result.reference.draws) == 3
    assert [r.n_train for r in result.encoder.draws] == [r.n_train for r in
                                                         result.reference.draws]
    assert result.encoder.auroc.min <= result.encoder.auroc.mean <= result.encoder.auroc.max
    out = json.loads(json.dumps(result.to_dict()))
    assert out["encoder"]["fraction"] == 0.2 and len(out["encoder"]["draws"]) == 3
    assert all(r["c"] > 0 for r in out["reference"]["draws"])
    swapped = compare_with_reference(noise, good, CLASSES, fraction=0.2, draws=3, seed=1,
                                     n_bootstrap=200).difference
    assert swapped.auroc_diff == pytest.approx(-d.auroc_diff)
    assert result.reference_inits == [pytest.approx(result.reference.auroc.mean)]
    with pytest.raises(ValueError, match="same records"):
        compare_with_reference(good, _pair(seed=1)[1], CLASSES)


def test_several_reference_inits_are_pooled() -> None:
    good, noise = _pair()
    other = ProbeData(noise.train_x[:, ::-1].copy(), noise.train_y, noise.val_x[:, ::-1].copy(),
                      noise.val_y, noise.test_x[:, ::-1].copy(), noise.test_y)
    pooled = compare_with_reference(good, [noise, other], CLASSES, fraction=0.2, draws=2,
                                    n_bootstrap=50)
    assert len(pooled.reference.draws) == 4 and len(pooled.reference_inits) == 2
    assert pooled.difference.auroc_b == pytest.approx(np.mean(pooled.reference_inits))
    assert pooled.difference.auroc_b == pytest.approx(pooled.reference.auroc.mean)


def test_probe_against_random_init_uses_the_same_architecture(
        tiny_cohort: tuple[Cohort, Cohort, Cohort]) -> None:
    model = build_model(EncoderConfig(size="tiny"), seed=3)
    reference = random_init_like(model, seed=0)
    assert reference.config == model.config
    train, val, test = tiny_cohort
    result = probe_against_random_init(model, train, val, test, ["A", "B"], n_bootstrap=20,
                                       inits=2)
    assert len(result.reference_inits) == 2 and len(result.reference.draws) == 2
    plain = probe_cohorts(model, train, val, test, ["A", "B"], n_bootstrap=20)
    assert result.encoder.draws[0].macro_auroc == pytest.approx(plain.macro_auroc)
    assert result.encoder.draws[0].c == plain.c


def test_reference_probe_compares_every_encoder_with_the_first(
        tiny_cohort: tuple[Cohort, Cohort, Cohort]) -> None:
    first = build_model(EncoderConfig(size="tiny"), seed=0)
    prober = ReferenceProbe(*tiny_cohort, ["A", "B"], n_bootstrap=20)
    assert prober.probe(first)[1] is None  # no reference yet
    reference = prober.set_reference(first)
    same, difference = prober.probe(first)
    assert same.macro_auroc == reference.macro_auroc and same.c == reference.c
    assert difference is not None and difference.auroc_diff == 0
    assert difference.auroc_diff_ci == (0.0, 0.0)
