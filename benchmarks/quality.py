"""Quality benchmark: ACL-ECG against SimCLR, a random-init encoder and supervised training.

Usage: ``python benchmarks/quality.py [--quick] [--seeds 3] [--parts synthetic,real,gan]``

Every method uses the same encoder (``tiny`` preset), the same windows (5 s at 100 Hz, one window
per 10 s of record) and the same pretraining budget (samples seen). Sections:

* ``synthetic``: the built-in physics cohort, sites 1–4 for pretraining, site 5 held out.
  Linear probe and fine-tuning trained on the labels of 80 % of the site 1–4 patients (the other
  20 % validate: the probe's C, fine-tuning's early stopping), tested on site 5 (cross-site);
  fine-tuning on 1 / 10 / 100 % of those labels. Centralized (pooled sites) and federated FedAvg
  over the cohort's own sites, an IID patient split and a Dirichlet(0.3) label-skewed split.
* ``real``: PTB-XL (../shared/data) folds 1–8 plus every CinC record (unlabeled sites) for
  pretraining; probing and fine-tuning on the superclass task, folds 1–8 train / 9 val / 10 test.
  Centralized and federated over the natural sites (PTB-XL ``site`` 0–3, CinC hospitals).
* ``gan`` (issue 8): ACL-ECG pretrained on real only, real + GAN and GAN only (deepfake-ecg,
  generated once into ``.cache/bench``) with the same number of samples seen, probed on PTB-XL.

Federated = an in-process FedAvg loop over ``aclecg_core.fed.training.train_site`` (what the
Flower ClientApp calls) and Flower's ``aggregate_arrayrecords`` weighted by ``num-examples`` plus
``restore_dtypes`` (what the ServerApp's FedAvg does); one local epoch per round, rounds =
centralized epochs, so every window is seen as often as in the centralized run.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aclecg_core.data.cohort import Cohort
from aclecg_core.data.labels import PTBXL_SUPERCLASSES, SYNTHETIC_CLASSES
from aclecg_core.data.loading import load_cohort
from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.evaluation.finetune import FinetuneConfig, finetune
from aclecg_core.evaluation.probe import patient_split, probe_cohorts, ptbxl_split
from aclecg_core.fed.arrays import restore_dtypes, select_keys, to_numpy, to_torch
from aclecg_core.fed.config import FederationConfig, load_config
from aclecg_core.fed.partition import (
    partition_by_site,
    partition_dirichlet,
    partition_iid,
)
from aclecg_core.fed.training import train_site
from aclecg_core.method.model import AclEcgModel, EncoderConfig, build_model
from aclecg_core.method.pretrain import PretrainConfig, pretrain
from benchmarks.common import CACHE, DATA, RESULTS, ROOT, finish, metadata, write_json

PREPROCESSING = PreprocessConfig(window_s=5.0, stride_s=10.0)


@dataclass(frozen=True)
class Budget:
    """Sizes of one benchmark run."""

    encoder: str = "tiny"
    epochs: int = 4  # centralized epochs = federated rounds × 1 local epoch
    batch_size: int = 32
    lr: float = 1e-3
    synthetic_records: int = 100  # per site, 5 sites
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    finetune_epochs: int = 8
    patience: int = 3
    bootstrap: int = 100
    gan_sites: int = 2
    gan_records: int = 150
    real_limit: int | None = None  # quick mode: keep every k-th PTB-XL / CinC record


FULL = Budget()
QUICK = Budget(epochs=1, synthetic_records=8, fractions=(1.0,), finetune_epochs=1,
               patience=1, bootstrap=10, gan_sites=1, gan_records=6, real_limit=6)


# --- data --------------------------------------------------------------------------------------

def _load(paths: list[Path], layout: str = "auto") -> Cohort:
    return load_cohort(paths, layout=layout, preprocessing=PREPROCESSING,
                       cache_dir=CACHE / "cohorts", workers=1)


def synthetic_root(records: int) -> Path:
    """Five synthetic sites (seed 0) written once into the benchmark cache."""
    from aclecg_core.data.synth import write_synthetic_cohort

    out = CACHE / f"synthetic-seed0-5x{records}"
    if not (out / ".complete").is_file():
        write_synthetic_cohort(out, sites=5, records_per_site=records, seed=0, workers=1)
        (out / ".complete").write_text("ok\n")
    return out


def gan_root(sites: int, records: int) -> Path:
    """An unlabeled deepfake-ecg corpus written once into the benchmark cache."""
    from aclecg_core.data.gan import write_gan_cohort

    out = CACHE / f"gan-seed0-{sites}x{records}"
    if not (out / ".complete").is_file():
        write_gan_cohort(out, sites=sites, records_per_site=records, seed=0, workers=1)
        (out / ".complete").write_text("ok\n")
    return out


def thin(cohort: Cohort, every: int | None) -> Cohort:
    """Every ``every``-th record (quick mode), all records when None."""
    if every is None:
        return cohort
    keep = np.zeros(len(cohort.records), dtype=bool)
    keep[::every] = True
    return cohort.select_records(keep)


@dataclass
class Task:
    """Pretraining corpus, its federated partitions, and the labeled evaluation data."""

    name: str
    corpus: Cohort
    classes: list[str]
    probe_train: Cohort
    probe_val: Cohort
    probe_test: Cohort
    ft_train: Cohort
    ft_val: Cohort
    ft_test: Cohort


def synthetic_task(b: Budget) -> Task:
    root = synthetic_root(b.synthetic_records)
    corpus = _load([root / f"site{k}" for k in range(1, 5)])
    held = _load([root / "site5"])
    ft_train, ft_val = patient_split(corpus, 0.2, seed=0)
    return Task("synthetic", corpus, list(SYNTHETIC_CLASSES), ft_train, ft_val, held, ft_train,
                ft_val, held)


def real_task(b: Budget) -> Task:
    ptbxl = thin(_load([DATA / "ptbxl"], "ptbxl"), b.real_limit)
    cinc = thin(_load([DATA / "cinc"], "cinc"), b.real_limit)
    train, val, test = ptbxl_split(ptbxl)
    corpus = _load([DATA / "ptbxl", DATA / "cinc"])
    folds = np.array([r.fold if r.source == "ptbxl" else 0 for r in corpus.records])
    keep = (folds <= 8) & np.isin([r.record_id for r in corpus.records],
                                  [r.record_id for r in train.records + cinc.records])
    corpus = corpus.select_records(keep)
    return Task("real", corpus, list(PTBXL_SUPERCLASSES), train, val, test, train, val, test)


# --- training ----------------------------------------------------------------------------------

def fed_config(b: Budget, method: str, seed: int, device: str) -> FederationConfig:
    return load_config({"config-file": "", "encoder": b.encoder, "method": method,
                        "local-epochs": 1, "batch-size": b.batch_size, "lr": b.lr,
                        "seed": seed, "device": device, "min-sites": 1}, ROOT)


def fedavg(updates: list[tuple[dict[str, np.ndarray], int]],
           template: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ServerApp's FedAvg step: Flower's ``aggregate_arrayrecords`` weighted by
    ``num-examples``, then ``restore_dtypes``."""
    from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
    from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

    replies = [RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
                           "metrics": MetricRecord({"num-examples": n})})
               for arrays, n in updates]
    aggregated = aggregate_arrayrecords(replies, "num-examples")
    return restore_dtypes({k: v.numpy() for k, v in aggregated.items()}, template)


