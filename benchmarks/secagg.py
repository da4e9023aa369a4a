"""Cost of secure aggregation (SecAgg+) per federated round, against plain FedAvg.

Usage: ``python benchmarks/secagg.py [--sites 3] [--rounds 6] [--repeats 2] [--records 30]``

Runs the same Flower simulation (synthetic cohort, tiny encoder, probe only at round 0 and the
last round) with and without ``secure-aggregation``, the variants interleaved, and reports the
wall seconds of the steady rounds 2 .. R-1 (median over rounds and repeats; round 1 also starts
the ClientApp actors and is reported on its own, round R runs the probe), the messages each site
answers per round (1 plain, 4 under SecAgg+) and the bytes each site uploads for the model
(plain: the float32 arrays; SecAgg+: the masked integer vector, computed with Flower's own
quantisation and masking functions on the same model arrays).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flwr.common import ndarray_to_bytes
from flwr.common.secure_aggregation.ndarrays_arithmetic import (
    factor_combine,
    parameters_addition,
    parameters_mod,
)
from flwr.common.secure_aggregation.quantization import quantize
from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen

from aclecg_core.fed.arrays import select_keys, to_numpy
from aclecg_core.fed.config import FederationConfig, load_config
from aclecg_core.fed.probe import load_probe_cohorts
from aclecg_core.fed.sites import ensure_synthetic_cohort, simulated_site
from aclecg_core.fed.training import initial_model
from benchmarks.common import finish, metadata, write_json
from server.secagg import quantization_range
from simulation.run import simulate

ROOT = Path(__file__).resolve().parents[1]


def upload_bytes(cfg: FederationConfig, sites: int) -> dict[str, int]:
    """Bytes of one site's model upload: plain float arrays vs the SecAgg+ masked vector
    (quantised and masked as ``secaggplus_mod`` does it)."""
    arrays = list(select_keys(to_numpy(initial_model(cfg).state_dict()), cfg.run.aggregate)
                  .values())
    plain = sum(len(ndarray_to_bytes(a)) for a in arrays)
    r = cfg.run
    levels = quantization_range(sites)
    quantized = factor_combine(1, quantize([a.astype(np.float64) for a in arrays],
                                           r.secagg_clipping_range, levels))
    mask = pseudo_rand_gen(b"0" * 32, 2**32, [a.shape for a in quantized])
    masked = parameters_mod(parameters_addition(quantized, mask), 2**32)
    return {"plain": plain, "secagg": sum(len(ndarray_to_bytes(a)) for a in masked)}


def round_seconds(run_dir: Path) -> dict[int, float]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {int(r["round"]): float(r["wall_seconds"]) for r in metrics["rounds"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--records", type=int, default=30, help="synthetic records per site")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/secagg.json")
    args = parser.parse_args(argv)
    meta, started = metadata("secagg", argv), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aclecg-secagg-") as tmp:
        yaml = Path(tmp) / "sites.yaml"
        yaml.write_text(f"cohort:\n  sites: {args.sites}\n  records-per-site: {args.records}\n"
                        f"  cache-dir: {tmp}/cache\nprobe:\n  bootstrap: 20\n")
        base: dict[str, Any] = {"config-file": str(yaml), "encoder": "tiny", "seed": 0,
                                "num-server-rounds": args.rounds, "eval-every": 0,
                                "min-sites": args.sites}
        cfg = load_config(base, ROOT)
        ensure_synthetic_cohort(cfg)
        for k in range(args.sites):  # warm the preprocessed-cohort cache
            simulated_site(cfg, k, args.sites)
        load_probe_cohorts(cfg)
        seconds: dict[str, list[float]] = {"plain": [], "secagg": []}
        first: dict[str, list[float]] = {"plain": [], "secagg": []}
        for repeat in range(args.repeats):
            for variant in ("plain", "secagg"):
                run_dir = simulate({**base, "secure-aggregation": variant == "secagg",
                                    "run-dir": f"{tmp}/runs/{variant}-{repeat}"})
                walls = round_seconds(run_dir)
                first[variant].append(walls[1])
                seconds[variant] += [walls[r] for r in range(2, args.rounds)]
        sizes = upload_bytes(cfg, args.sites)
    plain, secure = (statistics.median(seconds[v]) for v in ("plain", "secagg"))
    result = {
        **finish(meta, started, time.perf_counter()),
        "settings": {"sites": args.sites, "rounds": args.rounds, "repeats": args.repeats,
                     "records_per_site": args.records, "encoder": "tiny"},
        "round_seconds": {k: [round(s, 2) for s in v] for k, v in seconds.items()},
        "first_round_seconds": {k: [round(s, 2) for s in v] for k, v in first.items()},
        "median_round_seconds": {"plain": round(plain, 2), "secagg": round(secure, 2)},
        "secagg_extra_seconds_per_round": round(secure - plain, 2),
        "secagg_time_ratio": round(secure / plain, 2),
        "messages_per_site_per_round": {"plain": 1, "secagg": 4},
        "upload_bytes_per_site_per_round": sizes,
        "upload_ratio": round(sizes["secagg"] / sizes["plain"], 2),
        "model_parameters": int(sum(np.prod(a.shape) for a in select_keys(
            to_numpy(initial_model(cfg).state_dict()), cfg.run.aggregate).values())),
    }
    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("median_round_seconds",
                                             "secagg_extra_seconds_per_round",
                                             "upload_bytes_per_site_per_round")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
