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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from aclecg_core.data.cohort import DataError
from aclecg_core.data.sources import LAYOUTS, described
from aclecg_core.fed.protocol import AGGREGATES
from aclecg_core.method.losses import ACL_TERMS
from aclecg_core.method.model import ENCODER_SIZES
from aclecg_core.method.pretrain import METHODS, VIEWS
from aclecg_core.settings import (
    DP_MODES,
    ConfigError,
    Rule,
    Settings,
    from_mapping,
    kebab,
    one_of,
)

STRATEGIES = ("fedavg", "fedprox", "fedavgm", "fedadam", "cyclic")
COHORT_SOURCES = ("synthetic", "folder")
PARTITIONS = ("site", "iid", "dirichlet")
PROBE_SOURCES = ("synthetic-holdout", "ptbxl", "cinc")
# Flower 1.41's aggregations that resist outlying updates (flwr.serverapp.strategy).
ROBUST_AGGREGATIONS = ("off", "median", "trimmed-mean", "krum", "multi-krum", "bulyan")
ROBUST_STRATEGIES = ("fedavg", "fedavgm")  # whose server step a robust aggregation replaces
SECTIONS = ("cohort", "probe", "preprocessing")  # of the YAML file

_Fraction = Annotated[float, Field(gt=0, le=1)]
_Unit = Annotated[float, Field(ge=0, le=1)]
_Device = Rule(lambda v: v in ("auto", "cpu") or v.startswith("cuda"),
               "'auto', 'cpu' or 'cuda[:N]'")