def federated_pretrain(b: Budget, method: str, seed: int, sites: list[Cohort],
                       device: str) -> tuple[AclEcgModel, dict[str, Any]]:
    """``b.epochs`` FedAvg rounds of one local epoch on every site; a site whose training fails
    (e.g. fewer than two records) is left out of that round, as the ServerApp does."""
    cfg = fed_config(b, method, seed, device)
    model = build_model(EncoderConfig(size=b.encoder), seed=seed)
    global_arrays = select_keys(to_numpy(model.state_dict()), cfg.run.aggregate)
    start, failures, losses = time.perf_counter(), 0, []
    for server_round in range(1, b.epochs + 1):
        updates, round_losses = [], []
        for index, site in enumerate(sites, start=1):
            try:
                update = train_site(cfg, site, global_arrays, server_round, index)
            except ValueError:
                failures += 1
                continue
            updates.append((update.arrays, int(update.metrics["num-examples"])))
            round_losses.append(float(update.metrics["loss"]))
        if not updates:
            raise RuntimeError(f"round {server_round}: every site failed")
        global_arrays = fedavg(updates, global_arrays)
        losses.append(float(np.mean(round_losses)))
    model.load_state_dict(to_torch(global_arrays), strict=False)
    info = {"seconds": time.perf_counter() - start, "samples_seen": b.epochs * sum(map(len, sites)),
            "losses": losses, "site_failures": failures, "sites": [len(s) for s in sites]}
    return model, info


