"""Record-level features of a cohort, written for use outside this package.

Formats (by the output's suffix): ``.npz`` (numpy; strings as fixed-width unicode arrays, so
``np.load(path)`` needs no pickle) or ``.csv`` (pandas / any spreadsheet: one row per record).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from aclecg_core.data.cohort import Cohort
from aclecg_core.evaluation.probe import aggregate_by_record
from aclecg_core.method.model import AclEcgModel

FORMATS = (".npz", ".csv")


@torch.no_grad()
def record_embeddings(model: AclEcgModel, cohort: Cohort, device: str | torch.device = "cpu",
                      batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """``model.embed`` of every window, averaged per record: (n_records, F) float32."""
    model.to(device).eval()
    starts = range(0, len(cohort), batch_size)
    out = [np.zeros((0, model.embed_dim), dtype=np.float32)]
    for begin in tqdm(starts, desc="embed", unit="batch", disable=not progress or len(starts) < 2):
        x = torch.from_numpy(np.ascontiguousarray(cohort.signals[begin : begin + batch_size]))
        out.append(model.embed(x.to(device, torch.float32)).float().cpu().numpy())
    return aggregate_by_record(np.concatenate(out), cohort.window_record, len(cohort.records))


def label_vocabulary(cohort: Cohort) -> list[str]:
    """Every label of the cohort's records, sorted."""
    return sorted({label for r in cohort.records for label in r.labels})


def write_embeddings(path: Path, features: np.ndarray, cohort: Cohort,
                     info: dict[str, Any]) -> Path:
    """Write ``features`` (one row per record of ``cohort``) with each record's id, site,
    patient, source path, window count and labels, plus ``info`` (JSON) about the encoder.

    ``.npz`` keys: ``features`` (n, F) float32, ``record_id``, ``site``, ``patient_id``,
    ``path``, ``labels`` (``;``-joined, empty when unknown) as unicode arrays, ``n_windows``,
    ``classes`` (C,) and ``label_matrix`` (n, C) uint8 multi-hot, ``info`` (a JSON string).
    ``.csv`` columns: ``record_id, site, patient_id, path, n_windows, labels, f0 .. f{F-1}``.
    """
    path = Path(path)
    if path.suffix not in FORMATS:
        raise ValueError(f"--out {path}: use a {' or '.join(FORMATS)} file name")
    if len(features) != len(cohort.records):
        raise ValueError(f"{len(features)} feature rows for {len(cohort.records)} records")
    path.parent.mkdir(parents=True, exist_ok=True)
    records = cohort.records
    columns = {
        "record_id": [r.record_id for r in records],
        "site": [r.site for r in records],
        "patient_id": [r.patient_id for r in records],
        "path": [r.path for r in records],
        "labels": [";".join(r.labels) for r in records],
    }
    n_windows = np.bincount(cohort.window_record, minlength=len(records)).astype(np.int64)
    if path.suffix == ".csv":
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*columns, "n_windows", *(f"f{i}" for i in range(features.shape[1]))])
            for i in range(len(records)):
                writer.writerow([*(values[i] for values in columns.values()), n_windows[i],
                                 *(f"{v:.7g}" for v in features[i])])
        return path
    classes = label_vocabulary(cohort)
    arrays: dict[str, np.ndarray] = {k: np.array(v, dtype=str) for k, v in columns.items()}
    arrays.update(features=features.astype(np.float32), n_windows=n_windows,
                  classes=np.array(classes, dtype=str),
                  label_matrix=cohort.record_label_matrix(classes),
                  info=np.array(json.dumps(info, sort_keys=True)))
    with path.open("wb") as f:
        np.savez_compressed(f, allow_pickle=False, **arrays)
    return path