@dataclass(frozen=True)
class RunSettings(Settings):
    """The Flower run config (``[tool.flwr.app.config]``); field ``x_y`` is key ``x-y``."""

    WHAT = "run config"

    num_server_rounds: PositiveInt = 30
    local_epochs: PositiveInt = 1
    batch_size: Annotated[int, Field(ge=2, description=">= 2 (contrastive batches need "
                                                       "negatives)")] = 32
    lr: PositiveFloat = 0.001
    keep_optimizer_state: bool = False
    method: Annotated[str, one_of(METHODS)] = "acl"
    acl_terms: Annotated[str, one_of(ACL_TERMS)] = "both"
    views: Annotated[str, one_of(VIEWS)] = "auto"
    encoder: Annotated[str, one_of(ENCODER_SIZES)] = "tiny"
    strategy: Annotated[str, one_of(STRATEGIES)] = "fedavgm"
    proximal_mu: NonNegativeFloat = 0.01
    server_lr: PositiveFloat = 1.0
    server_momentum: Annotated[float, Field(ge=0, lt=1)] = 0.5
    server_eta: PositiveFloat = 0.01
    aggregate: Annotated[str, one_of(AGGREGATES)] = "encoder+projectors"
    max_update_ratio: PositiveFloat = 10.0
    robust_aggregation: Annotated[str, one_of(ROBUST_AGGREGATIONS)] = "off"
    robust_trim_fraction: Annotated[float, Field(ge=0, lt=0.5)] = 0.25
    robust_byzantine_sites: NonNegativeInt = 1
    dp: Annotated[str, one_of(DP_MODES)] = "off"
    dp_noise_multiplier: NonNegativeFloat = 1.0
    dp_clipping_norm: PositiveFloat = 1.0
    dp_target_quantile: _Unit = 0.5
    dp_clip_norm_lr: PositiveFloat = 0.2
    dp_clipped_count_stddev: Annotated[float, Field(ge=0, description=">= 0 (0: sampled "
                                                                      "sites / 20)")] = 0.0
    secure_aggregation: bool = False
    secagg_shares: _Fraction = 1.0
    secagg_threshold: _Fraction = 0.67
    secagg_clipping_range: PositiveFloat = 8.0
    secagg_max_weight: PositiveFloat = 10000.0
    share_site_stats: bool = False
    fraction_train: _Fraction = 1.0
    min_sites: PositiveInt = 2
    round_timeout: PositiveFloat = 600.0
    eval_every: Annotated[int, Field(ge=0, description=">= 0 (0: only round 0 and the last "
                                                       "round)")] = 1
    seed: NonNegativeInt = 0
    device: Annotated[str, _Device] = "auto"
    client_cpus: PositiveInt = 1
    client_gpus: _Unit = 0.0
    ray_address: str = ""
    config_file: str = "configs/default.yaml"
    run_dir: str = ""
    resume: bool = False

    def problems(self) -> list[str]:
        """Rules across keys: CLOCS has no views; secure aggregation hides the single updates
        that DP clipping and robust aggregation need; a robust aggregation replaces the server
        step of fedavg and fedavgm (the default; no server momentum then), not FedProx's,
        FedAdam's or the cyclic chain's; the cyclic chain averages nothing for secure
        aggregation or DP to act on."""
        out = []
        if self.method == "clocs" and self.views != "auto":
            out.append("key 'views' must be 'auto' with method 'clocs' (CLOCS contrasts "
                       "adjacent segments, it uses no augmentation)")
        if self.secure_aggregation and self.dp != "off":
            out.append(f"secure-aggregation cannot be combined with dp='{self.dp}': server-side "
                       "clipping needs each site's update, which secure aggregation hides from "
                       "the server")
        if self.secure_aggregation and self.min_sites < 2:
            out.append("secure-aggregation needs min-sites >= 2 (the sum of one site's update "
                       "is that update)")
        robust = self.robust_aggregation
        if robust != "off" and self.secure_aggregation:
            out.append(f"robust-aggregation '{robust}' cannot be combined with secure-aggregation:"
                       " it compares single updates, which secure aggregation hides from the "
                       "server; set robust-aggregation=off or secure-aggregation=false")
        if self.strategy == "cyclic" and (self.secure_aggregation or self.dp != "off"):
            out.append("strategy 'cyclic' hands each site's model to the next site: it cannot "
                       "be combined with secure-aggregation or dp, which act on a sum or mean "
                       "of the sites' updates; set strategy=fedavgm for them")
        if robust != "off" and self.strategy not in ROBUST_STRATEGIES:
            out.append(f"robust-aggregation '{robust}' replaces the server step of fedavg or "
                       f"fedavgm and cannot be combined with strategy '{self.strategy}'; use "
                       "strategy=fedavgm (the default) or fedavg")
        return out


@dataclass(frozen=True)
class CohortSettings(Settings):
    """YAML section ``cohort``: where the sites' training data comes from (simulation).

    ``path`` names one folder, ``paths`` several (each in any layout), not both. ``sites`` left
    out with a folder partitioned by ``site``: the number of hospitals found in it.
    In a deployment each SuperNode names its own data with node config ``data-dir``.
    """

    WHAT = "cohort"

    source: Annotated[str, one_of(COHORT_SOURCES)] = "synthetic"
    sites: PositiveInt = 4
    records_per_site: Annotated[int, Field(ge=4)] = 100
    synthetic_seed: NonNegativeInt = 0
    path: str = ""
    paths: list[str] = field(default_factory=list)
    layout: Annotated[str, one_of(LAYOUTS)] = "auto"
    partition: Annotated[str, one_of(PARTITIONS)] = "site"
    dirichlet_alpha: PositiveFloat = 0.5
    classes: list[str] = field(default_factory=list)
    cache_dir: str = ".cache"

    def problems(self) -> list[str]:
        if self.path and self.paths:
            return ["keys 'path' and 'paths' exclude each other: list every folder in 'paths'"]
        if not all(p.strip() for p in self.paths):
            return ["key 'paths' must list folder names, got an empty one"]
        if self.source == "folder" and not self.folders():
            return ["key 'path' (one folder) or 'paths' (several) is required with source "
                    "'folder'"]
        return []

    def folders(self) -> list[str]:
        """The folders of a ``folder`` cohort, as written (``paths``, else ``path``)."""
        return list(self.paths) or ([self.path] if self.path else [])


