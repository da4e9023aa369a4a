"""What a site's reply may reveal besides the model arrays (the least a site discloses).

Always: the scalars the training needs, :data:`TRAINING_METRICS` (weighting, ordering,
monitoring), and the site's name (a simulated site's hospital, a deployed site's node config
``site``: a name the site chose, nothing about its patients). Only when the run sets
``share-site-stats``: the site's record count, sampling rate and per-class record counts, each
count below :data:`SMALL_COUNT` reported as ``"<5"``.
"""

from __future__ import annotations

from collections.abc import Mapping

from aclecg_core.data.cohort import Cohort
from aclecg_core.fed.protocol import REPORT_KEYS

SMALL_COUNT = 5
SUPPRESSED = f"<{SMALL_COUNT}"
LABEL_PREFIX = "label-count/"

# loss: monitoring; num-examples: FedAvg weight (= local windows); site-index: site name and
# fixed aggregation order; seconds, samples-per-second: round timing (stragglers).
TRAINING_METRICS = REPORT_KEYS

StatValue = int | float | str


def suppress_small(count: int) -> int | str:
    """``count`` itself, or ``"<5"`` when it is positive but below :data:`SMALL_COUNT`."""
    return SUPPRESSED if 0 < count < SMALL_COUNT else count


def label_counts(cohort: Cohort, classes: list[str]) -> dict[str, int]:
    """Records per class of ``classes`` (a record counts once per class it carries)."""
    counts = dict.fromkeys(classes, 0)
    for record in cohort.records:
        for label in set(record.labels) & counts.keys():
            counts[label] += 1
    return counts


def site_stats(cohort: Cohort, classes: list[str]) -> dict[str, StatValue]:
    """The opt-in site summary: ``records``, ``fs`` and ``label-count/<class>`` (small counts
    suppressed). Nothing per record."""
    stats: dict[str, StatValue] = {"records": len(cohort.records), "fs": float(cohort.fs)}
    for label, n in label_counts(cohort, classes).items():
        stats[LABEL_PREFIX + label] = suppress_small(n)
    return stats


def read_label_counts(stats: Mapping[str, StatValue]) -> dict[str, int | str]:
    """The ``label-count/<class>`` entries of a site summary, keyed by class."""
    out: dict[str, int | str] = {}
    for key, value in stats.items():
        if key.startswith(LABEL_PREFIX):
            out[key[len(LABEL_PREFIX):]] = value if isinstance(value, str) else int(value)
    return out
