"""One site's local training step of a federated round (Flower-free)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from aclecg_core.data.cohort import Cohort
from aclecg_core.fed.arrays import round_seed, select_keys, to_numpy, to_torch
from aclecg_core.fed.config import FederationConfig
from aclecg_core.fed.disclosure import StatValue, site_stats
from aclecg_core.fed.protocol import TrainInstructions, TrainReport
from aclecg_core.fed.sites import count_classes
from aclecg_core.fed.updates import nonfinite_keys
from aclecg_core.method.model import AclEcgModel, EncoderConfig, build_model
from aclecg_core.method.pretrain import DivergenceError, PretrainConfig, pick_device, pretrain
from aclecg_core.settings import from_attributes


def model_for(encoder: str, seed: int) -> AclEcgModel:
    """The model every participant starts from (seeded initialisation of preset ``encoder``)."""
    return build_model(EncoderConfig(size=encoder), seed=seed)


def initial_model(cfg: FederationConfig) -> AclEcgModel:
    """The initial model of a federated run."""
    return model_for(cfg.run.encoder, cfg.run.seed)


def train_instructions(cfg: FederationConfig, round_offset: int = 0,
                       server_round: int = 0) -> TrainInstructions:
    """What the server tells the sites each round (Flower adds ``server-round``)."""
    r = cfg.run
    return from_attributes(
        TrainInstructions, r, preprocessing=dict(cfg.preprocessing),
        proximal_mu=r.proximal_mu if r.strategy == "fedprox" else 0.0,
        stats_classes=count_classes(cfg) if r.share_site_stats else [],
        round_offset=round_offset, server_round=server_round)


@dataclass
class LocalUpdate:
    """What a site sends back: the aggregated arrays, the training scalars and, only when the
    run asks, its summary ``stats``; ``local_arrays`` (not aggregated) and, with
    ``keep-optimizer-state``, ``optimizer_state`` (its AdamW moments and step counts by
    parameter name, else empty) stay at the site."""

    arrays: dict[str, np.ndarray]
    report: TrainReport
    local_arrays: dict[str, np.ndarray]
    stats: dict[str, StatValue]
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)


def train_site(instructions: TrainInstructions, cohort: Cohort,
               global_arrays: dict[str, np.ndarray], site: int, device: str = "auto",
               local_arrays: dict[str, np.ndarray] | None = None,
               optimizer_state: dict[str, np.ndarray] | None = None) -> LocalUpdate:
    """Local pretraining of the global model on one site's cohort, as ``instructions`` say.

    Raises :class:`DivergenceError` naming the round and the step when the loss, or naming the
    arrays when the weights, stop being finite: the site then sends no weights.

    Args:
        global_arrays: the aggregated keys (``aggregate`` prefixes) of the global model.
        site: the site's number (seeds its training with (seed, round, site)).
        device: the site's own choice (``auto``, ``cpu``, ``cuda[:N]``).
        local_arrays: the site's own non-aggregated arrays from its previous round, if any.
        optimizer_state: the site's optimizer state after its previous round, if any; used,
            and the new one returned, only when the instructions say ``keep_optimizer_state``
            (else AdamW starts fresh every round).
    """
    ins = instructions
    model = model_for(ins.encoder, ins.seed)
    state = {**to_torch(local_arrays or {}), **to_torch(global_arrays)}
    missing = sorted(set(global_arrays) - set(model.state_dict()))
    if missing:
        raise ValueError(f"global arrays name unknown model keys: {missing[:3]}")
    model.load_state_dict(state, strict=False)
    params = dict(model.named_parameters())
    reference = {k: v.detach().clone() for k, v in params.items() if k in global_arrays}
    pcfg = from_attributes(PretrainConfig, ins, epochs=ins.local_epochs,
                           seed=round_seed(ins.seed, ins.round, site))
    try:
        result = pretrain(model, cohort, pcfg, device=pick_device(device),
                          reference_weights=reference if ins.proximal_mu > 0 else None,
                          optimizer_state=to_torch(optimizer_state or {})
                          if ins.keep_optimizer_state else None)
    except DivergenceError as exc:
        raise DivergenceError(f"round {ins.round}: {exc}") from None
    full = to_numpy(model.state_dict())
    sent = select_keys(full, ins.aggregate)
    bad = nonfinite_keys(sent)
    if bad:
        raise DivergenceError(f"round {ins.round}: non-finite weights after local training "
                              f"in {len(bad)} array(s), e.g. {bad[0]} (lr {ins.lr:g})")
    report = TrainReport(loss=float(result.loss), num_examples=int(result.num_examples),
                         seconds=float(result.seconds),
                         samples_per_second=float(result.samples_per_second), site_index=site)
    stats = site_stats(cohort, ins.stats_classes) if ins.share_site_stats else {}
    kept = {k: v for k, v in full.items() if k not in sent}
    moments = to_numpy(result.optimizer_state) if ins.keep_optimizer_state else {}
    return LocalUpdate(arrays=sent, report=report, local_arrays=kept, stats=stats,
                       optimizer_state=moments)


def set_threads(n: int) -> None:
    """Limit torch's intra-op threads (clients sharing a machine)."""
    torch.set_num_threads(max(1, n))
