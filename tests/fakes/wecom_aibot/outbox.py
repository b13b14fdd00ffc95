"""Everything the server sends on one socket goes through one Outbox: a sender thread sends items
when they fall due (acks after `ack_delay`, pushes at once), so the reader never blocks on a slow
client and acks of one req_id leave in the order their requests arrived."""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Callable, Optional

from websockets.exceptions import ConnectionClosed

Item = tuple  # (due, seq, text, on_sent)


class Outbox:
    def __init__(self, ws, name: str) -> None:
        self._ws = ws
        self._heap: list[Item] = []
        self._seq = itertools.count()  # ties on `due` keep arrival order
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def put(self, text: str, delay: float = 0.0, on_sent: Optional[Callable[[], None]] = None) -> None:
        with self._cond:
            closed = self._closed
            if not closed:
                heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), text, on_sent))
                self._cond.notify_all()
        if closed and on_sent:
            on_sent()  # outside our lock: callbacks take the simulator's lock

    def close(self, flush: Optional[str]) -> None:
        """Stop sending. flush="due" sends what is already due (an ack the server had computed
        before the drop), "all" sends everything queued, None discards it."""
        with self._cond:
            self._closed = True
            while self._busy:
                self._cond.wait()
            now = time.monotonic()
            items = sorted(self._heap)
            self._heap.clear()
            self._cond.notify_all()
        for item in items:
            if flush == "all" or (flush == "due" and item[0] <= now):
                self._send(item)
            elif item[3]:
                item[3]()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        item = heapq.heappop(self._heap)
                        self._busy = True
                        break
                    self._cond.wait(None if not self._heap else max(0.0, self._heap[0][0] - time.monotonic()))
            try:
                self._send(item)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _send(self, item: Item) -> None:
        try:
            self._ws.send(item[2])
        except (ConnectionClosed, OSError, RuntimeError):
            pass  # the socket is gone; the reader records why
        finally:
            if item[3]:
                item[3]()
