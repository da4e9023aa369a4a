"""Model arrays as exchanged in a federation: key selection by prefix, dtypes, seeds."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TypeVar

import numpy as np
import torch

V = TypeVar("V")

PREFIXES: dict[str, tuple[str, ...]] = {
    "encoder+projectors": ("encoder.", "projectors."),
    "encoder": ("encoder.",),
}


def select_keys(state: Mapping[str, V], aggregate: str) -> dict[str, V]:
    """The entries of ``state`` whose key starts with a prefix aggregated under ``aggregate``."""
    if aggregate not in PREFIXES:
        raise ValueError(f"aggregate must be one of {sorted(PREFIXES)}, got {aggregate!r}")
    prefixes = PREFIXES[aggregate]
    selected = {k: v for k, v in state.items() if k.startswith(prefixes)}
    if not selected:
        raise ValueError(f"no state-dict key starts with {prefixes}")
    return selected


def to_numpy(state: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """CPU numpy copies of a state dict (dtypes kept)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in state.items()}


def to_torch(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Tensors of ``arrays`` (shapes kept: ``ascontiguousarray`` alone makes 0-d arrays 1-d)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v).reshape(np.shape(v)))
            for k, v in arrays.items()}


def restore_dtypes(arrays: Mapping[str, np.ndarray],
                   template: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cast aggregated ``arrays`` back to the dtypes of ``template``.

    Averaging turns integer buffers (e.g. BatchNorm's ``num_batches_tracked``) into float64;
    they are rounded to the nearest integer, floating arrays are cast. Keys and shapes must
    match the template.
    """
    if set(arrays) != set(template):
        missing, extra = sorted(set(template) - set(arrays)), sorted(set(arrays) - set(template))
        raise ValueError(f"aggregated keys differ from the model: missing {missing[:3]}, "
                         f"unexpected {extra[:3]}")
    out = {}
    for key, value in arrays.items():
        ref = template[key]
        if value.shape != ref.shape:
            raise ValueError(f"{key}: aggregated shape {value.shape} != model shape {ref.shape}")
        if np.issubdtype(ref.dtype, np.integer) or ref.dtype == np.bool_:
            value = np.rint(value)
        out[key] = np.asarray(value).astype(ref.dtype, copy=False)
    return out


def round_seed(seed: int, server_round: int, site: int) -> int:
    """A 31-bit seed for one site's training in one (global) round, independent of history."""
    digest = hashlib.sha256(f"{seed}/{server_round}/{site}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
