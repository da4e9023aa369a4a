"""Every ``aclecg`` command meets bad input with one line naming the file and the problem and a
non-zero exit status, never a traceback (and ``pretrain`` records its amplitude options)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from aclecg_cli.main import main
from aclecg_cli.train import PRETRAINED_PROBE_EPOCHS
from aclecg_core.method.augment import ViewPipeline

CODE15_RECORDS = ("1000001", "1000010", "100003", "1000049", "1000072", "1000078")


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    """Run ``aclecg argv``; assert a non-zero exit and an error line holding ``expected``."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"aclecg {argv[0]}")
    for text in expected:
        assert text in line, (text, line)
    return line


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    """Small inputs: a synthetic labelled folder, an unlabeled code15 copy, an empty folder,
    a folder of one truncated record, and a checkpoint pretrained on the synthetic folder."""
    root = tmp_path_factory.mktemp("cli")
    assert main(["data", "synth", str(root / "synth"), "--sites", "1",
                 "--records-per-site", "12", "--workers", "1"]) == 0
    unlabeled = root / "unlabeled"
    unlabeled.mkdir()
    for name in (f"{record}{suffix}" for record in CODE15_RECORDS for suffix in (".hea", ".dat")):
        shutil.copyfile(shared_data / "code15" / name, unlabeled / name)
    (root / "empty").mkdir()
    broken = root / "broken"
    broken.mkdir()
    shutil.copyfile(unlabeled / "1000001.hea", broken / "1000001.hea")
    (broken / "1000001.dat").write_bytes((unlabeled / "1000001.dat").read_bytes()[:4000])
    checkpoint = root / "ckpt" / "model"
    assert main(["pretrain", "--data", str(root / "synth"), "--out", str(checkpoint),
                 "--epochs", "1", "--batch-size", "8", "--encoder", "tiny", "--workers", "1",
                 "--normalization", "record-zscore", "--rescale-amplitude"]) == 0
    return {"synth": root / "synth", "unlabeled": unlabeled, "empty": root / "empty",
            "broken": broken, "checkpoint": checkpoint, "root": root}


