"""Local pretraining: determinism on CPU, learning on an easy cohort, FedProx, config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aclecg_core.data.cohort import Cohort, RecordInfo
from aclecg_core.method.augment import AdjacentSegments, ViewPipeline
from aclecg_core.method.methods import views_for
from aclecg_core.method.model import EncoderConfig, build_model
from aclecg_core.method.pretrain import PretrainConfig, pick_device, pretrain


def spike_cohort(n_records: int = 12, windows: int = 2, samples: int = 200, fs: float = 100.0,
                 seed: int = 0) -> Cohort:
    """Spike 'beats' on a sinusoid; even records are label 'A' (taller spikes in V1-V6)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples)
    signals, rpeaks, owner, records = [], [], [], []
    for r in range(n_records):
        period = int(rng.integers(45, 70))
        for _ in range(windows):
            peaks = np.arange(int(rng.integers(5, 30)), samples, period)
            x = 0.1 * np.sin(2 * np.pi * t / samples * (r % 3 + 1))[None].repeat(12, 0)
            x[:, peaks] += 1.0
            if r % 2 == 0:
                x[6:, peaks] += 1.0
            signals.append(x + 0.02 * rng.standard_normal((12, samples)))
            row = np.full(8, -1)
            row[: len(peaks)] = peaks
            rpeaks.append(row)
            owner.append(r)
        records.append(RecordInfo(f"r{r}", f"/x/r{r}", "test", f"site{r % 2}", f"p{r // 2}",
                                  None, fs, ("A",) if r % 2 == 0 else ("B",)))
    return Cohort(np.asarray(signals, np.float32), np.asarray(rpeaks, np.int32),
                  np.asarray(owner, np.int64), records, fs, {})


TINY = EncoderConfig(size="tiny")


def _run(cfg: PretrainConfig, **kwargs: object) -> tuple[dict[str, torch.Tensor], list[float]]:
    model = build_model(TINY, seed=0)
    result = pretrain(model, spike_cohort(), cfg, **kwargs)  # type: ignore[arg-type]
    return model.state_dict(), result.losses


@pytest.mark.parametrize("method", ["acl", "simclr", "clocs"])
def test_same_seed_same_weights(method: str) -> None:
    cfg = PretrainConfig(method=method, epochs=1, batch_size=8, seed=3)
    a, _ = _run(cfg)
    b, _ = _run(cfg)
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    c, _ = _run(PretrainConfig(method=method, epochs=1, batch_size=8, seed=4))
    assert not all(torch.equal(v, c[k]) for k, v in a.items())


def test_loss_decreases_on_an_easy_cohort() -> None:
    model = build_model(TINY, seed=0)
    cfg = PretrainConfig(epochs=6, batch_size=12, lr=3e-3, seed=0)
    result = pretrain(model, spike_cohort(), cfg)
    assert len(result.losses) == 6 and result.loss == result.losses[-1]
    assert result.losses[-1] < result.losses[0] - 0.1
    assert result.num_examples == 24 and result.samples_per_second > 0


def test_fedprox_term() -> None:
    cfg = PretrainConfig(epochs=1, batch_size=8, seed=0, lr=1e-2)
    plain, _ = _run(cfg)
    far_reference = {k: v + 1.0 for k, v in build_model(TINY, seed=0).encoder.state_dict().items()
                     if v.is_floating_point()}
    far_reference = {f"encoder.{k}": v for k, v in far_reference.items()}
    zero_mu, _ = _run(cfg, reference_weights=far_reference)
    assert all(torch.equal(v, zero_mu[k]) for k, v in plain.items())
    prox, _ = _run(PretrainConfig(epochs=1, batch_size=8, seed=0, lr=1e-2, proximal_mu=1.0),
                   reference_weights=far_reference)

    def distance(state: dict[str, torch.Tensor]) -> float:
        return sum(float((state[k] - ref).pow(2).sum()) for k, ref in far_reference.items())

    assert distance(prox) < distance(plain) - 1.0, "the proximal term pulls towards the reference"
    with pytest.raises(ValueError, match="reference_weights"):
        _run(PretrainConfig(proximal_mu=0.1))


