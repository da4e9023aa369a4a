"""Quality benchmark: does contrastive pretraining pay off on real ECGs? (issue 11)

Usage: ``python benchmarks/quality.py [--quick] [--seeds 3] [--sections probe,ablation,...]``

The reference protocol: PTB-XL (``ptbxl/`` + ``ptbxl-more/``) ``strat_fold`` 1-8 train, 9
validation, 10 test; the 5 diagnostic superclasses; macro AUROC and AUPRC. The pretraining
corpus is every unlabeled real record that is not in folds 9/10: PTB-XL folds 1-8, ``cinc/``
and ``code15/`` (their labels are never used). Windows: 5 s at 100 Hz; pretraining takes one
per 10 s of record, the probes and fine-tuning every 5 s (the whole 10 s PTB-XL record: probing
only its first half handicaps the random-init encoder, see the issue-11 findings).

Sections, in order of importance (each writes its rows to the results file as it finishes, so a
run that is cut off still leaves the finished sections):

* ``probe``: random-init, SimCLR, CLOCS and ACL-ECG (``tiny`` preset, the same samples seen),
  ``--seeds`` seeds; linear probe with 10 % of the training labels (``draws`` seeded stratified
  subsets, the same for every encoder) and with 100 %.
* ``ablation``: ACL-ECG with the intra-region term only, the inter-region term only, and ACL-ECG's
  loss on SimCLR's views (both terms and ACL-ECG's own views are the ``probe`` rows).
* ``size``: the larger preset (random-init and ACL-ECG) against ``tiny``.
* ``finetune``: ACL-ECG fine-tuned on 10 % of the labels against supervised training from
  scratch on 100 % (early stopping on fold 9).
* ``federated``: ACL-ECG federated over the corpus's sites (PTB-XL recording sites, CinC
  hospitals, CODE-15; :data:`benchmarks.federated.CHOSEN`) against centralized ACL-ECG on the
  same records and epochs. ``--probe-methods random,acl`` with it: only the encoders it is
  compared with.
* ``scaling``: ACL-ECG on the 550-record folders (``ptbxl/`` + ``cinc/``), on the full real
  corpus, and with GAN records added; and pretraining epochs.

``--quick`` checks the structure in about a minute: ``ptbxl/`` and ``cinc/`` only, every third
record, one epoch, one seed.

Every linear probe: per-record mean of the window features, scaler fitted on the training part,
one-vs-rest logistic regression with ``C`` chosen on fold 9 (macro AUROC) from a fixed grid,
refitted, then scored once on fold 10. Every pretrained encoder is compared with the random-init
encoder of the same seed by a paired bootstrap over the fold-10 records (the same resampled
records for both; the macro scores averaged over seeds and label draws). Nothing is chosen on
fold 10.

Federated = :func:`benchmarks.federated.federated_pretrain`: the ServerApp's strategy
(``server.strategy.build_strategy``) driven in-process over the sites' ``train_site`` (what the
ClientApp calls), with :data:`benchmarks.federated.CHOSEN` (chosen on fold 9 by
``benchmarks/tune.py``); rounds × local epochs = centralized epochs, so every window is seen as
often as in the centralized run.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aclecg_core.data.cohort import Cohort
from aclecg_core.data.labels import PTBXL_SUPERCLASSES
from aclecg_core.data.loading import load_cohort
from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.evaluation.finetune import FinetuneConfig, finetune
from aclecg_core.evaluation.metrics import paired_bootstrap
from aclecg_core.evaluation.probe import C_GRID, split_features
from aclecg_core.evaluation.reference import FractionProbe, probe_fraction
from aclecg_core.evaluation.splits import ptbxl_split
from aclecg_core.method.model import AclEcgModel, EncoderConfig, build_model
from aclecg_core.method.pretrain import PretrainConfig, pretrain
from benchmarks import federated
from benchmarks.common import CACHE, DATA, RESULTS, finish, metadata, write_json
from benchmarks.federated import CHOSEN, FedSettings

PREPROCESSING = PreprocessConfig(window_s=5.0, stride_s=10.0)  # pretraining corpora
PROBE_PREPROCESSING = PreprocessConfig(window_s=5.0, stride_s=5.0)  # whole records probed
REAL = ("ptbxl", "ptbxl-more", "cinc", "code15")
ORIGINAL = ("ptbxl", "cinc")  # the 550 records the project started with
SECTIONS = ("probe", "ablation", "size", "finetune", "federated", "scaling")
PROBE_METHODS = ("random", "simclr", "clocs", "acl")
DRAW_SEED = 1000  # label draws 1000, 1001, ...: the same subsets for every encoder


@dataclass(frozen=True)
class Budget:
    """Sizes of one benchmark run (``epochs`` × corpus windows = samples seen per method)."""

    encoder: str = "tiny"
    larger: str = "small"
    epochs: int = 30  # chosen on fold 9 by benchmarks/tune.py (10 -> 30: +0.012 at 10 % labels)
    batch_size: int = 64
    lr: float = 1e-3
    fraction: float = 0.1
    draws: int = 5
    bootstrap: int = 1000
    ablation_seeds: int = 3
    size_seeds: int = 3
    finetune_seeds: int = 3
    finetune_epochs: int = 40  # a cap: early stopping on fold 9 (20 was reached in 2026-12-01 runs)
    # each arm's FinetuneConfig fields, chosen on fold 9 by tune_finetune.py (2 seeds; cap 40
    # for all three): tune-finetune.json, tune-finetune-supervised10.json; self-training for
    # the 10 % arms: tune-finetune-distilled.json
    finetune_recipes: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = (
        ("acl@10%", (("lr", 1e-3), ("probe_epochs", 10), ("distill", True))),
        ("supervised@100%", (("lr", 3e-3),)),
        ("supervised@10%", (("lr", 3e-3), ("distill", True))))
    patience: int = 5
    federated_seeds: int = 3
    federated: FedSettings = CHOSEN  # the federated arm's settings (batch size included)
    scaling_epochs: tuple[int, ...] = (10,)
    gan_sites: int = 2
    gan_records: int = 250
    real_limit: int | None = None  # quick mode: keep every k-th record
    folders: tuple[str, ...] = REAL
    small_folders: tuple[str, ...] = ORIGINAL


FULL = Budget()
QUICK = Budget(epochs=1, batch_size=16, draws=2, bootstrap=20, ablation_seeds=1, size_seeds=1,
               finetune_seeds=1, finetune_epochs=1, finetune_recipes=(), patience=1,
               federated_seeds=1, federated=replace(CHOSEN, batch_size=16, min_site_records=4),
               scaling_epochs=(2,), gan_sites=1, gan_records=6, real_limit=3,
               folders=("ptbxl", "cinc"), small_folders=("ptbxl",))


# --- data --------------------------------------------------------------------------------------

def _load(paths: list[Path], preprocessing: PreprocessConfig = PREPROCESSING) -> Cohort:
    return load_cohort(paths, layout="auto", preprocessing=preprocessing,
                       cache_dir=CACHE / "cohorts", workers=1)


def unlabeled(cohort: Cohort) -> Cohort:
    """The records that may be pretrained on: all but PTB-XL folds 9 and 10."""
    return cohort.select_records(np.array([r.fold not in (9, 10) for r in cohort.records]))


def in_folders(cohort: Cohort, names: tuple[str, ...]) -> np.ndarray:
    """Boolean (n_records,): the records below ``DATA / name`` for a name of ``names``."""
    roots = [str(DATA / name) + "/" for name in names]
    return np.array([r.path.startswith(tuple(roots)) for r in cohort.records])


def thin(cohort: Cohort, every: int | None) -> Cohort:
    """Every ``every``-th record (quick mode), all records when None."""
    if every is None:
        return cohort
    keep = np.zeros(len(cohort.records), dtype=bool)
    keep[::every] = True
    return cohort.select_records(keep)


def gan_root(sites: int, records: int) -> Path:
    """An unlabeled deepfake-ecg corpus written once into the benchmark cache."""
    from aclecg_core.data.gan import write_gan_cohort

    out = CACHE / f"gan-seed0-{sites}x{records}"
    if not (out / ".complete").is_file():
        write_gan_cohort(out, sites=sites, records_per_site=records, seed=0, workers=1)
        (out / ".complete").write_text("ok\n")
    return out


@dataclass
class Reference:
    """The labeled PTB-XL parts (record-level labels) and the unlabeled pretraining corpora."""

    classes: list[str]
    train: Cohort
    val: Cohort
    test: Cohort
    corpus: Cohort
    small_corpus: Cohort
    settings: dict[str, tuple[float, int]] = field(default_factory=dict)
    y_test: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def set_label_draws(self, fraction: float, draws: int) -> None:
        """The label settings (name -> (fraction, draws)): all labels, and ``draws`` stratified
        draws of ``fraction`` (seeded with :data:`DRAW_SEED`: the same for every encoder)."""
        self.settings = {"100%": (1.0, 1), f"{fraction:.0%}": (fraction, draws)}
        self.y_test = self.test.record_label_matrix(self.classes)


def reference(b: Budget) -> Reference:
    real = thin(_load([DATA / name for name in b.folders]), b.real_limit)
    ptbxl = [DATA / name for name in b.folders if name.startswith("ptbxl")]
    train, val, test = ptbxl_split(thin(_load(ptbxl, PROBE_PREPROCESSING), b.real_limit))
    corpus = unlabeled(real)
    ref = Reference(list(PTBXL_SUPERCLASSES), train, val, test, corpus,
                    corpus.select_records(in_folders(corpus, b.small_folders)))
    ref.set_label_draws(b.fraction, b.draws)
    return ref


def gan_corpus(b: Budget) -> Cohort:
    """The real corpus plus ``gan_sites × gan_records`` GAN records (quick mode thins the
    combined list)."""
    folders = [DATA / name for name in b.folders] + [gan_root(b.gan_sites, b.gan_records)]
    return unlabeled(thin(_load(folders), b.real_limit))


# --- probing -----------------------------------------------------------------------------------

def probe_encoder(model: AclEcgModel, ref: Reference, b: Budget,
                  device: str) -> dict[str, FractionProbe]:
    """Linear probes of ``model`` on every label setting of ``ref`` (C chosen on fold 9)."""
    data = split_features(model, ref.train, ref.val, ref.test, ref.classes, device)
    return {name: probe_fraction(data, ref.classes, fraction, draws, seed=DRAW_SEED,
                                 n_bootstrap=0)
            for name, (fraction, draws) in ref.settings.items()}


# --- pretraining -------------------------------------------------------------------------------

def central_pretrain(b: Budget, method: str, seed: int, corpus: Cohort, device: str,
                     encoder: str | None = None, epochs: int | None = None,
                     **options: str) -> tuple[AclEcgModel, dict[str, Any]]:
    model = build_model(EncoderConfig(size=encoder or b.encoder), seed=seed)
    if method == "random":
        return model, {"seconds": 0.0, "samples_seen": 0, "losses": []}
    cfg = PretrainConfig(method=method, epochs=epochs or b.epochs, batch_size=b.batch_size,
                         lr=b.lr, seed=seed, **options)  # type: ignore[arg-type]
    result = pretrain(model, corpus, cfg, device=device)
    return model, {"seconds": round(result.seconds, 1), "samples_seen": cfg.epochs * len(corpus),
                   "windows": len(corpus), "epochs": cfg.epochs,
                   "losses": [round(v, 4) for v in result.losses]}


def federated_pretrain(b: Budget, seed: int, corpus: Cohort,
                       device: str) -> tuple[AclEcgModel, dict[str, Any]]:
    """ACL-ECG over the sites of ``corpus`` (:mod:`benchmarks.federated`, settings
    ``b.federated``) at the centralized run's samples seen (``b.epochs`` epochs)."""
    return federated.federated_pretrain(b.federated, b.epochs, seed, corpus, b.encoder, device)