def _damaged(folders: dict[str, Path], name: str, edit: str) -> Path:
    """A copy of the checkpoint with a damaged sidecar (``edit``: "truncate" or "encoder")."""
    target = folders["root"] / name / "model"
    target.parent.mkdir(exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(folders["checkpoint"].with_suffix(suffix), target.with_suffix(suffix))
    sidecar = target.with_suffix(".json")
    if edit == "truncate":
        sidecar.write_text(sidecar.read_text()[:40])
    else:
        meta = json.loads(sidecar.read_text())
        meta["encoder"]["size"] = "default"
        sidecar.write_text(json.dumps(meta))
    return target


def test_pretrain_records_the_amplitude_options(folders: dict[str, Path]) -> None:
    meta = json.loads(folders["checkpoint"].with_suffix(".json").read_text())
    assert meta["preprocessing"]["normalization"] == "record-zscore"
    assert meta["preprocessing"]["rescale_amplitude"] is True


def test_data_check(folders: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    missing = folders["root"] / "nowhere"
    _fails(["data", "check", str(missing)], capsys, str(missing), "no such file or folder")
    _fails(["data", "check", str(folders["empty"])], capsys, str(folders["empty"]),
           "no WFDB records found")


def test_data_synth_into_a_file(folders: dict[str, Path],
                                capsys: pytest.CaptureFixture[str]) -> None:
    target = folders["root"] / "a-file"
    target.write_text("not a folder")
    _fails(["data", "synth", str(target), "--sites", "1", "--records-per-site", "1"], capsys,
           str(target))


def test_pretrain(folders: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = str(folders["root"] / "never")
    missing = folders["root"] / "nowhere"
    _fails(["pretrain", "--data", str(missing), "--out", out], capsys, str(missing),
           "no such file or folder")
    _fails(["pretrain", "--data", str(folders["empty"]), "--out", out], capsys,
           "no WFDB records found", str(folders["empty"]))
    _fails(["pretrain", "--data", str(folders["broken"]), "--out", out, "--workers", "1"], capsys,
           "no usable records", "1000001.hea", "truncated signal file")


@pytest.mark.parametrize("command", ["probe", "finetune"])
def test_probe_and_finetune(folders: dict[str, Path], capsys: pytest.CaptureFixture[str],
                            command: str) -> None:
    data = ["--data", str(folders["synth"]), "--split", "patient", "--workers", "1"]
    missing = folders["root"] / "nowhere" / "model"
    _fails([command, str(missing), *data], capsys, "nowhere/model.", "not found")
    corrupt = _damaged(folders, f"corrupt-{command}", "truncate")
    _fails([command, str(corrupt), *data], capsys, f"{corrupt}.json", "corrupt checkpoint sidecar")
    wrong = _damaged(folders, f"wrong-{command}", "encoder")
    _fails([command, str(wrong), *data], capsys, f"{wrong}", "does not match")
    _fails([command, str(folders["checkpoint"]), "--data", str(folders["unlabeled"]),
            "--split", "patient", "--workers", "1"], capsys, str(folders["unlabeled"]),
           "no record carries")


def test_finetune_learning_rate(folders: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``--lr`` takes a number or ``auto`` (the best of the grid on the validation split);
    ``--probe-epochs`` defaults to a probe phase for pretrained checkpoints trained longer
    than it."""
    args = ["finetune", str(folders["checkpoint"]), "--data", str(folders["synth"]), "--split",
            "patient", "--workers", "1", "--epochs", "1", "--fraction", "1", "--json"]
    with pytest.raises(SystemExit) as stop:
        main([*args, "--lr", "fast"])
    assert stop.value.code == 2 and "not a number nor 'auto': 'fast'" in capsys.readouterr().err
    views: list[str] = []
    view = ViewPipeline.view

    def spy(self: ViewPipeline, *a: Any) -> torch.Tensor:
        views.append(self.method)
        return view(self, *a)

    monkeypatch.setattr(ViewPipeline, "view", spy)
    assert main([*args, "--lr", "2e-3", "--probe-epochs", "0"]) == 0
    fixed = json.loads(capsys.readouterr().out)
    assert fixed["lr"] == 2e-3 and list(fixed["val_auroc_by_lr"]) == ["0.002"]
    assert fixed["probe_epochs"] == 0 and fixed["augment"] == "none" and not views
    assert main([*args, "--lr", "2e-3", "--probe-epochs", "0", "--augment", "acl"]) == 0
    assert json.loads(capsys.readouterr().out)["augment"] == "acl"
    assert views and set(views) == {"acl"}  # the training batches; none without --augment
    with pytest.raises(SystemExit) as stop:
        main([*args, "--augment", "mixup"])
    assert stop.value.code == 2 and "invalid choice: 'mixup'" in capsys.readouterr().err
    assert main(["finetune", "random", *args[2:], "--lr", "2e-3"]) == 0
    assert json.loads(capsys.readouterr().out)["probe_epochs"] == 0  # random: no probe phase
    assert main(args) == 0  # auto lr by default; 1 epoch: too few for a probe phase
    auto = json.loads(capsys.readouterr().out)
    assert auto["probe_epochs"] == 0
    assert list(auto["val_auroc_by_lr"]) == ["0.0003", "0.001", "0.003"]
    assert auto["val_auroc_by_lr"][f"{auto['lr']:g}"] == max(auto["val_auroc_by_lr"].values())
    longer = [*args, "--epochs", str(PRETRAINED_PROBE_EPOCHS + 1), "--lr", "2e-3"]
    assert main(longer) == 0  # a pretrained checkpoint probes first
    assert json.loads(capsys.readouterr().out)["probe_epochs"] == PRETRAINED_PROBE_EPOCHS
    assert fixed["distill"] and fixed["teacher_val_auroc"] is None  # 100 %: nothing to distil
    half = [*args[:-2], "0.5", "--json", "--lr", "2e-3", "--probe-epochs", "0"]
    assert main(half) == 0  # below 100 %: self-training by default
    distilled = json.loads(capsys.readouterr().out)
    assert None not in (distilled["teacher_val_auroc"], distilled["student_val_auroc"])
    assert main([*half, "--no-distill"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert not plain["distill"] and plain["teacher_val_auroc"] is None


def test_simulate_config(folders: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    missing = folders["root"] / "nowhere.yaml"
    _fails(["simulate", "--config", str(missing)], capsys, str(missing))
    bad = folders["root"] / "bad.yaml"
    bad.write_text("cohort: [unclosed\n")
    _fails(["simulate", "--config", str(bad)], capsys, str(bad))
    _fails(["simulate", "--set", "no-such-key=1"], capsys, "no-such-key")


def test_report_without_a_run(folders: dict[str, Path],
                              capsys: pytest.CaptureFixture[str]) -> None:
    _fails(["report", str(folders["empty"])], capsys, "metrics.json")


def test_compare_pooled_without_a_run_or_with_bad_options(
        folders: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _fails(["compare-pooled", str(folders["empty"])], capsys,
           f"{folders['empty']}/config.json: cannot be read")
    for option in (["--fractions", "0.1,2"], ["--fractions", "a"], ["--draws", "0"]):
        assert main(["compare-pooled", str(folders["empty"]), *option]) == 2
        assert "aclecg compare-pooled: error:" in capsys.readouterr().err


def test_audit_without_a_trail(folders: dict[str, Path],
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(folders["empty"])]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.err and f"{folders['empty']}/audit.jsonl not found" in out.out


def test_deploy_with_missing_files(folders: dict[str, Path],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    missing = folders["root"] / "no-ca"
    _fails(["deploy", "make-server-cert", "--ca-dir", str(missing)], capsys, str(missing))


def test_no_traceback_from_the_command(folders: dict[str, Path]) -> None:
    corrupt = _damaged(folders, "corrupt-subprocess", "truncate")
    result = subprocess.run([sys.executable, "-m", "aclecg_cli", "probe", str(corrupt), "--data",
                             str(folders["synth"])], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("aclecg probe: error: ")
    assert f"{corrupt}.json" in result.stderr


def test_probe_without_split_on_a_folder_without_folds(folders: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", str(folders["checkpoint"]), "--data", str(folders["synth"]),
                 "--workers", "1", "--draws", "1", "--bootstrap", "10", "--reference-inits", "1",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["split"] == "patient" and out["n_test"] > 0
