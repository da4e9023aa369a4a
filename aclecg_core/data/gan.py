"""Unlabeled 12-lead ECGs from the deepfake-ecg Pulse2Pulse GAN (optional extra ``aclecg[gan]``).

The GAN maps uniform noise (batch, 8, 5000) in [-1, 1) to 10 s of leads I, II, V1–V6 at 500 Hz;
its tanh output times 6000 is in µV. III, aVR, aVL and aVF are derived from I and II. The network is
driven here directly (batched, seeded by an explicit ``torch.Generator``, weights loaded with
``torch.load(weights_only=True)``); the package's own ``generate()`` is not used.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from importlib import metadata
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import wfdb

from aclecg_core.data.leads import CANONICAL_LEADS, to_canonical_order

GAN_FS = 500
GAN_SAMPLES = 5000
GAN_LEADS: tuple[str, ...] = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
GAN_DISTRIBUTION = "deepfake-ecg"
GAN_LICENSE = "MIT"
ADC_GAIN = 1000.0  # adu per mV: 1 µV resolution, ±32.7 mV range in format 16
_OUTPUT_TO_MV = 6000.0 / 1000.0  # tanh output × 6000 is µV
_CHECKPOINT = Path("checkpoints") / "g_stat.pt"


class GanUnavailableError(ImportError):
    """The optional ``deepfake-ecg`` package is not installed."""


def _deepfakeecg() -> ModuleType:
    try:
        import deepfakeecg
    except ImportError as error:
        raise GanUnavailableError(
            "the GAN data source needs the optional deepfake-ecg package: pip install 'aclecg[gan]'"
        ) from error
    return deepfakeecg


def gan_source() -> str:
    """The ``# Source:`` header value, e.g. ``deepfake-ecg 1.1.2 Pulse2Pulse``."""
    _deepfakeecg()
    return f"{GAN_DISTRIBUTION} {metadata.version(GAN_DISTRIBUTION)} Pulse2Pulse"


@cache
def _load_network(package_dir: str, device: str) -> torch.nn.Module:
    from deepfakeecg.models import Generator

    checkpoint_path = Path(package_dir) / _CHECKPOINT
    if not checkpoint_path.is_file():
        raise FileNotFoundError(f"deepfake-ecg checkpoint missing: {checkpoint_path}")
    checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=True)
    if not isinstance(checkpoint, dict) or "stat_dict" not in checkpoint:
        raise ValueError(f"{checkpoint_path}: expected a dict with key 'stat_dict'")
    # Its __init__ draws random weights from the global RNG and calls a deprecated initialiser.
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        network = Generator()
    network.load_state_dict(checkpoint["stat_dict"])
    return network.to(device).eval()


