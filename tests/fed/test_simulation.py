"""End to end: a 2-site simulation with a tiny encoder, resume equality, its checkpoints used by
the downstream commands (probe, finetune, embed, export), failing sites, and no process left
behind (normal end, killed driver)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from aclecg_cli.main import main
from aclecg_core.fed.arrays import select_keys
from aclecg_core.fed.audit import array_digest, verify_run
from aclecg_core.fed.config import load_config
from aclecg_core.fed.sites import ensure_synthetic_cohort
from aclecg_core.method.checkpoint import REQUIRED_KEYS, load_checkpoint, load_encoder
from aclecg_runtime.processes import processes_with_env
from server.secagg import quantization_range
from simulation.reaper import Reaper
from simulation.run import PROJECT_DIR, simulate

MARK = "ACLECG_TEST_MARK"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("sim")
    yaml = tmp / "sites.yaml"
    yaml.write_text(f"cohort:\n  sites: 2\n  records-per-site: 8\n  cache-dir: {tmp}/cache\n"
                    "probe:\n  test-fraction: 0.5\n  val-fraction: 0.5\n  bootstrap: 10\n")
    return {"config-file": str(yaml), "batch-size": 4, "encoder": "tiny", "seed": 3,
            "num-server-rounds": 2}


def _survivors(mark: str, wait_s: float) -> list[int]:
    """Processes still carrying ``MARK=mark`` (besides this one) after up to ``wait_s``."""
    end = time.monotonic() + wait_s
    while ((left := processes_with_env(MARK, mark, exclude={os.getpid()}))
           and time.monotonic() < end):
        time.sleep(0.5)
    return left


@pytest.fixture(scope="module")
def full_run(base: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    mark = os.urandom(6).hex()
    os.environ[MARK] = mark  # inherited by every process Ray starts for this run
    try:
        run_dir = simulate({**base, "run-dir": str(tmp_path_factory.mktemp("runs") / "full")})
    finally:
        del os.environ[MARK]
    assert _survivors(mark, 0) == []  # nothing of the run is left once simulate returns
    return run_dir


def test_simulation_writes_the_run_folder(full_run: Path) -> None:
    metrics = json.loads((full_run / "metrics.json").read_text())
    assert metrics["run"]["status"] == "finished" and metrics["final_round"] == 2
    assert [r["round"] for r in metrics["rounds"]] == [0, 1, 2]
    for r in metrics["rounds"][1:]:
        assert sorted(c["site"] for c in r["clients"]) == ["site1", "site2"]
        assert r["failures"] == [] and r["probe"]["n_test"] > 0
    assert [s["site"] for s in metrics["sites"]] == ["site1", "site2"]
    assert metrics["best"]["round"] in (0, 1, 2) and "val_auroc" in metrics["best"]
    probes = [r["probe"] for r in metrics["rounds"]]
    assert probes[0]["vs_round0"] is None and all(p["c"] > 0 and p["n_val"] > 0 for p in probes)
    for p in probes[1:]:  # each trained round against round 0, the random-init reference
        d = p["vs_round0"]
        assert d["auroc_diff_ci"][0] <= d["auroc_diff"] <= d["auroc_diff_ci"][1]
        assert d["auroc_a"] == p["macro_auroc"] and d["auroc_b"] == probes[0]["macro_auroc"]
    assert "the random-init encoder of round 0" in (full_run / "report.md").read_text()
    for name in ("round-0000", "round-0001", "round-0002", "best", "final"):
        state, meta = load_checkpoint(full_run / "checkpoints" / name)
        assert any(k.startswith("encoder.") for k in state) and "config" in meta
    assert json.loads((full_run / "config.json").read_text())["run"]["num-server-rounds"] == 2
    assert (full_run / "report.md").is_file() and (full_run / "report.html").is_file()
    regions = json.loads((full_run / "regions.json").read_text())
    assert regions["round"] == 2 and regions["regions"] == ["inferior", "septal", "anterior",
                                                            "lateral"]
    assert len(regions["vs_round0"]["auroc_diff"]) == 4 and regions["round0"]["n_test"] == \
        regions["n_test"]  # round 0's random-init encoder, probed on the same records
    # round-records 0: every round was probed on all the probe data, metrics.json has it all
    assert not (full_run / "holdout.json").exists()
    assert "## Per-region evidence" in (full_run / "report.md").read_text()
    audit = verify_run(full_run)
    assert audit.verified and audit.rounds == 3, audit.problems
    lines = [json.loads(line) for line in (full_run / "audit.jsonl").read_text().splitlines()]
    round2 = next(e for e in lines if e.get("round") == 2)
    assert [a["site"] for a in round2["sites_answered"]] == ["site1", "site2"]
    assert all(len(a["arrays_sha256"]) == 64 for a in round2["sites_answered"])


def test_resumed_run_ends_with_the_same_weights(base: dict[str, Any], full_run: Path,
                                                tmp_path: Path) -> None:
    """Under the default strategy, FedAvgM, whose momentum after round 1 is restored."""
    assert load_config(base, PROJECT_DIR).run.strategy == "fedavgm"
    run_dir = str(tmp_path / "resumed")
    simulate({**base, "run-dir": run_dir, "num-server-rounds": 1})
    assert (Path(run_dir) / "checkpoints" / "round-0001.server-opt.safetensors").is_file()
    simulate({**base, "run-dir": run_dir, "resume": True})
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [0, 1, 2]
    full = json.loads((full_run / "metrics.json").read_text())["rounds"][2]["probe"]
    assert metrics["rounds"][2]["probe"]["vs_round0"] == full["vs_round0"]  # round 0 reloaded
    resumed, meta = load_checkpoint(Path(run_dir) / "checkpoints" / "final")
    uninterrupted, _ = load_checkpoint(full_run / "checkpoints" / "final")
    assert meta["round"] == 2 and resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key
    assert verify_run(Path(run_dir)).verified  # the chain continues across the resume


def _cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_final_checkpoint_is_probed_and_finetuned_by_the_cli(
        base: dict[str, Any], full_run: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    final = full_run / "checkpoints" / "final"
    cohort = Path(base["config-file"]).parent / "cache" / "synthetic" / "seed-0-2x8"
    data = ["--data", str(cohort), "--split", "site:site3", "--json"]
    # seed 3: the validation records of this (fixed) cohort differ in some label
    probed = _cli_json(capsys, "probe", str(final), *data, "--bootstrap", "20", "--seed", "3")
    tuned = _cli_json(capsys, "finetune", str(final), *data, "--epochs", "1", "--fraction", "1",
                      "--seed", "3")
    assert probed["method"] == tuned["method"] == "acl"
    assert probed["n_test"] == tuned["metrics"]["n_test"] == 8
    assert probed["difference"]["n_test"] == 8  # against a random init of the same encoder
    # a centralized checkpoint carries the same sidecar as the federated ones
    assert main(["pretrain", "--data", str(cohort / "site1"), "--encoder", "tiny", "--epochs", "1",
                 "--batch-size", "4", "--out", str(tmp_path / "central")]) == 0
    _, central = load_encoder(tmp_path / "central")
    assert central["round"] is None and central["corpus"]["records"] == 8
    sites = json.loads((full_run / "metrics.json").read_text())["sites"]
    windows = sum(s["windows"] for s in sites)  # one 5 s window per 10 s of the 10-20 s records
    assert 16 <= windows < 32
    for name in ("round-0000", "round-0001", "best", "final"):
        model, meta = load_encoder(full_run / "checkpoints" / name)
        assert not model.training and set(REQUIRED_KEYS) <= set(meta) & set(central)
        assert meta["corpus"]["setting"] == "federated"
        # round 0 is the untrained initial encoder: no site has trained it yet; record counts
        # stay at the sites unless the run sets share-site-stats
        assert meta["corpus"]["windows"] == (0 if meta["round"] == 0 else windows)
        assert meta["corpus"]["records"] == (0 if meta["round"] == 0 else None)
    assert meta["round"] == 2 and meta["encoder"] == model.config.to_dict()


def test_compare_pooled_trains_the_same_samples_and_reports_the_difference(
        full_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A finished simulation → ``aclecg compare-pooled`` → pooled.json, the pooled checkpoint
    (read as any checkpoint) and the report's section."""
    run_dir = tmp_path / "run"
    shutil.copytree(full_run, run_dir)
    assert main(["compare-pooled", str(run_dir), "--fractions", "0.5,1", "--draws", "2"]) == 0
    assert "pooled reference:" in capsys.readouterr().out
    pooled = json.loads((run_dir / "pooled.json").read_text())
    sites = json.loads((run_dir / "metrics.json").read_text())["sites"]
    # two rounds of one local epoch each = two pooled epochs over the sites' windows
    assert pooled["epochs"] == 2 and pooled["records"] == 16
    assert pooled["windows"] == sum(s["windows"] for s in sites)
    assert pooled["samples_seen"] == 2 * pooled["windows"]
    assert [c["fraction"] for c in pooled["comparisons"]] == [0.5, 1.0]
    assert [c["draws"] for c in pooled["comparisons"]] == [2, 1]
    for c in pooled["comparisons"]:
        d = c["difference"]
        assert d["auroc_a"] == c["federated"]["auroc"]["mean"]
        assert d["auroc_b"] == c["pooled"]["auroc"]["mean"]
        assert d["auroc_diff_ci"][0] <= d["auroc_diff"] <= d["auroc_diff_ci"][1]
    model, meta = load_encoder(run_dir / "pooled" / "encoder.safetensors")
    assert meta["round"] is None and meta["corpus"]["setting"] == "centralized"
    assert meta["corpus"]["windows"] == pooled["windows"]
    final, _ = load_encoder(run_dir / "checkpoints" / "final")
    assert any(not torch.equal(a, b) for a, b in zip(
        model.state_dict().values(), final.state_dict().values(), strict=True))
    assert "## Federated vs pooled" in (run_dir / "report.md").read_text()
    assert main(["compare-pooled", str(tmp_path / "nothing")]) == 1
    assert "nothing/config.json: cannot be read" in capsys.readouterr().err
    # a run whose sites reported other windows than its config's cohort (as a deployment's)
    sidecar = run_dir / "checkpoints" / "final.json"
    meta = json.loads(sidecar.read_text())
    meta["corpus"]["windows"] += 1
    sidecar.write_text(json.dumps(meta))
    assert main(["compare-pooled", str(run_dir)]) == 1
    assert "compare-pooled needs a simulation of that cohort" in capsys.readouterr().err


