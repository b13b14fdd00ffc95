"""The state-store contract shared by every backend.

Values cross the API as JSON-serialisable data and are stored as JSON text, so
every backend hands back fresh copies: a caller mutating a returned dict never
changes what is stored, and a tuple comes back as a list in every backend alike.
"""
from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

Clock = Callable[[], float]


@dataclass(frozen=True)
class InboxItem:
    """A message a channel accepted and has not finished handling (see StateStore.inbox_add)."""

    id: int
    channel: str
    session: str
    record: Any
    created: float
    # Set by inbox_mark once a reply to it went out: "partial" (part of the answer, e.g. the
    # first pieces of a streamed one) or "final" (the whole answer). None: nothing sent yet.
    replied: str | None = None


@dataclass(frozen=True)
class DedupKey:
    """The dedup key written together with an inbox item (StateStore.seen's arguments)."""

    namespace: str
    key: str
    ttl: float


class StoreError(Exception):
    """The state store cannot do what was asked (unreadable file, closed store, I/O failure)."""


def encode(value: Any) -> str:
    # Encoding before touching storage means an unserialisable value fails the
    # call cleanly instead of leaving half a transaction behind.
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"state store values must be JSON-serialisable: {exc}") from exc


def decode(text: str) -> Any:
    return json.loads(text)


def check_key(what: str, value: Any) -> None:
    # SQLite would quietly turn 5 into '5' while a dict keeps them apart; refusing
    # non-str keys keeps both backends identical and catches caller bugs early.
    if not isinstance(value, str):
        raise TypeError(f"state store {what} must be str, got {type(value).__name__}")


def check_ttl(ttl: float | None, required: bool = False) -> None:
    if ttl is None:
        if required:
            raise ValueError("a ttl in seconds is required")
        return
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or math.isnan(ttl) or ttl <= 0:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")


def check_inbox_item(channel: str, session: str, dedup: "DedupKey | None") -> None:
    """The argument checks of inbox_add, the same for every store."""
    check_key("channel", channel)
    check_key("session", session)
    if dedup is not None:
        check_key("namespace", dedup.namespace)
        check_key("key", dedup.key)
        check_ttl(dedup.ttl, required=True)


def encode_users(changed: dict[str, dict]) -> dict[str, str]:
    # Validate and encode every user first so a bad entry rejects the whole
    # batch, matching the all-or-nothing transaction of the SQLite backend.
    encoded: dict[str, str] = {}
    for user, data in changed.items():
        check_key("user", user)
        if not isinstance(data, dict):
            raise TypeError(f"user data of {user!r} must be a dict, got {type(data).__name__}")
        encoded[user] = encode(data)
    return encoded


class StateStore(ABC):
    """Durable state: user data, namespaced key/values with TTL, dedup keys, pending queues.

    Every write is one transaction, complete before the method returns.
    Expiry is by wall-clock time so TTLs keep their meaning across restarts;
    a row is live while ``now < expires_at``.
    """

    # Whether what is written outlives the process (False: the memory store).
    durable = True

    # -- user data (one record per user) --------------------------------
    @abstractmethod
    def load_user_datas(self) -> dict[str, dict]:
        """Every user's data."""

    @abstractmethod
    def save_user_datas(self, changed: dict[str, dict]) -> None:
        """Upsert the given users, all in one transaction."""

    @abstractmethod
    def delete_user_data(self, user: str) -> None:
        """Forget one user's data (no error if absent)."""

    # -- namespaced key/value with optional TTL --------------------------
    @abstractmethod
    def get(self, namespace: str, key: str, default: Any = None) -> Any:
        """The live value, or ``default`` if missing or expired."""

    @abstractmethod
    def put(self, namespace: str, key: str, value: Any, ttl: float | None = None) -> None:
        """Set a value; with ``ttl`` it expires that many seconds from now."""

    @abstractmethod
    def delete(self, namespace: str, key: str) -> bool:
        """Remove a key; True if a live value was removed."""

    @abstractmethod
    def items(self, namespace: str) -> list[tuple[str, Any]]:
        """Live (key, value) pairs of a namespace, ordered by key."""

    @abstractmethod
    def clear(self, namespace: str) -> int:
        """Remove a whole namespace; returns how many live values it held."""

    # -- dedup ------------------------------------------------------------
    @abstractmethod
    def seen(self, namespace: str, key: str, ttl: float) -> bool:
        """Atomically: True if ``key`` is recorded and live, else record it for ``ttl`` s and return False."""

    @abstractmethod
    def is_seen(self, namespace: str, key: str) -> bool:
        """True if ``key`` is recorded and live; records nothing (the write comes with inbox_add)."""

    # -- inbox: accepted messages not yet handled ---------------------------
    # A channel stores each message it accepts here before it acknowledges it and deletes
    # it once the message is answered, so a crash or a stop with a backlog loses nothing:
    # the next start answers what is left, in id (= acceptance) order.
    @abstractmethod
    def inbox_add(self, channel: str, session: str, record: Any, dedup: DedupKey | None = None) -> int | None:
        """Store ``record`` for ``channel``; returns its id, ids growing in the order of the calls.

        With ``dedup``, the key is recorded in the same transaction (as ``seen`` would) and
        None is returned, nothing stored, when the key is live already: a message id counts
        as seen only once its message is safely in the inbox."""

    @abstractmethod
    def inbox_mark(self, item_id: int, replied: str) -> bool:
        """Record on an inbox item that a reply to it went out (InboxItem.replied), so the
        next start after a crash does not answer it again. True if the item was there."""

    @abstractmethod
    def inbox_done(self, item_id: int) -> bool:
        """Delete an inbox item; True if it was there."""

    @abstractmethod
    def inbox_items(self, channel: str) -> list[InboxItem]:
        """The channel's inbox items, oldest first."""

    @abstractmethod
    def inbox_count(self, channel: str | None = None) -> int:
        """How many inbox items ``channel`` has (all channels when None)."""

    # -- pending queue per key ---------------------------------------------
    @abstractmethod
    def push(self, namespace: str, key: str, value: Any) -> None:
        """Append a value to the queue of ``key``."""

    @abstractmethod
    def pop_all(self, namespace: str, key: str) -> list:
        """Remove and return the whole queue of ``key`` in FIFO order."""

    # -- housekeeping --------------------------------------------------------
    @abstractmethod
    def purge_expired(self) -> int:
        """Delete expired key/values and dedup keys; returns how many were removed."""

    @abstractmethod
    def close(self) -> None:
        """Release the store; further calls raise StoreError. Idempotent."""

    def __enter__(self) -> "StateStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