# --- the benchmark -----------------------------------------------------------------------------

@dataclass
class Bench:
    """Runs, probes (kept in memory for the paired comparisons) and the results file."""

    b: Budget
    ref: Reference
    device: str
    out: Path
    header: dict[str, Any]
    started: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    probes: dict[tuple[str, int], dict[str, FractionProbe]] = field(default_factory=dict)
    finetunes: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, section: str, name: str, seed: int, model: AclEcgModel,
            info: dict[str, Any]) -> None:
        """Probe ``model`` and record it as variant ``name`` of ``section``."""
        t = time.perf_counter()
        probes = probe_encoder(model, self.ref, self.b, self.device)
        self.probes[(name, seed)] = probes
        row = {"section": section, "variant": name, "seed": seed, "pretrain": info,
               "probe_seconds": round(time.perf_counter() - t, 1), "probe": {
                   setting: {"auroc": _rounded(asdict(fp.auroc)),
                             "auprc": _rounded(asdict(fp.auprc)),
                             "auroc_draws": [round(d.macro_auroc, 4) for d in fp.draws],
                             "c": [d.c for d in fp.draws],
                             "val_auroc": [round(d.val_auroc, 4) for d in fp.draws],
                             "n_train": [d.n_train for d in fp.draws]}
                   for setting, fp in probes.items()}}
        self.rows.append(row)
        short = {k: round(v["auroc"]["mean"], 4) for k, v in row["probe"].items()}
        print(f"[quality] {section:9s} {name:22s} seed {seed}  test AUROC {short}  "
              f"({info.get('seconds', 0):.0f} s pretrain, {row['probe_seconds']:.0f} s probe)",
              flush=True)
        self.write()

    def compare(self, name: str, baseline: str) -> dict[str, Any]:
        """Paired bootstrap of ``name`` minus ``baseline`` over the seeds both have (the scores
        of every seed and label draw stacked: the difference of the means over them)."""
        seeds = sorted(s for (n, s) in self.probes if n == name and (baseline, s) in self.probes)
        if not seeds:
            return {}
        out: dict[str, Any] = {"seeds": seeds}
        for setting in self.ref.settings:
            a = np.concatenate([self.probes[(name, s)][setting].test_scores for s in seeds])
            r = np.concatenate([self.probes[(baseline, s)][setting].test_scores for s in seeds])
            diff = paired_bootstrap(self.ref.y_test, a, r, seed=0, n_bootstrap=self.b.bootstrap)
            per_seed = [self.probes[(name, s)][setting].auroc.mean for s in seeds]
            out[setting] = {**_rounded(diff.to_dict()),
                            "auroc_per_seed": [round(v, 4) for v in per_seed],
                            "auroc_sd_over_seeds": round(float(np.std(per_seed, ddof=1)), 4)
                            if len(per_seed) > 1 else 0.0}
        return out

    def summary(self) -> dict[str, Any]:
        names = sorted({n for n, _ in self.probes})
        versus = {"random": [n for n in names if n != "random" and not n.startswith(
            self.b.larger)], f"{self.b.larger}-random": [n for n in names if n.startswith(
                self.b.larger) and n != f"{self.b.larger}-random"]}
        out: dict[str, Any] = {}
        for baseline, others in versus.items():
            for name in others:
                out[f"{name} vs {baseline}"] = self.compare(name, baseline)
        for name in ("acl-intra", "acl-inter", "acl-simclr-views", "clocs", "simclr"):
            if name in names and "acl" in names:
                out[f"acl vs {name}"] = self.compare("acl", name)
        if f"{self.b.larger}-acl" in names:
            out[f"{self.b.larger}-acl vs acl"] = self.compare(f"{self.b.larger}-acl", "acl")
            out[f"{self.b.larger}-random vs random"] = self.compare(
                f"{self.b.larger}-random", "random")
        if "federated-acl" in names:
            out["federated-acl vs acl"] = self.compare("federated-acl", "acl")
        return {k: v for k, v in out.items() if v}

    def write(self) -> None:
        result = {**finish(self.header, self.started, time.perf_counter()),
                  "budget": {k: (list(v) if isinstance(v, tuple) else asdict(v)
                                 if isinstance(v, FedSettings) else v)
                             for k, v in vars(self.b).items()},
                  "c_grid": list(C_GRID), "preprocessing": PREPROCESSING.to_dict(),
                  "probe_preprocessing": PROBE_PREPROCESSING.to_dict(),
                  "data": {name: {"records": len(getattr(self.ref, name).records),
                                  "windows": len(getattr(self.ref, name))}
                           for name in ("train", "val", "test", "corpus", "small_corpus")},
                  "summary": self.summary(), "finetune": self.finetunes, "runs": self.rows,
                  "errors": self.errors}
        write_json(self.out, result)


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else
            [round(x, 4) for x in v] if isinstance(v, list | tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class Job:
    """One encoder to train (and probe), or one fine-tuning run, of a section."""

    section: str
    variant: str
    seed: int
    method: str = "acl"  # or simclr, clocs, random (no pretraining), federated
    encoder: str = ""  # "" = the budget's preset
    corpus: str = "corpus"  # corpus, small_corpus or real+gan
    epochs: int = 0  # 0 = the budget's epochs
    options: tuple[tuple[str, str], ...] = ()  # extra PretrainConfig fields (the ablation)
    finetune_fraction: float = 0.0  # > 0: fine-tune on this fraction instead of probing


def plan(b: Budget, seeds: list[int], sections: list[str], corpus_windows: int,
         small_windows: int, probe_methods: tuple[str, ...] = PROBE_METHODS) -> list[Job]:
    """Every job, in the order of :data:`SECTIONS` (their order of importance), each section
    with all of its seeds; the probe section trains ``probe_methods`` only."""
    jobs: list[Job] = []
    for seed in seeds if "probe" in sections else []:
        jobs += [Job("probe", m, seed, m) for m in probe_methods]
    for seed in seeds[: b.ablation_seeds] if "ablation" in sections else []:
        jobs += [Job("ablation", "acl-intra", seed, options=(("acl_terms", "intra"),)),
                 Job("ablation", "acl-inter", seed, options=(("acl_terms", "inter"),)),
                 Job("ablation", "acl-simclr-views", seed, options=(("views", "simclr"),))]
    for seed in seeds[: b.size_seeds] if "size" in sections else []:
        jobs += [Job("size", f"{b.larger}-{m}", seed, m, encoder=b.larger)
                 for m in ("random", "acl")]
    for seed in seeds[: b.finetune_seeds] if "finetune" in sections else []:
        jobs += [Job("finetune", "acl@10%", seed, finetune_fraction=b.fraction),
                 Job("finetune", "supervised@100%", seed, "random", finetune_fraction=1.0),
                 Job("finetune", "supervised@10%", seed, "random", finetune_fraction=b.fraction)]
    for seed in seeds[: b.federated_seeds] if "federated" in sections else []:
        if "probe" not in sections or "random" not in probe_methods:  # its random-init reference
            jobs.append(Job("probe", "random", seed, "random"))
        jobs.append(Job("federated", "federated-acl", seed, "federated"))
    if "scaling" in sections:
        seed = seeds[0]
        same = max(1, round(b.epochs * corpus_windows / small_windows))
        jobs += [Job("scaling", "acl-550-folders", seed, corpus="small_corpus"),
                 Job("scaling", "acl-550-folders-same-samples", seed, corpus="small_corpus",
                     epochs=same),
                 Job("scaling", "acl-real+gan", seed, corpus="real+gan")]
        jobs += [Job("scaling", f"acl-{e}-epochs", seed, epochs=e) for e in b.scaling_epochs]
    return jobs


_WORKER: dict[str, Any] = {}


def _init_worker(b: Budget, device: str, threads: int, with_gan: bool,
                 ref: Reference | None = None) -> None:
    """Load the data once per process (from the cohort cache)."""
    torch.set_num_threads(threads)
    ref = ref or reference(b)
    corpora = {"corpus": ref.corpus, "small_corpus": ref.small_corpus}
    if with_gan:
        corpora["real+gan"] = gan_corpus(b)
    _WORKER.update(budget=b, device=device, ref=ref, corpora=corpora)


def run_job(job: Job) -> dict[str, Any]:
    """Train the job's encoder (and fine-tune it); returns its state dict or its scores."""
    b, device, ref = _WORKER["budget"], _WORKER["device"], _WORKER["ref"]
    corpus = _WORKER["corpora"][job.corpus]
    if job.method == "federated":
        model, info = federated_pretrain(b, job.seed, corpus, device)
    else:
        model, info = central_pretrain(b, job.method, job.seed, corpus, device,
                                       encoder=job.encoder or None, epochs=job.epochs or None,
                                       **dict(job.options))
    if not job.finetune_fraction:
        return {"state": model.state_dict(), "config": model.config, "info": info}
    recipe = dict(dict(b.finetune_recipes).get(job.variant, ()))
    cfg = FinetuneConfig(**{"epochs": b.finetune_epochs, "batch_size": b.batch_size, "lr": b.lr,
                            "patience": b.patience, **recipe}, seed=job.seed,
                         n_bootstrap=b.bootstrap)
    res = finetune(copy.deepcopy(model), ref.train, ref.val, ref.test, ref.classes,
                   job.finetune_fraction, cfg, device=device)
    test = res.test.to_dict()
    return {"info": info, "finetune": {
        "recipe": recipe, "n_train_records": res.n_train_records, "best_epoch": res.best_epoch,
        "best_val_auroc": round(res.best_val_auroc, 4), "seconds": round(res.seconds, 1),
        "teacher_val_auroc": res.teacher_val_auroc, "student_val_auroc": res.student_val_auroc,
        "distilled": res.distilled,
        **{k: test[k] for k in ("macro_auroc", "macro_auprc", "auroc_ci", "auprc_ci")}}}


def execute(bench: Bench, jobs: list[Job], workers: int, threads: int) -> None:
    """Run ``jobs`` (``workers`` processes, or in this one), probing each encoder here as it
    arrives; the results file is rewritten after every job."""
    with_gan = any(j.corpus == "real+gan" for j in jobs)
    if with_gan:
        gan_root(bench.b.gan_sites, bench.b.gan_records)  # generated once, before the workers

    def record(job: Job, out: dict[str, Any]) -> None:
        if "finetune" in out:
            bench.finetunes.append({"variant": job.variant, "seed": job.seed,
                                    "pretrain": out["info"], **out["finetune"]})
            print(f"[quality] finetune  {job.variant:22s} seed {job.seed}  test AUROC "
                  f"{out['finetune']['macro_auroc']:.4f}", flush=True)
            bench.write()
            return
        model = build_model(out["config"])
        model.load_state_dict(out["state"])
        bench.add(job.section, job.variant, job.seed, model, out["info"])

    def guarded(job: Job, result: Callable[[], dict[str, Any]]) -> None:
        try:
            record(job, result())
        except Exception as exc:  # one failed job must not lose the others
            bench.errors.append(f"{job.section}/{job.variant}/seed {job.seed}: {exc!r}")
            print(f"[quality] FAILED {job}: {exc!r}", flush=True)
            bench.write()

    if workers <= 1:
        _init_worker(bench.b, bench.device, threads, with_gan, bench.ref)
        for job in jobs:
            guarded(job, lambda job=job: run_job(job))  # type: ignore[misc]
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, _init_worker,
                             (bench.b, bench.device, threads, with_gan)) as pool:
        for job, future in [(job, pool.submit(run_job, job)) for job in jobs]:
            guarded(job, future.result)


