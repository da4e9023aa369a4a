"""The encoder as a standalone TorchScript file plus a JSON card that says how to feed it.

The exported module maps ``(batch, 12, samples)`` float32 windows (canonical lead order, in the
checkpoint's sampling rate, window length, units and normalisation) to ``model.embed``'s
representation; it loads with plain ``torch.jit.load`` (Python or C++ libtorch), without this
package. The batch size is free.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from aclecg_core.data.leads import CANONICAL_LEADS
from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.method.model import AclEcgModel

CARD_FORMAT = "aclecg-encoder-card/1"
_UNITS = {"none": "mV", "lead-zscore": "z-score of each lead over each window",
          "record-zscore": "z-score of each lead over the whole record"}


class _Representation(nn.Module):
    """``forward = model.embed``: what probing uses."""

    def __init__(self, model: AclEcgModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.embed(x)


def card_path(model_path: Path) -> Path:
    """The card beside ``model_path``: ``encoder.pt`` -> ``encoder.json``."""
    return model_path.with_suffix(".json")


def encoder_card(model: AclEcgModel, metadata: dict[str, Any], model_file: str,
                 source: str) -> dict[str, Any]:
    """The JSON card of an export of ``model`` loaded with checkpoint ``metadata``."""
    pre = PreprocessConfig.from_dict(metadata["preprocessing"])
    band = ("none" if pre.bandpass_hz is None else
            f"{pre.bandpass_hz[0]:g}-{pre.bandpass_hz[1]:g} Hz zero-phase Butterworth "
            f"(order {pre.filter_order})")
    return {
        "format": CARD_FORMAT,
        "model_file": model_file,
        "runtime": f"TorchScript (torch.jit.load; exported with torch {torch.__version__})",
        "input": {
            "shape": ["batch", len(CANONICAL_LEADS), pre.window_samples],
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
            "shape": ["batch", model.embed_dim],
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
        "source_checkpoint": source,
    }


@torch.no_grad()
def export_torchscript(model: AclEcgModel, metadata: dict[str, Any], out: Path,
                       source: str) -> tuple[Path, Path]:
    """Write ``out`` (TorchScript of ``model.embed`` on CPU) and its card; (model, card) paths."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu().eval().requires_grad_(False)
    card = encoder_card(model, metadata, out.name, source)
    example = torch.zeros(2, len(CANONICAL_LEADS), card["input"]["window_samples"])
    with warnings.catch_warnings():
        # torch 2.13 marks TorchScript deprecated; the input-shape check of the encoder is a
        # Python branch the trace fixes (the card states the input shape).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(_Representation(model), example)
        traced.save(str(out))
    card_file = card_path(out)
    card_file.write_text(json.dumps(card, indent=2) + "\n")
    return out, card_file