def central_pretrain(b: Budget, method: str, seed: int, corpus: Cohort, device: str,
                     epochs: int | None = None) -> tuple[AclEcgModel, dict[str, Any]]:
    model = build_model(EncoderConfig(size=b.encoder), seed=seed)
    cfg = PretrainConfig(method=method, epochs=epochs or b.epochs, batch_size=b.batch_size,
                         lr=b.lr, seed=seed)
    result = pretrain(model, corpus, cfg, device=device)
    return model, {"seconds": result.seconds, "samples_seen": cfg.epochs * len(corpus),
                   "losses": result.losses}


def _metrics(result: Any) -> dict[str, Any]:
    d = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    return {k: d[k] for k in ("macro_auroc", "macro_auprc", "auroc_ci", "auprc_ci", "n_test")}


def evaluate_encoder(b: Budget, task: Task, model: AclEcgModel, seed: int, device: str,
                     fractions: tuple[float, ...]) -> dict[str, Any]:
    """Linear probe, then fine-tuning of a copy of the encoder on each label fraction."""
    probe = probe_cohorts(model, task.probe_train, task.probe_val, task.probe_test, task.classes,
                          device=device, seed=seed, n_bootstrap=b.bootstrap)
    out: dict[str, Any] = {"probe": {**_metrics(probe), "n_train": probe.n_train}}
    ft_cfg = FinetuneConfig(epochs=b.finetune_epochs, batch_size=b.batch_size, lr=b.lr,
                            patience=b.patience, seed=seed, n_bootstrap=b.bootstrap)
    for fraction in fractions:
        res = finetune(copy.deepcopy(model), task.ft_train, task.ft_val, task.ft_test,
                       task.classes, fraction, ft_cfg, device=device)
        out[f"finetune@{fraction:g}"] = {**_metrics(res.test), "n_train": res.n_train_records,
                                         "best_epoch": res.best_epoch, "seconds": res.seconds}
    return out


# --- the sections ------------------------------------------------------------------------------

def run_task(b: Budget, task: Task, seeds: list[int], device: str, partitions: list[str],
             log: list[dict[str, Any]]) -> None:
    """Centralized ACL / SimCLR / random-init (+ fine-tuning), then federated per partition."""
    for seed in seeds:
        for method in ("acl", "simclr", "random"):
            if method == "random":
                model, info = build_model(EncoderConfig(size=b.encoder), seed=seed), {
                    "seconds": 0.0, "samples_seen": 0, "losses": []}
            else:
                model, info = central_pretrain(b, method, seed, task.corpus, device)
            evals = evaluate_encoder(b, task, model, seed, device, b.fractions)
            _record(log, task.name, "centralized", "pooled", method, seed, info, evals)
        for partition in partitions:
            sites = split_sites(task, partition, seed)
            for method in ("acl", "simclr"):
                model, info = federated_pretrain(b, method, seed, sites, device)
                evals = evaluate_encoder(b, task, model, seed, device, ())
                _record(log, task.name, "federated", partition, method, seed, info, evals)


