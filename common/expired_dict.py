"""A mapping whose entries expire a fixed time after they were last used.

Observable semantics are the original's: writing or reading a live key
(``d[k]``, ``d.get(k)``, ``k in d``) restarts its time to live; an expired key
behaves as absent; ``keys()``, ``items()``, ``values()``, iteration and
``len()`` only show live keys.

Differences from the original, on purpose:

* Memory stays bounded. The original only dropped an expired entry when that
  very key was read again, so every user or message id ever seen stayed in
  memory. Here entries live in an ``OrderedDict`` kept in expiry order (every
  entry has the same TTL, so "least recently used" == "expires first"), and
  every write first drops the expired entries at the front: a purge costs
  O(number expired), amortised O(1) per write. ``maxsize`` also caps the number
  of live entries by evicting the least recently used one.
* Listing does not refresh TTLs. The original's ``keys()`` read every key, so
  listing was O(n) and kept everything alive; here listing is a read-only
  snapshot (a list, as in the original, so it is safe to mutate while looping).
* Time comes from a monotonic clock, so a wall-clock change cannot expire or
  immortalise entries.
* Thread-safe: one lock guards every operation.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterator, MutableMapping
from typing import Any, Callable

DEFAULT_MAXSIZE = 10_000

_MISSING = object()


class ExpiredDict(MutableMapping):
    def __init__(
        self,
        expires_in_seconds: float,
        maxsize: int | None = DEFAULT_MAXSIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if expires_in_seconds < 0:
            raise ValueError(f"expires_in_seconds must be >= 0, got {expires_in_seconds!r}")
        if maxsize is not None and maxsize < 1:
            raise ValueError(f"maxsize must be >= 1 or None, got {maxsize!r}")
        self.expires_in_seconds = expires_in_seconds
        self.maxsize = maxsize
        self._clock = clock
        # key -> (value, expiry); order == expiry order == least recently used first
        self._data: OrderedDict[Hashable, tuple[Any, float]] = OrderedDict()
        self._lock = threading.RLock()

    # --- internals (call with the lock held) ---

    def _purge(self, now: float) -> None:
        data = self._data
        while data:
            key, (_, expiry) = next(iter(data.items()))
            if expiry >= now:
                break  # everything after this one expires later
            del data[key]

    def _store(self, key: Hashable, value: Any, now: float) -> None:
        self._data[key] = (value, now + self.expires_in_seconds)
        self._data.move_to_end(key)

    def _lookup(self, key: Hashable, now: float) -> Any:
        """The live value (its TTL restarted), or _MISSING."""
        entry = self._data.get(key, _MISSING)
        if entry is _MISSING:
            return _MISSING
        value, expiry = entry
        if now > expiry:
            del self._data[key]
            return _MISSING
        self._store(key, value, now)
        return value

    # --- mapping protocol ---

    def __setitem__(self, key: Hashable, value: Any) -> None:
        with self._lock:
            now = self._clock()
            self._purge(now)
            self._store(key, value, now)
            if self.maxsize is not None:
                while len(self._data) > self.maxsize:
                    self._data.popitem(last=False)

    def __getitem__(self, key: Hashable) -> Any:
        with self._lock:
            value = self._lookup(key, self._clock())
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __delitem__(self, key: Hashable) -> None:
        # An entry that expired but is still stored is deleted without error:
        # "check then delete" callers should not fail because the TTL ran out
        # in between.
        with self._lock:
            del self._data[key]

    def __contains__(self, key: object) -> bool:
        # Like the original, a membership test is a read: it restarts the TTL.
        with self._lock:
            return self._lookup(key, self._clock()) is not _MISSING  # type: ignore[arg-type]

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            value = self._lookup(key, self._clock())
        return default if value is _MISSING else value

    def pop(self, key: Hashable, default: Any = _MISSING) -> Any:
        with self._lock:
            now = self._clock()
            entry = self._data.pop(key, _MISSING)
            if entry is not _MISSING and not now > entry[1]:
                return entry[0]
        if default is _MISSING:
            raise KeyError(key)
        return default

    def setdefault(self, key: Hashable, default: Any = None) -> Any:
        # One lock hold, so two threads cannot both install a default.
        with self._lock:
            value = self._lookup(key, self._clock())
            if value is _MISSING:
                self[key] = default
                return default
            return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return len(self._data)

    def keys(self) -> list:  # type: ignore[override]
        with self._lock:
            self._purge(self._clock())
            return list(self._data)

    def values(self) -> list:  # type: ignore[override]
        with self._lock:
            self._purge(self._clock())
            return [value for value, _ in self._data.values()]

    def items(self) -> list:  # type: ignore[override]
        with self._lock:
            self._purge(self._clock())
            return [(key, value) for key, (value, _) in self._data.items()]

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self.keys())

    def __repr__(self) -> str:
        return f"ExpiredDict({dict(self.items())!r}, expires_in_seconds={self.expires_in_seconds!r})"
