"""The typed, validated configuration of a federated run.

One :class:`FederationConfig` is built once from the Flower run config (flat kebab-case keys,
``[tool.flwr.app.config]`` in pyproject.toml, overridable with ``--run-config`` / ``--set``)
merged with a YAML file of site/data settings (sections ``cohort``, ``probe``,
``preprocessing``). Unknown keys, wrong types and out-of-range values raise
:class:`ConfigError` naming the key and the file it came from.
"""

from __future__ import annotations

import json
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from aclecg_core.fed.protocol import AGGREGATES
from aclecg_core.method.losses import ACL_TERMS
from aclecg_core.method.model import ENCODER_SIZES
from aclecg_core.method.pretrain import METHODS, VIEWS

STRATEGIES = ("fedavg", "fedprox", "fedavgm", "fedadam")
COHORT_SOURCES = ("synthetic", "folder")
PARTITIONS = ("site", "iid", "dirichlet")
PROBE_SOURCES = ("synthetic-holdout", "ptbxl", "cinc")
DP_MODES = ("off", "fixed", "adaptive")
# Flower 1.41's aggregations that resist outlying updates (flwr.serverapp.strategy).
ROBUST_AGGREGATIONS = ("off", "median", "trimmed-mean", "krum", "multi-krum", "bulyan")


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


_Check = tuple[Callable[[Any], bool], str]


def _positive(v: Any) -> bool:
    return bool(v > 0)


def _non_negative(v: Any) -> bool:
    return bool(v >= 0)


def _one_of(*choices: str) -> _Check:
    return (lambda v: v in choices), f"one of {list(choices)}"


@dataclass(frozen=True)
class RunSettings:
    """The Flower run config (``[tool.flwr.app.config]``); field ``x_y`` is key ``x-y``."""

    num_server_rounds: int = 30
    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.001
    method: str = "acl"
    acl_terms: str = "both"
    views: str = "auto"
    encoder: str = "tiny"
    strategy: str = "fedavg"
    proximal_mu: float = 0.01
    server_lr: float = 1.0
    server_momentum: float = 0.9
    server_eta: float = 0.01
    aggregate: str = "encoder+projectors"
    max_update_ratio: float = 10.0
    robust_aggregation: str = "off"
    robust_trim_fraction: float = 0.25
    robust_byzantine_sites: int = 1
    dp: str = "off"
    dp_noise_multiplier: float = 1.0
    dp_clipping_norm: float = 1.0
    dp_target_quantile: float = 0.5
    dp_clip_norm_lr: float = 0.2
    dp_clipped_count_stddev: float = 0.0
    secure_aggregation: bool = False
    secagg_shares: float = 1.0
    secagg_threshold: float = 0.67
    secagg_clipping_range: float = 8.0
    secagg_max_weight: float = 10000.0
    share_site_stats: bool = False
    fraction_train: float = 1.0
    min_sites: int = 2
    round_timeout: float = 600.0
    eval_every: int = 1
    seed: int = 0
    device: str = "auto"
    client_cpus: int = 1
    client_gpus: float = 0.0
    ray_address: str = ""
    config_file: str = "configs/default.yaml"
    run_dir: str = ""
    resume: bool = False

    CHECKS: ClassVar[dict[str, _Check]] = {
        "num_server_rounds": (_positive, "> 0"),
        "local_epochs": (_positive, "> 0"),
        "batch_size": ((lambda v: v >= 2), ">= 2 (contrastive batches need negatives)"),
        "lr": (_positive, "> 0"),
        "method": _one_of(*METHODS),
        "acl_terms": _one_of(*ACL_TERMS),
        "views": _one_of(*VIEWS),
        "encoder": _one_of(*ENCODER_SIZES),
        "strategy": _one_of(*STRATEGIES),
        "proximal_mu": (_non_negative, ">= 0"),
        "server_lr": (_positive, "> 0"),
        "server_momentum": ((lambda v: 0 <= v < 1), "in [0, 1)"),
        "server_eta": (_positive, "> 0"),
        "aggregate": _one_of(*AGGREGATES),
        "max_update_ratio": (_positive, "> 0"),
        "robust_aggregation": _one_of(*ROBUST_AGGREGATIONS),
        "robust_trim_fraction": ((lambda v: 0 <= v < 0.5), "in [0, 0.5)"),
        "robust_byzantine_sites": (_non_negative, ">= 0"),
        "dp": _one_of(*DP_MODES),
        "dp_noise_multiplier": (_non_negative, ">= 0"),
        "dp_clipping_norm": (_positive, "> 0"),
        "dp_target_quantile": ((lambda v: 0 <= v <= 1), "in [0, 1]"),
        "dp_clip_norm_lr": (_positive, "> 0"),
        "dp_clipped_count_stddev": (_non_negative, ">= 0 (0: sampled sites / 20)"),
        "secagg_shares": ((lambda v: 0 < v <= 1), "in (0, 1]"),
        "secagg_threshold": ((lambda v: 0 < v <= 1), "in (0, 1]"),
        "secagg_clipping_range": (_positive, "> 0"),
        "secagg_max_weight": (_positive, "> 0"),
        "fraction_train": ((lambda v: 0 < v <= 1), "in (0, 1]"),
        "min_sites": (_positive, "> 0"),
        "round_timeout": (_positive, "> 0"),
        "eval_every": (_non_negative, ">= 0 (0: only round 0 and the last round)"),
        "seed": (_non_negative, ">= 0"),
        "device": ((lambda v: v in ("auto", "cpu") or v.startswith("cuda")),
                   "'auto', 'cpu' or 'cuda[:N]'"),
        "client_cpus": (_positive, "> 0"),
        "client_gpus": ((lambda v: 0 <= v <= 1), "in [0, 1]"),
    }


