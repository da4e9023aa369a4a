"""``aclecg embed | export``: a pretrained encoder's features and the encoder itself, for use
outside this project (docs/use-your-encoder.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("embed", help="record-level features of a checkpoint's encoder")
    p.add_argument("checkpoint", help="checkpoint path (centralized or a federated run's "
                                      "checkpoints/final, best, round-N)")
    p.add_argument("--data", type=Path, nargs="+", required=True, help="WFDB folders or files")
    p.add_argument("--out", type=Path, required=True, help="output file: .npz or .csv")
    p.add_argument("--layout", default="auto")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--workers", type=int, default=None, help="processes reading records")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: when stderr is a terminal)")
    p.set_defaults(func=run_embed)

    q = subparsers.add_parser("export", help="the encoder as TorchScript plus a JSON card")
    q.add_argument("checkpoint", help="checkpoint path")
    q.add_argument("--out", type=Path, required=True,
                   help="TorchScript file (e.g. encoder.pt); the card is written beside it "
                        "with suffix .json")
    q.set_defaults(func=run_export)


def run_embed(args: argparse.Namespace) -> int:
    from aclecg_core.data.loading import load_cohort
    from aclecg_core.data.preprocess import PreprocessConfig
    from aclecg_core.evaluation.embed import FORMATS, record_embeddings, write_embeddings
    from aclecg_core.method.checkpoint import load_encoder
    from aclecg_core.method.device import pick_device

    if args.out.suffix not in FORMATS:
        raise ValueError(f"--out {args.out}: use a {' or '.join(FORMATS)} file name")
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    device = pick_device(args.device)
    model, meta = load_encoder(args.checkpoint, device)
    cohort = load_cohort(list(args.data), layout=args.layout,
                         preprocessing=PreprocessConfig.from_dict(meta["preprocessing"]),
                         cache_dir=args.cache_dir, workers=args.workers, progress=progress)
    features = record_embeddings(model, cohort, device, args.batch_size, progress)
    info = {"checkpoint": str(args.checkpoint), "method": meta["method"],
            "round": meta["round"], "encoder": meta["encoder"],
            "preprocessing": meta["preprocessing"], "feature": "model.embed, mean over the "
            "record's windows", "rejected": [[r.path, r.reason] for r in cohort.rejected]}
    write_embeddings(args.out, features, cohort, info)
    print(f"wrote {features.shape[1]}-d features of {len(cohort.records)} records "
          f"({len(cohort)} windows, {len(cohort.rejected)} rejected) to {args.out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from aclecg_core.method.checkpoint import load_encoder
    from aclecg_core.method.export import export_torchscript

    model, meta = load_encoder(args.checkpoint)
    model_file, card_file = export_torchscript(model, meta, args.out, str(args.checkpoint))
    print(f"wrote {model_file} (TorchScript: (batch, 12, samples) -> (batch, "
          f"{model.embed_dim})) and its card {card_file}")
    return 0
