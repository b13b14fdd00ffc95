"""A dict whose entries expire a fixed time after they were last used.

Observable semantics are the original's: it is a ``dict`` (plugins check
``isinstance(x, dict)`` and hand it to code that wants one); writing or reading
a live key (``d[k]``, ``d.get(k)``, ``k in d``) restarts its time to live; an
expired key behaves as absent; ``keys()`` and ``items()`` return lists of the
live entries; ``ExpiredDict(0)`` or ``ExpiredDict(None)`` lives an hour.

Differences from the original, on purpose:

* Memory stays bounded. The original only dropped an expired entry when that
  very key was read again, so every user or message id ever seen stayed in
  memory. Here expiry times live in an ``OrderedDict`` kept in expiry order
  (every entry has the same TTL, so "least recently used" == "expires first"),
  and every operation first drops the expired entries at the front: a purge
  costs O(number expired), amortised O(1). ``maxsize`` also caps the number of
  live entries by evicting the least recently used one.
* Listing does not refresh TTLs. The original's ``keys()`` read every key, so
  listing was O(n) and kept everything alive; here listing is a read-only
  snapshot (a list, as in the original, so it is safe to mutate while looping).
* ``values()``, ``pop()``, ``setdefault()``, ``update()``, ``len()`` and ``==``
  see the values and the live entries. The original inherited them from
  ``dict``, so they showed its internal (value, expiry) pairs, counted expired
  entries, and ``update()`` stored values that then failed to read back.
  ``copy()`` is the original's: a plain dict of the live values.
* Time comes from a monotonic clock, so a wall-clock change cannot expire or
  immortalise entries.
* Thread-safe: one lock guards every operation.

The values themselves are kept in the underlying dict, so code that reads a
dict without calling its methods (C extensions, ``json``) sees plain values.
"""
from __future__ import annotations

import copy as _copy
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator
from typing import Any, Callable

DEFAULT_MAXSIZE = 10_000
# The original's time to live when it is given 0 or None.
DEFAULT_EXPIRES_IN_SECONDS = 3600

_MISSING = object()


