"""Validation-only tuning of the pretraining defaults (issue 11): fold 10 is never loaded.

Usage: ``python benchmarks/tune.py [--workers 2] [--seeds 2] [--only NAME,NAME]`` (the
federated variants of issue 21, ``fed-*``, run only when named in ``--only``)

Every variant is pretrained on the quality benchmark's unlabeled corpus (PTB-XL folds 1-8,
``cinc/``, ``code15/``) and linearly probed on PTB-XL folds 1-8 → fold 9 with 10 % of the labels
(the quality benchmark's seeded draws) and with all of them. The test part handed to the probe is
fold 9 itself, so the scores are validation macro AUROC at the C chosen on fold 9: optimistic
by the choice of C, but equally for every variant. The defaults are chosen from this table;
``benchmarks/quality.py`` then scores the chosen configuration once on fold 10.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aclecg_core.data.cohort import Cohort
from aclecg_core.data.labels import PTBXL_SUPERCLASSES
from aclecg_core.data.loading import load_cohort
from aclecg_core.evaluation.probe import split_features
from aclecg_core.evaluation.reference import probe_fraction
from aclecg_core.evaluation.splits import ptbxl_split
from aclecg_core.method.model import EncoderConfig, build_model
from aclecg_core.method.pretrain import PretrainConfig, pretrain
from benchmarks.common import CACHE, DATA, RESULTS, finish, metadata, write_json
from benchmarks.federated import FedSettings, federated_pretrain, site_batch_pretrain
from benchmarks.quality import DRAW_SEED, PREPROCESSING, PROBE_PREPROCESSING, REAL, unlabeled


@dataclass(frozen=True)
class Variant:
    """One pretraining configuration: ``method`` (``random`` = no pretraining, ``federated`` =
    ACL-ECG over the corpus's sites), the encoder preset with optional overrides, and
    :class:`PretrainConfig` fields (``federated``: ``epochs`` and :class:`FedSettings` fields)."""

    name: str
    method: str = "acl"
    encoder: tuple[tuple[str, Any], ...] = (("size", "tiny"),)
    pretrain: tuple[tuple[str, Any], ...] = ()


def _acl(name: str, **options: Any) -> Variant:
    return Variant(name, pretrain=tuple(options.items()))


def _fed(name: str, **options: Any) -> Variant:
    return Variant(name, "federated", pretrain=tuple({"epochs": 30, **options}.items()))


VARIANTS = (
    Variant("random", "random"),
    _acl("acl-10ep", epochs=10),
    _acl("acl-30ep", epochs=30),
    _acl("acl-intra-10ep", epochs=10, acl_terms="intra"),
    _acl("acl-intra-30ep", epochs=30, acl_terms="intra"),
    _acl("acl-30ep-lr3e-3", epochs=30, lr=3e-3),
    _acl("acl-30ep-tau0.2", epochs=30, temperature=0.2),
    Variant("simclr-30ep", "simclr", pretrain=(("epochs", 30),)),
    Variant("small-random", "random", encoder=(("size", "small"),)),
    Variant("small-acl-10ep", encoder=(("size", "small"),), pretrain=(("epochs", 10),)),
    # a larger trunk with tiny's compact 32-d per-lead features (384-d representation)
    Variant("small-e32-random", "random", encoder=(("size", "small"), ("embed_dim", 32))),
    Variant("small-e32-acl-10ep", encoder=(("size", "small"), ("embed_dim", 32)),
            pretrain=(("epochs", 10),)),
    Variant("w16d3-random", "random", encoder=(("size", "tiny"), ("width", 16), ("depth", 3))),
    Variant("w16d3-acl-10ep", encoder=(("size", "tiny"), ("width", 16), ("depth", 3)),
            pretrain=(("epochs", 10),)),
    Variant("w16d3-acl-30ep", encoder=(("size", "tiny"), ("width", 16), ("depth", 3)),
            pretrain=(("epochs", 30),)),
    # issue 21: federated ACL-ECG at the pooled acl-30ep's samples seen (30 epochs, batch 64)
    _fed("fed-avg"),
    _fed("fed-avgm-lr2", strategy="fedavgm", server_lr=2.0),
    _fed("fed-avgm-m0.5", strategy="fedavgm", server_momentum=0.5),
    _fed("fed-adam-1e-2", strategy="fedadam", server_eta=1e-2),
    _fed("fed-2ep", local_epochs=2),
    _fed("fed-b32", batch_size=32),
    _fed("fed-avgm-lr3", strategy="fedavgm", server_lr=3.0),
    _fed("fed-avgm-m0.9", strategy="fedavgm", server_momentum=0.9),
    _fed("fed-encoder", aggregate="encoder"),
    _fed("fed-prox-0.01", strategy="fedprox", proximal_mu=0.01),
    _fed("fed-avgm-m0.5-b32", strategy="fedavgm", server_momentum=0.5, batch_size=32),
    _fed("fed-avgm-m0.5-2ep", strategy="fedavgm", server_momentum=0.5, local_epochs=2),
    _fed("fed-avgm-m0.5-encoder", strategy="fedavgm", server_momentum=0.5, aggregate="encoder"),
    _fed("fed-avgm-m0.5-keepopt", strategy="fedavgm", server_momentum=0.5,
         keep_optimizer_state=True),
    _fed("fed-keepopt", keep_optimizer_state=True),  # FedAvg: without the server's momentum
    _fed("fed-avgm-m0.5-sharedopt", strategy="fedavgm", server_momentum=0.5,
         share_optimizer_state=True),
    _fed("fed-sharedopt", share_optimizer_state=True),
    _fed("fed-avgm-m0.5-half", strategy="fedavgm", server_momentum=0.5, round_parts=2),
    _fed("fed-half", round_parts=2),
    _fed("fed-avgm-m0.5-quarter", strategy="fedavgm", server_momentum=0.5, round_parts=4),
    # momentum 0.9 at server lr 0.2: m 0.5's steady-state step (lr / (1 - m) = 2), smoother
    _fed("fed-avgm-lr0.2-m0.9", strategy="fedavgm", server_lr=0.2, server_momentum=0.9),
    # cyclic weight transfer: sequential sites, no averaging (fold 9 ran it as a prototype
    # with its own seeded visiting order, `tune-federated-cyclic*.json`; now the product's)
    _fed("fed-cyclic", strategy="cyclic"),
    _fed("fed-avgm-m0.5-nova", strategy="fedavgm", server_momentum=0.5, normalize_steps=True),
    _fed("fed-nova", normalize_steps=True),
    # pooled, but every batch from one site as at a federated site (a diagnostic, issue 21)
    Variant("acl-30ep-site-batches", "site-batches", pretrain=(("epochs", 30),)),
    Variant("acl-30ep-mixed-batches", "mixed-batches", pretrain=(("epochs", 30),)),  # control
    # ... and with AdamW restarted every epoch, as at a site every round
    Variant("acl-30ep-site-batches-fresh-opt", "site-batches-fresh-opt",
            pretrain=(("epochs", 30),)),
)


@dataclass
class Parts:
    train: Cohort
    val: Cohort
    corpus: Cohort


_PARTS: dict[str, Parts] = {}


def load_parts() -> Parts:
    """PTB-XL folds 1-8 and 9 (fold 10 dropped unread of labels) and the pretraining corpus."""
    cache = CACHE / "cohorts"
    ptbxl = [DATA / "ptbxl", DATA / "ptbxl-more"]
    train, val, _ = ptbxl_split(load_cohort(ptbxl, layout="auto", cache_dir=cache,
                                            preprocessing=PROBE_PREPROCESSING, workers=1))
    real = load_cohort([DATA / n for n in REAL], layout="auto", cache_dir=cache,
                       preprocessing=PREPROCESSING, workers=1)
    return Parts(train, val, unlabeled(real))


def _init(threads: int) -> None:
    torch.set_num_threads(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    _PARTS["parts"] = load_parts()


def run(variant: Variant, seed: int, draws: int) -> dict[str, Any]:
    """Pretrain ``variant`` with ``seed`` and probe it on fold 9 (10 % and 100 % labels)."""
    parts = _PARTS["parts"]
    model = build_model(EncoderConfig(**dict(variant.encoder)), seed=seed)
    info: dict[str, Any] = {"seconds": 0.0, "losses": []}
    if variant.method == "federated":
        options = dict(variant.pretrain)
        epochs = options.pop("epochs")
        model, fed = federated_pretrain(FedSettings(**options), epochs, seed, parts.corpus,
                                        encoder=dict(variant.encoder)["size"])
        info = {k: fed[k] for k in ("seconds", "losses", "rounds", "settings", "site_failures")}
    elif variant.method.endswith("-batches") or variant.method.endswith("-fresh-opt"):
        cfg = PretrainConfig(method="acl", batch_size=64, seed=seed, **dict(variant.pretrain))
        info = site_batch_pretrain(model, parts.corpus, cfg, FedSettings().min_site_records,
                                   by_site=variant.method.startswith("site-batches"),
                                   fresh_optimizer=variant.method.endswith("-fresh-opt"))
    elif variant.method != "random":
        cfg = PretrainConfig(method=variant.method, batch_size=64, seed=seed,
                             **dict(variant.pretrain))
        result = pretrain(model, parts.corpus, cfg)
        info = {"seconds": round(result.seconds, 1),
                "losses": [round(v, 4) for v in result.losses]}
    classes = list(PTBXL_SUPERCLASSES)
    data = split_features(model, parts.train, parts.val, parts.val, classes)
    scores = {}
    for setting, fraction, n in (("10%", 0.1, draws), ("100%", 1.0, 1)):
        fp = probe_fraction(data, classes, fraction, n, seed=DRAW_SEED, n_bootstrap=0)
        scores[setting] = {"val_auroc": round(fp.auroc.mean, 4),
                           "val_auprc": round(fp.auprc.mean, 4),
                           "c": [d.c for d in fp.draws]}
    return {"variant": variant.name, "seed": seed, "pretrain": info, "probe": scores}


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per variant, mean ± SD over seeds of the validation macro AUROC."""
    lines = ["| variant | seeds | 10 % val AUROC | 100 % val AUROC | final loss | pretrain s |",
             "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == name]
        cells = []
        for setting in ("10%", "100%"):
            v = [r["probe"][setting]["val_auroc"] for r in mine]
            sd = f" ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else ""
            cells.append(f"{np.mean(v):.3f}{sd}")
        losses = [r["pretrain"]["losses"][-1] for r in mine if r["pretrain"]["losses"]]
        loss = f"{np.mean(losses):.2f}" if losses else "—"
        secs = np.mean([r["pretrain"]["seconds"] for r in mine])
        lines.append(f"| {name} | {len(mine)} | {cells[0]} | {cells[1]} | {loss} | {secs:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds are first-seed, first-seed + 1, ...")
    parser.add_argument("--only", default="",
                        help="comma-separated variant names, run in this order")
    parser.add_argument("--out", type=Path, default=RESULTS / "tune.json")
    args = parser.parse_args(argv)
    by_name = {v.name: v for v in VARIANTS}
    chosen = [by_name[n] for n in args.only.split(",")] if args.only else [
        v for v in VARIANTS if v.method in ("acl", "simclr", "random")]  # the others by name
    jobs = [(v, s) for s in range(args.first_seed, args.first_seed + args.seeds) for v in chosen]
    header = {**metadata("tune", argv), "seeds": args.seeds, "draws": args.draws}
    started, rows = time.perf_counter(), []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, context, _init, (1,)) as pool:
        futures = [pool.submit(run, replace(v), s, args.draws) for v, s in jobs]
        for future in futures:
            row = future.result()
            rows.append(row)
            print(f"[tune] {row['variant']:18s} seed {row['seed']}  "
                  f"{ {k: v['val_auroc'] for k, v in row['probe'].items()} }", flush=True)
            write_json(args.out, {**finish(header, started, time.perf_counter()),
                                  "runs": rows, "table": table(rows)})
    print(table(rows), end="")


if __name__ == "__main__":
    main()
