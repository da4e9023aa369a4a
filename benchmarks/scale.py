"""Many simulated sites on one machine: time and memory per round of the Flower simulation.

Usage: ``python benchmarks/scale.py [--quick] [--sites 50] [--rounds 100] [--fraction 0.1]``

The main run is ``--sites`` small synthetic sites (``--records`` each, ``tiny`` encoder, one
local step per site and round) for ``--rounds`` rounds, sampling ``--fraction`` of the sites per
round (``fraction-train``), probing only at round 0 and at the end. After every round it records
the round's wall time (``metrics.json``) and the memory of every process of the run: the
driver's RSS and the proportional set size (PSS, shared pages split between processes) summed
over the Ray processes, found by an environment mark they inherit. Two shorter runs at 2x and 4x
the fraction measure how the round time grows with the sites sampled per round (linear fit).

Targets (pass/fail in the JSON): memory flat (slope of the total over the second half of the
main run <= 0.5 MiB per round) and round time linear in the sampled sites (R^2 >= 0.9 of a
linear fit of the median steady round time of each run against its sites per round).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aclecg_runtime.processes import processes_with_env
from benchmarks.common import CACHE, DATA, RESULTS, finish, metadata, rss_mb, write_json

MARK = "ACLECG_BENCH_MARK"
TARGETS = {"memory_slope_mib_per_round": ("<=", 0.5), "round_time_linear_r2": (">=", 0.9)}


def pss_mb(pid: int) -> float:
    """Proportional set size of ``pid`` in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RoundSampler(threading.Thread):
    """Samples memory each time ``metrics.json`` in ``run_dir`` reports a new finished round."""

    def __init__(self, run_dir: Path, mark: str) -> None:
        super().__init__(daemon=True)
        self.run_dir, self.mark = run_dir, mark
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        last = -1
        while not self.stop.wait(0.2):
            try:
                final = json.loads((self.run_dir / "metrics.json").read_text())["final_round"]
            except (OSError, ValueError, KeyError):
                continue
            if final != last:
                last = final
                ray = processes_with_env(MARK, self.mark)
                self.samples.append({"round": final, "driver_rss_mib": rss_mb(),
                                     "ray_pss_mib": sum(pss_mb(p) for p in ray),
                                     "ray_processes": len(ray)})


def run_arm(sites: int, records: int, rounds: int, fraction: float, cache: Path) -> dict[str, Any]:
    """One simulation; per round: wall time, sampled sites, memory."""
    from simulation.run import simulate

    yaml = cache / f"scale-{sites}x{records}.yaml"
    yaml.parent.mkdir(parents=True, exist_ok=True)
    # the server's probe on PTB-XL (folds 1-8 / 9 / 10): a synthetic hold-out site of `records`
    # records is too small for a probe that chooses its C on a validation part
    yaml.write_text(f"cohort:\n  sites: {sites}\n  records-per-site: {records}\n"
                    f"  cache-dir: {cache}\nprobe:\n  source: ptbxl\n"
                    f"  path: {DATA / 'ptbxl'}\n  bootstrap: 20\n")
    mark = os.urandom(6).hex()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        sampler = RoundSampler(run_dir, mark)
        os.environ[MARK] = mark
        sampler.start()
        start = time.perf_counter()
        try:
            simulate({"config-file": str(yaml), "encoder": "tiny", "batch-size": records,
                      "num-server-rounds": rounds, "fraction-train": fraction,
                      "min-sites": 2, "eval-every": 0, "run-dir": str(run_dir)})
        finally:
            wall = time.perf_counter() - start
            sampler.stop.set()
            sampler.join()
            del os.environ[MARK]
        metrics = json.loads((run_dir / "metrics.json").read_text())
    memory = {s["round"]: s for s in sampler.samples}
    per_round = [{"round": r["round"], "wall_s": r["wall_seconds"], "sites": len(r["clients"]),
                  "failures": len(r["failures"]), **memory.get(r["round"], {})}
                 for r in metrics["rounds"]]
    return {"sites": sites, "records_per_site": records, "rounds": rounds,
            "fraction_train": fraction, "wall_s": wall, "per_round": per_round}


WARM_UP_ROUNDS = 3  # round 1 starts the Ray workers; the first rounds load most sites