def split_sites(task: Task, partition: str, seed: int) -> list[Cohort]:
    corpus = task.corpus
    if partition == "site":
        _, masks = partition_by_site(corpus)
    elif partition == "iid":
        masks = partition_iid(corpus, 4, seed=seed)
    else:
        masks = partition_dirichlet(corpus, 4, 0.3, task.classes, seed=seed)
    return [corpus.select_records(m) for m in masks]


def run_gan(b: Budget, task: Task, seeds: list[int], device: str,
            log: list[dict[str, Any]]) -> None:
    """ACL-ECG on real only / real + GAN / GAN only with the same samples seen (real-only
    epochs × real windows), probed on PTB-XL."""
    gan = _load([gan_root(b.gan_sites, b.gan_records)], "cinc")
    mixed = _load([DATA / "ptbxl", DATA / "cinc", gan_root(b.gan_sites, b.gan_records)])
    real_ids = {r.record_id for r in task.corpus.records}
    mixed = mixed.select_records(np.array([r.record_id in real_ids or (r.source != "ptbxl"
                                           and r.record_id.startswith("G"))
                                           for r in mixed.records]))
    budget = b.epochs * len(task.corpus)
    for seed in seeds:
        for corpus_name, corpus in (("real", task.corpus), ("real+gan", mixed), ("gan", gan)):
            epochs = max(1, round(budget / len(corpus)))
            model, info = central_pretrain(b, "acl", seed, corpus, device, epochs=epochs)
            info = {**info, "epochs": epochs, "windows": len(corpus)}
            evals = evaluate_encoder(b, task, model, seed, device, ())
            _record(log, "gan", "centralized", corpus_name, "acl", seed, info, evals)


def _record(log: list[dict[str, Any]], dataset: str, setting: str, partition: str,
            method: str, seed: int, info: dict[str, Any], evals: dict[str, Any]) -> None:
    row = {"dataset": dataset, "setting": setting, "partition": partition, "method": method,
           "seed": seed, "pretrain": info, **evals}
    log.append(row)
    print(f"[quality] {dataset:9s} {setting:11s} {partition:9s} {method:6s} seed {seed}  probe "
          f"AUROC {evals['probe']['macro_auroc']:.3f}  ({info['seconds']:.0f} s pretrain)",
          flush=True)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean, sample SD, min and max over seeds; ``*_ci_mean``: the seeds' bootstrap 95 %
    intervals averaged bound by bound."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in runs:
        for key, value in row.items():
            if key == "probe" or key.startswith("finetune@"):
                ident = (row["dataset"], row["setting"], row["partition"], row["method"], key)
                groups.setdefault(ident, []).append(value)
    out = []
    for (dataset, setting, partition, method, evaluation), values in groups.items():
        entry: dict[str, Any] = {"dataset": dataset, "setting": setting, "partition": partition,
                                 "method": "supervised" if method == "random"
                                 and evaluation != "probe" else method,
                                 "evaluation": evaluation, "n_seeds": len(values)}
        for metric in ("auroc", "auprc"):
            v = np.array([x[f"macro_{metric}"] for x in values], dtype=float)
            ci = np.array([x[f"{metric}_ci"] for x in values], dtype=float)
            entry[metric] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1
                             else 0.0, "min": float(v.min()), "max": float(v.max()),
                             "ci_mean": [float(ci[:, 0].mean()), float(ci[:, 1].mean())],
                             "per_seed": v.tolist()}
        out.append(entry)
    return out


