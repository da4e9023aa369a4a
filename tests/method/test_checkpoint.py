"""Checkpoint round trip and clear errors for missing or corrupt files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.method.checkpoint import (
    CheckpointError,
    corpus_summary,
    encoder_metadata,
    load_checkpoint,
    load_encoder,
    save_checkpoint,
)
from aclecg_core.method.model import EncoderConfig, build_model


def test_round_trip(tmp_path: Path) -> None:
    model = build_model(EncoderConfig(size="tiny"), seed=0)
    meta = {"method": "acl", "round": 3, "encoder": EncoderConfig(size="tiny").to_dict()}
    save_checkpoint(tmp_path / "run" / "ckpt", model.state_dict(), meta)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["ckpt.json", "ckpt.safetensors"]
    state, loaded_meta = load_checkpoint(tmp_path / "run" / "ckpt.safetensors")
    assert loaded_meta == meta
    fresh = build_model(EncoderConfig.from_dict(loaded_meta["encoder"]), seed=1)
    fresh.load_state_dict(state)
    assert all(torch.equal(v, state[k]) for k, v in fresh.state_dict().items())


def test_missing_and_corrupt_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nothing\.safetensors"):
        load_checkpoint(tmp_path / "nothing")
    save_checkpoint(tmp_path / "c", {"w": torch.ones(2)}, {"round": 1})
    (tmp_path / "c.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match=r"corrupt .*c\.safetensors"):
        load_checkpoint(tmp_path / "c")
    save_checkpoint(tmp_path / "d", {"w": torch.ones(2)}, {"round": 1})
    (tmp_path / "d.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"corrupt .*d\.json"):
        load_checkpoint(tmp_path / "d")
    with pytest.raises(CheckpointError, match="not JSON"):
        save_checkpoint(tmp_path / "e", {"w": torch.ones(2)}, {"bad": object()})
    assert not (tmp_path / "e.safetensors").exists()


def _metadata(enc: EncoderConfig) -> dict:
    return encoder_metadata(method="acl", encoder=enc, preprocessing=PreprocessConfig().to_dict(),
                            round=None, metrics={}, config=None,
                            corpus=corpus_summary("centralized", "x", []))


def test_load_encoder_returns_a_ready_model(tmp_path: Path) -> None:
    enc = EncoderConfig(size="tiny")
    model = build_model(enc, seed=0)
    save_checkpoint(tmp_path / "c", model.state_dict(), _metadata(enc))
    loaded, meta = load_encoder(tmp_path / "c")
    assert not loaded.training and meta["format_version"] == 1 and meta["round"] is None
    x = torch.randn(2, 12, 1000)
    assert torch.equal(loaded.embed(x), model.eval().embed(x))


def test_load_encoder_names_missing_metadata_and_mismatched_tensors(tmp_path: Path) -> None:
    enc = EncoderConfig(size="tiny")
    state = build_model(enc, seed=0).state_dict()
    save_checkpoint(tmp_path / "old", state, {"round": 3, "config": {}})
    with pytest.raises(CheckpointError, match=r"old\.json .*missing \['format_version'"):
        load_encoder(tmp_path / "old")
    save_checkpoint(tmp_path / "other", state, _metadata(EncoderConfig(size="small")))
    with pytest.raises(CheckpointError, match=r"other\.safetensors does not match"):
        load_encoder(tmp_path / "other")
    save_checkpoint(tmp_path / "part", {k: v for k, v in state.items() if "trunk.0" not in k},
                    _metadata(enc))
    with pytest.raises(CheckpointError, match=r"missing or unexpected tensors .*trunk\.0"):
        load_encoder(tmp_path / "part")
    bad = _metadata(enc) | {"encoder": {"size": "huge"}}
    save_checkpoint(tmp_path / "bad", state, bad)
    with pytest.raises(CheckpointError, match=r"bad\.json: invalid 'encoder'"):
        load_encoder(tmp_path / "bad")
