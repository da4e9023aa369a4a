"""``aclecg data synth``: write the built-in synthetic multi-site 12-lead ECG cohort."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def register(data_subparsers: Any) -> None:
    """Add ``synth`` to the ``aclecg data`` group."""
    synth = data_subparsers.add_parser(
        "synth", help="write a synthetic multi-site 12-lead ECG cohort (WFDB, one folder a site)")
    synth.add_argument("out", type=Path, metavar="OUT", help="output folder")
    synth.add_argument("--sites", type=_positive, default=4)
    synth.add_argument("--records-per-site", type=_positive, default=250)
    synth.add_argument("--seed", type=_non_negative, default=0)
    synth.add_argument("--workers", type=_positive, default=None,
                       help="processes (default: all cores)")
    synth.add_argument("--generator", choices=("physics", "gan"), default="physics",
                       help="physics: labelled dipole model; gan: unlabelled GAN ECGs")
    synth.add_argument("--figure", type=Path, default=None, metavar="DIR",
                       help="also draw one 12-lead figure per label into DIR (physics only)")
    synth.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    """Write the cohort and print a one-line summary; exit code 0 on success."""
    if args.generator == "gan":
        from aclecg_core.data.gan import write_gan_cohort

        write_gan_cohort(args.out, args.sites, args.records_per_site, args.seed, args.workers)
        print(f"wrote {args.sites} × {args.records_per_site} GAN records to {args.out}")
        return 0
    from aclecg_core.data.synth import write_synthetic_cohort

    summary = write_synthetic_cohort(args.out, args.sites, args.records_per_site, args.seed,
                                     args.workers)
    counts = ", ".join(f"{label} {n}" for label, n in summary.label_counts.items())
    print(f"wrote {summary.records} records ({summary.sites} sites) to {summary.out} in "
          f"{summary.seconds:.1f} s ({summary.records_per_second:.0f} records/s); {counts}")
    if args.figure is not None:
        from aclecg_core.data.synth.figure import draw_label_figures

        paths = draw_label_figures(args.figure, args.seed)
        print(f"drew {len(paths)} figures in {args.figure}")
    return 0
