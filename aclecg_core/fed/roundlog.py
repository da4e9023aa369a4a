"""The console lines of a finished round: the losses, the probe with its difference from
round 0 and the wall time, then one line per failed site."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aclecg_core.fed.console import PREFIX


def round_line(global_round: int, total: int, clients: Sequence[Mapping[str, Any]],
               wall_seconds: float, probe: Mapping[str, Any] | None) -> str:
    """``[aclecg] round R/N  loss site1=… site2=…  probe AUROC A [lo, hi] C=c vs round 0 …``."""
    losses = " ".join(f"{c['site']}={c['loss']:.3f}" for c in clients) or "-"
    auroc = "-" if probe is None else f"{probe['macro_auroc']:.3f} " \
        f"[{probe['auroc_ci'][0]:.3f}, {probe['auroc_ci'][1]:.3f}] C={probe['c']:g}"
    if probe is not None and probe.get("vs_round0"):
        d = probe["vs_round0"]
        auroc += f" vs round 0 {d['auroc_diff']:+.3f} " \
            f"[{d['auroc_diff_ci'][0]:+.3f}, {d['auroc_diff_ci'][1]:+.3f}]"
    return f"{PREFIX} round {global_round}/{total}  loss {losses}  probe AUROC {auroc}  " \
        f"{wall_seconds:.1f} s"


def failure_lines(global_round: int, failures: Sequence[Mapping[str, Any]]) -> list[str]:
    """``[aclecg] round R: SITE failed: ERROR`` for each failure."""
    return [f"{PREFIX} round {global_round}: {f['site']} failed: {f['error']}" for f in failures]
