"""Validation-only choice of the fine-tuning recipe per arm (issue 21): fold 10 is never loaded.

Usage: ``python benchmarks/tune_finetune.py [--workers 2] [--seeds 2] [--only ARM,ARM]``

The arms of the quality benchmark's ``finetune`` section: ACL-ECG (pretrained 30 epochs on its
unlabeled corpus, seed s; the pretrained encoder is cached and shared by the variants) fine-tuned
on the 10 % stratified draw of seed s, and supervised training from random init on 100 % and on
10 % of PTB-XL folds 1-8. Each variant (learning rate, a lower encoder learning rate,
linear-probe-then-fine-tune) is early-stopped on fold 9 with an 80-epoch cap; its score is the
best fold-9 macro AUROC, and the same under the 40-epoch cap is read off the first 40 epochs of
the history (the runs are identical up to there). Optimistic by the early stopping and the choice,
but equally for every variant; ``benchmarks/quality.py`` then scores each arm's choice once on
fold 10.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aclecg_core.data.labels import PTBXL_SUPERCLASSES
from aclecg_core.evaluation.finetune import FinetuneConfig, finetune
from aclecg_core.method.model import AclEcgModel, EncoderConfig, build_model
from aclecg_core.method.pretrain import PretrainConfig, pretrain
from benchmarks.common import CACHE, RESULTS, finish, metadata, write_json
from benchmarks.tune import _PARTS, _init

ARMS = {"acl@10%": ("acl", 0.1), "supervised@100%": ("random", 1.0),
        "supervised@10%": ("random", 0.1)}
CAP, SHORT_CAP = 80, 40
PRETRAIN_EPOCHS = 30


@dataclass(frozen=True)
class Variant:
    """One fine-tuning recipe: :class:`FinetuneConfig` fields besides the epoch cap and seed."""

    name: str
    options: tuple[tuple[str, Any], ...]


def _lr(lr: float, **options: Any) -> Variant:
    extra = "".join(f"-{k.split('_')[0]}{v:g}" if isinstance(v, float | int) else f"-{k}-{v}"
                    for k, v in options.items())
    return Variant(f"lr{lr:g}{extra}", (("lr", lr), *options.items()))


LRS = (_lr(3e-4), _lr(1e-3), _lr(3e-3))
VARIANTS = {
    "acl@10%": (*LRS, _lr(1e-3, encoder_lr_scale=0.1), _lr(3e-3, encoder_lr_scale=0.1),
                _lr(1e-3, probe_epochs=10)),
    "supervised@100%": LRS,
    "supervised@10%": LRS,
}
# augmented fine-tuning (a view per batch), on top of each arm's recipe chosen above
AUGMENTED = {
    "acl@10%": tuple(_lr(1e-3, probe_epochs=10, augment=a) for a in ("acl", "simclr")),
    "supervised@100%": tuple(_lr(3e-3, augment=a) for a in ("acl", "simclr")),
    "supervised@10%": tuple(_lr(3e-3, augment=a) for a in ("acl", "simclr")),
}

# self-training (distill): the 10 % arms' recipes chosen above, their teacher's probabilities
# on the other 90 % of the training records taught to a student
DISTILLED = {
    "acl@10%": (_lr(1e-3, probe_epochs=10, distill=True),),
    "supervised@10%": (_lr(3e-3, distill=True),),
}


def _checkpoint(seed: int) -> Path:
    return CACHE / "tune-finetune" / f"acl-{PRETRAIN_EPOCHS}ep-seed{seed}.pt"


def pretrained(seed: int) -> dict[str, Any]:
    """Pretrain ACL-ECG as the quality benchmark does (tiny, 30 epochs, batch 64, seed) and
    cache its state dict; a cached one is reused."""
    path = _checkpoint(seed)
    if path.exists():
        return {"seed": seed, "cached": True}
    model = build_model(EncoderConfig(size="tiny"), seed=seed)
    cfg = PretrainConfig(method="acl", epochs=PRETRAIN_EPOCHS, batch_size=64, seed=seed)
    result = pretrain(model, _PARTS["parts"].corpus, cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return {"seed": seed, "cached": False, "seconds": round(result.seconds, 1),
            "final_loss": round(result.losses[-1], 4)}


def _model(method: str, seed: int) -> AclEcgModel:
    model = build_model(EncoderConfig(size="tiny"), seed=seed)
    if method == "acl":
        model.load_state_dict(torch.load(_checkpoint(seed), weights_only=True))
    return model


def run(arm: str, variant: Variant, seed: int) -> dict[str, Any]:
    """Fine-tune the arm's encoder of ``seed`` with ``variant``; fold 9 is both the early-stopping
    and the scored part."""
    parts = _PARTS["parts"]
    method, fraction = ARMS[arm]
    cfg = FinetuneConfig(epochs=CAP, batch_size=64, seed=seed, n_bootstrap=0,
                         **dict(variant.options))
    res = finetune(_model(method, seed), parts.train, parts.val, parts.val,
                   list(PTBXL_SUPERCLASSES), fraction, cfg)
    short = res.val_history[:SHORT_CAP]
    return {"arm": arm, "variant": variant.name, "seed": seed, "options": dict(variant.options),
            "n_train_records": res.n_train_records, "best_epoch": res.best_epoch,
            "teacher_val_auroc": res.teacher_val_auroc,
            "student_val_auroc": res.student_val_auroc, "distilled": res.distilled,
            "val_auroc": round(res.best_val_auroc, 4),
            "val_auroc_cap40": round(max(short), 4), "best_epoch_cap40": 1 + int(np.argmax(short)),
            "epochs_run": len(res.val_history), "seconds": round(res.seconds, 1),
            "val_history": [round(v, 4) for v in res.val_history]}


def _mean_sd(values: list[float]) -> str:
    sd = f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else ""
    return f"{np.mean(values):.4f}{sd}"


def choose(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per arm, the variant and epoch cap with the highest mean fold-9 AUROC over seeds (the
    40-epoch cap on a tie: the cheaper one)."""
    chosen = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        best: tuple[float, str, int] | None = None
        for name in dict.fromkeys(r["variant"] for r in rows if r["arm"] == arm):
            mine = [r for r in rows if r["arm"] == arm and r["variant"] == name]
            for key, cap in (("val_auroc_cap40", SHORT_CAP), ("val_auroc", CAP)):
                score = float(np.mean([r[key] for r in mine]))
                if best is None or score > best[0] + 1e-9:
                    best = (score, name, cap)
        assert best is not None
        options = next(r["options"] for r in rows if r["arm"] == arm and r["variant"] == best[1])
        chosen[arm] = {"variant": best[1], "epochs": best[2], "options": options,
                       "val_auroc": round(best[0], 4)}
    return chosen


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per arm and variant, mean ± SD over seeds of the fold-9 macro AUROC."""
    lines = [f"| arm | variant | seeds | val AUROC (cap {SHORT_CAP}) | val AUROC (cap {CAP}) | "
             "best epochs | s per run |", "|---|---|---|---|---|---|---|"]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        for name in dict.fromkeys(r["variant"] for r in rows if r["arm"] == arm):
            mine = [r for r in rows if r["arm"] == arm and r["variant"] == name]
            epochs = ", ".join(str(r["best_epoch"]) for r in mine)
            lines.append(f"| {arm} | {name} | {len(mine)} | "
                         f"{_mean_sd([r['val_auroc_cap40'] for r in mine])} | "
                         f"{_mean_sd([r['val_auroc'] for r in mine])} | {epochs} | "
                         f"{np.mean([r['seconds'] for r in mine]):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated arms")
    parser.add_argument("--augmented", action="store_true",
                        help="the augmented variants (AUGMENTED) instead of VARIANTS")
    parser.add_argument("--distilled", action="store_true",
                        help="the self-training variants (DISTILLED) instead of VARIANTS")
    parser.add_argument("--out", type=Path, default=RESULTS / "tune-finetune.json")
    args = parser.parse_args(argv)
    arms = [a for a in ARMS if not args.only or a in args.only.split(",")]
    seeds = list(range(args.seeds))
    header = {**metadata("tune-finetune", argv), "seeds": seeds, "cap": CAP,
              "pretrain_epochs": PRETRAIN_EPOCHS}
    started, rows, pretrains = time.perf_counter(), [], []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, context, _init, (1,)) as pool:
        if any(ARMS[a][0] == "acl" for a in arms):
            pretrains = [f.result() for f in [pool.submit(pretrained, s) for s in seeds]]
            print(f"[tune-finetune] pretrained {pretrains}", flush=True)
        variants = AUGMENTED if args.augmented else DISTILLED if args.distilled else VARIANTS
        futures = [pool.submit(run, a, v, s) for a in arms for v in variants.get(a, ())
                   for s in seeds]
        for future in futures:
            row = future.result()
            rows.append(row)
            print(f"[tune-finetune] {row['arm']:16s} {row['variant']:22s} seed {row['seed']}  "
                  f"val {row['val_auroc']:.4f} (cap 40: {row['val_auroc_cap40']:.4f}) "
                  f"epoch {row['best_epoch']}  {row['seconds']:.0f} s", flush=True)
            write_json(args.out, {**finish(header, started, time.perf_counter()),
                                  "pretrain": pretrains, "chosen": choose(rows), "runs": rows,
                                  "table": table(rows)})
    print(table(rows), end="")
    print(choose(rows))


if __name__ == "__main__":
    main()
