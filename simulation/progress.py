"""A progress bar over the sites' local training of each round (terminal only)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid
from tqdm import tqdm

from server.grids import ForwardingGrid


class ProgressGrid(ForwardingGrid):
    """``grid`` with a bar counting the sites that replied while a round trains.

    The bar appears only for rounds longer than ``delay`` seconds and is removed when the round
    ends, so the per-round log line stays the one line a round leaves behind.
    """

    def __init__(self, grid: Grid, delay: float = 2.0, poll_s: float = 0.1) -> None:
        super().__init__(grid)
        self.delay, self.poll_s = delay, poll_s

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        pending = set(self.push_messages(messages))
        end = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        with tqdm(total=len(pending), desc="local training", unit="site", delay=self.delay,
                  leave=False, dynamic_ncols=True) as bar:
            while pending and (end is None or time.monotonic() < end):
                new = list(self.pull_messages(pending))
                pending -= {m.metadata.reply_to_message_id for m in new}
                replies += new
                bar.update(len(new))
                if pending:
                    time.sleep(self.poll_s)
        return replies