def test_single_record_batches_are_dropped_and_config_is_validated() -> None:
    cohort = spike_cohort(n_records=3, windows=1)
    result = pretrain(build_model(TINY, seed=0), cohort, PretrainConfig(epochs=1, batch_size=2))
    assert result.num_examples == 2  # the last batch holds one record only
    with pytest.raises(ValueError, match="two records"):
        pretrain(build_model(TINY), cohort.select_records(np.array([True, False, False])),
                 PretrainConfig(epochs=1))
    cfg = PretrainConfig(method="simclr", epochs=2)
    assert PretrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="method"):
        PretrainConfig(method="byol")
    with pytest.raises(ValueError, match="acl_terms"):
        PretrainConfig(acl_terms="global")
    with pytest.raises(ValueError, match="no augmentation"):
        PretrainConfig(method="clocs", views="acl")
    with pytest.raises(ValueError, match="unknown pretrain config keys"):
        PretrainConfig.from_dict({"epoch": 3})
    assert pick_device("cpu").type == "cpu"


def test_clocs_learns_and_groups_windows_by_patient() -> None:
    cohort = spike_cohort()
    model = build_model(TINY, seed=0)
    cfg = PretrainConfig(method="clocs", epochs=6, batch_size=12, lr=3e-3, seed=0)
    result = pretrain(model, cohort, cfg)
    assert result.losses[-1] < result.losses[0] - 0.1
    one_patient = cohort.select_records(np.array([True, True] + [False] * 10))  # patient p0
    with pytest.raises(ValueError, match="two patients"):
        pretrain(build_model(TINY), one_patient, PretrainConfig(method="clocs", epochs=1))


def test_views_and_terms_switch_the_ablation() -> None:
    acl, simclr = ViewPipeline("acl"), ViewPipeline("simclr")
    assert views_for(PretrainConfig()) == acl
    assert views_for(PretrainConfig(method="simclr")) == simclr
    assert views_for(PretrainConfig(views="simclr")) == simclr
    assert views_for(PretrainConfig(method="simclr", views="acl")) == acl
    assert views_for(PretrainConfig(method="clocs")) == AdjacentSegments()
    base, _ = _run(PretrainConfig(epochs=1, batch_size=8))
    for cfg in (PretrainConfig(epochs=1, batch_size=8, acl_terms="intra"),
                PretrainConfig(epochs=1, batch_size=8, views="simclr")):
        other, losses = _run(cfg)
        assert np.isfinite(losses).all()
        assert not all(torch.equal(v, other[k]) for k, v in base.items())


def test_a_carried_optimizer_state_continues_adamw() -> None:
    """Two 1-epoch calls carrying the state = one 2-epoch call: CLOCS (no augmentation) with
    the whole cohort in one batch, so each epoch's step sees the same data whatever the order;
    without the state the second call starts a fresh AdamW and ends elsewhere."""
    cohort = spike_cohort()
    cfg = PretrainConfig(method="clocs", epochs=1, batch_size=len(cohort), lr=1e-2, seed=0)
    once = build_model(TINY, seed=0)
    pretrain(once, cohort, PretrainConfig(**{**cfg.to_dict(), "epochs": 2}))
    carried, fresh = build_model(TINY, seed=0), build_model(TINY, seed=0)
    first = pretrain(carried, cohort, cfg)
    pretrain(fresh, cohort, cfg)
    second = pretrain(carried, cohort, cfg, optimizer_state=first.optimizer_state)
    pretrain(fresh, cohort, cfg)
    names = {k.partition("/")[2] for k in second.optimizer_state}  # those with gradients
    assert {n for n, _ in carried.named_parameters() if n.startswith("encoder.")} <= names
    assert names <= {n for n, _ in carried.named_parameters()}
    assert {float(second.optimizer_state[f"step/{n}"]) for n in names} == {2.0}
    assert {float(first.optimizer_state[f"step/{n}"]) for n in names} == {1.0}  # not mutated
    target = once.state_dict()
    for key, value in carried.state_dict().items():
        torch.testing.assert_close(value, target[key], atol=1e-6, rtol=1e-5)
    drift = max(float((v - target[k]).abs().max()) for k, v in fresh.state_dict().items()
                if v.is_floating_point())
    assert drift > 1e-3


def test_an_optimizer_state_of_another_model_is_refused() -> None:
    cohort = spike_cohort()
    cfg = PretrainConfig(epochs=1, batch_size=8, seed=0)
    state = pretrain(build_model(TINY, seed=0), cohort, cfg).optimizer_state
    key = next(k for k in state if k.startswith("exp_avg/"))
    for bad, match in (({**state, key: torch.zeros(*state[key].shape, 2)}, "shape"),
                       ({**state, "exp_avg/encoder.gone": state[key]}, "names no"),
                       ({k: v for k, v in state.items() if k != key}, "lacks")):
        with pytest.raises(ValueError, match=match):
            pretrain(build_model(TINY, seed=0), cohort, cfg, optimizer_state=bad)
