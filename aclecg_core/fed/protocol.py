"""The training protocol: what a round's messages carry between the server and the sites.

A training message carries the global model's arrays (:data:`ARRAYS`) and the round's
:class:`TrainInstructions` (:data:`CONFIG`): how to train, never where. No path, folder, cohort
or probe setting of the coordinator reaches a site; the site's data, cache, device and threads
are its own (:mod:`aclecg_core.fed.site`). A reply carries the trained arrays (:data:`ARRAYS`),
the training scalars (:data:`METRICS`, :class:`TrainReport`), the site's name (:data:`SITE`:
a simulated site's hospital, a deployed site's node config ``site``; reports show it beside the
site's label) and, only when the run asks for them, the site's summary (:data:`SITE_STATS`). A
query message of type :data:`SITE_NAME_QUERY` is answered with the same name (:data:`SITE`):
the cyclic chain visits sites in a seeded order of their names. Every message key is defined
here once; both apps use these definitions, so the two sides cannot drift apart.

Encoded form: flat ``str -> int | float | bool | str | list[str]`` mappings (what Flower's
``ConfigRecord`` and ``MetricRecord`` hold). :data:`PROTOCOL_VERSION` changes whenever a field
changes meaning; a site refuses a message of another version with a clear error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.fed.arrays import PREFIXES
from aclecg_core.method.losses import ACL_TERMS
from aclecg_core.method.model import ENCODER_SIZES
from aclecg_core.method.pretrain import METHODS, VIEWS

PROTOCOL_VERSION = 1

# Record names of a message's content.
ARRAYS = "arrays"  # ArrayRecord: model arrays (train message: global; reply: trained)
CONFIG = "config"  # ConfigRecord of a train message: TrainInstructions.encode()
METRICS = "metrics"  # MetricRecord of a reply: TrainReport.encode()
SITE_STATS = "site-stats"  # ConfigRecord of a reply, only with share-site-stats
SITE = "site"  # ConfigRecord of a reply: {SITE_NAME_KEY: the site's name}

# Keys inside CONFIG: TrainInstructions' fields in kebab-case (``round-offset``: rounds finished
# before this start; ``proximal-mu``: also set by Flower's FedProx), plus these.
VERSION_KEY = "aclecg-protocol"
SERVER_ROUND_KEY = "server-round"  # set by Flower's strategies: 1, 2, ... within one start
ARRAY_NAMES_KEY = "aclecg-array-keys"  # SecAgg+ rounds: the arrays' names, in order
SITE_NAME_KEY = "site-name"  # inside SITE

# The site-name query: a query message of this action (message type "query.site_name").
SITE_NAME_ACTION = "site_name"
SITE_NAME_QUERY = f"query.{SITE_NAME_ACTION}"

AGGREGATES = tuple(PREFIXES)

ConfigValue = int | float | bool | str | list[str]


class ProtocolError(ValueError):
    """A message does not follow this protocol (missing key, wrong type or version)."""


@dataclass(frozen=True)
class TrainInstructions:
    """How a site trains in one round: the method, the model and the optimisation settings.

    ``round`` is the global round (``round-offset`` + Flower's ``server-round``); ``seed`` with
    (round, site) seeds the site's training. ``stats_classes``: the label vocabulary of the
    ``share-site-stats`` class counts (empty unless ``share_site_stats``).
    ``keep_optimizer_state``: the site continues its own AdamW state (moments, step counts) of
    its previous round instead of starting fresh; the state never leaves the site.
    """

    method: str
    acl_terms: str
    views: str
    encoder: str
    local_epochs: int
    batch_size: int
    lr: float
    seed: int
    preprocessing: dict[str, Any]
    aggregate: str
    proximal_mu: float = 0.0
    secure_aggregation: bool = False
    share_site_stats: bool = False
    stats_classes: list[str] = field(default_factory=list)
    round_offset: int = 0
    server_round: int = 0
    keep_optimizer_state: bool = False

    @property
    def round(self) -> int:
        """The global round this message trains."""
        return self.round_offset + self.server_round

    def encode(self) -> dict[str, ConfigValue]:
        """The flat ``ConfigRecord`` content (kebab-case keys, preprocessing as JSON)."""
        out: dict[str, ConfigValue] = {VERSION_KEY: PROTOCOL_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            out[_key(f.name)] = json.dumps(value, sort_keys=True) \
                if f.name == "preprocessing" else value
        return out

    @classmethod
    def decode(cls, config: Mapping[str, Any]) -> TrainInstructions:
        """The instructions of a train message's ``config``; :class:`ProtocolError` names the
        first problem (another protocol version, a missing key, a wrong type or value)."""
        version = config.get(VERSION_KEY)
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"training message of protocol version {version!r}, this site speaks version "
                f"{PROTOCOL_VERSION}: the coordinator and the site run different versions of "
                "the app")
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = _key(f.name)
            if key not in config:
                if f.name in _OPTIONAL:
                    continue
                raise ProtocolError(f"training message lacks '{key}'")
            values[f.name] = _typed(key, config[key], f.type)
        try:
            values["preprocessing"] = PreprocessConfig.from_dict(
                json.loads(values["preprocessing"])).to_dict()
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"training message: bad 'preprocessing': {exc}") from None
        instructions = cls(**values)
        instructions.check()
        return instructions

    def check(self) -> None:
        """Raise :class:`ProtocolError` for a value out of its range."""
        choices = {"method": METHODS, "acl_terms": ACL_TERMS, "views": VIEWS,
                   "encoder": ENCODER_SIZES, "aggregate": AGGREGATES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ProtocolError(f"training message: '{_key(name)}' must be one of "
                                    f"{list(allowed)}, got {getattr(self, name)!r}")
        positive = {"local_epochs": self.local_epochs, "lr": self.lr,
                    "batch_size": self.batch_size - 1}
        for name, value in positive.items():
            if not (value > 0 and math.isfinite(value)):
                raise ProtocolError(f"training message: '{_key(name)}' out of range: "
                                    f"{getattr(self, name)!r}")
        if self.proximal_mu < 0 or self.round_offset < 0 or self.server_round < 0 \
                or self.seed < 0:
            raise ProtocolError("training message: negative proximal-mu, seed or round")


@dataclass(frozen=True)
class TrainReport:
    """The training scalars of a reply (:data:`TRAINING_METRICS` of ``disclosure``)."""

    loss: float
    num_examples: int
    seconds: float
    samples_per_second: float
    site_index: int

    def encode(self) -> dict[str, int | float]:
        return {_key(f.name): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def decode(cls, metrics: Mapping[str, Any]) -> TrainReport:
        """The report of a reply's ``metrics``; :class:`ProtocolError` on a missing key."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = _key(f.name)
            if key not in metrics:
                raise ProtocolError(f"site reply lacks metric '{key}'")
            values[f.name] = _typed(key, metrics[key], f.type)
        return cls(**values)


_OPTIONAL = {"proximal_mu", "secure_aggregation", "share_site_stats", "stats_classes",
             "round_offset", "server_round", "keep_optimizer_state"}


def _key(name: str) -> str:
    return name.replace("_", "-")


REPORT_KEYS = tuple(_key(f.name) for f in fields(TrainReport))


def _typed(key: str, value: Any, hint: Any) -> Any:
    """``value`` as the field type ``hint`` (a string annotation); ProtocolError if it is not."""
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "dict[str, Any]": isinstance(value, str),  # JSON text
        "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }[str(hint)]
    if not ok:
        raise ProtocolError(f"message key '{key}' must be {hint}, got {value!r}")
    return float(value) if hint == "float" else value
