"""The benchmarks' federated loop: the ServerApp's strategy over the ClientApp's site training."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from flwr.supercore.task_identity import TaskIdentity

from aclecg_core.data.cohort import Cohort, RecordInfo
from aclecg_core.fed.arrays import select_keys, to_numpy
from aclecg_core.fed.training import initial_model, train_instructions, train_site
from benchmarks.federated import (
    FedSettings,
    corpus_sites,
    fedavg,
    federated_pretrain,
    mean_state,
    normalized_updates,
    round_part,
    run_config,
)


def _cohort(sites: dict[str, int]) -> Cohort:
    """Random 12-lead 5 s windows at 100 Hz, ``sites[name]`` one-window records per site."""
    records = [RecordInfo(record_id=f"{name}-{k}", path="", source="test", site=name,
                          patient_id=f"{name}-p{k}", fold=None, fs=100.0, labels=())
               for name, n in sites.items() for k in range(n)]
    n = len(records)
    rng = np.random.default_rng(0)
    return Cohort(signals=rng.standard_normal((n, 12, 500)).astype(np.float32),
                  rpeaks=np.tile(np.arange(50, 500, 100, dtype=np.int32), (n, 1)),
                  window_record=np.arange(n), records=records, fs=100.0, preprocessing={})


@pytest.fixture(autouse=True)
def _no_task_identity() -> Iterator[None]:
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


def test_small_sites_train_as_one_pooled_site() -> None:
    names, sites = corpus_sites(_cohort({"a": 10, "b": 3, "c": 2}), min_records=4)
    assert names == ["a", "pooled small sites"] and [len(s) for s in sites] == [10, 5]


def test_one_round_is_the_servers_step_over_the_sites_updates() -> None:
    """FedAvg = the num-examples-weighted mean of the sites' updates; FedAvgM with server
    lr 2 (no momentum) moves twice as far from the global model."""
    cohort = _cohort({"a": 12, "b": 6})
    base = FedSettings(batch_size=4, min_site_records=1)
    cfg = run_config(base, "tiny", 1, 0, "cpu")
    start = select_keys(to_numpy(initial_model(cfg).state_dict()), cfg.run.aggregate)
    _, sites = corpus_sites(cohort, 1)
    updates = [train_site(train_instructions(cfg, server_round=1), site, start, i, device="cpu")
               for i, site in enumerate(sites, start=1)]
    weights = np.array([u.report.num_examples for u in updates], float)
    assert weights.tolist() == [12.0, 6.0]
    mean = {k: sum(w * u.arrays[k] for w, u in zip(weights, updates, strict=True))
               / weights.sum()
            for k in start}
    for settings, factor in ((base, 1.0), (FedSettings(strategy="fedavgm", server_lr=2.0,
                                                       batch_size=4, min_site_records=1), 2.0)):
        model, info = federated_pretrain(settings, 1, 0, cohort)
        assert info["rounds"] == 1 and info["site_failures"] == 0
        got = to_numpy(model.state_dict())
        for k, v in start.items():
            np.testing.assert_allclose(got[k], v + factor * (mean[k] - v), rtol=1e-4, atol=1e-6)


def test_sites_continue_their_own_optimizer_when_asked() -> None:
    """Round 1 has nothing to continue (same model either way); from round 2 on a site's AdamW
    continues its own moments instead of starting fresh (another model)."""
    cohort = _cohort({"a": 12, "b": 6})
    fresh = FedSettings(batch_size=4, min_site_records=1)
    models = {(keep, rounds): to_numpy(federated_pretrain(
        replace(fresh, keep_optimizer_state=keep), rounds, 0, cohort)[0].state_dict())
        for keep in (False, True) for rounds in (1, 2)}
    for rounds, same in ((1, True), (2, False)):
        a, b = models[(False, rounds)], models[(True, rounds)]
        assert all(np.array_equal(v, b[k]) for k, v in a.items()) == same


def test_local_epochs_must_divide_the_epochs() -> None:
    assert FedSettings(local_epochs=2).rounds(30) == 15
    with pytest.raises(ValueError, match="does not divide"):
        FedSettings(local_epochs=4).rounds(30)


def test_fedavg_is_the_example_weighted_mean() -> None:
    template: dict[str, np.ndarray] = {"w": np.zeros(2, np.float32), "n": np.zeros((), np.int64)}
    a: dict[str, np.ndarray] = {"w": np.array([1.0, 2.0], np.float32), "n": np.array(3, np.int64)}
    b: dict[str, np.ndarray] = {"w": np.array([4.0, 8.0], np.float32), "n": np.array(6, np.int64)}
    out = fedavg([(a, 1), (b, 2)], template)
    assert out["w"].tolist() == pytest.approx([3.0, 6.0])
    assert out["n"].dtype == template["n"].dtype and int(out["n"]) == 5


def test_fednova_weights_each_site_by_its_examples_not_its_steps() -> None:
    """Sites of 130 and 10 examples (batch 10: 13 and 1 steps) whose every step moves the
    weights by +1 and -1: the example-weighted mean of the rescaled updates moves by tau = the
    example-weighted mean of the steps, whatever each site's share of the steps."""
    start = {"w": np.zeros(3, np.float32)}
    updates = [({"w": np.full(3, 13.0, np.float32)}, 130),
               ({"w": np.full(3, -1.0, np.float32)}, 10)]
    rescaled = normalized_updates(updates, start, batch_size=10)
    tau = (13 * 130 + 1 * 10) / 140
    naive = sum(n / 140 * (a["w"] / steps) for (a, n), steps in zip(updates, (13, 1), strict=True))
    mean = sum(n / 140 * r["w"] for r, (_, n) in zip(rescaled, updates, strict=True))
    assert mean.tolist() == pytest.approx((tau * naive).tolist(), rel=1e-6)
    assert rescaled[1]["w"].dtype == np.float32


