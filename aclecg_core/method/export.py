"""The encoder as a standalone ONNX file or ``torch.export`` program plus a JSON card.

The exported model maps ``(batch, 12, samples)`` float32 windows (canonical lead order, in the
checkpoint's sampling rate, window length, units and normalisation) to ``model.embed``'s
representation; the batch size is free. ``.onnx`` runs in ONNX Runtime (any language),
``.pt2`` loads with ``torch.export.load``; neither needs this package. Every export is run
once on check windows and compared with the checkpoint; the card records the largest difference.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from aclecg_core.data.leads import CANONICAL_LEADS
from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.method.checkpoint import checkpoint_paths
from aclecg_core.method.model import AclEcgModel

CARD_FORMAT = "aclecg-encoder-card/2"
FORMATS = {".onnx": "ONNX", ".pt2": "torch.export"}
INPUT_NAME, OUTPUT_NAME = "ecg", "features"
TOLERANCE = 1e-4
_UNITS = {"none": "mV", "lead-zscore": "z-score of each lead over each window",
          "record-zscore": "z-score of each lead over the whole record"}


class ExportError(ValueError):
    """An export that cannot be written or does not reproduce the checkpoint."""


class _Representation(nn.Module):
    """``forward = model.embed``: what probing uses."""

    def __init__(self, model: AclEcgModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.embed(x)


def card_path(model_path: Path) -> Path:
    """The card beside ``model_path``: ``encoder.onnx`` -> ``encoder.onnx.json``."""
    return model_path.with_name(model_path.name + ".json")


def check_format(out: Path) -> None:
    """Raises :class:`ExportError` unless ``out`` names a format this module writes."""
    if out.suffix not in FORMATS:
        raise ExportError(f"--out {out}: use a .onnx (ONNX) or .pt2 (torch.export) file name "
                          "(TorchScript is deprecated in torch 2.13 and no longer written)")


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def encoder_card(model: AclEcgModel, metadata: dict[str, Any], model_file: Path,
                 checkpoint: Path) -> dict[str, Any]:
    """The JSON card of an export of ``model`` loaded from ``checkpoint`` (with ``metadata``)."""
    pre = PreprocessConfig.from_dict(metadata["preprocessing"])
    band = ("none" if pre.bandpass_hz is None else
            f"{pre.bandpass_hz[0]:g}-{pre.bandpass_hz[1]:g} Hz zero-phase Butterworth "
            f"(order {pre.filter_order})")
    tensors, _ = checkpoint_paths(checkpoint)
    return {
        "format": CARD_FORMAT,
        "model_file": model_file.name,
        "runtime": {".onnx": "ONNX Runtime (onnxruntime.InferenceSession)",
                    ".pt2": "torch.export.load(path).module()"}[model_file.suffix],
        "exported_with": f"torch {torch.__version__}",
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", len(CANONICAL_LEADS), pre.window_samples],
            "layout": "(batch, lead, sample)",
            "dtype": "float32",
            "lead_order": list(CANONICAL_LEADS),
            "sampling_rate_hz": pre.target_fs,
            "window_s": pre.window_s,
            "window_samples": pre.window_samples,
            "units": _UNITS[pre.normalization],
            "normalisation": pre.normalization,
            "filtering": band,
            "notch_hz": pre.notch_hz,
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", model.embed_dim],
            "dtype": "float32",
            "meaning": "the encoder's representation (model.embed): the features probed by "
                       "aclecg probe; average it over a record's windows for a record-level "
                       "feature",
        },
        "regions": {k: list(v) for k, v in model.encoder.regions.lead_names().items()},
        "preprocessing": pre.to_dict(),
        "method": metadata["method"],
        "encoder": metadata["encoder"],
        "round": metadata["round"],
        "metrics": metadata["metrics"],
        "training_corpus": metadata["corpus"],
        "source_checkpoint": {"path": str(checkpoint), "file": tensors.name,
                              "sha256": _sha256(tensors)},
    }


@contextlib.contextmanager
def _quiet_torch_export() -> Iterator[None]:
    """Silences torch-internal notices of an export (not ours to fix, not the user's concern):
    the ONNX registry's "torchvision is not installed" log lines and the FutureWarning
    torch 2.13 raises when it deep-copies its own ``LeafSpec`` objects during decomposition."""
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                    FutureWarning)
            yield
    finally:
        onnx_log.setLevel(level)


Runner = tuple[Callable[[Tensor], Tensor], str]


def _write_onnx(module: nn.Module, example: Tensor, out: Path) -> Runner:
    """Writes ``out``; the file as loaded by ONNX Runtime, and the runtime's version."""
    import onnxruntime

    batch = torch.export.Dim("batch")
    with _quiet_torch_export():
        program = torch.onnx.export(module, (example,), dynamo=True, verbose=False,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=({0: batch},), optimize=True)
    if program is None:
        raise ExportError(f"{out}: torch.onnx.export returned no program")
    program.save(str(out))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return (lambda x: torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]),
            f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)")


def _write_pt2(module: nn.Module, example: Tensor, out: Path) -> Runner:
    """Writes ``out``; the program as loaded by ``torch.export.load``, and torch's version."""
    batch = torch.export.Dim("batch")
    with _quiet_torch_export():
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(out))
    loaded = torch.export.load(str(out)).module()
    return (lambda x: loaded(x).detach()), f"torch.export.load (torch {torch.__version__})"


@torch.no_grad()
def export_encoder(model: AclEcgModel, metadata: dict[str, Any], out: Path, checkpoint: Path,
                   check: Tensor, check_data: str) -> tuple[Path, Path]:
    """Write ``out`` (``.onnx`` or ``.pt2``: ``model.embed`` on CPU) and its card.

    The written file is loaded back and run on ``check`` (windows shaped as the card says,
    described by ``check_data``); the card records the largest absolute difference from the
    checkpoint. Raises :class:`ExportError` for another suffix, wrong check windows or a
    difference over :data:`TOLERANCE`. Returns (model, card) paths.
    """
    out = Path(out)
    check_format(out)
    model = copy.deepcopy(model).cpu().eval().requires_grad_(False)
    card = encoder_card(model, metadata, out, Path(checkpoint))
    expected = (len(CANONICAL_LEADS), card["input"]["window_samples"])
    check = check.to(torch.float32)
    if check.ndim != 3 or tuple(check.shape[1:]) != expected or not len(check):
        raise ExportError(f"check windows from {check_data}: expected (n, {expected[0]}, "
                          f"{expected[1]}), got {tuple(check.shape)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    module = _Representation(model).eval()
    write = _write_onnx if out.suffix == ".onnx" else _write_pt2
    run, runtime = write(module, torch.zeros(2, *expected), out)
    difference = float((run(check) - module(check)).abs().max())
    if not math.isfinite(difference) or difference > TOLERANCE:
        raise ExportError(f"{out} differs from {checkpoint} by {difference:.3g} on "
                          f"{check_data} (tolerance {TOLERANCE:g})")
    card["check"] = {"data": check_data, "windows": len(check), "runtime": runtime,
                     "max_abs_difference": difference, "tolerance": TOLERANCE}
    card_file = card_path(out)
    card_file.write_text(json.dumps(card, indent=2) + "\n")
    return out, card_file

