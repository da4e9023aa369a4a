"""Flower apps without the simulation engine: aggregation, message audit, failing sites."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    Bulyan,
    FedMedian,
    FedTrimmedAvg,
    Krum,
    MultiKrum,
    Strategy,
)

from aclecg_core.fed import protocol, training
from aclecg_core.fed.arrays import select_keys, to_numpy
from aclecg_core.fed.config import FederationConfig, load_config, read_pyproject_defaults
from aclecg_core.fed.disclosure import TRAINING_METRICS, suppress_small
from aclecg_core.fed.probe import ServerProbe
from aclecg_core.fed.rounds import FederationError
from aclecg_core.fed.rundir import RunFolder
from aclecg_core.fed.sites import ensure_synthetic_cohort, simulated_site
from aclecg_core.fed.training import initial_model, train_instructions
from aclecg_core.method.pretrain import DivergenceError, PretrainResult
from client.app import OPTIMIZER_STATE_KEY
from client.app import train as client_train
from server.recorder import RoundRecorder
from server.replies import client_entry, failure_entry
from server.strategy import RecordingStrategy, build_strategy

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("task_identity")


@pytest.fixture(scope="module")
def run_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | int]:
    tmp = tmp_path_factory.mktemp("fed")
    yaml = tmp / "sites.yaml"
    yaml.write_text(f"cohort:\n  sites: 2\n  records-per-site: 6\n  cache-dir: {tmp}/cache\n")
    # fedavg: the server's new model is the (refused replies left out) weighted mean
    return {"config-file": str(yaml), "batch-size": 4, "strategy": "fedavg"}


@pytest.fixture(scope="module")
def cfg(run_config: dict[str, str | int]) -> FederationConfig:
    return load_config(run_config, ROOT)


def _reply(arrays: dict[str, np.ndarray], n: int, site: int) -> Message:
    content = RecordDict({
        "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
        "metrics": MetricRecord({"num-examples": n, "site-index": site, "loss": 1.0,
                                 "seconds": 1.0, "samples-per-second": float(n)}),
    })
    return Message(content=content, dst_node_id=site, message_type=MessageType.TRAIN)


def _train_message(cfg: FederationConfig, server_round: int = 1) -> Message:
    arrays = select_keys(to_numpy(initial_model(cfg).state_dict()), cfg.run.aggregate)
    content = RecordDict({
        "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
        "config": ConfigRecord(train_instructions(cfg, server_round=server_round).encode()),
    })
    return Message(content=content, dst_node_id=1, message_type=MessageType.TRAIN)


def _context(node_config: dict[str, bool | float | int | str],
             run_config: dict[str, bool | float | int | str] | None = None) -> Context:
    return Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(),
                   run_config=run_config or {})


def test_fedavg_weighted_mean_keeps_integer_dtypes(cfg: FederationConfig) -> None:
    template: dict[str, np.ndarray] = {"encoder.w": np.zeros(2, np.float32),
                                       "encoder.n": np.zeros((), np.int64)}
    seen: list[tuple[int, int, int]] = []
    strategy = build_strategy(
        cfg, template, lambda r, replies, silent: seen.append((r, len(replies), len(silent))))
    replies = [
        _reply({"encoder.w": np.array([5, 6], np.float32), "encoder.n": np.array(4)}, 3, 2),
        _reply({"encoder.w": np.array([1, 2], np.float32), "encoder.n": np.array(3)}, 1, 1),
    ]
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert arrays is not None and metrics is not None
    out = {k: v.numpy() for k, v in arrays.items()}
    np.testing.assert_allclose(out["encoder.w"], [4.0, 5.0])  # (1*[1,2] + 3*[5,6]) / 4
    assert out["encoder.w"].dtype == np.float32
    assert out["encoder.n"].dtype == np.int64 and int(out["encoder.n"]) == 4  # rint(3.75)
    assert seen == [(1, 2, 0)]


def test_reply_under_the_deployment_default_reveals_arrays_training_scalars_and_name_only(
        cfg: FederationConfig) -> None:
    """A real reply of a deployed site (node config ``data-dir``) under the pyproject defaults."""
    defaults = load_config(read_pyproject_defaults(ROOT / "pyproject.toml"), ROOT)
    assert not defaults.run.share_site_stats
    site_dir = ensure_synthetic_cohort(cfg) / "site1"
    reply = client_train(_train_message(cfg), _context({"data-dir": str(site_dir),
                                                         "site-index": 1}))
    assert not reply.has_error(), reply.error
    content = reply.content
    assert set(content.keys()) == {"arrays", "metrics", "site"}
    assert dict(content.config_records["site"]) == {"site-name": "site1"}  # its name, only
    model_state = initial_model(cfg).state_dict()
    arrays = content.array_records["arrays"]
    assert list(arrays) == list(select_keys(model_state, cfg.run.aggregate))
    metrics = content.metric_records["metrics"]
    n_windows = int(cast(int, metrics["num-examples"]))
    for key, array in arrays.items():
        assert tuple(array.shape) == tuple(model_state[key].shape)
        assert n_windows not in array.shape  # nothing per-sample
    assert set(metrics) == set(TRAINING_METRICS)
    assert all(isinstance(v, int | float) for v in metrics.values())
    client, site = client_entry(reply)
    assert client["site"] == "site1" and site["windows"] == n_windows
    assert site["records"] is None and site["fs"] is None and site["label_counts"] == {}


def test_site_stats_leave_only_when_asked_with_small_counts_suppressed(
        cfg: FederationConfig, run_config: dict[str, str | int]) -> None:
    asked = replace(cfg, run=replace(cfg.run, share_site_stats=True))
    reply = client_train(_train_message(asked), _context({"partition-id": 0,
                                                           "num-partitions": 2}, run_config))
    assert not reply.has_error(), reply.error
    stats = reply.content.config_records["site-stats"]
    assert stats["records"] == 6 and stats["fs"] == 100.0
    counts = {k: v for k, v in stats.items() if k.startswith("label-count/")}
    assert counts and all(v == 0 or v == "<5" or (isinstance(v, int) and v >= 5)
                          for v in counts.values())
    _, site = client_entry(reply)
    assert site["records"] == 6 and "<5" in site["label_counts"].values()


def test_a_kept_optimizer_state_stays_in_the_context_and_never_in_the_reply(
        cfg: FederationConfig, run_config: dict[str, str | int]) -> None:
    node: dict[str, bool | float | int | str] = {"partition-id": 0, "num-partitions": 2}
    fresh = _context(node, run_config)
    assert not client_train(_train_message(cfg), fresh).has_error()
    assert OPTIMIZER_STATE_KEY not in fresh.state.array_records  # off by default
    kept = replace(cfg, run=replace(cfg.run, keep_optimizer_state=True))
    context = _context(node, run_config)
    steps = []
    for server_round in (1, 2):
        reply = client_train(_train_message(kept, server_round), context)
        assert not reply.has_error(), reply.error
        assert set(reply.content.keys()) == {"arrays", "metrics", "site"}
        assert list(reply.content.array_records["arrays"]) == list(
            select_keys(initial_model(cfg).state_dict(), cfg.run.aggregate))
        state = context.state.array_records[OPTIMIZER_STATE_KEY]
        params = [n for n, _ in initial_model(cfg).named_parameters()]
        trained = {n for n in params if n.startswith("encoder.")}  # (the loss's heads too)
        assert {f"{kind}/{n}" for n in trained for kind in ("step", "exp_avg", "exp_avg_sq")} \
            <= set(state) <= {f"{kind}/{n}" for n in params
                               for kind in ("step", "exp_avg", "exp_avg_sq")}
        steps.append(float(state[f"step/{params[0]}"].numpy()))
    assert 0 < steps[0] < steps[1], "the second round continues the first round's AdamW"


def test_small_counts_are_suppressed() -> None:
    assert [suppress_small(n) for n in (0, 1, 4, 5, 17)] == [0, "<5", "<5", 5, 17]


def test_failing_site_answers_with_an_error_and_aggregation_continues(
        cfg: FederationConfig, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-site"
    bad = client_train(_train_message(cfg), _context({"data-dir": str(missing), "site-index": 7}))
    assert bad.has_error()
    failure = failure_entry(bad)
    assert failure["site"] == "site7" and "DataError" in failure["error"]
    assert str(missing) in failure["error"]

    template = {"encoder.w": np.zeros(1, np.float32)}
    log: list[list[Message]] = []
    strategy = build_strategy(cfg, template, lambda r, replies, silent: log.append(replies))
    error_reply = Message(error=Error(code=1, reason=bad.error.reason), reply_to=_reply(
        {"encoder.w": np.zeros(1, np.float32)}, 1, 7))
    good = _reply({"encoder.w": np.array([2.0], np.float32)}, 5, 1)
    arrays, _ = strategy.aggregate_train(1, [error_reply, good])
    assert arrays is not None and float(arrays["encoder.w"].numpy()[0]) == 2.0
    assert [m.has_error() for m in log[0]] == [False, True]


def test_a_node_the_superlink_reports_unreachable_counts_once(cfg: FederationConfig) -> None:
    template = {"encoder.w": np.zeros(1, np.float32)}
    silent: list[list[int]] = []
    strategy = build_strategy(cfg, template, lambda r, replies, s: silent.append(s))
    sent = [_reply(template, 1, node) for node in (5, 6)]
    for k, message in enumerate(sent):
        message.metadata.__dict__["_message_id"] = f"m{k}"  # as the grid sets it when pushing
    strategy.sent = sent
    good = Message(content=_reply({"encoder.w": np.ones(1, np.float32)}, 2, 5).content,
                   reply_to=sent[0])
    unreachable = Message(error=Error(code=1, reason="Node Unavailable"), reply_to=sent[1])
    unreachable.metadata.__dict__["_src_node_id"] = 1  # written by the SuperLink, not node 6
    strategy.aggregate_train(1, [good, unreachable])
    assert silent == [[]]  # node 6 answered (with an error): not also "no reply"


class _Nodes:
    """What FedAvg's node sampling asks of a grid."""

    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes

    def get_node_ids(self) -> list[int]:
        return self.nodes


