"""Label-fraction stratification and the fine-tuning loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
import torch

import aclecg_core.evaluation.finetune as finetune_module
from aclecg_core.data.cohort import Cohort, RecordInfo
from aclecg_core.evaluation.finetune import FinetuneConfig, finetune
from aclecg_core.evaluation.probe import label_fraction_mask, record_labels
from aclecg_core.method.model import AclEcgModel, EncoderConfig, build_model
from aclecg_core.settings import SettingsError


def _cohort(labels: Sequence[tuple[str, ...]], seed: int = 0) -> Cohort:
    rng = np.random.default_rng(seed)
    n = len(labels)
    signals = 0.3 * rng.standard_normal((n, 12, 100)).astype(np.float32)
    for i, lab in enumerate(labels):
        if "A" in lab:
            signals[i, :, 30:50] += 2.0
    records = [RecordInfo(f"r{i}", "", "t", "s", f"p{i}", None, 100.0, lab)
               for i, lab in enumerate(labels)]
    return Cohort(signals, np.full((n, 2), -1, np.int32), np.arange(n), records, 100.0, {})


def test_fraction_is_stratified_and_covers_rare_classes() -> None:
    labels = [("A",)] * 60 + [("B",)] * 30 + [("A", "B")] * 9 + [("C",)]
    cohort = _cohort(labels)
    keep = label_fraction_mask(record_labels(cohort, ["A", "B", "C"]), 0.1, seed=0)
    subset = cohort.select_records(keep)
    counts: dict[tuple[str, ...], int] = {}
    for r in subset.records:
        counts[r.labels] = counts.get(r.labels, 0) + 1
    assert counts[("A",)] == 6 and counts[("B",)] == 3 and counts[("A", "B")] == 1
    assert counts[("C",)] == 1  # the single C record is added for coverage
    assert len(subset.records) == 11
    again = label_fraction_mask(record_labels(cohort, ["A", "B", "C"]), 0.1, seed=0)
    np.testing.assert_array_equal(again, keep)
    assert label_fraction_mask(record_labels(cohort, ["A"]), 1.0, seed=0).all()
    with pytest.raises(ValueError, match="fraction"):
        label_fraction_mask(record_labels(cohort, ["A"]), 0.0)


def test_finetune_learns_an_easy_task() -> None:
    labels = [("A",), ("B",)] * 20
    train, val, test = _cohort(labels, 0), _cohort(labels[:16], 1), _cohort(labels[:16], 2)
    cfg = FinetuneConfig(epochs=4, batch_size=8, lr=3e-3, patience=2, n_bootstrap=20)
    result = finetune(build_model(EncoderConfig(size="tiny"), seed=0), train, val, test,
                      ["A", "B"], 0.5, cfg)
    assert result.n_train_records == 20
    assert 1 <= result.best_epoch <= len(result.val_history) <= 4
    assert result.best_val_auroc == max(result.val_history)
    assert result.test.macro_auroc > 0.9
    assert result.to_dict()["test"]["n_test"] == 16


def _encoder_change(model: AclEcgModel, before: dict[str, torch.Tensor]) -> float:
    return max(float((p.detach() - before[f"encoder.{n}"]).abs().max())
               for n, p in model.encoder.named_parameters())


def test_probe_epochs_freeze_the_encoder_and_defer_early_stopping() -> None:
    labels = [("A",), ("B",)] * 20
    train, val, test = _cohort(labels, 0), _cohort(labels[:16], 1), _cohort(labels[:16], 2)
    model = build_model(EncoderConfig(size="tiny"), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    switches: list[bool] = []
    switch = model.encoder.requires_grad_

    def spy(requires_grad: bool = True) -> torch.nn.Module:
        switches.append(requires_grad)
        return switch(requires_grad)

    model.encoder.requires_grad_ = spy  # type: ignore[method-assign]
    cfg = FinetuneConfig(epochs=4, batch_size=8, lr=3e-3, patience=1, probe_epochs=3,
                         n_bootstrap=0)
    result = finetune(model, train, val, test, ["A", "B"], 0.5, cfg)
    assert len(result.val_history) == 4  # patience 1 cannot stop the probe phase
    assert switches == [False, False, False, True, True]  # frozen for 3 epochs, then trained
    assert all(p.requires_grad for p in model.encoder.parameters())
    del model.encoder.requires_grad_
    with pytest.raises(SettingsError, match=r"probe_epochs \(3\) must be below epochs \(3\)"):
        FinetuneConfig(epochs=3, probe_epochs=3)
    cfg = FinetuneConfig(epochs=2, batch_size=8, lr=3e-3, patience=5, probe_epochs=1,
                         n_bootstrap=0)
    finetune(model, train, val, test, ["A", "B"], 0.5, cfg)
    assert _encoder_change(model, before) > 0.0


def test_encoder_lr_scale_slows_the_encoder() -> None:
    labels = [("A",), ("B",)] * 20
    train, val, test = _cohort(labels, 0), _cohort(labels[:16], 1), _cohort(labels[:16], 2)
    changes = []
    for scale in (1.0, 1e-3):
        model = build_model(EncoderConfig(size="tiny"), seed=0)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        cfg = FinetuneConfig(epochs=1, batch_size=8, lr=3e-3, encoder_lr_scale=scale,
                             n_bootstrap=0)
        finetune(model, train, val, test, ["A", "B"], 0.5, cfg)
        changes.append(_encoder_change(model, before))
    assert changes[1] < 0.01 * changes[0]


def test_lr_search_keeps_and_scores_the_best_validation_run() -> None:
    labels = [("A",), ("B",)] * 20
    train, val, test = _cohort(labels, 0), _cohort(labels[:16], 1), _cohort(labels[:16], 2)
    cfg = FinetuneConfig(epochs=3, batch_size=8, patience=2, n_bootstrap=0)
    model = build_model(EncoderConfig(size="tiny"), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = finetune(model, train, val, test, ["A", "B"], 0.5, cfg, lrs=(1e-7, 3e-3))
    assert set(result.val_auroc_by_lr) == {"1e-07", "0.003"}
    assert result.val_auroc_by_lr[f"{result.lr:g}"] == result.best_val_auroc
    assert result.best_val_auroc == max(result.val_auroc_by_lr.values())
    assert _encoder_change(model, before) > 0.0  # the chosen run's encoder, in place
    alone = finetune(build_model(EncoderConfig(size="tiny"), seed=0), train, val, test,
                     ["A", "B"], 0.5, replace(cfg, lr=result.lr))
    assert alone.val_auroc_by_lr == {f"{result.lr:g}": alone.best_val_auroc}
    assert alone.val_history == result.val_history
    assert alone.test.macro_auroc == result.test.macro_auroc


@pytest.mark.parametrize("augment", ["acl", "simclr"])
def test_augment_trains_on_seeded_views_and_scores_the_records(augment: str) -> None:
    labels = [("A",), ("B",)] * 20
    train, val, test = _cohort(labels, 0), _cohort(labels[:16], 1), _cohort(labels[:16], 2)
    original = train.signals.copy()
    cfg = FinetuneConfig(epochs=2, batch_size=8, lr=3e-3, patience=5, n_bootstrap=0,
                         augment=augment)
    runs = []
    for _ in range(2):
        model = build_model(EncoderConfig(size="tiny"), seed=0)
        seen: list[torch.Tensor] = []
        forward = model.encoder.forward

        def spy(x: torch.Tensor, forward=forward, seen=seen):  # type: ignore[no-untyped-def]
            seen.append(x.detach().clone())
            return forward(x)

        model.encoder.forward = spy  # type: ignore[method-assign]
        runs.append((finetune(model, train, val, test, ["A", "B"], 0.5, cfg), seen))
    (first, inputs), (again, inputs_again) = runs
    training = [x for x in inputs if len(x) <= 8]  # batches of 8; scoring passes all 16 records
    assert training and all(x.shape[1:] == (12, 100) for x in training)
    originals = {tuple(np.round(r, 5)) for r in train.signals.reshape(40, -1)}
    batches = [x.reshape(len(x), -1).numpy() for x in training]
    assert any(tuple(np.round(r, 5)) not in originals for b in batches for r in b)
    scored = [x for x in inputs if len(x) == 16]
    assert scored and all(any(torch.equal(x, torch.from_numpy(c.signals)) for c in (val, test))
                          for x in scored)  # validation and test records are never augmented
    assert np.array_equal(train.signals, original)
    assert first.val_history == again.val_history
    assert all(torch.equal(a, b) for a, b in zip(inputs, inputs_again, strict=True))
    with pytest.raises(SettingsError, match="augment"):
        FinetuneConfig(augment="mixup")


def test_distill_teaches_a_student_on_every_training_record(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The teacher fits the labeled fraction; the student, from the same initial weights,
    fits every training window: the labeled records' labels, the others' teacher
    probabilities; the better of the two on validation is kept."""
    labels = [("A",), ("B",)] * 20
    train, val, test = _cohort(labels, 0), _cohort(labels[:16], 1), _cohort(labels[:16], 2)
    calls: list[tuple[int, np.ndarray | None, dict[str, torch.Tensor]]] = []
    real_fit = finetune_module._fit

    def spy(model, subset, val, classes, cfg, device, targets=None):  # type: ignore[no-untyped-def]
        calls.append((len(subset), targets, {k: v.clone() for k, v in
                                              model.encoder.state_dict().items()}))
        return real_fit(model, subset, val, classes, cfg, device, targets)

    monkeypatch.setattr(finetune_module, "_fit", spy)
    model = build_model(EncoderConfig(size="tiny"), seed=0)
    cfg = FinetuneConfig(epochs=3, batch_size=8, lr=3e-3, patience=2, n_bootstrap=0,
                         distill=True)
    result = finetune(model, train, val, test, ["A", "B"], 0.5, cfg)
    (teacher_windows, no_targets, teacher_start), (student_windows, targets, student_start) = calls
    assert no_targets is None and teacher_windows == 20 and student_windows == len(train) == 40
    for key, value in teacher_start.items():  # both start from the pretrained weights
        assert torch.equal(student_start[key], value), key
    assert targets is not None and targets.shape == (40, 2)
    labeled = label_fraction_mask(record_labels(train, ["A", "B"]), 0.5, seed=0)
    np.testing.assert_array_equal(targets[labeled], train.label_matrix(["A", "B"])[labeled])
    soft = targets[~labeled]
    assert ((soft > 0) & (soft < 1)).all()  # probabilities, not labels
    teacher, student = result.teacher_val_auroc, result.student_val_auroc
    assert teacher is not None and student is not None
    assert result.best_val_auroc == max(teacher, student)
    assert result.distilled == (student > teacher)

    calls.clear()  # all labels: nothing to distil
    full = finetune(build_model(EncoderConfig(size="tiny"), seed=0), train, val, test,
                    ["A", "B"], 1.0, cfg)
    assert len(calls) == 1 and not full.distilled
    assert full.teacher_val_auroc is None and full.student_val_auroc is None
