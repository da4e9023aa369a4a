"""Run configuration: defaults mirror pyproject, bad keys/types/ranges name the key and file."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from aclecg_core.fed.config import (
    ConfigError,
    FederationConfig,
    RunSettings,
    load_config,
    parse_overrides,
    read_pyproject_defaults,
)
from aclecg_core.fed.training import train_instructions
from aclecg_core.method.pretrain import PretrainConfig
from aclecg_core.settings import from_attributes

ROOT = Path(__file__).resolve().parents[2]


def _yaml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sites.yaml"
    path.write_text(text)
    return str(path)


def test_pyproject_defaults_equal_dataclass_defaults() -> None:
    defaults = read_pyproject_defaults(ROOT / "pyproject.toml")
    assert defaults == {k.replace("_", "-"): v for k, v in asdict(RunSettings()).items()}


def test_default_config_loads_and_round_trips() -> None:
    cfg = load_config(read_pyproject_defaults(ROOT / "pyproject.toml"), ROOT)
    assert cfg.cohort.source == "synthetic" and cfg.probe.source == "synthetic-holdout"
    assert FederationConfig.from_json(cfg.to_json()) == cfg
    assert cfg.synthetic_dir().is_relative_to(ROOT / ".cache")


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("num-server-rounds", 0, "'num-server-rounds' must be > 0"),
    ("num-server-rounds", "3", "'num-server-rounds' must be of type int"),
    ("lr", True, "'lr' must be of type float"),
    ("strategy", "fedsgd", "'strategy' must be one of"),
    ("aggregate", "projectors", "'aggregate' must be one of"),
    ("fraction-train", 1.5, "'fraction-train' must be in (0, 1]"),
    ("num-rounds", 3, "unknown key(s) ['num-rounds']"),
    ("acl-terms", "global", "'acl-terms' must be one of"),
    ("method", "byol", "'method' must be one of"),
])
def test_bad_run_config_names_the_key(key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError, match="run config") as info:
        load_config({key: value}, ROOT)
    assert expected in str(info.value)


_FOLDERS = "cohort:\n  source: folder\n  {}\nprobe:\n  source: cinc\n  path: x\n"


@pytest.mark.parametrize(("text", "expected"), [
    (_FOLDERS.format("paths: a/b"), "[cohort]: key 'paths' must be of type list[str]"),
    (_FOLDERS.format("paths: [a]\n  path: b"), "keys 'path' and 'paths' exclude each other"),
    (_FOLDERS.format("paths: [a, '']"), "key 'paths' must list folder names, got an empty one"),
    (_FOLDERS.format("paths: []"), "key 'path' (one folder) or 'paths' (several) is required"),
    (_FOLDERS.format("paths: [/no/such/folder]"),
     "[cohort]: key 'paths': /no/such/folder: no such file or folder"),
    (_FOLDERS.format("path: /no/such/folder"),
     "[cohort]: key 'path': /no/such/folder: no such file or folder"),
    ("cohort:\n  sites: 0\n", "[cohort]: key 'sites' must be > 0"),
    ("cohort:\n  partition: random\n", "[cohort]: key 'partition' must be one of"),
    ("probe:\n  test-fraction: 1\n", "[probe]: key 'test-fraction' must be in (0, 1)"),
    ("probe:\n  val-fraction: 0\n", "[probe]: key 'val-fraction' must be in (0, 1)"),
    ("probe:\n  clases: [NSR]\n", "[probe]: unknown key(s) ['clases']"),
    ("probe:\n  source: ptbxl\n", "[probe]: key 'path' (one folder) or 'paths' (several) is "
                                 "required with source 'ptbxl'"),
    ("probe:\n  source: ptbxl\n  path: a\n  paths: [b]\n",
     "[probe]: keys 'path' and 'paths' exclude each other"),
    ("probe:\n  source: ptbxl\n  paths: ['']\n", "[probe]: key 'paths' must list folder names"),
    ("preprocessing:\n  target-fs: -1\n", "[preprocessing]: preprocessing target_fs"),
    ("preprocessing:\n  rescale-amplitude: maybe\n",
     "[preprocessing]: preprocessing rescale_amplitude must be true or false"),
    ("federation:\n  x: 1\n", "unknown section(s) ['federation']"),
])
def test_bad_yaml_names_the_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config({"config-file": path}, ROOT)
    assert path in str(info.value) and expected in str(info.value)


def test_amplitude_options_reach_the_preprocessing(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "preprocessing:\n  rescale-amplitude: true\n"
                           "  normalization: record-zscore\n")
    cfg = load_config({"config-file": path}, ROOT)
    assert cfg.preprocessing["rescale_amplitude"] is True
    assert cfg.preprocessing["normalization"] == "record-zscore"


def test_the_federation_preprocesses_as_aclecg_pretrain_unless_told_otherwise(
        tmp_path: Path) -> None:
    """One set of defaults: the shipped configs and a file without a preprocessing section get
    ``aclecg pretrain``'s (5 s windows, one per 10 s); a key given overrides only itself."""
    from aclecg_cli.main import build_parser
    from aclecg_core.data.preprocess import PreprocessConfig

    pretrain = build_parser().parse_args(["pretrain", "--data", "x", "--out", "y"])
    study = PreprocessConfig(window_s=pretrain.window_s, stride_s=pretrain.stride_s,
                             normalization=pretrain.normalization,
                             rescale_amplitude=pretrain.rescale_amplitude).to_dict()
    assert (study["window_s"], study["stride_s"]) == (5.0, 10.0)
    for config_file in ("configs/default.yaml", _yaml(tmp_path, "cohort:\n  sites: 4\n")):
        assert load_config({"config-file": config_file}, ROOT).preprocessing == study
    cfg = load_config({"config-file": _yaml(tmp_path, "preprocessing:\n  window-s: 10.0\n")},
                      ROOT)
    assert {**cfg.preprocessing, "window_s": 5.0} == study