@dataclass(frozen=True)
class ProbeSettings(Settings):
    """YAML section ``probe``: the server-held labeled data of the centralized linear probe.

    ``synthetic-holdout``: an extra labeled synthetic site, split patient-disjoint;
    ``ptbxl``: PTB-XL folders (``path``, or several in ``paths``), folds 1–8 train /
    9 validation / 10 test; ``cinc``: CinC folders, split patient-disjoint. Patient-disjoint
    splits hold out ``test_fraction`` of the patients for the test part, then
    ``val_fraction`` of the rest for the validation part (where the probe chooses its
    regularisation). ``classes`` empty: the source's default.
    ``holdout_records`` > 0: the synthetic hold-out site has that many records with the
    reference case mix (every class common enough to be scored; 0: a site like the training
    sites). ``round_records`` > 0: the rounds between round 0 and the last are probed on a
    fixed share of that many of the probe's records (each part in proportion), round 0 and the
    last round on all of them.
    """

    WHAT = "probe"

    source: Annotated[str, one_of(PROBE_SOURCES)] = "synthetic-holdout"
    path: str = ""
    paths: list[str] = field(default_factory=list)
    layout: Annotated[str, one_of(LAYOUTS)] = "auto"
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.3
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    classes: list[str] = field(default_factory=list)
    bootstrap: NonNegativeInt = 200
    holdout_records: Annotated[int, Field(ge=0, description=">= 0 (0: as a training site)")] = 0
    round_records: Annotated[int, Field(ge=0, description=">= 0 (0: all, every round)")] = 0

    def problems(self) -> list[str]:
        if self.path and self.paths:
            return ["keys 'path' and 'paths' exclude each other: list every folder in 'paths'"]
        if not all(p.strip() for p in self.paths):
            return ["key 'paths' must list folder names, got an empty one"]
        if self.source != "synthetic-holdout" and not self.folders():
            return [f"key 'path' (one folder) or 'paths' (several) is required with source "
                    f"'{self.source}'"]
        if self.holdout_records and self.source != "synthetic-holdout":
            return [f"key 'holdout-records' needs source 'synthetic-holdout', not '{self.source}'"]
        return []

    def folders(self) -> list[str]:
        """The probe's folders, as written (``paths``, else ``path``)."""
        return list(self.paths) or ([self.path] if self.path else [])


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
        c, held = self.cohort, self.probe.holdout_records
        name = f"seed-{c.synthetic_seed}-{c.sites}x{c.records_per_site}" + (
            f"+ref{held}" if held else "")
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
        """Inverse of :meth:`to_json`, validated as :func:`load_config` validates."""
        data = json.loads(text)
        keys = {"run", *SECTIONS, "base-dir"}
        if not isinstance(data, dict) or set(data) != keys:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ConfigError(f"config.json: expected the keys {sorted(keys)}, got {got}")
        run = from_mapping(RunSettings, data["run"], "config.json [run]")
        return _federation(run, data, "config.json [run]", "config.json", data["base-dir"])


def _kebab(data: dict[str, Any]) -> dict[str, Any]:
    return {kebab(k): v for k, v in data.items()}


