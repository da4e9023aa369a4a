"""The report's document model: sections of text, tables, figures and headline tiles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    right: set[int] = field(default_factory=set)  # right-aligned (numeric) column indices
    footer: list[str] | None = None  # a totals row


@dataclass
class Image:
    path: Path
    caption: str


@dataclass
class Tiles:
    """Headline numbers: (label, value, detail)."""

    items: list[tuple[str, str, str]]


@dataclass
class Link:
    """A paragraph that starts with a link to a file of the run folder (relative ``href``)."""

    label: str
    href: str
    text: str


@dataclass
class Section:
    title: str
    blocks: Sequence[str | Table | Image | Tiles | Link]
