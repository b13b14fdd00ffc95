"""In-memory StateStore: the SQLite semantics without a file.

Used by tests and by ``state_store: "memory"`` (state is lost on exit, by choice).
Values are kept as JSON text, exactly as SQLite keeps them, so the two backends
return the same shapes and never share mutable objects with callers.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from common.store.base import (
    Clock,
    DedupKey,
    InboxItem,
    StateStore,
    StoreError,
    check_inbox_item,
    check_key,
    check_ttl,
    decode,
    encode,
    encode_users,
)


class MemoryStore(StateStore):
    durable = False

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        self._users: dict[str, str] = {}
        # (namespace, key) -> (json text, expires_at or None)
        self._kv: dict[tuple[str, str], tuple[str, float | None]] = {}
        self._seen: dict[tuple[str, str], float] = {}
        self._queues: dict[tuple[str, str], list[str]] = {}
        # id -> (channel, session, json text, created, replied); dicts keep insertion (= id) order.
        self._inbox: dict[int, tuple[str, str, str, float, str | None]] = {}
        self._inbox_next = 1

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the memory state store is closed")

    @staticmethod
    def _live(expires_at: float | None, now: float) -> bool:
        return expires_at is None or now < expires_at

    # -- user data ------------------------------------------------------------
    def load_user_datas(self) -> dict[str, dict]:
        with self._lock:
            self._check_open()
            return {user: decode(text) for user, text in self._users.items()}

    def save_user_datas(self, changed: dict[str, dict]) -> None:
        encoded = encode_users(changed)
        with self._lock:
            self._check_open()
            self._users.update(encoded)

    def delete_user_data(self, user: str) -> None:
        check_key("user", user)
        with self._lock:
            self._check_open()
            self._users.pop(user, None)

    # -- key/value --------------------------------------------------------------
    def get(self, namespace: str, key: str, default: Any = None) -> Any:
        check_key("namespace", namespace)
        check_key("key", key)
        with self._lock:
            self._check_open()
            row = self._kv.get((namespace, key))
            if row is None or not self._live(row[1], self._clock()):
                return default
            return decode(row[0])

    def put(self, namespace: str, key: str, value: Any, ttl: float | None = None) -> None:
        check_key("namespace", namespace)
        check_key("key", key)
        check_ttl(ttl)
        text = encode(value)
        with self._lock:
            self._check_open()
            expires_at = None if ttl is None else self._clock() + ttl
            self._kv[(namespace, key)] = (text, expires_at)

    def delete(self, namespace: str, key: str) -> bool:
        check_key("namespace", namespace)
        check_key("key", key)
        with self._lock:
            self._check_open()
            row = self._kv.pop((namespace, key), None)
            return row is not None and self._live(row[1], self._clock())

    def items(self, namespace: str) -> list[tuple[str, Any]]:
        check_key("namespace", namespace)
        with self._lock:
            self._check_open()
            now = self._clock()
            return sorted(
                (key, decode(text))
                for (ns, key), (text, expires_at) in self._kv.items()
                if ns == namespace and self._live(expires_at, now)
            )

    def clear(self, namespace: str) -> int:
        check_key("namespace", namespace)
        with self._lock:
            self._check_open()
            now = self._clock()
            doomed = [k for k in self._kv if k[0] == namespace]
            live = 0
            for k in doomed:
                live += self._live(self._kv.pop(k)[1], now)
            return live

    # -- dedup --------------------------------------------------------------------
    def seen(self, namespace: str, key: str, ttl: float) -> bool:
        check_key("namespace", namespace)
        check_key("key", key)
        check_ttl(ttl, required=True)
        with self._lock:
            self._check_open()
            now = self._clock()
            expires_at = self._seen.get((namespace, key))
            if expires_at is not None and now < expires_at:
                return True
            self._seen[(namespace, key)] = now + ttl
            return False

    def is_seen(self, namespace: str, key: str) -> bool:
        check_key("namespace", namespace)
        check_key("key", key)
        with self._lock:
            self._check_open()
            expires_at = self._seen.get((namespace, key))
            return expires_at is not None and self._clock() < expires_at

    # -- inbox ------------------------------------------------------------------------
    def inbox_add(self, channel: str, session: str, record: Any, dedup: DedupKey | None = None) -> int | None:
        check_inbox_item(channel, session, dedup)
        text = encode(record)
        with self._lock:
            self._check_open()
            now = self._clock()
            if dedup is not None:
                expires_at = self._seen.get((dedup.namespace, dedup.key))
                if expires_at is not None and now < expires_at:
                    return None
                self._seen[(dedup.namespace, dedup.key)] = now + dedup.ttl
            item_id = self._inbox_next
            self._inbox_next += 1
            self._inbox[item_id] = (channel, session, text, now, None)
            return item_id

    def inbox_mark(self, item_id: int, replied: str) -> bool:
        check_key("replied", replied)
        with self._lock:
            self._check_open()
            item = self._inbox.get(int(item_id))
            if item is None:
                return False
            self._inbox[int(item_id)] = item[:4] + (replied,)
            return True

    def inbox_done(self, item_id: int) -> bool:
        with self._lock:
            self._check_open()
            return self._inbox.pop(int(item_id), None) is not None

    def inbox_items(self, channel: str) -> list[InboxItem]:
        check_key("channel", channel)
        with self._lock:
            self._check_open()
            return [
                InboxItem(item_id, ch, session, decode(text), created, replied)
                for item_id, (ch, session, text, created, replied) in self._inbox.items()
                if ch == channel
            ]

    def inbox_count(self, channel: str | None = None) -> int:
        with self._lock:
            self._check_open()
            return sum(1 for ch, *_ in self._inbox.values() if channel is None or ch == channel)

    # -- queues ---------------------------------------------------------------------
    def push(self, namespace: str, key: str, value: Any) -> None:
        check_key("namespace", namespace)
        check_key("key", key)
        text = encode(value)
        with self._lock:
            self._check_open()
            self._queues.setdefault((namespace, key), []).append(text)

    def pop_all(self, namespace: str, key: str) -> list:
        check_key("namespace", namespace)
        check_key("key", key)
        with self._lock:
            self._check_open()
            return [decode(text) for text in self._queues.pop((namespace, key), [])]

    # -- housekeeping ---------------------------------------------------------------
    def purge_expired(self) -> int:
        with self._lock:
            self._check_open()
            now = self._clock()
            dead_kv = [k for k, (_, exp) in self._kv.items() if not self._live(exp, now)]
            dead_seen = [k for k, exp in self._seen.items() if now >= exp]
            for k in dead_kv:
                del self._kv[k]
            for k in dead_seen:
                del self._seen[k]
            return len(dead_kv) + len(dead_seen)

    def close(self) -> None:
        with self._lock:
            self._closed = True

