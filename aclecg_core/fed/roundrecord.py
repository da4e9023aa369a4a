"""One round as the server saw it (Flower-free): the sites' entries of ``metrics.json``
(``clients``, ``failures``, ``sites``) and what crossed the network for the audit trail; written
with the round's checkpoint by :meth:`RunFolder.finish_round`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aclecg_core.fed.audit import RoundExchange
from aclecg_core.fed.rundir import RunFolder


@dataclass
class RoundRecord:
    """Empty for round 0, where nothing is exchanged."""

    clients: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    sites: list[dict[str, Any]] = field(default_factory=list)
    exchange: RoundExchange = field(default_factory=RoundExchange)

    @classmethod
    def asked(cls, nodes: Iterable[int], sent_sha256: str | None,
              secure_aggregation: bool) -> RoundRecord:
        """A training round that sent the arrays of digest ``sent_sha256`` to ``nodes``."""
        return cls(exchange=RoundExchange(asked=sorted(f"node-{n}" for n in nodes),
                                          sent_sha256=sent_sha256,
                                          secure_aggregation=secure_aggregation))

    def answer(self, client: dict[str, Any], site: dict[str, Any], node: int,
               arrays_sha256: str | None) -> None:
        """A site's accepted reply: its client entry, its site entry and its arrays' digest
        (None under secure aggregation, where a reply carries no arrays of its own)."""
        self.clients.append(client)
        self.sites.append(site)
        self.exchange.answered.append({"site": client["site"], "node": node,
                                        "arrays_sha256": arrays_sha256})

    def fail(self, failure: dict[str, Any]) -> None:
        """A site's failure (``site``, ``error``): an error reply or a refused update."""
        self.failures.append(failure)
        self.exchange.failed.append(failure)

    def no_reply(self, nodes: Iterable[int], round_timeout: float) -> None:
        """The nodes that did not answer within the round's timeout."""
        for node in nodes:
            self.fail({"site": f"node-{node}",
                       "error": f"no reply within round-timeout ({round_timeout:g} s)"})

    def write(self, folder: RunFolder, global_round: int, state: dict[str, np.ndarray],
              wall_seconds: float, probe: dict[str, Any] | None,
              timing: dict[str, float] | None = None,
              server_state: Mapping[str, np.ndarray] | None = None) -> None:
        """The sites' counts, checkpoint (with the server optimiser's state, if any), audit
        line and metrics of the round in ``folder``."""
        folder.add_sites(self.sites)
        folder.finish_round(global_round, state, wall_seconds, self.clients, self.failures,
                            probe, self.exchange, timing, server_state)
