"""Speed and memory benchmark of pretraining, augmentation, federation, data loading and probing.

Usage: ``python benchmarks/speed.py [--quick] [--device cpu|cuda] [--threads 1]``

Every measurement runs in its own spawned process, so its peak RSS (``ru_maxrss``) is its own.
Timings interleave the compared variants and report medians. Targets (pass/fail in the JSON):

* ``pretrain`` step throughput / a bare PyTorch loop (same encoder, batch, optimizer, views,
  loss) >= 0.95;
* augmentation time <= 5 % of the pretraining step;
* 4-site Flower simulation wall time / centralized training on the same records and epochs
  (same probes) <= 1.2;
* the main job (``aclecg simulate`` with its defaults: 30 rounds, probe every round) wall time /
  ``aclecg pretrain`` of the same site folders for as many epochs plus one ``aclecg probe`` of
  the hold-out site <= 1.15, with the main job's per-round breakdown;
* RSS slope over 50 in-process federated rounds (train_site + FedAvg) ~ flat (<= 0.1 MiB/round
  after round 10).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aclecg_core.data.cohort import Cohort
from aclecg_core.method.device import autocast, pick_device
from aclecg_core.method.losses import acl_ecg_loss, nt_xent
from aclecg_core.method.model import AclEcgModel, EncoderConfig, build_model
from benchmarks.common import (
    CACHE,
    DATA,
    RESULTS,
    ROOT,
    finish,
    load_average,
    machine,
    metadata,
    peak_rss_mb,
    rss_mb,
    write_json,
)

TARGETS = {
    "pretrain_vs_bare_ratio": (">=", 0.95),
    "augmentation_share": ("<=", 0.05),
    "federated_vs_centralized_wall_ratio": ("<=", 1.2),
    "main_job_vs_pooled_wall_ratio": ("<=", 1.15),
    "rss_slope_mib_per_round": ("<=", 0.1),
}


# --- helpers -----------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _synthetic_sites(records: int, sites: int = 4) -> list[Cohort]:
    """Sites 1..``sites`` of the benchmark's synthetic cohort, default preprocessing (10 s)."""
    from aclecg_core.data.loading import load_cohort
    from aclecg_core.data.synth import write_synthetic_cohort

    root = CACHE / f"speed-synthetic-{sites}x{records}"
    if not (root / ".complete").is_file():
        write_synthetic_cohort(root, sites=sites, records_per_site=records, seed=0, workers=1)
        (root / ".complete").write_text("ok\n")
    return [load_cohort([root / f"site{k}"], cache_dir=CACHE / "cohorts", workers=1)
            for k in range(1, sites + 1)]


def _pooled(records: int) -> Cohort:
    from aclecg_core.data.loading import load_cohort

    _synthetic_sites(records)
    root = CACHE / f"speed-synthetic-4x{records}"
    return load_cohort([root / f"site{k}" for k in range(1, 5)], cache_dir=CACHE / "cohorts",
                       workers=1)