# --- markdown tables of a results file (docs/results.md) ----------------------------------------

NAMES = {"random": "random-init", "simclr": "SimCLR", "clocs": "CLOCS", "acl": "ACL-ECG",
         "acl-intra": "ACL-ECG, intra-region term only", "acl-inter":
         "ACL-ECG, inter-region term only", "acl-simclr-views": "ACL-ECG loss, SimCLR's views"}


def _cell(values: list[float]) -> str:
    if not values:
        return "—"
    sd = f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else ""
    return f"{np.mean(values):.3f}{sd}"


def _variant_cells(result: dict[str, Any], variant: str, setting: str) -> tuple[str, str, int]:
    rows = [r for r in result["runs"] if r["variant"] == variant and setting in r["probe"]]
    return (_cell([r["probe"][setting]["auroc"]["mean"] for r in rows]),
            _cell([r["probe"][setting]["auprc"]["mean"] for r in rows]), len(rows))


def _diff(result: dict[str, Any], key: str, setting: str, metric: str = "auroc") -> str:
    block = result["summary"].get(key, {}).get(setting)
    if not block:
        return "—"
    low, high = block[f"{metric}_diff_ci"]
    return f"{block[f'{metric}_diff']:+.3f} [{low:+.3f}, {high:+.3f}]"


