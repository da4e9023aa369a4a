"""What a federated run prints: the project's own lines (prefix ``[aclecg]``) and real problems;
known third-party notices are dropped where they are logged; colour only on a terminal (pure
``logging``, Flower-free)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

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


def is_terminal(stream: IO[Any] | None) -> bool:
    """True when ``stream`` is an open terminal."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or closed
        return False


class ColourOnTerminals(logging.Filter):
    """On a handler with a ``colored`` switch (Flower's console handler colours every line,
    whatever its stream): colour a line only while the handler's stream is a terminal, so
    files, pipes and uploaded run logs get plain text."""

    def __init__(self, handler: logging.StreamHandler[Any]) -> None:
        super().__init__()
        self.handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        self.handler.colored = is_terminal(self.handler.stream)  # type: ignore[attr-defined]
        return True


def colour_only_on_terminals(logger: logging.Logger) -> None:
    """Put :class:`ColourOnTerminals` on each handler of ``logger`` with a ``colored`` switch
    (once; the handler keeps it, wherever its stream is later pointed)."""
    for handler in logger.handlers:
        if (isinstance(handler, logging.StreamHandler) and hasattr(handler, "colored")
                and not any(isinstance(f, ColourOnTerminals) for f in handler.filters)):
            handler.addFilter(ColourOnTerminals(handler))
