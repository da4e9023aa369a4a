"""A deployed site's own settings: its data, cache, device and threads (node config).

A hospital sets these when it starts its SuperNode (``aclecg deploy supernode`` flags, written
as Flower node config); nothing the coordinator sends can change them. The cache defaults to a
folder of the site's own user (``$XDG_CACHE_HOME/aclecg``, else ``~/.cache/aclecg``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aclecg_core.data.cohort import Cohort
from aclecg_core.data.loading import load_cohort
from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.data.sources import LAYOUTS

# Node config keys of a deployed site.
NAME = "site"
INDEX = "site-index"
DATA_DIR = "data-dir"
LAYOUT = "layout"
CACHE_DIR = "cache-dir"
DEVICE = "device"
THREADS = "threads"
REQUIRE_SECAGG = "require-secure-aggregation"  # the site trains only under secure aggregation


class SiteConfigError(ValueError):
    """A site's node config is missing a key or holds a bad value."""


def default_cache_dir() -> Path:
    """The site user's own cache folder for preprocessed cohorts."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "aclecg"


def check_device(value: str) -> str:
    """``value`` if it names a device choice (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""
    index = value.removeprefix("cuda:")
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and index.isdigit()):
        return value
    raise SiteConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")


@dataclass(frozen=True)
class SiteSettings:
    """What a deployed site decides for itself.

    ``index`` numbers the site in reports (node config ``site-index``, else the digits that end
    ``name``, else None: the caller falls back to the node id). ``threads`` 0: torch's default.
    """

    name: str
    data_dir: Path
    layout: str = "auto"
    cache_dir: Path | None = None
    device: str = "auto"
    threads: int = 0
    index: int | None = None

    @classmethod
    def from_node_config(cls, node: Mapping[str, object]) -> SiteSettings:
        """The settings of a SuperNode's node config; :class:`SiteConfigError` names the key."""
        if DATA_DIR not in node:
            raise SiteConfigError(f"node config lacks '{DATA_DIR}' (the site's ECG folder)")
        name = str(node.get(NAME, ""))
        layout = str(node.get(LAYOUT, "auto"))
        if layout not in LAYOUTS:
            raise SiteConfigError(f"node config '{LAYOUT}' must be one of {list(LAYOUTS)}, "
                                  f"got {layout!r}")
        threads = node.get(THREADS, 0)
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
            raise SiteConfigError(f"node config '{THREADS}' must be an integer >= 0, "
                                  f"got {threads!r}")
        index = node.get(INDEX)
        if index is None:
            digits = name[len(name.rstrip("0123456789")):]
            index = int(digits) if digits else None
        elif not isinstance(index, int) or isinstance(index, bool):
            raise SiteConfigError(f"node config '{INDEX}' must be an integer, got {index!r}")
        cache = node.get(CACHE_DIR)
        try:
            device = check_device(str(node.get(DEVICE, "auto")))
        except SiteConfigError as exc:
            raise SiteConfigError(f"node config '{DEVICE}': {exc}") from None
        return cls(name=name, data_dir=Path(str(node[DATA_DIR])).expanduser(), layout=layout,
                   cache_dir=Path(str(cache)).expanduser() if cache else None, device=device,
                   threads=threads, index=index)

    @property
    def cohort_cache(self) -> Path:
        """Where the site caches its preprocessed records."""
        return (self.cache_dir or default_cache_dir()) / "cohorts"

    def load(self, preprocessing: PreprocessConfig) -> Cohort:
        """Every record below ``data_dir``, preprocessed as the run asks, cached here."""
        return load_cohort([self.data_dir], self.layout, preprocessing=preprocessing,
                           cache_dir=self.cohort_cache, workers=1)
