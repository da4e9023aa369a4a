"""Checkpoint round trip and clear errors for missing or corrupt files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aclecg_core.method.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
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