def bare_epoch(model: AclEcgModel, cohort: Cohort, method: str, batch_size: int,
               device: torch.device, seed: int) -> tuple[float, float, int]:
    """A minimal PyTorch loop doing the same work as one ``pretrain`` epoch.

    Returns (seconds, augmentation seconds, samples).
    """
    from aclecg_core.method.methods import views_for
    from aclecg_core.method.pretrain import PretrainConfig

    cfg = PretrainConfig(method=method, batch_size=batch_size, seed=seed)
    views = views_for(cfg)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    signals = torch.from_numpy(np.ascontiguousarray(cohort.signals))
    rpeaks = torch.from_numpy(cohort.rpeaks).long()
    records = torch.from_numpy(cohort.window_record)
    order_gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator().manual_seed(seed + 1)
    aug, seen = 0.0, 0
    _sync(device)
    start = time.perf_counter()
    order = torch.randperm(len(cohort), generator=order_gen)
    for begin in range(0, len(order), batch_size):
        idx = order[begin : begin + batch_size]
        x = signals[idx].to(device, non_blocking=True)
        _sync(device)
        t0 = time.perf_counter()
        v1, v2 = views(x, rpeaks[idx], cohort.fs, aug_gen)
        _sync(device)
        aug += time.perf_counter() - t0
        ids = records[idx].to(device)
        with autocast(device, cfg.amp):
            if method == "acl":
                z1, z2 = model.forward_regions(v1), model.forward_regions(v2)
            else:
                z1, z2 = model.forward_global(v1), model.forward_global(v2)
        if method == "acl":
            loss = acl_ecg_loss(z1, z2, cfg.temperature, cfg.gamma, ids)
        else:
            loss = nt_xent(z1, z2, cfg.temperature, ids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(idx)
    _sync(device)
    return time.perf_counter() - start, aug, seen


# --- measurements (each runs in a spawned process) --------------------------------------------

def measure_step(args: dict[str, Any]) -> dict[str, Any]:
    """``pretrain`` vs the bare loop, interleaved; augmentation share from the bare loop."""
    from aclecg_core.method.pretrain import PretrainConfig, pretrain

    device = pick_device(args["device"])
    cohort = _pooled(args["records"])
    out: dict[str, Any] = {"windows": len(cohort), "window_samples": cohort.window_samples,
                           "batch_size": args["batch_size"], "device": str(device)}
    for method in args["methods"]:
        project, bare, share = [], [], []
        for rep in range(args["repeats"] + 1):  # repeat 0 warms up
            model = build_model(EncoderConfig(size=args["encoder"]), seed=rep)
            cfg = PretrainConfig(method=method, epochs=1, batch_size=args["batch_size"], seed=rep)
            result = pretrain(model, cohort, cfg, device=device)
            _sync(device)
            model = build_model(EncoderConfig(size=args["encoder"]), seed=rep)
            seconds, aug, seen = bare_epoch(model, cohort, method, args["batch_size"], device, rep)
            if rep:
                project.append(result.samples_per_second)
                bare.append(seen / seconds)
                share.append(aug / seconds)
        out[method] = {
            "pretrain_samples_per_s": statistics.median(project),
            "bare_samples_per_s": statistics.median(bare),
            "ratio": statistics.median(p / b for p, b in zip(project, bare, strict=True)),
            "ratio_per_repeat": [p / b for p, b in zip(project, bare, strict=True)],
            "augmentation_share": statistics.median(share),
            "amp": "bf16 autocast" if device.type == "cuda" else "off (fp32)",
        }
    return out


def _federation_setup(args: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(config, run-config overrides) of the federation comparison; fills the caches."""
    from aclecg_core.fed.config import load_config, read_pyproject_defaults
    from aclecg_core.fed.probe import load_probe_cohorts
    from aclecg_core.fed.sites import ensure_synthetic_cohort, simulated_site

    overrides = {"num-server-rounds": args["rounds"], "local-epochs": 1,
                 "encoder": args["encoder"], "eval-every": 0, "device": args["device"]}
    cfg = load_config({**read_pyproject_defaults(ROOT / "pyproject.toml"), **overrides}, ROOT)
    ensure_synthetic_cohort(cfg)
    for k in range(cfg.cohort.sites):  # fill the preprocessed-cohort cache for both arms
        simulated_site(cfg, k, cfg.cohort.sites)
    load_probe_cohorts(cfg)
    return cfg, overrides


def measure_federated_arm(args: dict[str, Any]) -> dict[str, Any]:
    """One 4-site Flower simulation (``aclecg simulate``), from the call to the report."""
    from simulation.run import simulate

    _, overrides = _federation_setup(args)
    with tempfile.TemporaryDirectory() as tmp:
        load = load_average()
        start = time.perf_counter()
        run_dir = simulate({**overrides, "run-dir": f"{tmp}/run"})
        wall = time.perf_counter() - start
        metrics = json.loads((run_dir / "metrics.json").read_text())
    round_walls = [r["wall_seconds"] for r in metrics["rounds"]]
    return {"wall_s": wall, "load_average": load, "round_wall_s": round_walls,
            "rounds_total_s": sum(round_walls), "startup_and_teardown_s": wall - sum(round_walls),
            "client_train_s_total": sum(c["seconds"] for r in metrics["rounds"]
                                        for c in r["clients"])}


def measure_centralized_arm(args: dict[str, Any]) -> dict[str, Any]:
    """Centralized pretraining of the pooled sites for as many epochs as rounds, with the same
    probes (before and after) and the same data loading."""
    from aclecg_core.evaluation.probe import probe_cohorts
    from aclecg_core.fed.probe import load_probe_cohorts
    from aclecg_core.fed.sites import simulated_site
    from aclecg_core.fed.training import initial_model
    from aclecg_core.method.pretrain import PretrainConfig, pretrain

    cfg, _ = _federation_setup(args)
    load = load_average()
    start = time.perf_counter()
    sites = [simulated_site(cfg, k, cfg.cohort.sites) for k in range(cfg.cohort.sites)]
    pooled = _concat(sites)
    probe = load_probe_cohorts(cfg)
    train, val, test, classes = probe.train, probe.val, probe.test, probe.classes
    model = initial_model(cfg)
    probe_cohorts(model, train, val, test, classes, seed=0, n_bootstrap=cfg.probe.bootstrap)
    pcfg = PretrainConfig(method=cfg.run.method, epochs=args["rounds"],
                          batch_size=cfg.run.batch_size, lr=cfg.run.lr, seed=cfg.run.seed)
    pretrain(model, pooled, pcfg, device=pick_device(args["device"]))
    probe_cohorts(model, train, val, test, classes, seed=0, n_bootstrap=cfg.probe.bootstrap)
    return {"wall_s": time.perf_counter() - start, "load_average": load,
            "sites": cfg.cohort.sites, "records": sum(len(s.records) for s in sites),
            "windows": len(pooled)}


def measure_federation(args: dict[str, Any], threads: int) -> dict[str, Any]:
    """The Flower simulation (4 sites) vs centralized pretraining of the pooled sites for the
    same number of epochs, both with the server's probe at round 0 and at the end. Each arm runs
    in a fresh process; the arms alternate (fed, cen, cen, fed, ...) ``repeats`` times and the
    ratio is the median of the per-repeat ratios (the machine is shared: load varies)."""
    fed: list[dict[str, Any]] = []
    cen: list[dict[str, Any]] = []
    for rep in range(args["repeats"]):
        order = ["federated", "centralized"][:: 1 if rep % 2 == 0 else -1]
        for arm in order:
            result = run_isolated(f"{arm}_arm", args, threads)
            (fed if arm == "federated" else cen).append(result)
    ratios = [f["wall_s"] / c["wall_s"] for f, c in zip(fed, cen, strict=True)]
    return {
        "rounds": args["rounds"], "sites": cen[0]["sites"], "records": cen[0]["records"],
        "windows": cen[0]["windows"], "encoder": args["encoder"], "repeats": args["repeats"],
        "federated_wall_s": statistics.median(f["wall_s"] for f in fed),
        "centralized_wall_s": statistics.median(c["wall_s"] for c in cen),
        "ratio": statistics.median(ratios), "ratio_per_repeat": ratios,
        "federated": fed, "centralized": cen,
        "peak_rss_mib": max(f["peak_rss_mib"] for f in fed),
    }


def _cli(*args: str) -> float:
    """Seconds of one ``aclecg`` command in a fresh process (its output discarded)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aclecg_cli", *args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def round_breakdown(metrics: dict[str, Any], slots: int) -> dict[str, Any]:
    """Median seconds of a training round's phases from ``metrics.json``: site compute (the
    sites' training seconds over the ``slots`` sites that train at once), waiting (the rest of
    the exchange: scheduling, messages, queueing), aggregation, critical path (wall_seconds);
    beside it, off the critical path: probe and checkpoint/audit write."""
    rounds = [r for r in metrics["rounds"] if r["round"] > 0]
    compute = [sum(c["seconds"] for c in r["clients"]) / slots for r in rounds]
    phases = {
        "site_compute_s": compute,
        "waiting_s": [r["timing"]["exchange_s"] - c for r, c in zip(rounds, compute,
                                                                   strict=True)],
        "aggregation_s": [r["timing"]["aggregation_s"] for r in rounds],
        "critical_path_s": [r["wall_seconds"] for r in rounds],
        "probe_s_beside": [r["timing"]["probe_s"] for r in rounds],
        "checkpoint_audit_s_beside": [r["timing"]["write_s"] for r in rounds],
    }
    return {k: round(statistics.median(v), 3) for k, v in phases.items()}


def measure_main_job(repeats: int) -> dict[str, Any]:
    """The main job (``aclecg simulate``, defaults) against ``aclecg pretrain`` of the pooled
    site folders for as many epochs plus one ``aclecg probe`` of the hold-out site, each a
    fresh process, alternating (main, pooled, pooled, main, ...); the median ratio."""
    from aclecg_core.fed.config import load_config, read_pyproject_defaults
    from aclecg_core.fed.sites import ensure_synthetic_cohort

    cfg = load_config(read_pyproject_defaults(ROOT / "pyproject.toml"), ROOT)
    cohort = ensure_synthetic_cohort(cfg)
    sites = [str(cohort / f"site{k + 1}") for k in range(cfg.cohort.sites)]
    held_out = str(cohort / f"site{cfg.cohort.sites + 1}")
    slots = max(1, min(cfg.cohort.sites, (os.cpu_count() or 1) // int(cfg.run.client_cpus)))
    main: list[dict[str, Any]] = []
    pooled: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            for arm in ["main", "pooled"][:: 1 if rep % 2 == 0 else -1]:
                load, out = load_average(), f"{tmp}/{arm}{rep}"
                if arm == "main":
                    wall = _cli("simulate", "--run-dir", out)
                    metrics = json.loads((Path(out) / "metrics.json").read_text())
                    main.append({"wall_s": wall, "load_average": load,
                                 "rounds_s": sum(r["wall_seconds"] for r in metrics["rounds"]),
                                 "round": round_breakdown(metrics, slots)})
                    continue
                train = _cli("pretrain", "--data", *sites, "--epochs",
                             str(cfg.run.num_server_rounds), "--batch-size",
                             str(cfg.run.batch_size), "--lr", str(cfg.run.lr), "--encoder",
                             cfg.run.encoder, "--out", out, "--seed", str(cfg.run.seed))
                probe = _cli("probe", out, "--data", held_out, "--split", "patient",
                             "--classes", "synthetic")
                pooled.append({"wall_s": train + probe, "pretrain_s": train, "probe_s": probe,
                               "load_average": load})
    ratios = [m["wall_s"] / p["wall_s"] for m, p in zip(main, pooled, strict=True)]
    return {"rounds": cfg.run.num_server_rounds, "sites": cfg.cohort.sites,
            "repeats": repeats, "main_wall_s": statistics.median(m["wall_s"] for m in main),
            "pooled_wall_s": statistics.median(p["wall_s"] for p in pooled),
            "ratio": statistics.median(ratios), "ratio_per_repeat": ratios,
            "main": main, "pooled": pooled}


def _concat(parts: list[Cohort]) -> Cohort:
    width = max(p.rpeaks.shape[1] for p in parts)
    rpeaks = np.concatenate([np.pad(p.rpeaks, ((0, 0), (0, width - p.rpeaks.shape[1])),
                                    constant_values=-1) for p in parts])
    offsets = np.cumsum([0] + [len(p.records) for p in parts])
    return Cohort(signals=np.concatenate([p.signals for p in parts]), rpeaks=rpeaks,
                  window_record=np.concatenate([p.window_record + o for p, o in
                                                zip(parts, offsets, strict=False)]),
                  records=[r for p in parts for r in p.records], fs=parts[0].fs,
                  preprocessing=parts[0].preprocessing)


def measure_load(args: dict[str, Any]) -> dict[str, Any]:
    """Cold ingest of PTB-XL + CinC into an empty cache, then cached loads (best of 3)."""
    from aclecg_core.data.loading import load_cohort

    paths = [DATA / "ptbxl", DATA / "cinc"] if not args["quick"] else [DATA / "cinc" / "cinc2021"]
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        cohort = load_cohort(paths, cache_dir=Path(cache), workers=args["workers"])
        cold = time.perf_counter() - start
        cached = []
        for _ in range(3):
            start = time.perf_counter()
            load_cohort(paths, cache_dir=Path(cache), workers=args["workers"])
            cached.append(time.perf_counter() - start)
    n = len(cohort.records) + len(cohort.rejected)
    return {"data": [str(p.relative_to(ROOT.parent)) for p in paths], "records": n,
            "workers": args["workers"], "first_load_s": cold, "cached_load_s": min(cached),
            "speedup": cold / min(cached)}


def measure_probe(args: dict[str, Any]) -> dict[str, Any]:
    """The server's probe: features of PTB-XL folds 1–8, 9 and 10, logistic regressions over the C
    grid (chosen on fold 9), bootstrap."""
    from aclecg_core.data.labels import PTBXL_SUPERCLASSES
    from aclecg_core.data.loading import load_cohort
    from aclecg_core.evaluation.probe import extract_features, probe_cohorts
    from aclecg_core.evaluation.splits import ptbxl_split

    cohort = load_cohort([DATA / "ptbxl"], layout="ptbxl", cache_dir=CACHE / "cohorts",
                         workers=1)
    train, val, test = ptbxl_split(cohort)
    device = pick_device(args["device"])
    model = build_model(EncoderConfig(size=args["encoder"]), seed=0)
    start = time.perf_counter()
    for part in (train, val, test):
        extract_features(model, part, device)
    features = time.perf_counter() - start
    start = time.perf_counter()
    probe_cohorts(model, train, val, test, list(PTBXL_SUPERCLASSES), device=device,
                  n_bootstrap=args["bootstrap"])
    total = time.perf_counter() - start
    return {"train_records": len(train.records), "test_records": len(test.records),
            "bootstrap": args["bootstrap"], "encoder": args["encoder"],
            "probe_s": total, "feature_extraction_s": features}


def measure_rounds(args: dict[str, Any]) -> dict[str, Any]:
    """RSS after each of ``rounds`` in-process rounds: train_site on two tiny sites + FedAvg."""
    from aclecg_core.fed.arrays import select_keys, to_numpy
    from aclecg_core.fed.config import load_config
    from aclecg_core.fed.training import initial_model, train_instructions, train_site
    from benchmarks.federated import fedavg

    cfg = load_config({"config-file": "", "encoder": args["encoder"], "batch-size": 8,
                       "device": args["device"]}, ROOT)
    sites = [s.select_records(np.arange(len(s.records)) < args["site_records"])
             for s in _synthetic_sites(args["records"])[:2]]
    arrays = select_keys(to_numpy(initial_model(cfg).state_dict()), cfg.run.aggregate)
    rss, seconds = [], []
    for server_round in range(1, args["rounds"] + 1):
        start = time.perf_counter()
        updates = []
        for index, site in enumerate(sites, start=1):
            update = train_site(train_instructions(cfg, server_round=server_round), site,
                                arrays, index, device=cfg.run.device)
            updates.append((update.arrays, update.report.num_examples))
        arrays = fedavg(updates, arrays)
        seconds.append(time.perf_counter() - start)
        gc.collect()
        rss.append(rss_mb())
    rounds = np.arange(1, len(rss) + 1)
    tail = rounds > min(10, len(rss) // 2)
    slope = float(np.polyfit(rounds[tail], np.array(rss)[tail], 1)[0])
    return {"rounds": len(rss), "site_records": args["site_records"], "rss_mib": rss,
            "round_seconds": seconds, "slope_mib_per_round": slope,
            "slope_from_round": int(rounds[tail][0]),
            "rss_growth_mib": rss[-1] - rss[int(rounds[tail][0]) - 1]}


def _child(name: str, args: dict[str, Any], threads: int, conn: Any) -> None:
    torch.set_num_threads(threads)
    try:
        result = MEASUREMENTS[name](args)
        conn.send({**result, "peak_rss_mib": peak_rss_mb()})
    except BaseException as exc:
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        conn.close()


MEASUREMENTS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "step": measure_step, "load": measure_load, "probe": measure_probe, "rounds": measure_rounds,
    "federated_arm": measure_federated_arm, "centralized_arm": measure_centralized_arm,
}


def run_isolated(name: str, args: dict[str, Any], threads: int) -> dict[str, Any]:
    """``MEASUREMENTS[name](args)`` in a fresh spawned (non-daemonic) process: own peak RSS."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(name, args, threads, send))
    process.start()
    send.close()
    result = receive.recv()
    process.join()
    if "error" in result:
        raise RuntimeError(f"speed measurement {name!r} failed: {result['error']}")
    return dict(result)


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    values = {
        "pretrain_vs_bare_ratio": results["step"]["acl"]["ratio"],
        "augmentation_share": results["step"]["acl"]["augmentation_share"],
        "federated_vs_centralized_wall_ratio": results.get("federation", {}).get("ratio"),
        "main_job_vs_pooled_wall_ratio": results.get("main_job", {}).get("ratio"),
        "rss_slope_mib_per_round": results["rounds"]["slope_mib_per_round"],
    }
    out = {}
    for name, (op, target) in TARGETS.items():
        value = values[name]
        if value is None:
            out[name] = {"value": None, "target": f"{op} {target}", "pass": None}
            continue
        ok = value >= target if op == ">=" else value <= target
        out[name] = {"value": value, "target": f"{op} {target}", "pass": bool(ok)}
    return out


def plot(results: dict[str, Any], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    rounds = results["rounds"]
    axes[0].plot(range(1, rounds["rounds"] + 1), rounds["rss_mib"], marker=".")
    axes[0].set_xlabel("federated round (in-process train_site × 2 + FedAvg)")
    axes[0].set_ylabel("RSS (MiB)")
    axes[0].set_title(f"memory per round, slope {rounds['slope_mib_per_round']:+.3f} MiB/round")
    step = results["step"]
    names = [m for m in ("acl", "simclr") if m in step]
    x = np.arange(len(names))
    axes[1].bar(x - 0.2, [step[m]["pretrain_samples_per_s"] for m in names], 0.4,
                label="aclecg pretrain()")
    axes[1].bar(x + 0.2, [step[m]["bare_samples_per_s"] for m in names], 0.4,
                label="bare PyTorch loop")
    axes[1].set_xticks(x, names)
    axes[1].set_ylabel("samples / s")
    axes[1].set_title(f"pretraining throughput ({step['device']})")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "results_speed.png", dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--encoder", default="tiny", choices=["tiny", "small", "default"])
    parser.add_argument("--skip-federation", action="store_true",
                        help="leave out the Flower simulation (Ray start-up dominates --quick)")
    parser.add_argument("--only-federation", action="store_true",
                        help="only the federated vs centralized comparison (results merged into "
                        "the existing results file)")
    parser.add_argument("--only-main-job", action="store_true",
                        help="only the main job vs pooled comparison (merged into the existing "
                        "results file)")
    parser.add_argument("--federation-repeats", type=int, default=3,
                        help="interleaved repeats of the federated/centralized arms")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--figures", type=Path, default=None)
    args = parser.parse_args(argv)
    quick = args.quick
    out = args.out or RESULTS / ("speed-quick.json" if quick else "speed.json")
    meta = metadata("speed", None if argv is None else ["benchmarks/speed.py", *argv])
    started = time.perf_counter()
    common = {"device": args.device, "encoder": args.encoder, "quick": quick}
    plan: list[tuple[str, dict[str, Any]]] = [
        ("step", {**common, "records": 8 if quick else 60, "batch_size": 32,
                  "repeats": 1 if quick else 5, "methods": ["acl"] if quick else
                  ["acl", "simclr"]}),
        ("rounds", {**common, "records": 8, "site_records": 4 if quick else 8,
                    "rounds": 12 if quick else 50}),
        ("load", {**common, "workers": 1}),
        ("probe", {**common, "bootstrap": 20 if quick else 200}),
    ]
    if args.only_federation:
        return _only_federation(args, common, out, meta, started)
    if args.only_main_job:
        return _only_main_job(args, out, meta, started)
    results: dict[str, Any] = {}
    for name, margs in plan:
        print(f"[speed] {name} ...", flush=True)
        results[name] = {"args": margs, **run_isolated(name, margs, args.threads)}
    if not args.skip_federation:
        results["federation"] = _federation_result(args, common)
    ingest = RESULTS / "ingest.json"
    result = {
        **finish(meta, started, time.perf_counter()),
        "mode": "quick" if quick else "full",
        "threads": args.threads,
        "results": results,
        "ingest_benchmark": json.loads(ingest.read_text()) if ingest.is_file() else None,
        "targets": verdicts(results),
        "gpu": ("measured" if torch.cuda.is_available() and args.device != "cpu" else
                "not measured: no GPU on this machine; run with --device cuda where one exists "
                "(pretraining then uses bf16 autocast)"),
    }
    write_json(out, result)
    figures = args.figures or (None if quick else ROOT / "docs" / "figures")
    if figures is not None:
        plot(results, figures)
    print(json.dumps(result["targets"], indent=2), flush=True)
    print(f"[speed] wrote {out} in {result['wall_seconds']} s", flush=True)
    return result


def _federation_result(args: argparse.Namespace, common: dict[str, Any]) -> dict[str, Any]:
    fargs = {**common, "rounds": 1 if args.quick else 5,
             "repeats": 1 if args.quick else args.federation_repeats}
    print("[speed] federation ...", flush=True)
    return {"args": fargs, **measure_federation(fargs, args.threads)}


def _only_federation(args: argparse.Namespace, common: dict[str, Any], out: Path,
                     meta: dict[str, Any], started: float) -> dict[str, Any]:
    """Re-measure the federation comparison into an existing results file; the new
    measurement carries its own date, commit and load (``federation_run``)."""
    result = json.loads(out.read_text())
    result["results"]["federation"] = _federation_result(args, common)
    result["federation_run"] = finish(meta, started, time.perf_counter())
    result["targets"] = verdicts(result["results"])
    write_json(out, result)
    print(json.dumps(result["targets"], indent=2), flush=True)
    print(f"[speed] wrote {out}", flush=True)
    return dict(result)


def _only_main_job(args: argparse.Namespace, out: Path, meta: dict[str, Any],
                   started: float) -> dict[str, Any]:
    """Measure the main job vs pooled comparison into an existing results file, with its own
    date, commit, machine and load (``main_job_run``)."""
    result = json.loads(out.read_text())
    print("[speed] main job vs pooled ...", flush=True)
    result["results"]["main_job"] = measure_main_job(args.federation_repeats)
    result["main_job_run"] = {**finish(meta, started, time.perf_counter()), "machine": machine()}
    result["targets"] = verdicts(result["results"])
    write_json(out, result)
    print(json.dumps(result["targets"], indent=2), flush=True)
    return dict(result)


if __name__ == "__main__":
    main()