def tables(result: dict[str, Any]) -> str:
    """The results page's tables: cells are mean ± SD over seeds of the macro score (each
    seed's score is the mean over its label draws); differences are paired bootstrap means with
    95 % intervals over the fold-10 records (seeds and draws pooled)."""
    settings = list(next(iter(result["runs"]))["probe"]) if result["runs"] else []
    low = [s for s in settings if s != "100%"]
    order = [*low, "100%"] if "100%" in settings else low
    variants = list(dict.fromkeys(r["variant"] for r in result["runs"]))
    lines = []
    head = "| encoder | seeds | " + " | ".join(
        f"{s} AUROC | {s} AUPRC | {s} Δ AUROC vs random-init" for s in order) + " |"
    lines += ["#### Linear probe", "", head, "|" + "---|" * (2 + 3 * len(order))]
    for v in variants:
        cells = []
        n = 0
        for s in order:
            auroc, auprc, n = _variant_cells(result, v, s)
            base = f"{result['budget']['larger']}-random" if v.startswith(
                result["budget"]["larger"]) else "random"
            cells += [auroc, auprc, _diff(result, f"{v} vs {base}", s)]
        lines.append(f"| {NAMES.get(v, v)} | {n} | " + " | ".join(cells) + " |")
    pairs = [k for k in result["summary"] if not k.endswith("vs random")
             and not k.endswith("-random")]
    if pairs:
        lines += ["", "#### Paired differences", "",
                  "| comparison | seeds | " + " | ".join(
                      f"{s} Δ AUROC | {s} Δ AUPRC" for s in order) + " |",
                  "|" + "---|" * (2 + 2 * len(order))]
        for k in pairs:
            seeds = len(result["summary"][k]["seeds"])
            cells = [_diff(result, k, s, m) for s in order for m in ("auroc", "auprc")]
            lines.append(f"| {k} | {seeds} | " + " | ".join(cells) + " |")
    if result.get("finetune"):
        lines += ["", "#### Fine-tuning (test macro AUROC / AUPRC, mean ± SD over seeds)", "",
                  "| variant | seeds | labeled records | AUROC | AUPRC | best epoch |",
                  "|---|---|---|---|---|---|"]
        for v in dict.fromkeys(r["variant"] for r in result["finetune"]):
            rows = [r for r in result["finetune"] if r["variant"] == v]
            lines.append(f"| {v} | {len(rows)} | {rows[0]['n_train_records']} | "
                         f"{_cell([r['macro_auroc'] for r in rows])} | "
                         f"{_cell([r['macro_auprc'] for r in rows])} | "
                         f"{', '.join(str(r['best_epoch']) for r in rows)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 seed, seconds")
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default 3, quick 1)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds are first-seed, first-seed + 1, ... (to add seeds in a "
                             "second run)")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--epochs", type=int, default=None, help="pretraining epochs")
    parser.add_argument("--probe-methods", default=",".join(PROBE_METHODS),
                        help="the probe section's encoders (e.g. random,acl with the federated "
                             "section: its comparison without SimCLR and CLOCS)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads per process (1: fastest for tiny)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes training encoders in parallel (1: all in this one)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--tables", type=Path, default=None,
                        help="print the markdown tables of this results file and exit")
    args = parser.parse_args(argv)
    if args.tables:
        result = json.loads(args.tables.read_text())
        print(tables(result), end="")
        return dict(result)
    torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)  # BLAS of the probes' logistic regressions
    b = QUICK if args.quick else FULL
    if args.epochs:
        b = replace(b, epochs=args.epochs)
    seeds = list(range(args.first_seed, args.first_seed + (args.seeds or (1 if args.quick
                                                                          else 3))))
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    methods = tuple(m for m in args.probe_methods.split(",") if m)
    if set(methods) - set(PROBE_METHODS):
        parser.error(f"unknown probe methods {sorted(set(methods) - set(PROBE_METHODS))}")
    out = args.out or RESULTS / ("quality-quick.json" if args.quick else "quality.json")
    header = {**metadata("quality", None if argv is None else ["benchmarks/quality.py", *argv]),
              "mode": "quick" if args.quick else "full", "seeds": seeds, "sections": sections,
              "probe_methods": list(methods)}
    bench = Bench(b, reference(b), args.device, out, header, time.perf_counter())
    jobs = plan(b, seeds, sections, len(bench.ref.corpus), len(bench.ref.small_corpus), methods)
    execute(bench, jobs, args.workers, args.threads)
    bench.write()
    print(f"[quality] wrote {out} in {time.perf_counter() - bench.started:.0f} s", flush=True)
    return dict(json.loads(out.read_text()))


if __name__ == "__main__":
    main()
