"""``aclecg pretrain | probe | finetune``: centralized pretraining and the evaluation protocol."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from aclecg_core.data.preprocess import NORMALIZATIONS
from aclecg_core.data.preprocess import STUDY_PREPROCESSING as STUDY

RANDOM_CHECKPOINT = "random"
PRETRAINED_PROBE_EPOCHS = 10  # linear-probe-then-fine-tune: ACL-ECG's choice on PTB-XL fold 9


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("pretrain",
                              help="contrastive pretraining (ACL-ECG, SimCLR or CLOCS)")
    p.add_argument("--method", choices=("acl", "simclr", "clocs"), default="acl")
    p.add_argument("--acl-terms", choices=("both", "intra", "inter"), default="both",
                   help="ACL-ECG loss terms (ablation)")
    p.add_argument("--views", choices=("auto", "acl", "simclr"), default="auto",
                   help="augmentations: the method's own, or ACL-ECG's / SimCLR's (ablation)")
    _data_args(p)
    # defaults: the issue-11 study's choice on PTB-XL fold 9 (docs/results.md)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--encoder", choices=("tiny", "small", "default"), default="tiny")
    p.add_argument("--window-s", type=float, default=STUDY.window_s,
                   help="pretraining window (s)")
    p.add_argument("--stride-s", type=float, default=STUDY.stride_s,
                   help="start-to-start distance of the windows (s): one 5 s window per 10 s "
                        "of record, as in the study; probing and fine-tuning tile whole records")
    p.add_argument("--regions", choices=("paper", "clinical"), default="paper")
    p.add_argument("--out", type=Path, required=True, help="checkpoint path (no suffix)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--normalization", choices=NORMALIZATIONS, default=STUDY.normalization,
                   help="none (mV), lead-zscore (each lead of each window) or record-zscore "
                        "(each lead of each record)")
    p.add_argument("--rescale-amplitude", action="store_true",
                   help="divide records whose QRS amplitude points to a wrong header gain by "
                        "the likely factor")
    p.set_defaults(func=run_pretrain)

    for name, helptext in (("probe", "linear probe of a frozen encoder"),
                           ("finetune", "fine-tune an encoder on a fraction of the labels")):
        q = subparsers.add_parser(name, help=helptext)
        q.add_argument("checkpoint", help=f"checkpoint path, or {RANDOM_CHECKPOINT!r}")
        _data_args(q)
        q.add_argument("--split", default="auto",
                       help="auto (PTB-XL folds where every record has one, else patient), "
                            "ptbxl (folds 1-8/9/10), site:NAME (held-out site) or patient")
        q.add_argument("--classes", default="auto",
                       help="auto, ptbxl, synthetic or a comma-separated list")
        q.add_argument("--encoder", choices=("tiny", "small", "default"), default="tiny",
                       help="encoder size of a 'random' checkpoint")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--device", default="auto")
        q.add_argument("--json", action="store_true", help="print the result as JSON")
        if name == "finetune":
            q.add_argument("--fraction", type=float, default=0.1)
            q.add_argument("--epochs", type=int, default=40,
                           help="at most; early stopping on the validation split decides")
            # defaults: what PTB-XL fold 9 chose per arm (benchmarks/tune_finetune.py)
            q.add_argument("--lr", type=_finetune_lr, default="auto",
                           help="learning rate, or auto: fine-tune once with each of 3e-4, "
                                "1e-3 and 3e-3 and keep the best on the validation split")
            q.add_argument("--encoder-lr-scale", type=float, default=1.0,
                           help="the encoder learns at lr × this (the linear head at lr)")
            q.add_argument("--probe-epochs", type=int, default=None,
                           help="train the head alone (encoder frozen) this many epochs first "
                                f"(default: {PRETRAINED_PROBE_EPOCHS} for a pretrained "
                                "checkpoint when --epochs is larger, else 0)")
            q.add_argument("--augment", choices=("none", "acl", "simclr"), default="none",
                           help="train on one random view of each batch: the physiology-aware "
                                "views of pretraining (acl) or SimCLR's (simclr)")
            q.add_argument("--distill", action=argparse.BooleanOptionalAction, default=True,
                           help="below 100 %% labels (default: on, chosen on PTB-XL fold 9): "
                                "the fine-tuned model labels the other training records with "
                                "its probabilities, and a student fine-tuned on all of them "
                                "replaces it if better on the validation split")
        else:
            q.add_argument("--fraction", type=float, default=1.0,
                           help="share of the training records whose labels the probe uses "
                                "(seeded draws stratified on the label combination)")
            q.add_argument("--draws", type=int, default=5,
                           help="label-fraction draws (seeds SEED..SEED+DRAWS-1); one at 1.0")
            q.add_argument("--bootstrap", type=int, default=1000,
                           help="bootstrap replicates of the 95 %% intervals")
            q.add_argument("--reference-inits", type=int, default=3,
                           help="random initialisations pooled into the reference (seeds "
                                "SEED..): one init alone can be lucky or unlucky")
        q.set_defaults(func=run_probe if name == "probe" else run_finetune)


def _finetune_lr(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number nor 'auto': {text!r}") from None


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, nargs="+", required=True, help="WFDB folders or files")
    p.add_argument("--layout", default="auto")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--workers", type=int, default=None, help="processes reading records")
    p.add_argument("--progress", action="store_true")


def _load(args: argparse.Namespace, preprocessing: dict[str, Any] | None = None,
          whole_records: bool = False) -> Any:
    """The cohort of ``--data`` with ``preprocessing`` (keys missing: the study's);
    ``whole_records``: windows tile each record, so that a probe or fine-tuning sees every
    record whole (:func:`~aclecg_core.data.preprocess.whole_records`)."""
    from aclecg_core.data import preprocess
    from aclecg_core.data.loading import load_cohort

    cfg = preprocess.PreprocessConfig.from_dict({**STUDY.to_dict(), **(preprocessing or {})})
    if whole_records:
        cfg = preprocess.whole_records(cfg)
    return load_cohort(list(args.data), layout=args.layout, preprocessing=cfg,
                       cache_dir=args.cache_dir, workers=args.workers,
                       progress=args.progress)


def run_pretrain(args: argparse.Namespace) -> int:
    from aclecg_core.method.checkpoint import (
        cohort_sites,
        corpus_summary,
        encoder_metadata,
        save_checkpoint,
    )
    from aclecg_core.method.model import EncoderConfig, build_model
    from aclecg_core.method.pretrain import PretrainConfig, pick_device, pretrain

    cohort = _load(args, {"normalization": args.normalization,
                          "rescale_amplitude": args.rescale_amplitude,
                          "window_s": args.window_s, "stride_s": args.stride_s})
    enc = EncoderConfig(size=args.encoder, regions=args.regions)
    cfg = PretrainConfig(method=args.method, acl_terms=args.acl_terms, views=args.views,
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         seed=args.seed)
    model = build_model(enc, seed=args.seed)
    result = pretrain(model, cohort, cfg, pick_device(args.device), progress=args.progress)
    source = ", ".join(str(p) for p in args.data)
    save_checkpoint(args.out, model.state_dict(), encoder_metadata(
        method=args.method, encoder=enc, preprocessing=cohort.preprocessing, round=None,
        metrics={"loss": result.loss, "losses": result.losses,
                 "samples_per_second": result.samples_per_second},
        config={"pretrain": cfg.to_dict()},
        corpus=corpus_summary("centralized", source, cohort_sites(cohort))))
    print(f"pretrained {args.method} on {len(cohort)} windows in {result.seconds:.1f} s "
          f"(last-epoch loss {result.loss:.4f}); wrote {args.out}")
    return 0


def _model(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from aclecg_core.method.checkpoint import load_encoder
    from aclecg_core.method.model import EncoderConfig, build_model

    if args.checkpoint == RANDOM_CHECKPOINT:
        enc = EncoderConfig(size=args.encoder)
        return build_model(enc, seed=args.seed), {"method": "random", "encoder": enc.to_dict()}
    return load_encoder(Path(args.checkpoint))


def _classes(spec: str, cohort: Any) -> list[str]:
    from aclecg_core.data.cohort import DataError
    from aclecg_core.evaluation.splits import CLASS_SETS, guess_class_set

    if spec == "auto":
        spec = guess_class_set(cohort)
    classes = list(CLASS_SETS[spec]) if spec in CLASS_SETS else spec.split(",")
    seen = {label for r in cohort.records for label in r.labels}
    if not seen & set(classes):
        folder = os.path.commonpath([r.path for r in cohort.records])
        raise DataError(f"{folder}: no record carries a label of the classes "
                        f"{', '.join(classes)} (unlabeled data? choose --classes)")
    return classes


def _print(result: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    m = result["metrics"]
    print(f"{title}: macro AUROC {m['macro_auroc']:.4f} [{m['auroc_ci'][0]:.4f}, "
          f"{m['auroc_ci'][1]:.4f}], macro AUPRC {m['macro_auprc']:.4f} "
          f"[{m['auprc_ci'][0]:.4f}, {m['auprc_ci'][1]:.4f}] on {m['n_test']} test records")
    if m["skipped"]:
        print(f"  skipped (no positives or no negatives in test): {', '.join(m['skipped'])}")
    for name, value in m["per_class_auroc"].items():
        print(f"  {name:>8}: AUROC {value:.4f}")


def run_probe(args: argparse.Namespace) -> int:
    from aclecg_core.evaluation.probe import split_features
    from aclecg_core.evaluation.reference import (
        compare_with_reference,
        probe_fraction,
        random_init_like,
    )
    from aclecg_core.evaluation.splits import default_split, evaluation_split
    from aclecg_core.method.pretrain import pick_device

    model, meta = _model(args)
    cohort = _load(args, meta.get("preprocessing"), whole_records=True)
    classes = _classes(args.classes, cohort)
    if args.split == "auto":
        args.split = default_split(cohort)
    train, val, test = evaluation_split(cohort, args.split, seed=args.seed)
    device = pick_device(args.device)
    data = split_features(model, train, val, test, classes, device)
    out: dict[str, Any] = {
        "checkpoint": args.checkpoint, "method": meta.get("method"),
        "encoder_config": model.config.to_dict(), "split": args.split, "classes": classes,
        "fraction": args.fraction, "seed": args.seed, "n_train": len(train.records),
        "n_val": len(val.records), "n_test": len(test.records),
    }
    if args.checkpoint == RANDOM_CHECKPOINT:  # it is the reference itself
        probe = probe_fraction(data, classes, args.fraction, args.draws, args.seed,
                               args.bootstrap)
        out.update(encoder=probe.to_dict(), reference=None, difference=None,
                   reference_inits=[])
    else:
        references = [split_features(random_init_like(model, args.seed + i), train, val, test,
                                     classes, device) for i in range(args.reference_inits)]
        out.update(compare_with_reference(data, references, classes, args.fraction,
                                          args.draws, args.seed, args.bootstrap).to_dict())
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        _print_probe(out)
    return 0


def _print_probe(out: dict[str, Any]) -> None:
    from aclecg_core.report.fmt import comparison_words, fmt_diff_ci

    enc = out["encoder"]
    draws = enc["draws"]
    labels = (f"{out['fraction']:.0%} of the labels: {draws[0]['n_train']} records per draw, "
              f"{len(draws)} draw{'s' * (len(draws) > 1)}" if out["fraction"] < 1
              else "all labels")
    print(f"probe {out['checkpoint']} (method {out['method']}, encoder "
          f"{out['encoder_config'].get('size')}), split {out['split']}: {out['n_train']} train "
          f"records ({labels}), {out['n_val']} validation (chooses C), {out['n_test']} test")
    print(f"  classes: {', '.join(out['classes'])}")
    inits = out["reference_inits"]
    rows = [("encoder", enc)] + ([(f"random init ×{len(inits)}", out["reference"])]
                                 if out["reference"] else [])
    print(f"  {'':<16}{'macro AUROC':<33}{'macro AUPRC':<33}chosen C")
    for name, probe in rows:
        cells = [_spread(probe, metric) for metric in ("auroc", "auprc")]
        cs = ", ".join(f"{d['c']:.2g}" for d in probe["draws"])
        print(f"  {name:<16}{cells[0]:<33}{cells[1]:<33}{cs}")
    diff = out["difference"]
    if diff:
        print(f"  {'difference':<16}{fmt_diff_ci(diff['auroc_diff'], diff['auroc_diff_ci']):<33}"
              f"{fmt_diff_ci(diff['auprc_diff'], diff['auprc_diff_ci']):<33}"
              f"(paired bootstrap 95 %, {diff['n_bootstrap']} replicates)")
        print(f"  the encoder {comparison_words(diff['auroc_diff_ci'])} its random-init "
              f"reference (macro AUROC); the {len(inits)} random inits alone score "
              f"{min(inits):.4f}–{max(inits):.4f}")
    skipped = draws[0]["skipped"]
    if skipped:
        print(f"  skipped (no positives or no negatives in test): {', '.join(skipped)}")
    if len(draws) == 1:
        for name, value in draws[0]["per_class_auroc"].items():
            print(f"  {name:>8}: AUROC {value:.4f}")


def _spread(probe: dict[str, Any], metric: str) -> str:
    """One draw: value [95 % CI]; several: mean ± sd (min–max)."""
    draws = probe["draws"]
    if len(draws) == 1:
        lo, hi = draws[0][f"{metric}_ci"]
        return f"{draws[0][f'macro_{metric}']:.4f} [{lo:.4f}, {hi:.4f}]"
    s = probe[metric]
    return f"{s['mean']:.4f} ± {s['std']:.4f} ({s['min']:.3f}–{s['max']:.3f})"


def run_finetune(args: argparse.Namespace) -> int:
    from aclecg_core.evaluation.finetune import LR_GRID, FinetuneConfig, finetune
    from aclecg_core.evaluation.splits import default_split, evaluation_split
    from aclecg_core.method.pretrain import pick_device

    model, meta = _model(args)
    cohort = _load(args, meta.get("preprocessing"), whole_records=True)
    classes = _classes(args.classes, cohort)
    if args.split == "auto":
        args.split = default_split(cohort)
    train, val, test = evaluation_split(cohort, args.split, seed=args.seed)
    auto = args.lr == "auto"
    if args.probe_epochs is None:
        pretrained = args.checkpoint != RANDOM_CHECKPOINT and args.epochs > PRETRAINED_PROBE_EPOCHS
        args.probe_epochs = PRETRAINED_PROBE_EPOCHS if pretrained else 0
    cfg = FinetuneConfig(epochs=args.epochs, seed=args.seed,
                         encoder_lr_scale=args.encoder_lr_scale, probe_epochs=args.probe_epochs,
                         augment=args.augment, distill=args.distill,
                         **({} if auto else {"lr": args.lr}))
    result = finetune(model, train, val, test, classes, args.fraction, cfg,
                      pick_device(args.device), lrs=LR_GRID if auto else ())
    out = result.to_dict()
    _print({"checkpoint": args.checkpoint, "method": meta.get("method"), "split": args.split,
            "classes": classes, "fraction": args.fraction, "lr": out["lr"],
            "probe_epochs": args.probe_epochs, "augment": args.augment,
            "distill": args.distill, "distilled": out["distilled"],
            "teacher_val_auroc": out["teacher_val_auroc"],
            "student_val_auroc": out["student_val_auroc"],
            "val_auroc_by_lr": out["val_auroc_by_lr"], "best_epoch": out["best_epoch"],
            "n_train_records": out["n_train_records"], "metrics": out["test"]}, args.json,
           f"finetune {args.checkpoint} ({args.fraction:.0%} labels, lr {out['lr']:g})")
    return 0