def test_missing_yaml_file_is_named() -> None:
    with pytest.raises(ConfigError, match=r"'config-file': no such file .*nope\.yaml"):
        load_config({"config-file": "nope.yaml"}, ROOT)


def test_clocs_and_ablation_keys_reach_local_training() -> None:
    cfg = load_config({"method": "clocs"}, ROOT)
    assert cfg.run.method == "clocs" and cfg.run.views == "auto"
    cfg = load_config({"acl-terms": "inter", "views": "simclr"}, ROOT)
    assert (cfg.run.acl_terms, cfg.run.views) == ("inter", "simclr")
    with pytest.raises(ConfigError, match="'views' must be 'auto' with method 'clocs'"):
        load_config({"method": "clocs", "views": "acl"}, ROOT)


def test_min_sites_cannot_exceed_sites(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "cohort:\n  sites: 2\n")
    with pytest.raises(ConfigError, match="'min-sites' \\(3\\) exceeds the 2 sites"):
        load_config({"config-file": path, "min-sites": 3}, ROOT)


@pytest.mark.parametrize(("settings", "expected"), [
    ({"dp": "fixed"}, "cannot be combined with dp='fixed'"),
    ({"min-sites": 1}, "needs min-sites >= 2"),
    ({"secagg-threshold": 0.0}, "'secagg-threshold' must be in (0, 1]"),
])
def test_secure_aggregation_settings_are_checked(settings: dict[str, object],
                                                 expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"secure-aggregation": True, **settings}, ROOT)
    assert expected in str(err.value)


def test_a_robust_aggregation_replaces_the_server_step_of_the_default_strategy() -> None:
    for strategy in ("fedavg", "fedavgm"):
        settings = {} if strategy == RunSettings.strategy else {"strategy": strategy}
        cfg = load_config({"robust-aggregation": "median", **settings}, ROOT)
        assert (cfg.run.robust_aggregation, cfg.run.strategy) == ("median", strategy)


@pytest.mark.parametrize(("settings", "expected"), [
    ({"secure-aggregation": True}, "cannot be combined with secure-aggregation"),
    ({"strategy": "fedprox"}, "cannot be combined with strategy 'fedprox'; use "
                              "strategy=fedavgm (the default) or fedavg"),
    ({"strategy": "fedadam"}, "replaces the server step of fedavg or fedavgm and cannot be "
                              "combined with strategy 'fedadam'"),
    ({"robust-aggregation": "bulyan"}, "'bulyan' with robust-byzantine-sites=1 needs at least 7 "
                                       "sites per round, the run samples 4"),
    ({"robust-trim-fraction": 0.5}, "'robust-trim-fraction' must be in [0, 0.5)"),
])
def test_robust_aggregation_settings_are_checked(settings: dict[str, object],
                                                 expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"robust-aggregation": "median", **settings}, ROOT)
    assert expected in str(err.value)


def test_overrides_parse_as_toml_scalars() -> None:
    assert parse_overrides(["num-server-rounds=5", "lr=1e-4", "resume=true",
                            "strategy=fedprox", 'run-dir="runs/x"']) == {
        "num-server-rounds": 5, "lr": 1e-4, "resume": True, "strategy": "fedprox",
        "run-dir": "runs/x"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["rounds"])


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = load_config({"config-file": f"configs/{name}"}, ROOT)
    assert cfg.cohort.sites >= cfg.run.min_sites


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d["run"].update(lr=0), "config.json [run]: key 'lr' must be > 0"),
    (lambda d: d["run"].update(method="clocs", views="acl"), "'views' must be 'auto' with method"),
    (lambda d: d["cohort"].update(sites=1), "key 'min-sites' (2) exceeds the 1 sites of "
                                            "config.json [cohort]"),
    (lambda d: d["cohort"].update(source="folder"), "config.json [cohort]: key 'path' (one "
                                                    "folder) or 'paths' (several) is required"),
    (lambda d: d["preprocessing"].update(target_fs=-1), "config.json [preprocessing]: "
                                                        "preprocessing target_fs"),
    (lambda d: d.pop("probe"), "config.json: expected the keys"),
])
def test_from_json_validates_as_load_config_does(change: Callable[[dict[str, Any]], object],
                                                 expected: str) -> None:
    data = load_config({}, ROOT).to_dict()
    change(data)
    with pytest.raises(ConfigError) as info:
        FederationConfig.from_json(json.dumps(data))
    assert expected in str(info.value)


def test_train_site_settings_follow_the_run_config() -> None:
    cfg = load_config({"lr": 0.01, "batch-size": 8, "views": "simclr", "strategy": "fedprox",
                       "keep-optimizer-state": True}, ROOT)
    ins = train_instructions(cfg, round_offset=2, server_round=1)
    assert (ins.lr, ins.batch_size, ins.views, ins.proximal_mu) == (0.01, 8, "simclr", 0.01)
    assert ins.keep_optimizer_state and not train_instructions(
        load_config({}, ROOT)).keep_optimizer_state
    pcfg = from_attributes(PretrainConfig, ins, epochs=ins.local_epochs)
    assert (pcfg.lr, pcfg.batch_size, pcfg.views, pcfg.proximal_mu, pcfg.epochs) == (
        0.01, 8, "simclr", 0.01, cfg.run.local_epochs)
