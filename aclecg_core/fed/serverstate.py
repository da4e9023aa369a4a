"""The server optimiser's state after a round (Flower-free): named arrays such as FedAvgM's
momentum or FedAdam's moments, written beside the round's checkpoint and read back on resume,
where the next round's server step needs them (docs/federation.md, "Run folder format")."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from aclecg_core.method.checkpoint import CheckpointError, atomic_write

SUFFIX = ".server-opt.safetensors"


def server_state_path(round_path: Path) -> Path:
    """The state file of the round checkpointed at ``round_path`` (``round-0003`` ->
    ``round-0003.server-opt.safetensors``)."""
    return round_path.with_name(round_path.name + SUFFIX)


def is_server_state(name: str) -> bool:
    return name.endswith(SUFFIX)


def save_server_state(path: Path, state: Mapping[str, np.ndarray], strategy: str,
                      server_round: int) -> None:
    """Write ``state`` atomically; the strategy and the round go into the file's header."""
    arrays = {k: np.asarray(v, order="C") for k, v in state.items()}  # 0-d arrays stay 0-d
    header = {"strategy": strategy, "round": str(server_round)}
    atomic_write(path, lambda tmp: save_file(arrays, tmp, metadata=header))


def load_server_state(path: Path, strategy: str, server_round: int) -> dict[str, np.ndarray]:
    """The state :func:`save_server_state` wrote for ``strategy`` after ``server_round``;
    :class:`CheckpointError` naming the file when it is missing, unreadable or another's."""
    if not path.is_file():
        raise CheckpointError(f"server optimiser state not found: {path}")
    try:
        with safe_open(str(path), framework="np") as f:
            header = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"corrupt server optimiser state {path}: {exc}") from None
    expected = {"strategy": strategy, "round": str(server_round)}
    if {k: header.get(k) for k in expected} != expected:
        raise CheckpointError(f"{path} holds the state of strategy {header.get('strategy')!r} "
                              f"after round {header.get('round')}, expected {strategy!r} after "
                              f"round {server_round}")
    return state
