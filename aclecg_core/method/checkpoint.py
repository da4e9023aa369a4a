"""Checkpoints: ``<path>.safetensors`` (tensors) plus a ``<path>.json`` sidecar (metadata).

Both files are written atomically (temporary file + rename); no pickle is involved. Model
checkpoints, centralized and federated alike, carry the sidecar of :func:`encoder_metadata`
(format version :data:`FORMAT_VERSION`); :func:`load_encoder` turns one into a ready encoder.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from aclecg_core.data.cohort import Cohort
from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.method.model import AclEcgModel, EncoderConfig, build_model

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "method", "encoder", "preprocessing", "round", "metrics",
                 "config", "corpus")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or inconsistent."""


def checkpoint_paths(path: Path | str) -> tuple[Path, Path]:
    """(tensors, sidecar) for ``path`` given with or without a ``.safetensors``/``.json`` suffix."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def atomic_write(target: Path, write: Any) -> None:
    """``write(tmp)`` to a temporary file beside ``target``, then rename it to ``target``."""
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
    atomic_write(tensors_path, lambda tmp: save_file(tensors, tmp))
    atomic_write(sidecar_path, lambda tmp: Path(tmp).write_text(text + "\n"))


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


def corpus_summary(setting: str, source: str, sites: list[dict[str, Any]]) -> dict[str, Any]:
    """The training corpus of a checkpoint: ``setting`` (centralized or federated), ``source``
    (data folders or cohort description) and per-site ``{"site", "records", "windows"}`` counts
    (aggregate counts only; a count a site did not disclose is None, and so is the total)."""

    def total(key: str) -> int | None:
        counts = [n for s in sites if isinstance(n := s.get(key), int)]
        return sum(counts) if len(counts) == len(sites) else None

    return {"setting": setting, "source": source, "sites": sites,
            "records": total("records"), "windows": total("windows")}


def cohort_sites(cohort: Cohort) -> list[dict[str, Any]]:
    """Per-site record and window counts of ``cohort`` (for :func:`corpus_summary`)."""
    sites = np.array([r.site for r in cohort.records])
    windows = np.bincount(cohort.window_record, minlength=len(cohort.records))
    return [{"site": str(name), "records": int((sites == name).sum()),
             "windows": int(windows[sites == name].sum())} for name in np.unique(sites)]


def encoder_metadata(*, method: str, encoder: EncoderConfig, preprocessing: dict[str, Any],
                     round: int | None, metrics: dict[str, Any], config: dict[str, Any] | None,
                     corpus: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The sidecar of every model checkpoint (centralized: ``round`` None; federated: the
    global round). ``preprocessing`` is a ``PreprocessConfig.to_dict()``; ``config`` the run's
    configuration where there is one; ``corpus`` a :func:`corpus_summary`."""
    return {"format_version": FORMAT_VERSION, "method": method, "encoder": encoder.to_dict(),
            "preprocessing": PreprocessConfig.from_dict(preprocessing).to_dict(),
            "round": round, "metrics": metrics, "config": config, "corpus": corpus, **extra}


def _check_metadata(metadata: dict[str, Any], sidecar: Path) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise CheckpointError(f"{sidecar} is not an encoder checkpoint sidecar: missing "
                              f"{missing} (written before format version {FORMAT_VERSION}? "
                              "re-run the pretraining or federation)")
    if metadata["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{sidecar}: checkpoint format version "
                              f"{metadata['format_version']!r} is not supported (this version "
                              f"reads {FORMAT_VERSION})")
    for key, check in (("encoder", EncoderConfig.from_dict),
                       ("preprocessing", PreprocessConfig.from_dict)):
        try:
            check(metadata[key])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{sidecar}: invalid {key!r}: {exc}") from None


def load_encoder(path: Path | str, device: str | torch.device = "cpu"
                 ) -> tuple[AclEcgModel, dict[str, Any]]:
    """A checkpoint (centralized or federated: round-N, best, final) as a ready model.

    Returns ``(model, metadata)``: the model in eval mode on ``device`` (``model.embed(x)``
    maps ``(batch, 12, samples)`` windows, preprocessed as ``metadata["preprocessing"]``, to
    the representation), and the sidecar (see :func:`encoder_metadata`). Raises
    :class:`CheckpointError` naming the file for missing files or metadata and for tensors that
    do not match the encoder config.
    """
    state, metadata = load_checkpoint(path)
    tensors_path, sidecar_path = checkpoint_paths(path)
    _check_metadata(metadata, sidecar_path)
    model = build_model(EncoderConfig.from_dict(metadata["encoder"]))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{tensors_path} does not match the encoder config of "
                              f"{sidecar_path}: {exc}") from None
    bad = [k for k in missing if k.startswith("encoder.")] + list(unexpected)
    if bad:
        raise CheckpointError(f"{tensors_path} does not match the encoder config of "
                              f"{sidecar_path}: missing or unexpected tensors {bad[:5]}")
    return model.to(device).eval(), metadata
