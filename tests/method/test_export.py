"""Export card and the embed/export commands' errors (the end-to-end export test, loading with
plain torch in a subprocess, is in tests/fed/test_simulation.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aclecg_cli.main import main
from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.method.checkpoint import corpus_summary, encoder_metadata, save_checkpoint
from aclecg_core.method.export import export_torchscript
from aclecg_core.method.model import EncoderConfig, build_model


def test_export_any_batch_size_and_the_card(tmp_path: Path) -> None:
    enc = EncoderConfig(size="tiny", regions="clinical")
    model = build_model(enc, seed=0)
    pre = PreprocessConfig(target_fs=50.0, bandpass_hz=(0.5, 20.0), window_s=5.0,
                           normalization="lead-zscore")
    meta = encoder_metadata(method="simclr", encoder=enc, preprocessing=pre.to_dict(), round=None,
                            metrics={"loss": 1.0}, config=None,
                            corpus=corpus_summary("centralized", "x", []))
    model_file, card_file = export_torchscript(model, meta, tmp_path / "e.pt", "ckpt")
    exported = torch.jit.load(str(model_file))
    x = torch.randn(3, 12, 250)
    assert torch.allclose(exported(x), model.eval().embed(x), atol=1e-6)
    assert exported(x[:1]).shape == (1, model.embed_dim)
    card = json.loads(card_file.read_text())
    assert card["input"]["shape"] == ["batch", 12, 250] and card["input"]["sampling_rate_hz"] == 50
    assert card["input"]["units"] == "z-score of each lead over each window"
    assert card["regions"]["inferior"] == ["II", "III", "aVF"] and card["method"] == "simclr"


def test_commands_name_a_bad_checkpoint_or_output(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "e.pt")]) == 1
    assert "missing.safetensors" in capsys.readouterr().err
    save_checkpoint(tmp_path / "old", build_model(EncoderConfig(size="tiny")).state_dict(),
                    {"round": 1})
    assert main(["embed", str(tmp_path / "old"), "--data", str(tmp_path),
                 "--out", str(tmp_path / "f.npz")]) == 1
    assert "old.json is not an encoder checkpoint sidecar" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "old"), "--data", str(tmp_path),
                 "--out", str(tmp_path / "f.pkl")]) == 1
    assert "use a .npz or .csv file name" in capsys.readouterr().err
