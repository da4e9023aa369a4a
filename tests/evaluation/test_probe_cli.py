"""``aclecg probe`` with label fractions: a checkpoint against its random-init reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aclecg_cli.main import main
from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.data.synth import write_synthetic_cohort
from aclecg_core.evaluation.probe import C_GRID
from aclecg_core.method.checkpoint import corpus_summary, encoder_metadata, save_checkpoint
from aclecg_core.method.model import EncoderConfig, build_model


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-probe")
    write_synthetic_cohort(out / "cohort", sites=2, records_per_site=20, seed=1, workers=1)
    enc = EncoderConfig(size="tiny")
    save_checkpoint(out / "enc", build_model(enc, seed=5).state_dict(), encoder_metadata(
        method="acl", encoder=enc, preprocessing=PreprocessConfig().to_dict(), round=None,
        metrics={}, config=None, corpus=corpus_summary("centralized", "test", [])))
    return out


def _probe(folder: Path, checkpoint: str, *extra: str) -> list[str]:
    return ["probe", checkpoint, "--data", str(folder / "cohort"), "--split", "patient",
            "--device", "cpu", "--cache-dir", str(folder / "cache"), "--workers", "1",
            "--bootstrap", "50", *extra]


def test_probe_with_a_label_fraction_against_random_init(folder: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    assert main(_probe(folder, str(folder / "enc"), "--fraction", "0.5", "--draws", "2",
                       "--reference-inits", "2", "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["encoder_config"]["size"] == "tiny" and out["fraction"] == 0.5
    assert len(out["reference_inits"]) == 2
    for side, n_draws in (("encoder", 2), ("reference", 4)):  # 2 draws x 2 inits
        draws = out[side]["draws"]
        assert len(draws) == n_draws and all(d["c"] in C_GRID for d in draws)
        assert all(d["n_train"] < out["n_train"] and d["n_val"] == out["n_val"] for d in draws)
    diff = out["difference"]
    lo, hi = diff["auroc_diff_ci"]
    assert lo <= diff["auroc_diff"] <= hi and diff["n_bootstrap"] == 50
    assert diff["auroc_a"] == pytest.approx(out["encoder"]["auroc"]["mean"])

    assert main(_probe(folder, str(folder / "enc"), "--fraction", "0.5", "--draws", "2",
                       "--reference-inits", "2")) == 0
    text = capsys.readouterr().out
    assert "random init ×2" in text and "difference" in text and "chosen C" in text
    assert "the 2 random inits alone score" in text
    assert "its random-init reference" in text and "2 draws" in text


def test_probe_of_random_init_is_the_reference_itself(folder: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    assert main(_probe(folder, "random", "--encoder", "tiny", "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reference"] is None and out["difference"] is None
    assert len(out["encoder"]["draws"]) == 1  # all labels: one draw


def test_pretrain_windows_as_the_study_and_probing_sees_whole_records(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``aclecg pretrain`` defaults to one 5 s window per 10 s of record (the study's corpus);
    ``aclecg probe`` of its checkpoint tiles each record (10-30 s) with 5 s windows."""
    import argparse

    from aclecg_cli.train import _load
    from aclecg_core.method.checkpoint import load_checkpoint

    out = folder / "pretrained"
    assert main(["pretrain", "--data", str(folder / "cohort"), "--out", str(out), "--epochs",
                 "1", "--workers", "1", "--device", "cpu"]) == 0
    _, meta = load_checkpoint(out)
    prep = meta["preprocessing"]
    assert (prep["window_s"], prep["stride_s"]) == (5.0, 10.0)
    assert meta["encoder"]["size"] == "tiny"
    args = argparse.Namespace(data=[folder / "cohort"], layout="auto", cache_dir=None,
                              workers=1, progress=False)
    pretraining, probing = _load(args, prep), _load(args, prep, whole_records=True)
    assert probing.preprocessing["stride_s"] is None  # windows tile each record
    assert len(probing) >= 2 * len(probing.records) and len(probing) > len(pretraining)
    assert main(_probe(folder, str(out), "--reference-inits", "1")) == 0
    capsys.readouterr()
