"""Whether the state store can still write, for /healthz.

A full disk, a read-only or locked database leave the daemon running while every question
fails where its state is written: health checks must see it. The probe writes one small
key (with a TTL) at most every `interval` seconds and remembers the outcome; a write that
is still hanging (a lock held elsewhere) counts as a failure once it has taken `stall`
seconds, without the caller waiting for it.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from common.log import logger
from common.store.base import StateStore

NAMESPACE = "health"
KEY = "write_probe"


class WriteProbe:
    def __init__(self, store: StateStore, interval: float = 5.0, stall: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.interval = interval
        self.stall = stall
        self._clock = clock
        self._lock = threading.Lock()  # one write at a time
        self._state_lock = threading.Lock()
        self._checked: float | None = None
        self._problem: str | None = None
        self._started: float | None = None  # when the write in progress began

    def problem(self) -> str | None:
        """None while the store writes; else one line saying why it does not. May block for
        one write (call it off the event loop)."""
        now = self._clock()
        with self._state_lock:
            if self._checked is not None and now - self._checked < self.interval:
                return self._problem
        if not self._lock.acquire(blocking=False):
            with self._state_lock:
                started = self._started
                if started is not None and now - started >= self.stall:
                    return f"a write to the state store has been waiting {now - started:.0f} s"
                return self._problem
        try:
            with self._state_lock:
                self._started = now
            try:
                self.store.put(NAMESPACE, KEY, time.time(), ttl=3600)
                problem = None
            except Exception as e:  # noqa: BLE001 - any failure means the store cannot write
                problem = f"the state store cannot write: {e}"
            with self._state_lock:
                if problem != self._problem:
                    if problem:
                        logger.error(f"[health] {problem}")
                    else:
                        logger.info("[health] the state store writes again")
                self._problem = problem
                self._checked = self._clock()
                self._started = None
            return problem
        finally:
            self._lock.release()
