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

    q = subparsers.add_parser("export", help="the encoder as ONNX or torch.export plus a JSON "
                                             "card")
    q.add_argument("checkpoint", help="checkpoint path")
    q.add_argument("--out", type=Path, required=True,
                   help="encoder.onnx (ONNX) or encoder.pt2 (torch.export); the card is written "
                        "beside it (encoder.onnx.json)")
    q.add_argument("--check-data", type=Path, nargs="+", default=None,
                   help="WFDB folders or files whose windows check the export against the "
                        "checkpoint (default: random windows)")
    q.add_argument("--check-windows", type=int, default=32, help="windows to check")
    q.add_argument("--layout", default="auto", help="layout of --check-data")
    q.set_defaults(func=run_export)


def run_embed(args: argparse.Namespace) -> int:
    from aclecg_core.data.loading import load_cohort
    from aclecg_core.data.preprocess import PreprocessConfig, whole_records
    from aclecg_core.evaluation.embed import FORMATS, record_embeddings, write_embeddings
    from aclecg_core.method.checkpoint import load_encoder
    from aclecg_core.method.device import pick_device

    if args.out.suffix not in FORMATS:
        raise ValueError(f"--out {args.out}: use a {' or '.join(FORMATS)} file name")
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    device = pick_device(args.device)
    model, meta = load_encoder(args.checkpoint, device)
    cohort = load_cohort(list(args.data), layout=args.layout,
                         preprocessing=whole_records(
                             PreprocessConfig.from_dict(meta["preprocessing"])),
                         cache_dir=args.cache_dir, workers=args.workers, progress=progress)
    features = record_embeddings(model, cohort, device, args.batch_size, progress)
    info = {"checkpoint": str(args.checkpoint), "method": meta["method"],
            "round": meta["round"], "encoder": meta["encoder"],
            "preprocessing": meta["preprocessing"], "feature": "model.embed, mean over the "
            "windows tiling the record", "rejected": [[r.path, r.reason] for r in cohort.rejected]}
    write_embeddings(args.out, features, cohort, info)
    print(f"wrote {features.shape[1]}-d features of {len(cohort.records)} records "
          f"({len(cohort)} windows, {len(cohort.rejected)} rejected) to {args.out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    import json

    import torch

    from aclecg_core.data.loading import load_cohort
    from aclecg_core.data.preprocess import PreprocessConfig
    from aclecg_core.method.checkpoint import load_encoder
    from aclecg_core.method.export import FORMATS, check_format, export_encoder

    check_format(args.out)
    model, meta = load_encoder(args.checkpoint)
    pre = PreprocessConfig.from_dict(meta["preprocessing"])
    if args.check_data:
        cohort = load_cohort(list(args.check_data), layout=args.layout, preprocessing=pre)
        check = torch.from_numpy(cohort.signals[:args.check_windows])
        more = len(args.check_data) - 1
        source = (f"{len(check)} windows of the records in {args.check_data[0]}"
                  + (f" and {more} more paths" if more else ""))
    else:
        check = torch.randn(args.check_windows, 12, pre.window_samples,
                            generator=torch.Generator().manual_seed(0))
        source = f"{args.check_windows} random normal windows (seed 0)"
    model_file, card_file = export_encoder(model, meta, args.out, Path(args.checkpoint), check,
                                           source)
    card = json.loads(card_file.read_text())
    print(f"wrote {model_file} ({FORMATS[args.out.suffix]}: (batch, 12, {pre.window_samples}) "
          f"-> (batch, {model.embed_dim})) and its card {card_file}; max abs difference from "
          f"the checkpoint on {source}: {card['check']['max_abs_difference']:.2g}")
    return 0