def _steady_rounds(arm: dict[str, Any]) -> list[dict[str, Any]]:
    """Rounds after the warm-up and before the last (which probes): training only."""
    return [r for r in arm["per_round"] if WARM_UP_ROUNDS < r["round"] < arm["rounds"]]


def summarize(main: dict[str, Any], arms: list[dict[str, Any]]) -> dict[str, Any]:
    """Memory slope over the second half of the main run (every site's data is cached by then);
    median steady round time per sampling fraction and a linear fit of it against the sites
    sampled per round (on the medians: single rounds are noisy on a shared machine)."""
    rounds = [r for r in main["per_round"] if "ray_pss_mib" in r]
    total = np.array([r["driver_rss_mib"] + r["ray_pss_mib"] for r in rounds])
    index = np.array([r["round"] for r in rounds])
    tail = index > main["rounds"] // 2
    slope = float(np.polyfit(index[tail], total[tail], 1)[0]) if tail.sum() > 2 else None
    medians = {}
    for arm in [main, *arms]:
        steady = _steady_rounds(arm)
        if steady:
            medians[int(statistics.median(r["sites"] for r in steady))] = statistics.median(
                r["wall_s"] for r in steady)
    x, y = np.array(list(medians.items()), dtype=float).T
    fit = np.polyfit(x, y, 1) if len(x) > 1 else np.array([np.nan, np.nan])
    r2 = 1 - float(np.sum((y - np.polyval(fit, x)) ** 2) / np.sum((y - y.mean()) ** 2)) \
        if len(x) > 2 else None
    return {
        "memory_total_mib_first_last": [float(total[0]), float(total[-1])] if len(total) else None,
        "memory_total_mib_second_half_min_max": [float(total[tail].min()),
                                                 float(total[tail].max())] if tail.any() else None,
        "memory_slope_mib_per_round": slope,
        "memory_slope_from_round": int(main["rounds"] // 2 + 1),
        "round_s_median_by_sampled_sites": medians,
        "round_s_fit": {"intercept_s": float(fit[1]), "per_site_s": float(fit[0])},
        "round_time_linear_r2": r2,
    }


def verdicts(summary: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, (op, target) in TARGETS.items():
        value = summary[name]
        ok = None if value is None else (value >= target if op == ">=" else value <= target)
        out[name] = {"value": value, "target": f"{op} {target}", "pass": ok}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 sites x 6 rounds")
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--fraction", type=float, default=0.1, help="fraction-train")
    parser.add_argument("--records", type=int, default=8, help="synthetic records per site")
    parser.add_argument("--linearity-rounds", type=int, default=12,
                        help="rounds of each run at 2x and 4x the fraction")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--resummarize", action="store_true",
                        help="recompute summary and targets of the existing results file")
    args = parser.parse_args(argv)
    if args.quick:
        args.sites, args.rounds, args.linearity_rounds, args.fraction = 8, 6, 4, 0.25
    out = args.out or RESULTS / ("scale-quick.json" if args.quick else "scale.json")
    if args.resummarize:
        result = json.loads(out.read_text())
        result["summary"] = summarize(result["main"], result["linearity"])
        result["targets"] = verdicts(result["summary"])
        write_json(out, result)
        print(json.dumps({"summary": result["summary"], "targets": result["targets"]}, indent=2))
        return dict(result)
    meta = metadata("scale", None if argv is None else ["benchmarks/scale.py", *argv])
    started = time.perf_counter()
    cache = CACHE / "scale"
    print(f"[scale] {args.sites} sites x {args.rounds} rounds, fraction {args.fraction}",
          flush=True)
    main_arm = run_arm(args.sites, args.records, args.rounds, args.fraction, cache)
    arms = []
    for factor in (2, 4):
        fraction = min(1.0, args.fraction * factor)
        print(f"[scale] linearity: fraction {fraction}", flush=True)
        arms.append(run_arm(args.sites, args.records, args.linearity_rounds, fraction, cache))
    summary = summarize(main_arm, arms)
    result = {**finish(meta, started, time.perf_counter()), "mode": "quick" if args.quick
              else "full", "main": main_arm, "linearity": arms, "summary": summary,
              "targets": verdicts(summary)}
    write_json(out, result)
    print(json.dumps({"summary": summary, "targets": result["targets"]}, indent=2), flush=True)
    print(f"[scale] wrote {out} in {result['wall_seconds']} s", flush=True)
    return result


if __name__ == "__main__":
    main()