class ExpiredDict(dict):
    def __init__(
        self,
        expires_in_seconds: float | None,
        maxsize: int | None = DEFAULT_MAXSIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if not expires_in_seconds:
            expires_in_seconds = DEFAULT_EXPIRES_IN_SECONDS
        if expires_in_seconds < 0:
            raise ValueError(f"expires_in_seconds must be >= 0, got {expires_in_seconds!r}")
        if maxsize is not None and maxsize < 1:
            raise ValueError(f"maxsize must be >= 1 or None, got {maxsize!r}")
        self.expires_in_seconds = expires_in_seconds
        self.maxsize = maxsize
        self._clock = clock
        # key -> expiry; order == expiry order == least recently used first
        self._expiry: OrderedDict[Hashable, float] = OrderedDict()
        self._lock = threading.RLock()

    # --- internals (call with the lock held) ---

    def _purge(self, now: float) -> None:
        expiry = self._expiry
        while expiry:
            key, when = next(iter(expiry.items()))
            if when >= now:
                break  # everything after this one expires later
            del expiry[key]
            dict.__delitem__(self, key)

    def _store(self, key: Hashable, value: Any, now: float) -> None:
        dict.__setitem__(self, key, value)
        self._expiry[key] = now + self.expires_in_seconds
        self._expiry.move_to_end(key)
        if self.maxsize is not None:
            while len(self._expiry) > self.maxsize:
                oldest, _ = self._expiry.popitem(last=False)
                dict.__delitem__(self, oldest)

    def _lookup(self, key: Hashable, now: float) -> Any:
        """The live value (its TTL restarted), or _MISSING."""
        self._purge(now)
        if key not in self._expiry:
            return _MISSING
        value = dict.__getitem__(self, key)
        self._store(key, value, now)
        return value

    def _remove(self, key: Hashable) -> Any:
        """Remove a live entry and return its value, or _MISSING."""
        self._purge(self._clock())
        if self._expiry.pop(key, _MISSING) is _MISSING:
            return _MISSING
        return dict.pop(self, key)

    # --- reading and writing ---

    def __setitem__(self, key: Hashable, value: Any) -> None:
        with self._lock:
            now = self._clock()
            self._purge(now)
            self._store(key, value, now)

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
            if self._expiry.pop(key, _MISSING) is _MISSING:
                raise KeyError(key)
            dict.__delitem__(self, key)

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
            value = self._remove(key)
        if value is not _MISSING:
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    def popitem(self) -> tuple[Hashable, Any]:
        """The most recently used entry, removed (a dict's popitem is last-in, first-out)."""
        with self._lock:
            self._purge(self._clock())
            if not self._expiry:
                raise KeyError("popitem(): dictionary is empty")
            key, _ = self._expiry.popitem(last=True)
            return key, dict.pop(self, key)

    def setdefault(self, key: Hashable, default: Any = None) -> Any:
        # One lock hold, so two threads cannot both install a default.
        with self._lock:
            now = self._clock()
            value = self._lookup(key, now)
            if value is _MISSING:
                self._store(key, default, now)
                return default
            return value

    def update(self, *args: Any, **kwargs: Any) -> None:
        # dict.update would bypass __setitem__ and store values without an expiry.
        with self._lock:
            for key, value in dict(*args, **kwargs).items():
                self[key] = value

    def clear(self) -> None:
        with self._lock:
            self._expiry.clear()
            dict.clear(self)

    # --- listing (snapshots; they do not refresh TTLs) ---

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return len(self._expiry)

    def keys(self) -> list:  # type: ignore[override]
        with self._lock:
            self._purge(self._clock())
            return list(self._expiry)

    def values(self) -> list:  # type: ignore[override]
        with self._lock:
            self._purge(self._clock())
            return [dict.__getitem__(self, key) for key in self._expiry]

    def items(self) -> list:  # type: ignore[override]
        with self._lock:
            self._purge(self._clock())
            return [(key, dict.__getitem__(self, key)) for key in self._expiry]

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self.keys())

    def __reversed__(self) -> Iterator[Hashable]:
        return reversed(self.keys())

    # --- whole-dict operations ---

    def __eq__(self, other: object) -> bool:
        if isinstance(other, dict):
            mine = dict(self.items())
            theirs = dict(other.items()) if isinstance(other, ExpiredDict) else other
            return mine == theirs
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> dict:
        """A plain dict of the live entries, as ``dict.copy`` of any dict subclass gives."""
        return dict(self.items())

    def __copy__(self) -> "ExpiredDict":
        """``copy.copy``: an ExpiredDict with the same live entries, each keeping its remaining time."""
        with self._lock:
            self._purge(self._clock())
            twin = ExpiredDict(self.expires_in_seconds, self.maxsize, self._clock)
            for key, when in self._expiry.items():
                dict.__setitem__(twin, key, dict.__getitem__(self, key))
                twin._expiry[key] = when
            return twin

    def __deepcopy__(self, memo: dict) -> "ExpiredDict":
        twin = self.__copy__()
        memo[id(self)] = twin
        for key in twin._expiry:
            dict.__setitem__(twin, key, _copy.deepcopy(dict.__getitem__(twin, key), memo))
        return twin

    def __or__(self, other: Any) -> dict:
        if not isinstance(other, dict):
            return NotImplemented
        merged = self.copy()
        merged.update(other)
        return merged

    def __ior__(self, other: Iterable) -> "ExpiredDict":
        self.update(other)
        return self

    def __reduce__(self):
        # The lock and the clock are not data: a copy made by pickling starts fresh.
        return (_rebuild, (self.expires_in_seconds, self.maxsize, self.items()))

    def __repr__(self) -> str:
        return f"ExpiredDict({dict(self.items())!r}, expires_in_seconds={self.expires_in_seconds!r})"


def _rebuild(expires_in_seconds: float, maxsize: int | None, items: list) -> ExpiredDict:
    rebuilt = ExpiredDict(expires_in_seconds, maxsize)
    rebuilt.update(items)
    return rebuilt
