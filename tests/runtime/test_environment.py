"""The Flower environment (aclecg_runtime.environment) and scripts/env.sh say the same."""

from __future__ import annotations

import re
from pathlib import Path

from aclecg_runtime import environment

PROJECT = Path(__file__).resolve().parents[2]


def test_flower_env_matches_scripts_env_sh(tmp_path: Path) -> None:
    env_sh = (PROJECT / "scripts" / "env.sh").read_text()
    exported = dict(re.findall(r"^export (\w+)=(\S+)$", env_sh, re.MULTILINE))
    assert exported == environment.FLOWER_ENV
    env = environment.flower_env(tmp_path, base={"PATH": "/usr/bin"})
    assert env["FLWR_HOME"] == str(tmp_path)
    assert env["PATH"].split(":")[0] == str(Path(environment.executable("flwr")).parent)
