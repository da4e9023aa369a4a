"""Ingest benchmark: cold WFDB ingest vs cached load of ../shared/data/ptbxl + cinc.

Usage: ``python benchmarks/ingest.py [--workers N] [--out benchmarks/results/ingest.json]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from aclecg_core.data.loading import load_cohort

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="cached loads to time (best)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ingest.json")
    args = parser.parse_args()
    paths = [DATA / "ptbxl", DATA / "cinc"]
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        cohort = load_cohort(paths, cache_dir=Path(cache), workers=args.workers)
        cold = time.perf_counter() - start
        cached = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            load_cohort(paths, cache_dir=Path(cache), workers=args.workers)
            cached.append(time.perf_counter() - start)
    n = len(cohort.records) + len(cohort.rejected)
    result = {
        "benchmark": "ingest",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]},
        "data": [str(p.relative_to(ROOT.parent)) for p in paths],
        "workers": args.workers or os.cpu_count(),
        "records": n,
        "records_ok": len(cohort.records),
        "windows": len(cohort),
        "preprocessing": cohort.preprocessing,
        "cold_s": round(cold, 3),
        "cold_records_per_s": round(n / cold, 1),
        "cached_s": round(min(cached), 4),
        "cached_records_per_s": round(n / min(cached), 1),
        "speedup": round(cold / min(cached), 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
