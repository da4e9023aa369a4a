"""One site's local training step of a federated round (Flower-free)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aclecg_core.data.cohort import Cohort
from aclecg_core.fed.arrays import round_seed, select_keys, to_numpy, to_torch
from aclecg_core.fed.config import FederationConfig
from aclecg_core.fed.disclosure import StatValue, site_stats
from aclecg_core.fed.updates import nonfinite_keys
from aclecg_core.method.model import AclEcgModel, EncoderConfig, build_model
from aclecg_core.method.pretrain import DivergenceError, PretrainConfig, pick_device, pretrain


def encoder_config(cfg: FederationConfig) -> EncoderConfig:
    """The encoder of a federated run."""
    return EncoderConfig(size=cfg.run.encoder)


def initial_model(cfg: FederationConfig) -> AclEcgModel:
    """The model every participant starts from (seeded initialisation)."""
    return build_model(encoder_config(cfg), seed=cfg.run.seed)


@dataclass
class LocalUpdate:
    """What a site sends back: the aggregated arrays, the training scalars
    (``disclosure.TRAINING_METRICS``) and, only when the run asks, its summary ``stats``."""

    arrays: dict[str, np.ndarray]
    metrics: dict[str, float | int]
    local_arrays: dict[str, np.ndarray]
    stats: dict[str, StatValue]


def train_site(cfg: FederationConfig, cohort: Cohort, global_arrays: dict[str, np.ndarray],
               server_round: int, site: int, proximal_mu: float = 0.0,
               local_arrays: dict[str, np.ndarray] | None = None,
               classes: list[str] | None = None) -> LocalUpdate:
    """Local pretraining of the global model on one site's cohort for ``local-epochs``.

    Raises :class:`DivergenceError` naming the round and the step when the loss, or naming the
    arrays when the weights, stop being finite: the site then sends no weights.

    Args:
        global_arrays: the aggregated keys (``aggregate`` prefixes) of the global model.
        server_round: the global round (seeds the site's training with (seed, round, site)).
        proximal_mu: FedProx coefficient sent by the server (0: plain local training).
        local_arrays: the site's own non-aggregated arrays from its previous round, if any.
        classes: label vocabulary of the ``label-count/...`` stats (``share-site-stats``).
    """
    model = initial_model(cfg)
    state = {**to_torch(local_arrays or {}), **to_torch(global_arrays)}
    missing = sorted(set(global_arrays) - set(model.state_dict()))
    if missing:
        raise ValueError(f"global arrays name unknown model keys: {missing[:3]}")
    model.load_state_dict(state, strict=False)
    params = dict(model.named_parameters())
    reference = {k: v.detach().clone() for k, v in params.items() if k in global_arrays}
    pcfg = PretrainConfig(method=cfg.run.method, acl_terms=cfg.run.acl_terms,
                          views=cfg.run.views, epochs=cfg.run.local_epochs,
                          batch_size=cfg.run.batch_size, lr=cfg.run.lr, proximal_mu=proximal_mu,
                          seed=round_seed(cfg.run.seed, server_round, site))
    try:
        result = pretrain(model, cohort, pcfg, device=pick_device(cfg.run.device),
                          reference_weights=reference if proximal_mu > 0 else None)
    except DivergenceError as exc:
        raise DivergenceError(f"round {server_round}: {exc}") from None
    full = to_numpy(model.state_dict())
    sent = select_keys(full, cfg.run.aggregate)
    bad = nonfinite_keys(sent)
    if bad:
        raise DivergenceError(f"round {server_round}: non-finite weights after local training "
                              f"in {len(bad)} array(s), e.g. {bad[0]} (lr {cfg.run.lr:g})")
    metrics: dict[str, float | int] = {
        "loss": float(result.loss),
        "num-examples": int(result.num_examples),
        "seconds": float(result.seconds),
        "samples-per-second": float(result.samples_per_second),
        "site-index": int(site),
    }
    stats = site_stats(cohort, classes or []) if cfg.run.share_site_stats else {}
    kept = {k: v for k, v in full.items() if k not in sent}
    return LocalUpdate(arrays=sent, metrics=metrics, local_arrays=kept, stats=stats)


def set_threads(n: int) -> None:
    """Limit torch's intra-op threads (clients sharing a machine)."""
    torch.set_num_threads(max(1, n))