def test_an_epoch_spread_over_rounds_trains_each_record_once() -> None:
    site = _cohort({"a": 11})
    for epoch in (0, 1):
        parts = [round_part(site, 0, 1, epoch * 3 + r, 3) for r in (1, 2, 3)]
        ids = [r.record_id for part in parts for r in part.records]
        assert sorted(ids) == sorted(r.record_id for r in site.records)
        assert [len(p.records) for p in parts] == [4, 4, 3]
    assert round_part(site, 0, 1, 5, 1) is site


def test_the_shared_optimizer_state_is_the_example_weighted_mean() -> None:
    a = {"step": np.array(3.0, np.float32), "exp_avg/w": np.ones(2, np.float32)}
    b = {"step": np.array(13.0, np.float32), "exp_avg/w": np.zeros(2, np.float32)}
    out = mean_state([(a, 10), (b, 30)])
    assert float(out["step"]) == pytest.approx(10.5) and out["step"].shape == ()
    assert out["exp_avg/w"].tolist() == pytest.approx([0.25, 0.25])


def test_site_batches_hold_one_site_and_cover_the_epoch() -> None:
    from benchmarks.federated import site_batches

    cohort = _cohort({"a": 10, "b": 3, "c": 2, "d": 7})
    site_of = np.array([r.site for r in cohort.records])[cohort.window_record]
    site_of = np.where(np.isin(site_of, ["b", "c"]), "small", site_of)  # pooled: under 4
    for by_site in (True, False):
        batches = site_batches(cohort, 4, 3, seed=0, epoch=0, by_site=by_site)
        assert sorted(np.concatenate(batches).tolist()) == list(range(len(cohort)))
        assert all(len(b) <= 3 for b in batches)
        one_site = [len(set(site_of[b])) == 1 for b in batches]
        assert all(one_site) if by_site else not all(one_site)
    again = site_batches(cohort, 4, 3, seed=0, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(again, site_batches(cohort, 4, 3, 0, 0),
                                                    strict=True))
    later = site_batches(cohort, 4, 3, seed=0, epoch=1)
    assert any(not np.array_equal(a, b) for a, b in zip(again, later, strict=False))


def test_site_batch_pretraining_continues_one_optimizer(monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.federated as federated
    from aclecg_core.method.model import EncoderConfig, build_model
    from aclecg_core.method.pretrain import PretrainConfig, pretrain

    calls: list[tuple[int, bool, int]] = []

    def spy(model, cohort, cfg, optimizer_state=None):  # type: ignore[no-untyped-def]
        result = pretrain(model, cohort, cfg, optimizer_state=optimizer_state)
        calls.append((len(cohort), optimizer_state is None, cfg.seed))
        return result

    monkeypatch.setattr(federated, "pretrain", spy)
    cohort = _cohort({"a": 8, "b": 5})
    info = federated.site_batch_pretrain(build_model(EncoderConfig(size="tiny"), seed=0), cohort,
                                         PretrainConfig(epochs=2, batch_size=4), min_records=1)
    assert [n for n, _, _ in calls] == [4] * 6  # b's one-window batch skipped in each epoch
    assert [fresh for _, fresh, _ in calls] == [True] + [False] * (len(calls) - 1)
    assert len({seed for _, _, seed in calls}) == len(calls)  # augmentations differ per step
    assert len(info["losses"]) == 2 and info["steps"] == 8
    calls.clear()
    federated.site_batch_pretrain(build_model(EncoderConfig(size="tiny"), seed=0), cohort,
                                  PretrainConfig(epochs=2, batch_size=4), min_records=1,
                                  fresh_optimizer=True)
    assert [fresh for _, fresh, _ in calls] == [True, False, False] * 2  # AdamW anew each epoch


def test_cyclic_weight_transfer_chains_the_sites(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each round visits every site once; each site starts from the previous one's weights."""
    import benchmarks.federated as federated

    visits: list[tuple[int, int, float]] = []  # (round, site, first weight it started from)
    train = federated.train_site

    def spy(ins, cohort, arrays, site, **kw):  # type: ignore[no-untyped-def]
        update = train(ins, cohort, arrays, site, **kw)
        first = next(iter(arrays))
        visits.append((ins.round, site, float(arrays[first].ravel()[0])))
        visits.append((ins.round, -site, float(update.arrays[first].ravel()[0])))
        return update

    monkeypatch.setattr(federated, "train_site", spy)
    cohort = _cohort({"a": 6, "b": 5, "c": 4})
    s = FedSettings(strategy="cyclic", batch_size=4, min_site_records=1)
    model, info = federated.federated_pretrain(s, 2, 0, cohort)
    starts = [v for v in visits if v[1] > 0]
    assert [r for r, _, _ in starts] == [1, 1, 1, 2, 2, 2]
    assert all(sorted(site for r, site, _ in starts if r == k) == [1, 2, 3] for k in (1, 2))
    ends = [v for v in visits if v[1] < 0]
    assert all(nxt[2] == end[2] for end, nxt in zip(ends, starts[1:], strict=False))
    first = next(iter(model.state_dict()))
    assert float(model.state_dict()[first].ravel()[0]) == pytest.approx(ends[-1][2])
    assert info["rounds"] == 2 and len(info["losses"]) == 2