@pytest.fixture()
def recorded(tmp_path: Path) -> tuple[RoundRecorder, Strategy, dict[str, np.ndarray]]:
    """A run folder after round 0, its recorder, and the strategy in round 1 (sent the
    round-0 model to 5 nodes)."""
    yaml = tmp_path / "sites.yaml"
    yaml.write_text(f"cohort:\n  sites: 2\n  records-per-site: 8\n  cache-dir: {tmp_path}/c\n"
                    "probe:\n  test-fraction: 0.5\n  val-fraction: 0.5\n  bootstrap: 10\n")
    cfg = load_config({"config-file": str(yaml), "eval-every": 0, "num-server-rounds": 5,
                       "seed": 3}, ROOT)
    template = to_numpy(initial_model(cfg).state_dict())
    folder = RunFolder.create(tmp_path / "run", cfg)
    recorder = RoundRecorder(cfg, folder, template, 0, ServerProbe(cfg))
    glob = select_keys(template, cfg.run.aggregate)
    strategy = build_strategy(cfg, glob, recorder.on_replies)
    arrays = ArrayRecord({k: Array(v) for k, v in glob.items()})
    recorder.evaluate(0, arrays)
    sent = list(strategy.configure_train(1, arrays, ConfigRecord(),
                                         cast(Grid, _Nodes([1, 2, 3, 4, 5]))))
    for message in sent:  # as the grid sets it when pushing
        message.metadata.__dict__["_message_id"] = f"m{message.metadata.dst_node_id}"
    return recorder, strategy, glob


