"""The server optimiser's state of Flower 1.41's FedAvgM (momentum) and FedAdam (first and second
moments), which Flower keeps in attributes only: read after every round to be checkpointed with
it, restored before the first round of a resumed run, so that the run continues exactly as an
uninterrupted one (docs/federation.md, "Resume"). State names: ``<slot>/<array key>``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedAdam, FedAvgM

from aclecg_core.method.checkpoint import CheckpointError


class GlobalRoundFedAdam(FedAdam):
    """FedAdam whose bias correction counts global rounds: Flower counts the rounds of one
    ``start``, which restart at 1 in a resumed run."""

    round_offset = 0

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return super().aggregate_train(self.round_offset + server_round, replies)


class ServerOptimiser:
    """Reads and restores the state of ``strategy`` (FedAvgM or FedAdam, the strategy itself,
    not a wrapper around it) for a model of ``keys``, in the order the replies' arrays are
    aggregated in (:func:`server.replies.check_reply`)."""

    def __init__(self, strategy: FedAvgM | GlobalRoundFedAdam, keys: Iterable[str]) -> None:
        self.strategy, self.keys = strategy, list(keys)

    def sent(self, arrays: ArrayRecord) -> None:
        """The round trains from ``arrays``: FedAvgM's server step starts from them, in the
        model's key order (Flower's FedAvgM keeps its own last result instead, before the cast
        to the model's dtypes and before a DP wrapper's noise, which a resumed run could not
        rebuild; and it pairs arrays by position)."""
        if isinstance(self.strategy, FedAvgM):
            self.strategy.current_arrays = ArrayRecord({k: arrays[k] for k in self.keys})

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the state after the last aggregation (empty before the first)."""
        s = self.strategy
        if isinstance(s, FedAvgM):
            keys = list(s.current_arrays.keys()) if s.current_arrays is not None else []
            slots = {} if s.momentum_vector is None else {
                "momentum": dict(zip(keys, s.momentum_vector, strict=True))}
        else:
            slots = {"m": s.m_t or {}, "v": s.v_t or {}}
        return {f"{slot}/{key}": np.array(value, copy=True)
                for slot, arrays in slots.items() for key, value in arrays.items()}

    def restore(self, state: Mapping[str, np.ndarray], arrays: ArrayRecord,
                round_offset: int) -> None:
        """Set the state saved after global round ``round_offset`` before the next round, which
        trains from ``arrays``; :class:`CheckpointError` when it does not fit them."""
        slots: dict[str, dict[str, np.ndarray]] = {}
        for name, value in state.items():
            slot, _, key = name.partition("/")
            slots.setdefault(slot, {})[key] = value
        s = self.strategy
        expected = {"momentum"} if isinstance(s, FedAvgM) else {"m", "v"}
        wrong = [slot for slot, named in slots.items()
                 if slot not in expected or sorted(named) != sorted(self.keys)]
        if wrong:
            raise CheckpointError(f"the server optimiser's state after round {round_offset} "
                                  f"does not fit the model (slot(s) {sorted(wrong)}; expected "
                                  f"{sorted(expected)}, one array per aggregated key)")
        if isinstance(s, FedAvgM):
            self.sent(arrays)
            s.momentum_vector = ([slots["momentum"][k] for k in self.keys]
                                 if "momentum" in slots else None)
        else:
            s.m_t, s.v_t = slots.get("m"), slots.get("v")
            s.round_offset = round_offset
