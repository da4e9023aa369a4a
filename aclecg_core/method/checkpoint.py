"""Checkpoints: ``<path>.safetensors`` (tensors) plus a ``<path>.json`` sidecar (metadata).

Both files are written atomically (temporary file + rename); no pickle is involved.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or inconsistent."""


def checkpoint_paths(path: Path | str) -> tuple[Path, Path]:
    """(tensors, sidecar) for ``path`` given with or without a ``.safetensors``/``.json`` suffix."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def _atomic_write(target: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, state_dict: dict[str, torch.Tensor], metadata: dict) -> None:
    """Write the tensors of ``state_dict`` (moved to CPU) and the JSON ``metadata``."""
    tensors_path, sidecar_path = checkpoint_paths(path)
    tensors_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        text = json.dumps(metadata, indent=2, sort_keys=True, allow_nan=True)
    except TypeError as exc:
        raise CheckpointError(f"metadata for {sidecar_path} is not JSON: {exc}") from None
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    _atomic_write(tensors_path, lambda tmp: save_file(tensors, tmp))
    _atomic_write(sidecar_path, lambda tmp: Path(tmp).write_text(text + "\n"))


def load_checkpoint(path: Path | str) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, metadata) written by :func:`save_checkpoint`."""
    tensors_path, sidecar_path = checkpoint_paths(path)
    for file in (tensors_path, sidecar_path):
        if not file.is_file():
            raise CheckpointError(f"checkpoint file not found: {file}")
    try:
        state = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"corrupt checkpoint tensors {tensors_path}: {exc}") from None
    try:
        metadata = json.loads(sidecar_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"corrupt checkpoint sidecar {sidecar_path}: {exc}") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"checkpoint sidecar {sidecar_path} must hold a JSON object")
    return state, metadata
