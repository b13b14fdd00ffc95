"""Answers waiting for the user's next message (passive mode, reference §1.6).

A passive reply can only travel in the response to one of the user's own messages, so what the
pipeline produces is kept per user, in order, until the user writes again. The queue lives in the
state store: a restart between "reply to continue" and the user's next message keeps the answer.
"""
from __future__ import annotations

import threading
from typing import Any

from common.log import logger
from common.store import StateStore
from common.utils import split_string_by_utf8_length

NAMESPACE = "wechatmp:pending"
KEEP_SECONDS = 3 * 24 * 3600  # a user who never writes again: the answer is dropped after this
TEXT_MAX_BYTES = 2048  # the cap the original uses for a passive text (reference §1.5)
CONTINUED = "\n（内容较长，回复任意文字查看下一段）"


def cut_for_reply(text: str) -> tuple[str, str]:
    """(what fits in one passive text, with the note that more follows; the rest, "" when none)."""
    if len(text.encode("utf-8")) <= TEXT_MAX_BYTES:
        return text, ""
    room = TEXT_MAX_BYTES - len(CONTINUED.encode("utf-8"))
    head, rest = split_string_by_utf8_length(text, room, max_split=1)
    return head + CONTINUED, rest


class PendingReplies:
    """Per user, a FIFO of [kind, payload]: ["text", str] or [image|voice|video, media_id]."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        # One process changes a user's queue at a time (read, change, write back).
        self._lock = threading.Lock()

    def add(self, user: str, kind: str, payload: str) -> None:
        with self._lock:
            items = self._items(user)
            items.append([kind, payload])
            self.store.put(NAMESPACE, user, items, ttl=KEEP_SECONDS)

    def has(self, user: str) -> bool:
        try:
            return bool(self._items(user))
        except Exception as e:  # an unreadable store: the message starts a new question
            logger.error(f"[wechatmp] could not read the waiting answers of {user}: {e}")
            return False

    def pop(self, user: str) -> tuple[str, str] | None:
        """The next reply for `user`: a text longer than one reply is cut and its rest kept first."""
        with self._lock:
            items = self._items(user)
            if not items:
                return None
            kind, payload = items.pop(0)
            if kind == "text":
                payload, rest = cut_for_reply(payload)
                if rest:
                    items.insert(0, ["text", rest])
            if items:
                self.store.put(NAMESPACE, user, items, ttl=KEEP_SECONDS)
            else:
                self.store.delete(NAMESPACE, user)
            return kind, payload

    def _items(self, user: str) -> list[Any]:
        items = self.store.get(NAMESPACE, user) or []
        return [i for i in items if isinstance(i, list) and len(i) == 2] if isinstance(items, list) else []