def _preprocessing(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Validate ``data`` (kebab- or snake-case keys) over the study's preprocessing
    (``STUDY_PREPROCESSING``: what a key left out means) as a PreprocessConfig; its
    ``to_dict()``."""
    from aclecg_core.data.preprocess import STUDY_PREPROCESSING, PreprocessConfig

    values = {k.replace("-", "_"): v for k, v in data.items()}
    try:
        return PreprocessConfig.from_dict({**STUDY_PREPROCESSING.to_dict(), **values}).to_dict()
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
    run = from_mapping(RunSettings, {**(defaults or {}), **run_config}, "run config")
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
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{yaml_path}: unknown section(s) {unknown}; known: {sorted(SECTIONS)}")
    return _federation(run, data, "run config", str(yaml_path), str(base))


def _federation(run: RunSettings, sections: Mapping[str, Any], run_source: str, source: str,
                base_dir: str) -> FederationConfig:
    """``run`` with the ``sections`` read from ``source``, checked together."""
    for name in SECTIONS:
        if not isinstance(sections.get(name) or {}, dict):
            raise ConfigError(f"{source}: section '{name}' must be a mapping")
    cohort_data = sections.get("cohort") or {}
    cohort = from_mapping(CohortSettings, cohort_data, f"{source} [cohort]")
    if "sites" not in cohort_data and cohort.source == "folder" and cohort.partition == "site":
        cohort = replace(cohort, sites=_hospitals(cohort, base_dir, f"{source} [cohort]"))
    probe = from_mapping(ProbeSettings, sections.get("probe") or {}, f"{source} [probe]")
    if probe.source == "synthetic-holdout" and cohort.source != "synthetic":
        raise ConfigError(f"{source} [probe]: source 'synthetic-holdout' needs "
                          "cohort source 'synthetic'")
    if run.min_sites > cohort.sites:
        raise ConfigError(f"{run_source}: key 'min-sites' ({run.min_sites}) exceeds the "
                          f"{cohort.sites} sites of {source} [cohort]")
    preprocessing = _preprocessing(sections.get("preprocessing") or {}, source)
    cfg = FederationConfig(run=run, cohort=cohort, probe=probe,
                           preprocessing=preprocessing, base_dir=base_dir)
    _check_adaptive_dp(cfg, run_source)
    _check_bulyan(cfg, run_source)
    return cfg


def _hospitals(cohort: CohortSettings, base_dir: str, source: str) -> int:
    """The number of sites (hospitals) that partition ``site`` finds in the cohort's folders."""
    base = Path(base_dir)
    folders = [Path(p).expanduser() for p in cohort.folders()]
    try:
        records = described(tuple(p if p.is_absolute() else base / p for p in folders),
                            cohort.layout)
    except DataError as exc:
        raise ConfigError(f"{source}: key '{'paths' if cohort.paths else 'path'}': {exc}") from None
    if not records:
        raise ConfigError(f"{source}: no WFDB records in {', '.join(cohort.folders())}")
    return len({r.site for r in records})


def _check_bulyan(cfg: FederationConfig, run_source: str) -> None:
    """Flower's Bulyan skips every round with fewer than 4 f + 3 replies."""
    r = cfg.run
    needed = 4 * r.robust_byzantine_sites + 3
    if r.robust_aggregation == "bulyan" and cfg.sites_per_round() < needed:
        raise ConfigError(f"{run_source}: robust-aggregation 'bulyan' with robust-byzantine-sites="
                          f"{r.robust_byzantine_sites} needs at least {needed} sites per round, "
                          f"the run samples {cfg.sites_per_round()}; lower "
                          "robust-byzantine-sites or use median / trimmed-mean / krum")


def _check_adaptive_dp(cfg: FederationConfig, run_source: str) -> None:
    """Flower's adaptive clipping needs noise multiplier < 2 × clipped-count stddev."""
    r = cfg.run
    if r.dp != "adaptive" or r.dp_noise_multiplier == 0:
        return
    stddev = r.dp_clipped_count_stddev or cfg.sites_per_round() / 20
    if r.dp_noise_multiplier >= 2 * stddev:
        origin = ("" if r.dp_clipped_count_stddev
                  else f" (0: {cfg.sites_per_round()} sampled sites / 20)")
        raise ConfigError(f"{run_source}: key 'dp-noise-multiplier' ({r.dp_noise_multiplier:g}) "
                          f"must be < 2 × dp-clipped-count-stddev = {2 * stddev:g}{origin} with "
                          "dp 'adaptive'; raise dp-clipped-count-stddev or lower the multiplier")