def plot(summary: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Bar charts of the probe / fine-tune macro AUROC (mean ± SD over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    probes = [s for s in summary if s["evaluation"] == "probe"]
    if probes:
        fig, ax = plt.subplots(figsize=(10, 4))
        labels = [f"{s['dataset']}\n{s['setting'][:4]} {s['partition']}\n{s['method']}"
                  for s in probes]
        means = [s["auroc"]["mean"] for s in probes]
        colors = [{"acl": "C0", "simclr": "C1", "random": "C7"}.get(s["method"], "C2")
                  for s in probes]
        ax.bar(range(len(probes)), means, yerr=[s["auroc"]["sd"] for s in probes],
               color=colors, capsize=2)
        ax.set_xticks(range(len(probes)), labels, fontsize=5)
        ax.set_ylim(0.4, 1.0)
        ax.axhline(0.5, color="k", lw=0.5)
        ax.set_ylabel("linear-probe macro AUROC")
        ax.set_title("Linear probe, mean ± SD over seeds "
                     "(blue ACL-ECG, orange SimCLR, grey random)")
        fig.tight_layout()
        written.append(out_dir / "results_quality_probe.png")
        fig.savefig(written[-1], dpi=130)
        plt.close(fig)
    tunes = [s for s in summary if s["evaluation"].startswith("finetune@")]
    datasets = sorted({s["dataset"] for s in tunes})
    if tunes:
        fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.5), squeeze=False)
        for ax, dataset in zip(axes[0], datasets, strict=True):
            for method, color in (("acl", "C0"), ("simclr", "C1"), ("supervised", "C7")):
                rows = sorted((float(s["evaluation"].split("@")[1]), s["auroc"]) for s in tunes
                              if s["dataset"] == dataset and s["method"] == method)
                if rows:
                    x = [r[0] * 100 for r in rows]
                    ax.errorbar(x, [r[1]["mean"] for r in rows], yerr=[r[1]["sd"] for r in rows],
                                label=method, color=color, marker="o", capsize=3)
            ax.set_xscale("log")
            ax.set_xlabel("labeled training records (%)")
            ax.set_ylabel("fine-tune macro AUROC")
            ax.set_title(dataset)
            ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(out_dir / "results_quality_label_efficiency.png")
        fig.savefig(written[-1], dpi=130)
        plt.close(fig)
    return written


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 seed, seconds")
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default 3, quick 1)")
    parser.add_argument("--parts", default="synthetic,real,gan")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: fastest on a shared 2-core machine)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--figures", type=Path, default=None,
                        help="folder for PNG plots (default docs/figures; none with --quick)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    b = QUICK if args.quick else FULL
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - {"synthetic", "real", "gan"})
    if unknown:
        parser.error(f"unknown parts {unknown}")
    out = args.out or RESULTS / ("quality-quick.json" if args.quick else "quality.json")
    meta = metadata("quality", None if argv is None else ["benchmarks/quality.py", *argv])
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    if "synthetic" in parts:
        run_task(b, synthetic_task(b), seeds, args.device, ["site", "iid", "dirichlet"], runs)
    if "real" in parts or "gan" in parts:
        real = real_task(b)
        if "real" in parts:
            run_task(b, real, seeds, args.device, ["site"], runs)
        if "gan" in parts:
            run_gan(b, real, seeds, args.device, runs)
    summary = summarize(runs)
    result = {
        **finish(meta, started, time.perf_counter()),
        "mode": "quick" if args.quick else "full",
        "seeds": seeds,
        "budget": {**{k: v for k, v in vars(b).items()}, "fractions": list(b.fractions)},
        "preprocessing": PREPROCESSING.to_dict(),
        "summary": summary,
        "runs": runs,
    }
    write_json(out, result)
    figures = args.figures or (None if args.quick else ROOT / "docs" / "figures")
    if figures is not None:
        plot(summary, figures)
    print(f"[quality] wrote {out} in {result['wall_seconds']} s", flush=True)
    return result


if __name__ == "__main__":
    main()