def generate_gan_ecgs(
    n: int, generator: torch.Generator, batch_size: int = 16, device: str = "cpu"
) -> np.ndarray:
    """Generate ``n`` ECGs: float32 (n, 12, 5000) in canonical lead order, mV, 500 Hz.

    The noise is drawn on the CPU from ``generator`` batch by batch, so the result depends only on
    the generator's state, ``n`` and ``batch_size`` (and, in the last float bits, on the device
    and the torch thread count).
    """
    if n < 0 or batch_size < 1:
        raise ValueError(f"need n >= 0 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    package = _deepfakeecg()
    if package.__file__ is None:
        raise GanUnavailableError("deepfake-ecg is installed without a package directory")
    network = _load_network(str(Path(package.__file__).parent), str(torch.device(device)))
    out = np.empty((n, len(CANONICAL_LEADS), GAN_SAMPLES), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            size = min(batch_size, n - start)
            noise = torch.empty(size, len(GAN_LEADS), GAN_SAMPLES).uniform_(
                -1.0, 1.0, generator=generator
            )
            eight = (network(noise.to(device)) * _OUTPUT_TO_MV).cpu().numpy()
            for j, ecg in enumerate(eight):
                out[start + j] = to_canonical_order(ecg.T, list(GAN_LEADS))
    return out


def site_generator(seed: int, site: int) -> torch.Generator:
    """The torch.Generator of one site, derived from ``(seed, site)`` only."""
    state = np.random.SeedSequence([seed, site]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _write_site(
    out: Path, site: int, records: int, seed: int, batch_size: int, source: str
) -> None:
    """Write one site's records with one intra-op thread (thread counts change float rounding)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _write_records(out, site, records, seed, batch_size, source)
    finally:
        torch.set_num_threads(threads)


def _write_records(
    out: Path, site: int, records: int, seed: int, batch_size: int, source: str
) -> None:
    site_name = f"site{site}"
    site_dir = out / site_name
    site_dir.mkdir(parents=True, exist_ok=True)
    generator = site_generator(seed, site)
    for start in range(0, records, batch_size):
        size = min(batch_size, records - start)
        batch = generate_gan_ecgs(size, generator, batch_size=size)
        for j, ecg in enumerate(batch):
            index = start + j + 1
            wfdb.wrsamp(
                f"G{site}_{index:05d}",
                fs=GAN_FS,
                units=["mV"] * len(CANONICAL_LEADS),
                sig_name=list(CANONICAL_LEADS),
                p_signal=ecg.T.astype(np.float64),
                fmt=["16"] * len(CANONICAL_LEADS),
                adc_gain=[ADC_GAIN] * len(CANONICAL_LEADS),
                baseline=[0] * len(CANONICAL_LEADS),
                comments=[
                    "Age: Unknown",
                    "Sex: Unknown",
                    "Dx: ",
                    f"Site: {site_name}",
                    f"Patient: gan-{site_name}-{index:05d}",
                    f"Source: {source}",
                ],
                write_dir=str(site_dir),
            )


def write_gan_cohort(
    out: Path,
    sites: int,
    records_per_site: int,
    seed: int,
    workers: int | None = None,
    batch_size: int = 16,
) -> None:
    """Write an unlabeled GAN cohort as CinC-style WFDB records under ``out/site{k}/``.

    Records ``G{k}_{i:05d}`` (k = 1 … sites, i = 1 … records_per_site, numbered like the physics
    synth): 12 canonical leads, mV, 500 Hz, 10 s, format 16 at 1000 adu/mV, an empty ``# Dx:`` and
    ``# Site:``, ``# Patient:``, ``# Source:`` comments; ``out/cohort.json`` holds the parameters.
    Site k draws from ``site_generator(seed, k)``, so its files depend on ``(seed, k,
    records_per_site, batch_size)`` only, not on ``workers``: each site is generated
    single-threaded, ``workers`` processes generate sites in parallel (default: one per CPU core,
    at most one per site).
    """
    if sites < 1 or records_per_site < 1 or batch_size < 1:
        raise ValueError(
            f"need sites, records_per_site and batch_size >= 1, got {sites}, "
            f"{records_per_site}, {batch_size}"
        )
    source = gan_source()  # fails before anything is written when deepfake-ecg is missing
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    workers = min(sites, workers or os.cpu_count() or 1)
    if workers == 1:
        for site in range(1, sites + 1):
            _write_site(out, site, records_per_site, seed, batch_size, source)
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = [
                pool.submit(_write_site, out, site, records_per_site, seed, batch_size, source)
                for site in range(1, sites + 1)
            ]
            for job in jobs:
                job.result()
    parameters = {
        "generator": "gan",
        "source": source,
        "license": GAN_LICENSE,
        "sites": sites,
        "records_per_site": records_per_site,
        "seed": seed,
        "batch_size": batch_size,
        "fs": GAN_FS,
        "samples": GAN_SAMPLES,
        "leads": list(CANONICAL_LEADS),
        "units": "mV",
        "adc_gain": ADC_GAIN,
        "labeled": False,
        "site_dirs": [f"site{k}" for k in range(1, sites + 1)],
    }
    (out / "cohort.json").write_text(json.dumps(parameters, indent=2) + "\n")
