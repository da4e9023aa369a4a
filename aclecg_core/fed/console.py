"""What a federated run prints: the project's own lines (prefix ``[aclecg]``) and real problems;
known third-party notices are dropped where they are logged (pure ``logging``, Flower-free)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

PREFIX = "[aclecg]"


class DropMessages(logging.Filter):
    """Drops the records whose message starts with one of ``starts``."""

    def __init__(self, *starts: str) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().lstrip().startswith(self.starts)


class ProjectLines(logging.Filter):
    """Lets through the project's lines and warnings or errors; drops other chatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.getMessage().startswith(PREFIX)


@contextmanager
def filtered(logger: logging.Logger, *filters: logging.Filter) -> Iterator[None]:
    """``filters`` on ``logger`` for the duration of the block."""
    for log_filter in filters:
        logger.addFilter(log_filter)
    try:
        yield
    finally:
        for log_filter in filters:
            logger.removeFilter(log_filter)
