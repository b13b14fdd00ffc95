"""Each web user's durable record in the state store: numbered events and conversation.

One value per user (namespace NAMESPACE, key = user id), written in one store write per
change, so what it holds is always consistent after a `kill -9`:
- `epoch` and `seq`: event ids are `<epoch>-<seq>`. The epoch is made once per record, not
  once per run, so ids go on across restarts and a `Last-Event-ID` from before a restart still
  names a place in the stream. A new epoch (the record expired or the store was lost) tells
  a client that its ids mean nothing here any more;
- `events`: the newest numbered SSE events (bounded, expiring), so an answer written before a
  crash is still sent after the restart, and a reconnect gets exactly what it missed;
- `history`: the newest `size` conversation entries, for `GET /history` (a reloaded page);
- `answered`: digests of the message ids whose handling ended, written together with the
  event that ended it, so `WebChannel.already_answered` is exact.

Beside it (DELIVERED_NAMESPACE), the highest seq written to some connection: a client that
names no last id gets what came after it. It changes with every delivery, so it is a value of
its own rather than a rewrite of the whole record.

The first version stored a bare list of history entries per user; it is read as such.
A user who stays away for HISTORY_TTL seconds is forgotten.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from common.log import logger
from common.store import StateStore
from channel.web.ids import for_log

NAMESPACE = "web_history"
# What was written to some connection: its own small value, since it changes with every delivery.
DELIVERED_NAMESPACE = "web_delivered"
HISTORY_TTL = 30 * 24 * 3600.0
ANSWERED_MAX = 200  # message digests kept per user: far more than can be in flight at once
VERSION = 2


def message_digest(msg_id: str) -> str:
    """A short fixed-size stand-in for a message id (ids may be 500+ characters)."""
    return hashlib.sha256(msg_id.encode("utf-8", "surrogatepass")).hexdigest()[:24]


class Event:
    """One numbered SSE event: `text` is its JSON payload, `name` its SSE event name (None:
    the unnamed events an EventSource `onmessage` handler sees). An answer read back from the
    store has its text made from its history entry when first asked for: most are never sent
    again, and making them all on every read of the record would cost more than the write."""

    __slots__ = ("seq", "created", "name", "_text", "_entry")

    def __init__(self, seq: int, created: float, text: str | None, name: str | None,
                 entry: dict[str, Any] | None = None) -> None:
        self.seq = seq
        self.created = created  # wall-clock time, so expiry keeps its meaning across restarts
        self.name = name
        self._text = text
        self._entry = entry

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = json.dumps({k: v for k, v in (self._entry or {}).items() if k != "role"}, ensure_ascii=False)
            self._entry = None
        return self._text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and (self.seq, self.created, self.text, self.name) == \
            (other.seq, other.created, other.text, other.name)

    def __repr__(self) -> str:
        return f"Event({self.seq}, {self.name!r})"


@dataclass
class UserRecord:
    epoch: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    seq: int = 0
    events: list[Event] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    # True when the store could not be read: the record is used for this run's live streams
    # but never written, so it cannot overwrite the real one.
    detached: bool = False

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    def add_event(self, payload: dict[str, Any], name: str | None, now: float) -> Event:
        """Number `payload` (its `id` is set here) and keep it; unnamed events go to the history too."""
        self.seq += 1
        payload["id"] = self.event_id(self.seq)
        event = Event(self.seq, now, json.dumps(payload, ensure_ascii=False), name)
        self.events.append(event)
        if name is None:
            self.history.append({"role": "bot", **payload})
        return event

    def mark_answered(self, msg_id: str) -> None:
        digest = message_digest(msg_id)
        if digest not in self.answered:
            self.answered.append(digest)
            del self.answered[:-ANSWERED_MAX]

    def is_answered(self, msg_id: str) -> bool:
        return message_digest(msg_id) in self.answered

    def trim(self, now: float, history_size: int, events_max: int, events_ttl: float, delivered: int) -> int:
        """Apply the bounds; returns how many events were dropped before any connection had them.

        Events are kept for a reconnect that missed them: those the history still shows (they
        cost no room, see to_value; a page that slept for hours still gets what it missed), and
        for `events_ttl` seconds those no connection was given. An event given to a connection
        and gone from the history is not kept: the record stays about the size of the history
        instead of holding every answer twice."""
        self.history = self.history[-history_size:] if history_size > 0 else []
        in_history = {e.get("id") for e in self.history if e.get("role") == "bot"}
        self.events = [e for e in self.events if self.event_id(e.seq) in in_history
                       or (e.seq > delivered and now - e.created <= events_ttl)]
        dropped = self.events[:-events_max] if len(self.events) > events_max else []
        if dropped:
            self.events = self.events[len(dropped):]
        return sum(1 for e in dropped if e.seq > delivered)

    def to_value(self) -> dict[str, Any]:
        # An answer is in the history too: its event is stored without its text (rebuilt from the
        # history entry on reading), so each answer is written once, not twice.
        in_history = {e.get("id") for e in self.history if e.get("role") == "bot"}
        return {
            "v": VERSION, "epoch": self.epoch, "seq": self.seq,
            "events": [[e.seq, e.created, None if e.name is None and self.event_id(e.seq) in in_history else e.text,
                        e.name] for e in self.events],  # e.text is not made for the first kind
            "history": self.history, "answered": self.answered,
        }

    @classmethod
    def from_value(cls, value: Any) -> "UserRecord":
        """The record a stored value describes. Raises ValueError on a value of no known shape."""
        if value is None:
            return cls()
        if isinstance(value, list):  # version 1: the history alone
            return cls(history=[e for e in value if isinstance(e, dict)])
        if not isinstance(value, dict) or value.get("v") != VERSION:
            raise ValueError("not a web record")
        epoch, seq = value.get("epoch"), value.get("seq")
        if not isinstance(epoch, str) or not epoch or not _count(seq):
            raise ValueError("bad epoch or sequence number")
        history = [e for e in value.get("history") or [] if isinstance(e, dict)]
        answers = {e.get("id"): e for e in history if e.get("role") == "bot"}
        events = []
        for item in value.get("events") or []:
            if (not isinstance(item, list) or len(item) != 4 or not _count(item[0]) or item[0] > seq
                    or not isinstance(item[1], (int, float)) or not (item[2] is None or isinstance(item[2], str))
                    or not (item[3] is None or isinstance(item[3], str))):
                raise ValueError("bad event")
            entry = None
            if item[2] is None:  # an answer kept in the history (see to_value)
                entry = answers.get(f"{epoch}-{item[0]}")
                if entry is None or item[3] is not None:
                    raise ValueError("an event refers to no history entry")
            events.append(Event(item[0], float(item[1]), item[2], item[3], entry))
        answered = [d for d in value.get("answered") or [] if isinstance(d, str)]
        return cls(epoch=epoch, seq=seq, events=events, history=history, answered=answered)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class WebJournal:
    """Reads and writes user records. The caller serialises the writes of one user."""

    def __init__(self, store: StateStore | None, history_size: int) -> None:
        self.store = store
        self.history_size = max(0, history_size)

    def load(self, user_id: str, known: UserRecord | None = None) -> UserRecord:
        """The user's record (a new one if none). A store that cannot be read gives `known` or a
        new detached record (logged): answers still reach the open page, and nothing is written
        over the stored record."""
        if self.store is None:
            return UserRecord()
        try:
            value = self.store.get(NAMESPACE, user_id)
        except Exception as e:
            logger.error(f"[web] record of {for_log(user_id)} not readable, answers are not kept for now: {e}")
            return known if known is not None else UserRecord(detached=True)
        try:
            return UserRecord.from_value(value)
        except ValueError as e:
            # Written by something else (a newer version, a hand edit): start over, and say so.
            logger.warning(f"[web] record of {for_log(user_id)} unreadable ({e}), starting a new one")
            return UserRecord()

    def save(self, user_id: str, record: UserRecord) -> bool:
        """Write the record; a failure is logged, never raised (the answer still goes to the open page)."""
        if self.store is None or record.detached:
            return False
        try:
            self.store.put(NAMESPACE, user_id, record.to_value(), ttl=HISTORY_TTL)
            return True
        except Exception as e:
            logger.error(f"[web] record of {for_log(user_id)} not saved: {e}")
            return False

    def load_delivered(self, user_id: str) -> int:
        if self.store is None:
            return 0
        try:
            value = self.store.get(DELIVERED_NAMESPACE, user_id)
        except Exception as e:
            logger.error(f"[web] delivery mark of {for_log(user_id)} not readable: {e}")
            return 0
        return value if _count(value) else 0

    def save_delivered(self, user_id: str, seq: int) -> bool:
        if self.store is None:
            return False
        try:
            self.store.put(DELIVERED_NAMESPACE, user_id, seq, ttl=HISTORY_TTL)
            return True
        except Exception as e:
            logger.error(f"[web] delivery mark of {for_log(user_id)} not saved: {e}")
            return False
