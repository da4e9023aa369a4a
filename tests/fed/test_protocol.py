"""The training protocol and a deployed site's own settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from aclecg_core.fed import protocol
from aclecg_core.fed.arrays import select_keys, to_numpy
from aclecg_core.fed.config import FederationConfig, load_config
from aclecg_core.fed.protocol import ProtocolError, TrainInstructions, TrainReport
from aclecg_core.fed.site import SiteConfigError, SiteSettings
from aclecg_core.fed.sites import ensure_synthetic_cohort
from aclecg_core.fed.training import initial_model, train_instructions
from client.app import train as client_train
from server.replies import failure_entry

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("task_identity")


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> FederationConfig:
    coordinator = tmp_path_factory.mktemp("coordinator")
    yaml = coordinator / "private.yaml"
    yaml.write_text(f"cohort:\n  sites: 2\n  records-per-site: 6\n  cache-dir: "
                    f"{coordinator}/cache\nprobe:\n  bootstrap: 7\n")
    return load_config({"config-file": str(yaml), "batch-size": 4, "strategy": "fedprox",
                        "share-site-stats": True, "run-dir": str(coordinator / "runs")}, ROOT)


def _message(config: dict[str, Any], cfg: FederationConfig) -> Message:
    arrays = select_keys(to_numpy(initial_model(cfg).state_dict()), cfg.run.aggregate)
    return Message(RecordDict({
        protocol.ARRAYS: ArrayRecord({k: Array(v) for k, v in arrays.items()}),
        protocol.CONFIG: ConfigRecord(config)}), dst_node_id=1, message_type=MessageType.TRAIN)


def test_instructions_round_trip_and_carry_no_coordinator_setting(cfg: FederationConfig) -> None:
    encoded = train_instructions(cfg, round_offset=5).encode()
    encoded[protocol.SERVER_ROUND_KEY] = 2  # Flower's strategies add it
    decoded = TrainInstructions.decode(encoded)
    assert decoded.round == 7 and decoded.proximal_mu == cfg.run.proximal_mu
    assert decoded.preprocessing == cfg.preprocessing
    assert decoded.stats_classes and decoded.share_site_stats
    assert set(encoded) == {
        "aclecg-protocol", "method", "acl-terms", "views", "encoder", "local-epochs",
        "batch-size", "lr", "seed", "preprocessing", "aggregate", "proximal-mu",
        "secure-aggregation", "share-site-stats", "stats-classes", "round-offset",
        "server-round", "keep-optimizer-state"}
    text = json.dumps(encoded)
    for private in (cfg.base_dir, str(cfg.path(cfg.cohort.cache_dir)), cfg.run.config_file,
                    cfg.run.run_dir, "cohort", "probe"):
        assert private not in text


@pytest.mark.parametrize(("change", "problem"), [
    ({"aclecg-protocol": 2}, "protocol version 2, this site speaks version 1"),
    ({"aclecg-protocol": None}, "protocol version None"),
    ({"method": None}, "lacks 'method'"),
    ({"lr": "fast"}, "'lr' must be float"),
    ({"batch-size": 1}, "'batch-size' out of range"),
    ({"encoder": "huge"}, "'encoder' must be one of"),
    ({"preprocessing": json.dumps({"target_fs": -1})}, "bad 'preprocessing'"),
])
def test_a_bad_training_message_is_refused_with_its_problem(
        cfg: FederationConfig, change: dict[str, Any], problem: str) -> None:
    encoded: dict[str, Any] = {**train_instructions(cfg).encode(), "server-round": 1}
    for key, value in change.items():
        if value is None:
            del encoded[key]
        else:
            encoded[key] = value
    with pytest.raises(ProtocolError, match=problem):
        TrainInstructions.decode(encoded)


def test_a_site_answers_a_message_of_another_version_with_an_error(
        cfg: FederationConfig, tmp_path: Path) -> None:
    encoded = {**train_instructions(cfg).encode(), "server-round": 1, "aclecg-protocol": 99}
    context = Context(run_id=1, node_id=3, node_config={"data-dir": str(tmp_path), "site": "site3"},
                      state=RecordDict(), run_config={})
    reply = client_train(_message(encoded, cfg), context)
    assert reply.has_error()
    failure = failure_entry(reply)
    assert failure["site"] == "site3"
    assert "ProtocolError: training message of protocol version 99" in failure["error"]


def test_a_deployed_site_caches_in_its_own_folder(cfg: FederationConfig, tmp_path: Path) -> None:
    data = ensure_synthetic_cohort(cfg) / "site1"
    cache = tmp_path / "hospital-cache"
    node: dict[str, bool | float | int | str] = {
        "site": "hospital-1", "data-dir": str(data), "cache-dir": str(cache), "device": "cpu",
        "threads": 1}
    encoded = {**train_instructions(cfg).encode(), "server-round": 1}
    reply = client_train(_message(encoded, cfg), Context(
        run_id=1, node_id=9, node_config=node, state=RecordDict(), run_config={}))
    assert not reply.has_error(), reply.error
    report = TrainReport.decode(reply.content.metric_records[protocol.METRICS])
    assert report.site_index == 1 and report.num_examples > 0
    assert reply.content.config_records[protocol.SITE][protocol.SITE_NAME_KEY] == "hospital-1"
    assert any((cache / "cohorts").iterdir())
    for array in reply.content.array_records[protocol.ARRAYS].values():
        assert np.isfinite(array.numpy()).all()


def test_site_settings_from_node_config(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    settings = SiteSettings.from_node_config({"site": "hospital12", "data-dir": "/data/ecg"})
    assert settings.index == 12 and settings.device == "auto" and settings.threads == 0
    assert settings.cohort_cache == tmp_path / "xdg" / "aclecg" / "cohorts"
    named = SiteSettings.from_node_config({"data-dir": "/d", "site-index": 4, "device": "cuda:1",
                                           "cache-dir": str(tmp_path / "c")})
    assert named.index == 4 and named.device == "cuda:1"
    assert named.cohort_cache == tmp_path / "c" / "cohorts"


@pytest.mark.parametrize(("node", "problem"), [
    ({}, "lacks 'data-dir'"),
    ({"data-dir": "/d", "device": "gpu"}, "'device'"),
    ({"data-dir": "/d", "threads": -1}, "'threads' must be an integer >= 0"),
    ({"data-dir": "/d", "layout": "csv"}, "'layout' must be one of"),
    ({"data-dir": "/d", "site-index": "one"}, "'site-index' must be an integer"),
])
def test_bad_node_config_names_the_key(node: dict[str, Any], problem: str) -> None:
    with pytest.raises(SiteConfigError, match=problem):
        SiteSettings.from_node_config(node)


def test_a_reply_without_a_training_scalar_is_named() -> None:
    with pytest.raises(ProtocolError, match="lacks metric 'seconds'"):
        TrainReport.decode({"loss": 1.0, "num-examples": 3, "samples-per-second": 1.0,
                            "site-index": 1})
