"""Supervised fine-tuning of the encoder with a linear head on a fraction of the labels.

The supervised-from-scratch baseline is :func:`finetune` on a freshly built model.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from torch import Tensor, nn

from aclecg_core.data.cohort import Cohort
from aclecg_core.evaluation.metrics import EvalResult, evaluable, evaluate
from aclecg_core.evaluation.probe import aggregate_by_record, label_fraction_mask, record_labels
from aclecg_core.method.augment import VIEW_KINDS, ViewPipeline
from aclecg_core.method.device import AMP_MODES, autocast, pick_device
from aclecg_core.method.model import AclEcgModel
from aclecg_core.settings import Settings, from_dict, one_of

LR_GRID = (3e-4, 1e-3, 3e-3)  # the learning rates benchmarks/tune_finetune.py tried on fold 9
FINETUNE_AUGMENTS = ("none", *VIEW_KINDS)


@dataclass(frozen=True)
class FinetuneConfig(Settings):
    """Fine-tuning hyper-parameters; training stops after ``patience`` epochs without a better
    validation macro AUROC and restores the best epoch.

    ``encoder_lr_scale`` multiplies the encoder's learning rate (the head keeps ``lr``);
    ``probe_epochs`` > 0 trains the head alone (encoder frozen) for that many epochs before the
    whole model (linear-probe-then-fine-tune), with no early stop before they end.
    ``augment``: each training batch is replaced by one random view of it (``acl``: the
    physiology-aware views of pretraining; ``simclr``: SimCLR's), or used as is (``none``).
    ``distill`` (fractions below 1): self-training as in SimCLRv2's last step; the fine-tuned
    model (the teacher) labels the training records left out of the fraction with its
    probabilities, and a student fine-tuned afresh from the same initial weights learns from
    the labeled records' labels and those soft labels; the validation split keeps the better
    of teacher and student."""

    WHAT = "finetune"

    epochs: PositiveInt = 40  # a cap: early stopping on the validation part decides
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 1e-3
    encoder_lr_scale: PositiveFloat = 1.0
    probe_epochs: NonNegativeInt = 0
    augment: Annotated[str, one_of(FINETUNE_AUGMENTS)] = "none"
    distill: bool = False
    weight_decay: NonNegativeFloat = 1e-4
    patience: PositiveInt = 5
    seed: int = 0
    amp: Annotated[str, one_of(AMP_MODES)] = "auto"
    n_bootstrap: int = 200

    def problems(self) -> list[str]:
        if self.probe_epochs >= self.epochs:
            return [f"probe_epochs ({self.probe_epochs}) must be below epochs ({self.epochs}): "
                    "the encoder would never be fine-tuned"]
        return []

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        return from_dict(cls, data)


@dataclass
class FinetuneResult:
    """Test metrics at the best validation epoch (of the chosen learning rate), and the
    training history."""

    fraction: float
    n_train_records: int
    best_epoch: int
    best_val_auroc: float
    test: EvalResult
    lr: float
    val_auroc_by_lr: dict[str, float] = field(default_factory=dict)  # learning rates tried
    val_history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    teacher_val_auroc: float | None = None  # distill: the teacher's and the student's
    student_val_auroc: float | None = None  # validation scores; the better one is kept
    distilled: bool = False  # distill: the student was kept

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Classifier(nn.Module):
    def __init__(self, model: AclEcgModel, n_classes: int) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.head = nn.Linear(model.embed_dim, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder.pool_global(self.encoder(x)))


@torch.no_grad()
def _record_scores(clf: _Classifier, cohort: Cohort, device: torch.device, amp: str,
                   batch_size: int = 256) -> np.ndarray:
    clf.eval()
    out = []
    for begin in range(0, len(cohort), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(cohort.signals[begin : begin + batch_size]))
        with autocast(device, amp):
            logits = clf(x.to(device))
        out.append(torch.sigmoid(logits.float()).cpu().numpy())
    clf.train()
    return aggregate_by_record(np.concatenate(out), cohort.window_record, len(cohort.records))


@dataclass
class _Fit:
    classifier: _Classifier
    best_epoch: int
    best_auroc: float
    history: list[float]


def _fit(model: AclEcgModel, subset: Cohort, val: Cohort, classes: list[str],
         cfg: FinetuneConfig, device: torch.device, targets: np.ndarray | None = None) -> _Fit:
    """Train ``model.encoder`` plus a new linear head on ``subset`` (BCE against its labels, or
    ``targets``: (windows, classes) in [0, 1]), early-stopped on the record-level validation
    macro AUROC; the best epoch's weights are restored."""
    y_val = record_labels(val, classes)
    val_columns = np.flatnonzero(evaluable(y_val))
    if len(val_columns) == 0:
        raise ValueError("no class has both positives and negatives in the validation set")
    generator = torch.Generator().manual_seed(cfg.seed)
    aug_generator = torch.Generator().manual_seed(cfg.seed + 1)
    views = None if cfg.augment == "none" else ViewPipeline(method=cfg.augment)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        clf = _Classifier(model, len(classes)).to(device)
    groups: list[dict[str, Any]] = [
        {"params": clf.encoder.parameters(), "lr": cfg.lr * cfg.encoder_lr_scale},
        {"params": clf.head.parameters()}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    signals = torch.from_numpy(np.ascontiguousarray(subset.signals, dtype=np.float32))
    rpeaks = torch.from_numpy(np.ascontiguousarray(subset.rpeaks)).long()
    labels = torch.from_numpy((subset.label_matrix(classes) if targets is None else targets)
                              .astype(np.float32))
    best_auroc, best_epoch, best_state = -1.0, 0, copy.deepcopy(clf.state_dict())
    history: list[float] = []
    for epoch in range(1, cfg.epochs + 1):
        clf.train()
        clf.encoder.requires_grad_(epoch > cfg.probe_epochs)  # no gradient: AdamW skips it
        order = torch.randperm(len(subset), generator=generator)
        for begin in range(0, len(order), cfg.batch_size):
            idx = order[begin : begin + cfg.batch_size]
            x = signals[idx]
            if views is not None:
                x = views.view(x, rpeaks[idx], subset.fs, aug_generator)
            with autocast(device, cfg.amp):
                logits = clf(x.to(device))
            loss = loss_fn(logits.float(), labels[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scores = _record_scores(clf, val, device, cfg.amp)
        auroc = evaluate(y_val[:, val_columns], scores[:, val_columns],
                         [classes[c] for c in val_columns], n_bootstrap=0).macro_auroc
        history.append(auroc)
        if auroc > best_auroc:
            best_auroc, best_epoch = auroc, epoch
            best_state = copy.deepcopy(clf.state_dict())
        elif epoch - max(best_epoch, cfg.probe_epochs) >= cfg.patience:
            break
    clf.load_state_dict(best_state)
    clf.encoder.requires_grad_(True)
    return _Fit(clf, best_epoch, best_auroc, history)


def finetune(model: AclEcgModel, train: Cohort, val: Cohort, test: Cohort, classes: list[str],
             fraction: float, cfg: FinetuneConfig, device: str | torch.device = "cpu",
             lrs: Sequence[float] = ()) -> FinetuneResult:
    """Fine-tune ``model.encoder`` (in place) plus a linear head with BCE on ``fraction`` of
    ``train``; early stopping on the record-level validation macro AUROC; record-level test
    metrics (mean window probabilities per record).

    ``lrs`` (e.g. :data:`LR_GRID`): fine-tune from the same weights once per learning rate
    instead of ``cfg.lr`` and keep the one with the best validation macro AUROC; only it is
    scored on ``test``."""
    device = pick_device(device) if isinstance(device, str) else device
    start = time.perf_counter()
    labeled = label_fraction_mask(record_labels(train, classes), fraction, cfg.seed)
    subset = train if labeled.all() else train.select_records(labeled)
    distill = cfg.distill and not labeled.all()  # teachers train copies, the student ``model``
    best: tuple[float, _Fit] | None = None
    by_lr: dict[str, float] = {}
    for lr in lrs or (cfg.lr,):
        fit = _fit(copy.deepcopy(model) if lrs or distill else model, subset, val, classes,
                   replace(cfg, lr=lr), device)
        by_lr[f"{lr:g}"] = fit.best_auroc
        if best is None or fit.best_auroc > best[1].best_auroc:
            best = (lr, fit)
    assert best is not None
    lr, fit = best
    teacher: _Fit | None = None
    student: _Fit | None = None
    if distill:
        targets = _soft_labels(fit.classifier, train, labeled, classes, device, cfg.amp)
        teacher = fit
        student = _fit(model, train, val, classes, replace(cfg, lr=lr), device, targets)
        fit = student if student.best_auroc > teacher.best_auroc else teacher
    if lrs or distill:
        model.encoder.load_state_dict(fit.classifier.encoder.state_dict())
    test_scores = _record_scores(fit.classifier, test, device, cfg.amp)
    metrics = evaluate(record_labels(test, classes), test_scores, classes, seed=cfg.seed,
                       n_bootstrap=cfg.n_bootstrap)
    return FinetuneResult(
        fraction=fraction,
        n_train_records=len(subset.records),
        best_epoch=fit.best_epoch,
        best_val_auroc=fit.best_auroc,
        test=metrics,
        lr=lr,
        val_auroc_by_lr=by_lr,
        val_history=fit.history,
        seconds=time.perf_counter() - start,
        teacher_val_auroc=None if teacher is None else teacher.best_auroc,
        student_val_auroc=None if student is None else student.best_auroc,
        distilled=student is not None and fit is student,
    )


def _soft_labels(teacher: _Classifier, train: Cohort, labeled: np.ndarray, classes: list[str],
                 device: torch.device, amp: str) -> np.ndarray:
    """(windows, classes) targets of ``train``: a labeled record's labels, else the teacher's
    record-level probabilities (mean over the record's windows)."""
    scores = _record_scores(teacher, train, device, amp)
    records = np.where(labeled[:, None], train.record_label_matrix(classes), scores)
    return np.asarray(records[train.window_record], dtype=np.float32)
