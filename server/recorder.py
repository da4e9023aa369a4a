"""The strategy's hooks on the server: each round's replies become a
:class:`~aclecg_core.fed.roundrecord.RoundRecord`; each aggregated model is probed when due,
written to the run folder and audit trail, and logged, in one worker thread beside the next
round's training (off the round's critical path; docs/federation.md, "Time of a round")."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Message
from flwr.common.logger import log

from aclecg_core.fed import protocol
from aclecg_core.fed.audit import array_digest
from aclecg_core.fed.config import FederationConfig
from aclecg_core.fed.probe import ServerProbe, yield_cpu_to_training
from aclecg_core.fed.roundlog import failure_lines, round_line
from aclecg_core.fed.roundrecord import RoundRecord
from aclecg_core.fed.rounds import check_round
from aclecg_core.fed.rundir import RunFolder
from aclecg_core.method.checkpoint import CheckpointError
from server.replies import arrays_of, client_entry, failure_entry


class RoundRecorder:
    """``on_replies`` of :class:`~server.strategy.RecordingStrategy` and ``evaluate_fn`` of
    ``Strategy.start``; round numbers in the run folder are global (``offset`` + round)."""

    def __init__(self, cfg: FederationConfig, folder: RunFolder, template: dict[str, np.ndarray],
                 offset: int, probe: ServerProbe) -> None:
        self.cfg, self.folder, self.template, self.offset = cfg, folder, template, offset
        self.probe = probe
        probe.round_cohorts()  # before the first round: bad probe data stop the run at once
        self.record = RoundRecord()
        self.mark = self.replied = time.perf_counter()  # the round's start; its replies' arrival
        self.next_sent: str | None = None  # digest of the arrays the next round sends
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aclecg-round",
                                         initializer=yield_cpu_to_training)
        self.pending: list[Future[None]] = []

    def on_replies(self, server_round: int, replies: list[Message], silent: list[int]) -> None:
        self.replied = time.perf_counter()
        secure = self.cfg.run.secure_aggregation  # replies carry the aggregate, not their own
        self.record = record = RoundRecord.asked(
            [m.metadata.src_node_id for m in replies] + silent, self.next_sent, secure)
        for msg in replies:
            if msg.has_error():
                record.fail(failure_entry(msg))
            else:
                client, site = client_entry(msg)
                record.answer(client, site, msg.metadata.src_node_id, None if secure else
                              array_digest(arrays_of(msg.content.array_records[protocol.ARRAYS])))
        record.no_reply(silent, self.cfg.run.round_timeout)
        check_round(self.offset + server_round, len(record.clients), record.failures)

    def evaluate(self, server_round: int, arrays: ArrayRecord,
                 server_state: dict[str, np.ndarray] | None = None) -> None:
        """Hand the aggregate of ``server_round`` (and ``server_state``, the server optimiser's
        state after it, if the strategy keeps one) to the worker thread, which probes it (when
        due), checkpoints and logs it while the sites train the next round; rounds are written
        in order. A failure of an earlier round's job is raised here."""
        self._raise_failed()
        global_round = self.offset + server_round
        if server_round == 0 and self.offset > 0:
            self.mark = time.perf_counter()
            self.next_sent = array_digest(arrays_of(arrays))
            return  # resumed: this round was finished before
        aggregated = time.perf_counter()
        timing = {} if server_round == 0 else {"exchange_s": self.replied - self.mark,
                                               "aggregation_s": aggregated - self.replied}
        self.pending.append(self.worker.submit(
            self._finish, global_round, self.record, {**self.template, **arrays_of(arrays)},
            aggregated - self.mark, timing, server_state if server_round > 0 else None))
        self.next_sent = array_digest(arrays_of(arrays))
        self.record, self.mark = RoundRecord(), time.perf_counter()

    def close(self) -> None:
        """Wait for the rounds still being probed and written; raise the first failure."""
        self.worker.shutdown(wait=True)
        self._raise_failed()

    def _raise_failed(self) -> None:
        done = [f for f in self.pending if f.done()]
        self.pending = [f for f in self.pending if not f.done()]
        for future in done:
            future.result()

    def _finish(self, global_round: int, record: RoundRecord, state: dict[str, np.ndarray],
                wall: float, timing: dict[str, float],
                server_state: dict[str, np.ndarray] | None) -> None:
        """Probe (when due), checkpoint, audit and log one round (in the worker thread)."""
        start = time.perf_counter()
        probe = self._probe(global_round, state) if self.probe.due(global_round) else None
        record.write(self.folder, global_round, state, wall, probe,
                     {**timing, "probe_s": time.perf_counter() - start}, server_state)
        log(INFO, round_line(global_round, self.cfg.run.num_server_rounds, record.clients,
                             wall, probe))
        for line in failure_lines(global_round, record.failures):
            log(WARNING, line)

    def _probe(self, global_round: int, state: dict[str, np.ndarray]) -> dict[str, Any]:
        if self.probe.lacks_round0(global_round):  # resumed: round 0 was probed by an earlier run
            try:
                self.probe.set_round0(self.folder.load_round(0))
            except CheckpointError as exc:
                log(WARNING, "[aclecg] no comparison with round 0: %s", exc)
        return self.probe.result(global_round, state)
