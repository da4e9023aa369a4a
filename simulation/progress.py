"""A progress bar over the sites' local training of each round (terminal only)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from tqdm import tqdm


class ProgressGrid(Grid):
    """``grid`` with a bar counting the sites that replied while a round trains.

    The bar appears only for rounds longer than ``delay`` seconds and is removed when the round
    ends, so the per-round log line stays the one line a round leaves behind.
    """

    def __init__(self, grid: Grid, delay: float = 2.0, poll_s: float = 0.1) -> None:
        self.grid, self.delay, self.poll_s = grid, delay, poll_s

    def set_run(self, run: Run) -> None:
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        return self.grid.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.grid.pull_messages(message_ids)

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