_PLAIN_ONNX = """
import json, sys
import numpy as np, onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1])
np.save(sys.argv[3], session.run(None, {"ecg": np.load(sys.argv[2])})[0])
card = json.load(open(sys.argv[1] + ".json"))
assert not any(m.startswith("aclecg") for m in sys.modules), "the project was imported"
print(json.dumps(card["input"]))
"""


def test_final_checkpoint_is_embedded_and_exported(
        base: dict[str, Any], full_run: Path, tmp_path: Path) -> None:
    final = full_run / "checkpoints" / "final"
    cohort = Path(base["config-file"]).parent / "cache" / "synthetic" / "seed-0-2x8"
    model, meta = load_encoder(final)
    for out in (tmp_path / "features.npz", tmp_path / "features.csv"):
        assert main(["embed", str(final), "--data", str(cohort), "--out", str(out)]) == 0
    with np.load(tmp_path / "features.npz", allow_pickle=False) as f:
        assert f["features"].shape == (24, model.embed_dim)
        assert f["record_id"].shape == f["site"].shape == f["labels"].shape == (24,)
        assert sorted(set(f["site"].tolist())) == ["site1", "site2", "site3"]
        assert f["label_matrix"].shape == (24, len(f["classes"]))
        assert json.loads(str(f["info"]))["round"] == 2
        assert f["n_windows"].min() >= 2  # 5 s windows tiling each 10-30 s record
        npz = dict(zip(f["record_id"].tolist(), f["features"], strict=True))
    table = pd.read_csv(tmp_path / "features.csv")
    assert len(table) == 24 and {"record_id", "site", "labels", "f0"} <= set(table.columns)
    row = table.iloc[0]
    expected = npz[str(row["record_id"])]
    assert np.allclose(row[[f"f{i}" for i in range(model.embed_dim)]].to_numpy(float), expected,
                       rtol=1e-5, atol=1e-6)

    exported = tmp_path / "export" / "encoder.onnx"
    assert main(["export", str(final), "--out", str(exported)]) == 0
    samples = int(meta["preprocessing"]["window_s"] * meta["preprocessing"]["target_fs"])
    x = torch.randn(3, 12, samples, generator=torch.Generator().manual_seed(0))
    np.save(tmp_path / "x.npy", x.numpy())
    script = tmp_path / "plain.py"
    script.write_text(_PLAIN_ONNX)
    done = subprocess.run([sys.executable, "-I", str(script), str(exported),
                           str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    card_input = json.loads(done.stdout)
    assert card_input["lead_order"][:3] == ["I", "II", "III"]
    assert card_input["window_samples"] == samples and card_input["units"] == "mV"
    with torch.no_grad():
        reference = model.embed(x).numpy()
    assert np.allclose(np.load(tmp_path / "y.npy"), reference, rtol=1e-4, atol=1e-5)
    card = json.loads((tmp_path / "export" / "encoder.onnx.json").read_text())
    windows = sum(s["windows"] for s in json.loads((full_run / "metrics.json").read_text())
                  ["sites"])
    assert card["method"] == "acl" and card["training_corpus"]["windows"] == windows


def test_a_run_whose_sites_all_fail_says_so_and_fails(
        base: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_config(base, PROJECT_DIR)
    root = ensure_synthetic_cohort(cfg)
    broken = tmp_path / "cache"
    shutil.copytree(root.parents[1], broken)  # same cohort, both training sites then removed
    synthetic = broken / root.relative_to(root.parents[1])
    for site in ("site1", "site2"):
        shutil.rmtree(synthetic / site)
    yaml = tmp_path / "broken.yaml"
    yaml.write_text(Path(base["config-file"]).read_text().replace(
        str(Path(base["config-file"]).parent / "cache"), str(broken)))
    run_dir = tmp_path / "run"
    code = main(["simulate", "--config", str(yaml), "--run-dir", str(run_dir),
                   "--set", "batch-size=4", "--set", "num-server-rounds=2",
                   "--set", f"seed={base['seed']}", "--set", f"encoder={base['encoder']}"])
    err = capsys.readouterr().err
    assert code == 1
    assert "round 1: no site succeeded" in err and "site1: DataError" in err \
        and "site2: DataError" in err and "no such file or folder" in err
    run = json.loads((run_dir / "metrics.json").read_text())["run"]
    assert run["status"] == "failed" and "no site succeeded" in run["error"]


def _cli_simulate(base: dict[str, Any], run_dir: Path,
                  *extra: str) -> tuple[int, list[str]]:
    """``aclecg simulate`` with ``base``'s settings in a fresh process: its exit code and the
    non-empty lines of its console."""
    settings = [a for k, v in base.items() if k != "config-file" for a in ("--set", f"{k}={v}")]
    done = subprocess.run(
        [sys.executable, "-m", "aclecg_cli", "simulate", "--config", base["config-file"],
         "--run-dir", str(run_dir), *settings, *extra],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300)
    return done.returncode, [line for line in (done.stdout + done.stderr).splitlines()
                             if line.strip()]


def test_a_diverging_federation_stops_naming_why_and_resumes_with_a_sane_lr(
        base: dict[str, Any], tmp_path: Path) -> None:
    """Both runs are ``aclecg simulate`` processes whose console shows the project's lines only
    (the resumed one runs on a synthetic cohort already written: the case in which a
    third-party warning once reached the console from a ClientApp worker)."""
    run_dir = tmp_path / "diverged"
    code, lines = _cli_simulate(base, run_dir, "--set", "lr=100000")
    assert code == 1
    assert [line for line in lines if "[aclecg]" not in line] == [lines[-1]]  # nothing else
    assert re.fullmatch(r"aclecg simulate: error: round 1: no site succeeded, the run stops "
                        r"\(site1: update refused: .+; site2: update refused: .+\) \(run folder "
                        r".+\)", lines[-1]), lines[-1]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["run"]["status"] == "failed" and metrics["final_round"] == 0
    state, meta = load_checkpoint(run_dir / "checkpoints" / "final")
    assert meta["round"] == 0 and all(torch.isfinite(v).all() for v in state.values())
    code, lines = _cli_simulate(base, run_dir, "--resume")
    assert code == 0, lines
    assert any("[aclecg] round 2/2" in line for line in lines)
    assert any(line.startswith("report: ") for line in lines)
    noise = [line for line in lines if "[aclecg]" not in line and not line.startswith(
        ("run folder: ", "report: "))]
    assert noise == []
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["run"]["status"] == "finished" and metrics["run"]["changes"] == [
        {"after_round": 0, "changed": {"lr": [100000.0, 0.001]}}]
    assert [r["round"] for r in metrics["rounds"]] == [0, 1, 2]
    state, _ = load_checkpoint(run_dir / "checkpoints" / "final")
    assert all(torch.isfinite(v).all() for v in state.values())
    assert verify_run(run_dir).verified


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
def test_killing_the_driver_leaves_no_process_behind(base: dict[str, Any],
                                                     tmp_path: Path) -> None:
    mark = os.urandom(6).hex()
    run_dir = tmp_path / "run"
    overrides = {**base, "run-dir": str(run_dir), "num-server-rounds": 50}
    driver = subprocess.Popen(
        [sys.executable, "-c", f"from simulation.run import simulate; simulate({overrides!r})"],
        cwd=PROJECT_DIR, env={**os.environ, MARK: mark}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 300
        while time.monotonic() < end and driver.poll() is None:  # until a round has trained
            metrics = run_dir / "metrics.json"
            if metrics.is_file() and json.loads(metrics.read_text())["final_round"] >= 1:
                break
            time.sleep(0.5)
        assert driver.poll() is None, "the simulation ended before it could be killed"
        assert len(processes_with_env(MARK, mark)) > 3  # driver, reaper, Ray's processes
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        # Without the reaper Ray's agents outlive a killed driver by 20-30 s (measured).
        assert _survivors(mark, 10) == []
    finally:
        driver.kill()
        for pid in processes_with_env(MARK, mark):
            os.kill(pid, signal.SIGKILL)


def test_the_synthetic_cohort_follows_the_federations_node_count(tmp_path: Path) -> None:
    """Like ``flwr run .`` on Flower's default 2-node federation with ``cohort.sites: 3``."""
    from flwr.simulation import run_simulation

    from client.app import app as client_app
    from server.app import make_app

    yaml = tmp_path / "sites.yaml"
    yaml.write_text(f"cohort:\n  sites: 3\n  records-per-site: 8\n  cache-dir: {tmp_path}/c\n"
                    "probe:\n  test-fraction: 0.5\n  val-fraction: 0.5\n  bootstrap: 10\n")
    run_dir = tmp_path / "run"
    with Reaper():  # Ray's agents outlive ray.shutdown() here: end them with the test
        run_simulation(server_app=make_app({"config-file": str(yaml), "batch-size": 4,
                                            "seed": 3, "encoder": "tiny",
                                            "num-server-rounds": 1, "run-dir": str(run_dir)}),
                       client_app=client_app, num_supernodes=2,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                       "init_args": {"address": "local", "num_cpus": 2,
                                                     "include_dashboard": False}})
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["run"]["status"] == "finished"
    assert [c["site"] for c in metrics["rounds"][1]["clients"]] == ["site1", "site2"]
    assert json.loads((run_dir / "config.json").read_text())["cohort"]["sites"] == 2


def test_secure_aggregation_ends_with_the_fedavg_model(base: dict[str, Any], full_run: Path,
                                                      tmp_path: Path) -> None:
    """Same seed and settings, SecAgg+ on: round 1 ends where plain FedAvg's round 1 did, up
    to SecAgg+'s quantisation (stochastic rounding: under one step of 2 x clipping range /
    levels per site, scaled by secagg-max-weight / the summed num-examples)."""
    run_dir = simulate({**base, "num-server-rounds": 1, "secure-aggregation": True,
                        "run-dir": str(tmp_path / "secagg")})
    metrics = json.loads((run_dir / "metrics.json").read_text())
    clients = metrics["rounds"][1]["clients"]
    assert sorted(c["site"] for c in clients) == ["site1", "site2"]
    examples = sum(c["num-examples"] for c in clients)
    step = 2 * 8.0 / quantization_range(2) * 10000.0 / examples
    secure, _ = load_checkpoint(run_dir / "checkpoints" / "final")
    plain, _ = load_checkpoint(full_run / "checkpoints" / "round-0001")
    assert secure.keys() == plain.keys()
    deviation = max(float((secure[k].double() - plain[k].double()).abs().max()) for k in plain)
    assert deviation <= 3 * step + 1e-6, (deviation, step)
    assert verify_run(run_dir).verified


def test_a_cyclic_run_ends_with_the_last_sites_model(base: dict[str, Any],
                                                      tmp_path: Path) -> None:
    """``strategy = cyclic``: every round both sites train, one after the other; each round's
    checkpoint is the model the round's last site sent (nothing averaged), the report says how
    the models were combined, and a resumed run ends with the same weights."""
    run_dir = simulate({**base, "strategy": "cyclic", "run-dir": str(tmp_path / "cyclic")})
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    for round_ in (1, 2):
        entry = next(e for e in audit if e.get("round") == round_)
        answered = {a["arrays_sha256"] for a in entry["sites_answered"]}
        assert len(answered) == 2  # both sites, each with its own model
        state, _ = load_checkpoint(run_dir / "checkpoints" / f"round-{round_:04d}")
        arrays = select_keys({k: v.numpy() for k, v in state.items()}, "encoder+projectors")
        assert array_digest(arrays) in answered
    assert verify_run(run_dir).verified
    assert "cyclic weight transfer (strategy cyclic)" in (run_dir / "report.md").read_text()

    # One round, then a resume in a new simulation (new node ids): the sites are visited in
    # the order of their names, so the run ends with the uninterrupted run's weights.
    resumed_dir = str(tmp_path / "cyclic-resumed")
    simulate({**base, "strategy": "cyclic", "run-dir": resumed_dir, "num-server-rounds": 1})
    simulate({**base, "strategy": "cyclic", "run-dir": resumed_dir, "resume": True})
    resumed, meta = load_checkpoint(Path(resumed_dir) / "checkpoints" / "final")
    uninterrupted, _ = load_checkpoint(run_dir / "checkpoints" / "final")
    assert meta["round"] == 2
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key


def test_hospitals_of_real_folders_are_named_in_the_report(shared_data: Path,
                                                           tmp_path: Path) -> None:
    """Two hospitals' records (CPSC, Georgia) federated by site: the run folder and the report
    name each simulated site's hospital beside its label."""
    cohort = tmp_path / "records"
    for folder, prefix in (("cpsc2018", "A"), ("cinc2021", "E")):
        (cohort / folder).mkdir(parents=True)
        for header in sorted((shared_data / "cinc" / folder).glob(f"{prefix}*.hea"))[:5]:
            for part in (header, header.with_suffix(".mat")):
                shutil.copyfile(part, cohort / folder / part.name)
    yaml = tmp_path / "hospitals.yaml"
    yaml.write_text(f"cohort:\n  source: folder\n  path: {cohort}\n  cache-dir: {tmp_path}/c\n"
                    f"probe:\n  source: ptbxl\n  path: {shared_data / 'ptbxl'}\n"
                    "  bootstrap: 10\n")
    run_dir = simulate({"config-file": str(yaml), "batch-size": 4, "encoder": "tiny",
                        "num-server-rounds": 1, "run-dir": str(tmp_path / "run")})
    sites = json.loads((run_dir / "metrics.json").read_text())["sites"]
    assert [(s["site"], s["name"]) for s in sites] == [("site1", "CPSC"), ("site2", "Georgia")]
    assert "**Sites**: 2: site1 (CPSC), site2 (Georgia)" in (run_dir / "report.md").read_text()
