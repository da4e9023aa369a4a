"""Anatomical lead regions: which canonical leads view which wall of the heart."""

from __future__ import annotations

from dataclasses import dataclass

from aclecg_core.data.leads import CANONICAL_LEADS, LEAD_INDEX


@dataclass(frozen=True)
class RegionMap:
    """Named groups of canonical lead indices (regions may differ in size, not overlap).

    Attributes:
        names: region names, e.g. ``("inferior", "septal", "anterior", "lateral")``.
        leads: for each region, the indices into :data:`CANONICAL_LEADS` of its leads.
    """

    names: tuple[str, ...]
    leads: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("a region map needs at least one region")
        if len(self.names) != len(self.leads):
            raise ValueError(f"{len(self.names)} region names but {len(self.leads)} lead groups")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate region names in {self.names}")
        seen: set[int] = set()
        for name, group in zip(self.names, self.leads, strict=True):
            if not group:
                raise ValueError(f"region {name!r} has no leads")
            for lead in group:
                if not 0 <= lead < len(CANONICAL_LEADS):
                    raise ValueError(f"region {name!r}: lead index {lead} is not in 0..11")
                if lead in seen:
                    lead_name = CANONICAL_LEADS[lead]
                    raise ValueError(f"region {name!r}: lead {lead_name} is in two regions")
                seen.add(lead)

    def __len__(self) -> int:
        return len(self.names)

    def lead_names(self) -> dict[str, tuple[str, ...]]:
        """Region name -> its canonical lead names."""
        return {
            name: tuple(CANONICAL_LEADS[i] for i in group)
            for name, group in zip(self.names, self.leads, strict=True)
        }


def _by_name(groups: dict[str, tuple[str, ...]]) -> RegionMap:
    return RegionMap(
        names=tuple(groups),
        leads=tuple(tuple(LEAD_INDEX[lead] for lead in leads) for leads in groups.values()),
    )


# The four regions of the ACL-ECG paper: two leads each.
PAPER_REGIONS = _by_name({
    "inferior": ("II", "III"),
    "septal": ("V1", "V2"),
    "anterior": ("V3", "V4"),
    "lateral": ("V5", "V6"),
})

# The usual clinical grouping (aVR left out): regions of unequal size.
CLINICAL_REGIONS = _by_name({
    "inferior": ("II", "III", "aVF"),
    "lateral": ("I", "aVL", "V5", "V6"),
    "septal": ("V1", "V2"),
    "anterior": ("V3", "V4"),
})

_REGION_MAPS = {"paper": PAPER_REGIONS, "clinical": CLINICAL_REGIONS}
REGION_MAP_NAMES = tuple(_REGION_MAPS)


def region_map(name: str) -> RegionMap:
    """The region map called ``name``: ``"paper"`` or ``"clinical"``."""
    try:
        return _REGION_MAPS[name]
    except KeyError:
        raise ValueError(
            f"unknown region map {name!r}; choose one of {sorted(_REGION_MAPS)}"
        ) from None