def _answer(strategy: Strategy, arrays: dict[str, np.ndarray], n: int, site: int) -> Message:
    """Site ``site``'s reply (from node ``site``) to the round's training message."""
    sent = next(m for m in cast(RecordingStrategy, strategy).sent
                if m.metadata.dst_node_id == site)
    return Message(_reply(arrays, n, site).content, reply_to=sent)


def test_bad_updates_are_refused_with_their_reason_and_the_others_aggregate(
        recorded: tuple[RoundRecorder, Strategy, dict[str, np.ndarray]]) -> None:
    recorder, strategy, glob = recorded
    rng = np.random.default_rng(0)
    step = {k: (0.01 * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in glob.items()}
    good = {k: v + step[k] for k, v in glob.items()}
    nan = {**good, "encoder.trunk.0.weight": np.full_like(good["encoder.trunk.0.weight"], np.nan)}
    huge = {k: v + 1000 * step[k] for k, v in glob.items()}
    bent = {**good, "encoder.trunk.0.weight": good["encoder.trunk.0.weight"][..., :-1]}
    replies = [_answer(strategy, arrays, n, site) for arrays, n, site in
               [(good, 3, 1), (good, 1, 2), (nan, 4, 3), (huge, 4, 4), (bent, 4, 5)]]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None
    out = {k: v.numpy() for k, v in arrays.items()}
    for key, value in good.items():
        np.testing.assert_allclose(out[key], value, rtol=1e-6, atol=1e-7)  # sites 1 and 2 only
    recorder.evaluate(1, arrays)
    recorder.close()
    round1 = json.loads((recorder.folder.path / "metrics.json").read_text())["rounds"][1]
    assert [c["site"] for c in round1["clients"]] == ["site1", "site2"]
    assert set(round1["timing"]) == {"exchange_s", "aggregation_s", "probe_s", "write_s"}
    assert round1["wall_seconds"] == pytest.approx(round1["timing"]["exchange_s"]
                                                   + round1["timing"]["aggregation_s"], abs=2e-3)
    failed = {f["site"]: f["error"] for f in round1["failures"]}
    assert failed["site3"] == "update refused: non-finite values in encoder.trunk.0.weight"
    assert re.fullmatch(r"update refused: update \S+ × the size of the global model "
                        r"\(max-update-ratio 10\)", failed["site4"]), failed["site4"]
    shape = glob["encoder.trunk.0.weight"].shape
    assert failed["site5"] == (f"update refused: encoder.trunk.0.weight has shape "
                               f"{(*shape[:-1], shape[-1] - 1)}, the model's is {shape}")
    audit = [json.loads(line) for line in
             (recorder.folder.path / "audit.jsonl").read_text().splitlines()]
    entry = next(e for e in audit if e.get("round") == 1)
    assert [a["site"] for a in entry["sites_answered"]] == ["site1", "site2"]
    assert sorted(f["site"] for f in entry["sites_failed"]) == ["site3", "site4", "site5"]
    assert entry["sites_asked"] == [f"node-{n}" for n in range(1, 6)]


def test_a_round_without_any_acceptable_update_stops_naming_the_reasons(
        recorded: tuple[RoundRecorder, Strategy, dict[str, np.ndarray]]) -> None:
    _, strategy, glob = recorded
    nan = {k: np.full_like(v, np.nan) for k, v in glob.items()}
    replies = [_answer(strategy, nan, 3, 1),
               _answer(strategy, {k: v * 1001 for k, v in glob.items()}, 3, 2)]
    with pytest.raises(FederationError, match=r"round 1: no site succeeded, the run stops "
                       r"\(site1: update refused: non-finite values in .*; site2: update "
                       r"refused: update 1e\+03 × the size of the global model"):
        strategy.aggregate_train(1, replies)


def test_a_diverging_site_answers_with_the_round_and_step_instead_of_weights(
        cfg: FederationConfig, run_config: dict[str, str | int]) -> None:
    message = _train_message(cfg)
    arrays = message.content.array_records[protocol.ARRAYS]
    key = next(iter(arrays))
    arrays[key] = Array(np.full_like(arrays[key].numpy(), np.nan))
    reply = client_train(message, _context({"partition-id": 0, "num-partitions": 2}, run_config))
    assert reply.has_error()
    assert failure_entry(reply) == {
        "site": "site1",
        "error": f"DivergenceError: round 1: non-finite loss (nan) at step 1 (lr {cfg.run.lr:g})"}


def test_non_finite_weights_after_local_training_are_not_sent(
        cfg: FederationConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    def overflowing(model: torch.nn.Module, *args: object, **kwargs: object) -> PretrainResult:
        with torch.no_grad():
            next(model.parameters()).fill_(torch.inf)
        return PretrainResult(loss=1.0)

    monkeypatch.setattr(training, "pretrain", overflowing)
    glob = select_keys(to_numpy(initial_model(cfg).state_dict()), cfg.run.aggregate)
    site = simulated_site(cfg, 0, 2)
    with pytest.raises(DivergenceError, match=r"round 4: non-finite weights after local "
                       r"training in 1 array\(s\), e.g. encoder\."):
        training.train_site(training.train_instructions(cfg, server_round=4), site, glob, site=1)


@pytest.mark.parametrize(("robust", "kind", "settings"), [
    ("trimmed-mean", FedTrimmedAvg, {"beta": 0.25}),
    ("krum", Krum, {"num_malicious_nodes": 1}),
    ("multi-krum", MultiKrum, {"num_malicious_nodes": 1, "num_nodes_to_select": 1}),
    ("bulyan", Bulyan, {"num_malicious_nodes": 1}),
])
def test_robust_aggregation_builds_flowers_strategy(cfg: FederationConfig, robust: str,
                                                    kind: type, settings: dict[str, float]) -> None:
    chosen = replace(cfg, run=replace(cfg.run, robust_aggregation=robust))
    inner = cast(RecordingStrategy, build_strategy(chosen, {}, lambda *_: None)).inner
    assert type(inner) is kind
    assert {k: getattr(inner, k) for k in settings} == settings


def test_robust_aggregation_uses_flowers_median(cfg: FederationConfig) -> None:
    robust = replace(cfg, run=replace(cfg.run, robust_aggregation="median"))
    template = {"encoder.w": np.ones(1, np.float32)}
    strategy = build_strategy(robust, template, lambda r, replies, silent: None)
    assert isinstance(cast(RecordingStrategy, strategy).inner, FedMedian)
    replies = [_reply({"encoder.w": np.array([v], np.float32)}, n, site)
                for site, (v, n) in enumerate([(1.0, 1), (2.0, 1), (9.0, 50)], start=1)]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None and float(arrays["encoder.w"].numpy()[0]) == 2.0


def test_a_reply_flower_could_not_aggregate_is_refused_not_fatal(cfg: FederationConfig) -> None:
    template = {"encoder.w": np.zeros(1, np.float32)}
    log: list[list[Message]] = []
    strategy = build_strategy(cfg, template, lambda r, replies, silent: log.append(replies))
    odd = _reply({"encoder.w": np.ones(1, np.float32)}, 1, 2)
    odd.content["more"] = MetricRecord({"x": 1.0})  # Flower raises on a second MetricRecord
    arrays, _ = strategy.aggregate_train(1, [_reply({"encoder.w": np.ones(1, np.float32)}, 1, 1),
                                             odd])
    assert arrays is not None and float(arrays["encoder.w"].numpy()[0]) == 1.0
    assert failure_entry(log[0][1]) == {
        "site": "site2", "error": "update refused: the reply holds records ['arrays', "
                                  "'metrics', 'more'], expected 'arrays' and 'metrics' (one each)"}


def test_a_failed_round_job_stops_the_run_and_the_rounds_before_it_are_written(
        recorded: tuple[RoundRecorder, Strategy, dict[str, np.ndarray]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    recorder, _, glob = recorded
    arrays = ArrayRecord({k: Array(v) for k, v in glob.items()})

    def broken(global_round: int, state: object) -> None:
        raise OSError(f"probe of round {global_round} failed")

    monkeypatch.setattr(recorder.probe, "due", lambda global_round: global_round == 2)
    monkeypatch.setattr(recorder.probe, "result", broken)
    recorder.evaluate(1, arrays)
    recorder.evaluate(2, arrays)
    with pytest.raises(OSError, match="probe of round 2 failed"):
        recorder.close()
    metrics = json.loads((recorder.folder.path / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [0, 1]
    assert metrics["final_round"] == 1