@dataclass(frozen=True)
class CohortSettings:
    """YAML section ``cohort``: where the sites' training data comes from (simulation).

    In a deployment each SuperNode names its own data with node config ``data-dir``.
    """

    source: str = "synthetic"
    sites: int = 4
    records_per_site: int = 100
    synthetic_seed: int = 0
    path: str = ""
    layout: str = "auto"
    partition: str = "site"
    dirichlet_alpha: float = 0.5
    classes: list[str] = field(default_factory=list)
    cache_dir: str = ".cache"

    CHECKS: ClassVar[dict[str, _Check]] = {
        "source": _one_of(*COHORT_SOURCES),
        "sites": (_positive, "> 0"),
        "records_per_site": ((lambda v: v >= 4), ">= 4"),
        "synthetic_seed": (_non_negative, ">= 0"),
        "layout": _one_of("auto", "ptbxl", "cinc", "wfdb"),
        "partition": _one_of(*PARTITIONS),
        "dirichlet_alpha": (_positive, "> 0"),
    }


@dataclass(frozen=True)
class ProbeSettings:
    """YAML section ``probe``: the server-held labeled data of the centralized linear probe.

    ``synthetic-holdout``: an extra labeled synthetic site, split patient-disjoint;
    ``ptbxl``: a PTB-XL folder, folds 1–8 train / 9 validation / 10 test; ``cinc``: a CinC
    folder, split patient-disjoint. Patient-disjoint splits hold out ``test_fraction`` of the
    patients for the test part, then ``val_fraction`` of the rest for the validation part
    (where the probe chooses its regularisation). ``classes`` empty: the source's default.
    """

    source: str = "synthetic-holdout"
    path: str = ""
    layout: str = "auto"
    test_fraction: float = 0.3
    val_fraction: float = 0.2
    classes: list[str] = field(default_factory=list)
    bootstrap: int = 200

    CHECKS: ClassVar[dict[str, _Check]] = {
        "source": _one_of(*PROBE_SOURCES),
        "layout": _one_of("auto", "ptbxl", "cinc", "wfdb"),
        "test_fraction": ((lambda v: 0 < v < 1), "in (0, 1)"),
        "val_fraction": ((lambda v: 0 < v < 1), "in (0, 1)"),
        "bootstrap": (_non_negative, ">= 0"),
    }


