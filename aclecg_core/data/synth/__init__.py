"""The built-in synthetic multi-site 12-lead ECG cohort (physics-based: dipole + lead field)."""

from aclecg_core.data.synth.conditions import SYNTHETIC_CLASSES
from aclecg_core.data.synth.generate import SyntheticRecord, generate_record, generate_site
from aclecg_core.data.synth.sites import SiteSpec, synthetic_site_spec
from aclecg_core.data.synth.writer import SynthSummary, write_synthetic_cohort

__all__ = [
    "SYNTHETIC_CLASSES",
    "SiteSpec",
    "SynthSummary",
    "SyntheticRecord",
    "generate_record",
    "generate_site",
    "synthetic_site_spec",
    "write_synthetic_cohort",
]
