"""Counting failed attempts (wrong passwords) per key in a sliding window, in bounded memory.

Keys are whatever identifies the guesser: a user id, a client address. The table holds
at most `max_keys` keys; past that the key whose last failure is oldest is forgotten, so
a flood of fresh keys costs memory once and never grows it.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Callable, Hashable, Iterable


class AttemptLimiter:
    def __init__(self, max_failures: int, window: float, max_keys: int = 10000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: "OrderedDict[Hashable, deque]" = OrderedDict()

    def wait(self, keys: Iterable[Hashable]) -> float:
        """Seconds until every key may try again (0: now)."""
        now = self._clock()
        longest = 0.0
        with self._lock:
            for key in keys:
                times = self._failures.get(key)
                if times is None:
                    continue
                while times and now - times[0] >= self.window:
                    times.popleft()
                if not times:
                    del self._failures[key]
                elif len(times) >= self.max_failures:
                    longest = max(longest, self.window - (now - times[0]))
        return longest

    def fail(self, keys: Iterable[Hashable]) -> None:
        now = self._clock()
        with self._lock:
            for key in keys:
                times = self._failures.pop(key, None)
                if times is None:
                    times = deque(maxlen=self.max_failures)
                times.append(now)
                self._failures[key] = times  # last: the most recently failing
                while len(self._failures) > self.max_keys:
                    self._failures.popitem(last=False)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)