@dataclass(frozen=True)
class FederationConfig:
    """Everything a federated run needs, validated; paths are absolute."""

    run: RunSettings
    cohort: CohortSettings
    probe: ProbeSettings
    preprocessing: dict[str, Any]
    base_dir: str

    def path(self, value: str) -> Path:
        """``value`` as an absolute path (relative paths are taken from ``base_dir``)."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def synthetic_dir(self) -> Path:
        """Cache folder of the synthetic cohort: the training sites plus the hold-out site."""
        c = self.cohort
        name = f"seed-{c.synthetic_seed}-{c.sites}x{c.records_per_site}"
        return self.path(c.cache_dir) / "synthetic" / name

    def sites_per_round(self) -> int:
        """Sites sampled per round as Flower's FedAvg samples them, if all ``cohort.sites``
        are connected: ``max(int(sites * fraction-train), min-sites)`` (DP noise calibration)."""
        return max(int(self.cohort.sites * self.run.fraction_train), self.run.min_sites)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready snapshot with kebab-case keys (``config.json`` of a run)."""
        return {
            "run": _kebab(asdict(self.run)),
            "cohort": _kebab(asdict(self.cohort)),
            "probe": _kebab(asdict(self.probe)),
            "preprocessing": dict(self.preprocessing),
            "base-dir": self.base_dir,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FederationConfig:
        """Inverse of :meth:`to_json` (validated again)."""
        data = json.loads(text)
        return cls(
            run=_build(RunSettings, data["run"], "config.json [run]"),
            cohort=_build(CohortSettings, data["cohort"], "config.json [cohort]"),
            probe=_build(ProbeSettings, data["probe"], "config.json [probe]"),
            preprocessing=_preprocessing(data["preprocessing"], "config.json"),
            base_dir=data["base-dir"],
        )


def _kebab(data: dict[str, Any]) -> dict[str, Any]:
    return {k.replace("_", "-"): v for k, v in data.items()}


T = TypeVar("T")


def _type_ok(value: Any, hint: Any) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    raise TypeError(f"unsupported config type {hint}")


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) and not isinstance(hint, types.GenericAlias) \
        else str(hint)


