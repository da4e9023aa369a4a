"""Checks of a site's reply before it is aggregated (Flower-free).

A reply is refused when its arrays do not fit the model (keys, shapes, dtypes), hold a
non-finite value, or move the global model by more than ``max-update-ratio`` times its own
size, or when its training scalars are missing or not finite. Each check returns the reason as
text (None: accepted), which the server records as the site's failure for that round.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from aclecg_core.fed.disclosure import TRAINING_METRICS

_SHOWN = 3  # names listed in a reason before "..."


def _names(keys: list[str]) -> str:
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def nonfinite_keys(arrays: Mapping[str, np.ndarray]) -> list[str]:
    """The keys (sorted) of the arrays holding NaN or ±inf."""
    return sorted(k for k, v in arrays.items()
                  if np.issubdtype(v.dtype, np.inexact) and not np.isfinite(v).all())


def update_ratio(update: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> float:
    """``‖update − reference‖ / ‖reference‖`` over all arrays of ``reference`` (L2, float64);
    ``inf`` when the reference is all zeros and the update is not."""
    diff = ref = 0.0
    for key, value in reference.items():
        base = np.asarray(value, dtype=np.float64)
        diff += float(np.sum(np.square(np.asarray(update[key], dtype=np.float64) - base)))
        ref += float(np.sum(np.square(base)))
    if diff == 0:
        return 0.0
    return math.sqrt(diff / ref) if ref > 0 else math.inf


def check_arrays(arrays: Mapping[str, np.ndarray], template: Mapping[str, np.ndarray],
                 reference: Mapping[str, np.ndarray] | None = None,
                 max_ratio: float = math.inf, same_dtypes: bool = True) -> str | None:
    """Why ``arrays`` cannot be aggregated into a model shaped like ``template``, or None.

    Args:
        template: the expected keys, shapes and (``same_dtypes``) dtypes.
        reference: the global arrays the site trained from (None: no size check).
        max_ratio: the largest accepted :func:`update_ratio` against ``reference``.
        same_dtypes: False where replies legitimately change dtypes (secure aggregation's
            dequantised aggregate).
    """
    missing = sorted(set(template) - set(arrays))
    extra = sorted(set(arrays) - set(template))
    if missing or extra:
        parts = ([f"missing arrays {_names(missing)}"] if missing else []) + \
            ([f"unexpected arrays {_names(extra)}"] if extra else [])
        return "; ".join(parts)
    for key, expected in template.items():
        value = arrays[key]
        if value.shape != expected.shape:
            return f"{key} has shape {tuple(value.shape)}, the model's is {tuple(expected.shape)}"
        if not np.issubdtype(value.dtype, np.number) or \
                (same_dtypes and value.dtype != expected.dtype):
            return f"{key} has dtype {value.dtype}, the model's is {expected.dtype}"
    bad = nonfinite_keys(arrays)
    if bad:
        return f"non-finite values in {_names(bad)}"
    if reference is not None:
        ratio = update_ratio(arrays, reference)
        if ratio > max_ratio:
            return (f"update {ratio:.3g} × the size of the global model (max-update-ratio "
                    f"{max_ratio:g})")
    return None


def check_metrics(metrics: Mapping[str, object]) -> str | None:
    """Why a reply's training scalars cannot be used (a missing, unexpected or non-finite one,
    or a ``num-examples`` that is not positive), or None."""
    missing = [k for k in TRAINING_METRICS if k not in metrics]
    if missing:
        return f"metrics lack {_names(missing)}"
    extra = sorted(set(metrics) - set(TRAINING_METRICS))
    if extra:
        return f"unexpected metrics {_names(extra)}"
    for key in TRAINING_METRICS:
        value = metrics[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not math.isfinite(value):
            return f"metric {key} is {value!r}, not a finite number"
        if key == "num-examples" and value <= 0:
            return f"metric num-examples is {value!r}, not positive"
    return None
