"""A ``queue.Queue`` that can also put an item at the front.

Used for session queues: ``#`` commands jump ahead of waiting questions.
Plugins import it too, so the name and methods are the original's.
"""
from __future__ import annotations

import time
from queue import Full, Queue
from typing import Any


class Dequeue(Queue):
    def putleft(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put ``item`` at the front; same blocking rules as ``Queue.put``."""
        with self.not_full:
            if self.maxsize > 0:
                if not block:
                    if self._qsize() >= self.maxsize:
                        raise Full
                elif timeout is None:
                    while self._qsize() >= self.maxsize:
                        self.not_full.wait()
                elif timeout < 0:
                    raise ValueError("'timeout' must be a non-negative number")
                else:
                    # monotonic, like Queue.put, so a clock change cannot stretch the wait
                    deadline = time.monotonic() + timeout
                    while self._qsize() >= self.maxsize:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0.0:
                            raise Full
                        self.not_full.wait(remaining)
            self.queue.appendleft(item)
            self.unfinished_tasks += 1
            self.not_empty.notify()

    def putleft_nowait(self, item: Any) -> None:
        self.putleft(item, block=False)
