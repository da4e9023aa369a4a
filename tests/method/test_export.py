"""``aclecg export``: ONNX and torch.export files that reproduce the checkpoint, their card, and
loading them in a fresh Python without the project; the embed/export commands' errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from aclecg_cli.main import main
from aclecg_core.data.loading import load_cohort
from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.method.checkpoint import (
    corpus_summary,
    encoder_metadata,
    load_encoder,
    save_checkpoint,
)
from aclecg_core.method.export import TOLERANCE, ExportError, card_path, export_encoder
from aclecg_core.method.model import AclEcgModel, EncoderConfig, build_model

PTBXL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ptbxl"
PTBXL_RECORDS = [PTBXL / "records100" / "00000" / f"{i:05d}_lr.hea" for i in range(1, 7)]


@dataclass
class Exported:
    checkpoint: Path
    model: AclEcgModel
    windows: torch.Tensor
    onnx: Path
    pt2: Path


def _check_windows(pre: PreprocessConfig) -> tuple[torch.Tensor, list[str]]:
    """Windows of six real PTB-XL records when ../shared/data is there, else synthetic ones,
    with the ``--check-data`` arguments that give the same windows."""
    if all(p.is_file() for p in PTBXL_RECORDS):
        cohort = load_cohort(PTBXL_RECORDS, layout="wfdb", preprocessing=pre)
        return torch.from_numpy(cohort.signals), ["--check-data", *map(str, PTBXL_RECORDS)]
    generator = torch.Generator().manual_seed(0)
    return torch.randn(32, 12, pre.window_samples, generator=generator), []


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    root = tmp_path_factory.mktemp("export")
    enc = EncoderConfig(size="tiny", regions="clinical")
    pre = PreprocessConfig(target_fs=100.0, bandpass_hz=(0.5, 40.0), window_s=5.0,
                           normalization="none")
    meta = encoder_metadata(method="acl", encoder=enc, preprocessing=pre.to_dict(), round=3,
                            metrics={"loss": 1.0}, config=None,
                            corpus=corpus_summary("centralized", "x", []))
    save_checkpoint(root / "ckpt", build_model(enc, seed=0).state_dict(), meta)
    model, _ = load_encoder(root / "ckpt")
    windows, check_args = _check_windows(pre)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation (or other) warning from our export path
        assert main(["export", str(root / "ckpt"), "--out", str(root / "e.onnx"),
                     *check_args]) == 0
        export_encoder(model, meta, root / "e.pt2", root / "ckpt", windows, "test windows")
    return Exported(root / "ckpt", model, windows, root / "e.onnx", root / "e.pt2")


def test_onnx_runs_in_onnxruntime_with_the_checkpoints_output(exported: Exported) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(exported.onnx),
                                           providers=["CPUExecutionProvider"])
    with torch.no_grad():
        reference = exported.model.embed(exported.windows).numpy()
    for batch in (exported.windows[:1], exported.windows):
        (out,) = session.run(["features"], {"ecg": batch.numpy()})
        assert np.abs(out - reference[:len(batch)]).max() <= TOLERANCE
    card = json.loads(card_path(exported.onnx).read_text())
    assert 0 <= card["check"]["max_abs_difference"] <= TOLERANCE
    assert card["check"]["windows"] == len(exported.windows)
    assert card["check"]["runtime"].startswith("onnxruntime ")
    assert card["input"]["shape"] == ["batch", 12, 500] and card["input"]["sampling_rate_hz"] == 100
    assert card["input"]["units"] == "mV" and card["input"]["lead_order"][:3] == ["I", "II", "III"]
    assert card["output"]["shape"] == ["batch", exported.model.embed_dim]
    assert card["regions"]["inferior"] == ["II", "III", "aVF"] and card["round"] == 3
    digest = hashlib.sha256(exported.checkpoint.with_suffix(".safetensors").read_bytes())
    assert card["source_checkpoint"]["sha256"] == digest.hexdigest()


def test_pt2_card_records_its_check(exported: Exported) -> None:
    card = json.loads(card_path(exported.pt2).read_text())
    assert card["check"]["data"] == "test windows" and card["runtime"].startswith("torch.export")
    assert 0 <= card["check"]["max_abs_difference"] <= TOLERANCE


_PLAIN = """
import json, sys
import numpy as np
import onnxruntime, torch
x = np.load(sys.argv[1])
onnx = onnxruntime.InferenceSession(sys.argv[2]).run(None, {"ecg": x})[0]
program = torch.export.load(sys.argv[3]).module()
with torch.no_grad():
    pt2 = program(torch.from_numpy(x)).numpy()
card = json.load(open(sys.argv[2] + ".json"))
assert not any(m.startswith("aclecg") for m in sys.modules)
np.save(sys.argv[4], np.stack([onnx, pt2]))
print(card["input"]["window_samples"])
"""


def test_exports_load_in_a_fresh_python_without_the_project(exported: Exported,
                                                            tmp_path: Path) -> None:
    x = exported.windows[:3].numpy()
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "plain.py").write_text(_PLAIN)
    done = subprocess.run([sys.executable, "-I", "plain.py", "x.npy", str(exported.onnx),
                           str(exported.pt2), "y.npy"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "500"
    with torch.no_grad():
        reference = exported.model.embed(torch.from_numpy(x)).numpy()
    assert np.abs(np.load(tmp_path / "y.npy") - reference).max() <= TOLERANCE


def test_export_refuses_torchscript_and_wrong_check_windows(exported: Exported,
                                                             tmp_path: Path) -> None:
    _, meta = load_encoder(exported.checkpoint)
    with pytest.raises(ExportError, match=r"e\.pt: use a \.onnx .* or \.pt2"):
        export_encoder(exported.model, meta, tmp_path / "e.pt", exported.checkpoint,
                       exported.windows, "x")
    with pytest.raises(ExportError, match=r"check windows from short ones: expected \(n, 12, 500"):
        export_encoder(exported.model, meta, tmp_path / "e.pt2", exported.checkpoint,
                       exported.windows[..., :100], "short ones")


def test_commands_name_a_bad_checkpoint_or_output(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "e.onnx")]) == 1
    assert "missing.safetensors" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "e.pt")]) == 1
    assert "use a .onnx (ONNX) or .pt2 (torch.export) file name" in capsys.readouterr().err
    save_checkpoint(tmp_path / "old", build_model(EncoderConfig(size="tiny")).state_dict(),
                    {"round": 1})
    assert main(["embed", str(tmp_path / "old"), "--data", str(tmp_path),
                 "--out", str(tmp_path / "f.npz")]) == 1
    assert "old.json is not an encoder checkpoint sidecar" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "old"), "--data", str(tmp_path),
                 "--out", str(tmp_path / "f.pkl")]) == 1
    assert "use a .npz or .csv file name" in capsys.readouterr().err
