"""Per-region evidence of a finished run: the region probe of its final encoder, as a file the
report reads (``RUN_DIR/regions.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from aclecg_core.evaluation.regions import RegionProbeResult, region_probe
from aclecg_core.fed.config import FederationConfig
from aclecg_core.fed.probe import ServerProbe
from aclecg_core.method.checkpoint import load_encoder
from aclecg_core.method.device import pick_device

REGIONS_FILE = "regions.json"


def write_region_evidence(cfg: FederationConfig, run_dir: Path,
                          probe: ServerProbe) -> RegionProbeResult:
    """Probe each region of ``run_dir``'s final encoder on the server's probe data (those of
    ``probe``, loaded once per run); write ``regions.json`` (``RegionProbeResult.to_dict()``
    plus the round) and return the result."""
    device = pick_device(cfg.run.device)
    model, meta = load_encoder(Path(run_dir) / "checkpoints" / "final", device)
    data = probe.cohorts()
    result = region_probe(model, data.train, data.val, data.test, data.classes, device,
                          seed=cfg.run.seed)
    path = Path(run_dir) / REGIONS_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"round": meta["round"], **result.to_dict()}, indent=2) + "\n")
    tmp.replace(path)
    return result
