"""Choosing the torch device and mixed precision."""

from __future__ import annotations

import contextlib

import torch

AMP_MODES = ("auto", "off")  # "auto": bf16 autocast on CUDA


def pick_device(preference: str = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; otherwise the named device (checked)."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(preference)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {preference!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} requested but CUDA is not available")
    return device


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA when ``amp == "auto"``; a no-op otherwise."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {list(AMP_MODES)}, got {amp!r}")
    if amp == "auto" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