def _build(cls: type[T], data: Mapping[str, Any], source: str) -> T:
    """``cls`` from kebab-case ``data``: unknown keys, wrong types, bad ranges -> ConfigError."""
    hints = typing.get_type_hints(cls)
    known = {f.name.replace("_", "-"): f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    checks: dict[str, _Check] = getattr(cls, "CHECKS", {})
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = known[key]
        hint = hints[name]
        if not _type_ok(value, hint):
            raise ConfigError(f"{source}: key '{key}' must be of type {_type_name(hint)}, "
                              f"got {value!r} ({type(value).__name__})")
        if hint is float:
            value = float(value)
        if name in checks and not checks[name][0](value):
            raise ConfigError(f"{source}: key '{key}' must be {checks[name][1]}, got {value!r}")
        values[name] = value
    return cls(**values)


def _preprocessing(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Validate ``data`` (kebab- or snake-case keys) as a PreprocessConfig; its ``to_dict()``."""
    from aclecg_core.data.preprocess import PreprocessConfig

    values = {k.replace("-", "_"): v for k, v in data.items()}
    try:
        return PreprocessConfig.from_dict(values).to_dict()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source} [preprocessing]: {exc}") from None


def read_pyproject_defaults(pyproject: Path) -> dict[str, Any]:
    """``[tool.flwr.app.config]`` of ``pyproject`` (the run-config defaults)."""
    with open(pyproject, "rb") as f:
        data = tomllib.load(f)
    try:
        return dict(data["tool"]["flwr"]["app"]["config"])
    except KeyError:
        raise ConfigError(f"{pyproject}: no [tool.flwr.app.config] section") from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` (CLI ``--set``) -> dict; values parsed as TOML scalars, else str."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out[key.strip()] = value
    return out


def load_config(run_config: Mapping[str, Any], base_dir: Path,
                defaults: Mapping[str, Any] | None = None) -> FederationConfig:
    """Validate ``defaults`` overlaid with ``run_config`` plus the YAML file it names.

    Args:
        run_config: Flower run config (``context.run_config``) or CLI overrides, kebab-case.
        base_dir: the project (app) folder; relative paths are taken from it.
        defaults: run-config defaults (``read_pyproject_defaults``); None -> the
            dataclass defaults, which mirror pyproject.toml (checked by a test).
    """
    merged = {**(defaults or {}), **run_config}
    run = _build(RunSettings, merged, "run config")
    if run.method == "clocs" and run.views != "auto":
        raise ConfigError("run config: key 'views' must be 'auto' with method 'clocs' "
                          "(CLOCS contrasts adjacent segments, it uses no augmentation)")
    if run.secure_aggregation and run.dp != "off":
        raise ConfigError(f"run config: secure-aggregation cannot be combined with dp='{run.dp}': "
                          "server-side clipping needs each site's update, which secure "
                          "aggregation hides from the server")
    if run.secure_aggregation and run.min_sites < 2:
        raise ConfigError("run config: secure-aggregation needs min-sites >= 2 (the sum of "
                          "one site's update is that update)")
    _check_robust_aggregation(run)
    base = Path(base_dir).resolve()
    yaml_path = Path(run.config_file).expanduser()
    yaml_path = yaml_path if yaml_path.is_absolute() else base / yaml_path
    data: dict[str, Any] = {}
    if run.config_file:
        if not yaml_path.is_file():
            raise ConfigError(f"run config: key 'config-file': no such file {yaml_path}")
        try:
            data = yaml.safe_load(yaml_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{yaml_path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{yaml_path}: expected a mapping of sections")
    sections = {"cohort", "probe", "preprocessing"}
    unknown = sorted(set(data) - sections)
    if unknown:
        raise ConfigError(f"{yaml_path}: unknown section(s) {unknown}; known: {sorted(sections)}")
    for name in sections:
        if not isinstance(data.get(name) or {}, dict):
            raise ConfigError(f"{yaml_path}: section '{name}' must be a mapping")
    cohort = _build(CohortSettings, data.get("cohort") or {}, f"{yaml_path} [cohort]")
    probe = _build(ProbeSettings, data.get("probe") or {}, f"{yaml_path} [probe]")
    if cohort.source == "folder" and not cohort.path:
        raise ConfigError(f"{yaml_path} [cohort]: key 'path' is required with source 'folder'")
    if probe.source != "synthetic-holdout" and not probe.path:
        raise ConfigError(f"{yaml_path} [probe]: key 'path' is required with source "
                          f"'{probe.source}'")
    if probe.source == "synthetic-holdout" and cohort.source != "synthetic":
        raise ConfigError(f"{yaml_path} [probe]: source 'synthetic-holdout' needs "
                          "cohort source 'synthetic'")
    if run.min_sites > cohort.sites:
        raise ConfigError(f"run config: key 'min-sites' ({run.min_sites}) exceeds the "
                          f"{cohort.sites} sites of {yaml_path} [cohort]")
    preprocessing = _preprocessing(data.get("preprocessing") or {}, str(yaml_path))
    cfg = FederationConfig(run=run, cohort=cohort, probe=probe,
                           preprocessing=preprocessing, base_dir=str(base))
    _check_adaptive_dp(cfg)
    _check_bulyan(cfg)
    return cfg


def _check_robust_aggregation(run: RunSettings) -> None:
    """A robust aggregation needs each site's update and replaces FedAvg's weighted mean."""
    robust = run.robust_aggregation
    if robust == "off":
        return
    if run.secure_aggregation:
        raise ConfigError(f"run config: robust-aggregation '{robust}' cannot be combined with "
                          "secure-aggregation: it compares single updates, which secure "
                          "aggregation hides from the server; set robust-aggregation=off or "
                          "secure-aggregation=false")
    if run.strategy != "fedavg":
        raise ConfigError(f"run config: robust-aggregation '{robust}' replaces fedavg's weighted "
                          f"mean and cannot be combined with strategy '{run.strategy}'; use "
                          "strategy=fedavg")


def _check_bulyan(cfg: FederationConfig) -> None:
    """Flower's Bulyan skips every round with fewer than 4 f + 3 replies."""
    r = cfg.run
    needed = 4 * r.robust_byzantine_sites + 3
    if r.robust_aggregation == "bulyan" and cfg.sites_per_round() < needed:
        raise ConfigError(f"run config: robust-aggregation 'bulyan' with robust-byzantine-sites="
                          f"{r.robust_byzantine_sites} needs at least {needed} sites per round, "
                          f"the run samples {cfg.sites_per_round()}; lower "
                          "robust-byzantine-sites or use median / trimmed-mean / krum")


def _check_adaptive_dp(cfg: FederationConfig) -> None:
    """Flower's adaptive clipping needs noise multiplier < 2 × clipped-count stddev."""
    r = cfg.run
    if r.dp != "adaptive" or r.dp_noise_multiplier == 0:
        return
    stddev = r.dp_clipped_count_stddev or cfg.sites_per_round() / 20
    if r.dp_noise_multiplier >= 2 * stddev:
        origin = ("" if r.dp_clipped_count_stddev
                  else f" (0: {cfg.sites_per_round()} sampled sites / 20)")
        raise ConfigError(f"run config: key 'dp-noise-multiplier' ({r.dp_noise_multiplier:g}) "
                          f"must be < 2 × dp-clipped-count-stddev = {2 * stddev:g}{origin} with "
                          "dp 'adaptive'; raise dp-clipped-count-stddev or lower the multiplier")
