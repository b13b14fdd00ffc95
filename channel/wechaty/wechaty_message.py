"""A wechaty message (MessagePayload and the names around it) -> ChatMessage (§3.3).

Only translation lives here. The channel gathers the facts of a message into one plain dict
(`facts_of`): the payload's fields plus the talker's name, the room's topic and the logged-in
account; that dict is also what the inbox keeps, so a message rebuilt after a restart needs no
call to the puppet service until its media is fetched.

* TEXT 6 -> TEXT; IMAGE 5 -> IMAGE (kept for the next question); AUDIO 2 -> VOICE (transcribed
  by the configured engine). Other types are not handled (Unsupported).
* In a room the conversation (other_user) is the room and the talker is the actual user; the
  message mentions the bot when the bot's id is in mention_ids, or (as the original did for text
  pasted with an @ in it) when the text holds "@<bot name>" followed by U+2005 or a space.
* Media name their tmp/ file at once and are fetched when someone calls ``prepare()``.
"""
from __future__ import annotations

import re
import time
from typing import Any, Callable

from bridge.context import ContextType
from channel.chat_message import ChatMessage
from channel.wechaty.puppet import MESSAGE_AUDIO, MESSAGE_IMAGE, MESSAGE_TEXT
from common.text import safe_text
from common.tmp_dir import unique_tmp_path

_CTYPES = {MESSAGE_TEXT: ContextType.TEXT, MESSAGE_IMAGE: ContextType.IMAGE, MESSAGE_AUDIO: ContextType.VOICE}
# Pictures come as JPEG and voice as SILK (the suffix is chosen before the bytes are seen).
_SUFFIX = {MESSAGE_IMAGE: ".jpg", MESSAGE_AUDIO: ".sil"}
_FIELDS = ("id", "type", "text", "timestamp", "from_id", "from_name", "to_id", "to_name", "room_id", "room_topic",
           "mention_ids", "self_id", "self_name", "filename")


class Malformed(ValueError):
    """A payload that cannot be a message (missing ids, wrong types)."""


class Unsupported(ValueError):
    """A message of a type this channel does not handle."""


def _str(value: Any) -> str:
    return safe_text(value) if isinstance(value, str) else ""


def facts_of(payload: Any, *, from_name: str = "", to_name: str = "", room_topic: str = "", self_id: str = "",
             self_name: str = "") -> dict:
    """The facts of a MessagePayload answer (an object with the stub's field names) as a dict.
    Raises Malformed."""
    facts = {
        "id": _str(getattr(payload, "id", None)),
        "type": getattr(payload, "type", None),
        "text": _str(getattr(payload, "text", None)),
        "timestamp": getattr(payload, "timestamp", 0),
        "from_id": _str(getattr(payload, "from_id", None)),
        "to_id": _str(getattr(payload, "to_id", None)),
        "room_id": _str(getattr(payload, "room_id", None)),
        "mention_ids": [m for m in (getattr(payload, "mention_ids", None) or []) if isinstance(m, str)],
        "filename": _str(getattr(payload, "filename", None)),
        "from_name": from_name, "to_name": to_name, "room_topic": room_topic,
        "self_id": self_id, "self_name": self_name,
    }
    check(facts)
    return facts


def check(facts: Any) -> None:
    """Raises Malformed when `facts` cannot make a message."""
    if not isinstance(facts, dict):
        raise Malformed(f"a message that is a {type(facts).__name__}, not an object")
    if not facts.get("id"):
        raise Malformed("a message without an id")
    if not facts.get("from_id"):
        raise Malformed(f"message {facts['id']} has no talker (from_id)")
    if not facts.get("room_id") and not facts.get("to_id"):
        raise Malformed(f"message {facts['id']} has neither a room nor a listener (to_id)")
    kind = facts.get("type")
    if not isinstance(kind, int) or isinstance(kind, bool):
        raise Malformed(f"message {facts['id']} has no type")


def mentions_self(facts: dict) -> bool:
    if facts["self_id"] and facts["self_id"] in facts["mention_ids"]:
        return True
    name = facts.get("self_name") or ""
    return bool(name) and re.search(f"@{re.escape(name)}(\u2005|\u0020)", facts["text"]) is not None


# (the message) -> writes its media file at message.content, raising on failure.
Fetcher = Callable[["WechatyMessage"], None]


class WechatyMessage(ChatMessage):
    def __init__(self, facts: dict, *, path: str | None = None, fetch: Fetcher | None = None) -> None:
        check(facts)
        super().__init__(facts)
        kind = int(facts["type"])
        if kind not in _CTYPES:
            raise Unsupported(f"message {facts['id']} of type {kind} is not handled")
        if kind == MESSAGE_TEXT and not facts["text"].strip():
            raise Unsupported(f"message {facts['id']} is an empty text")
        self.facts = facts
        self.msg_id = facts["id"]
        stamp = facts.get("timestamp")
        # Puppets send seconds or milliseconds.
        self.create_time = (int(stamp) // 1000 if stamp > 10**11 else int(stamp)) if isinstance(stamp, int) and \
            stamp > 0 else int(time.time())
        self.ctype = _CTYPES[kind]
        self.content = facts["text"]
        self.from_user_id = facts["from_id"]
        self.from_user_nickname = facts["from_name"] or facts["from_id"]
        self.my_msg = bool(facts["self_id"]) and facts["from_id"] == facts["self_id"]
        self.is_group = bool(facts["room_id"])
        if self.is_group:
            self.to_user_id = facts["room_id"]
            self.to_user_nickname = facts["room_topic"] or facts["room_id"]
            self.other_user_id, self.other_user_nickname = self.to_user_id, self.to_user_nickname
            self.actual_user_id, self.actual_user_nickname = self.from_user_id, self.from_user_nickname
            self.is_at = mentions_self(facts)
            self.at_list = []
        else:
            self.to_user_id = facts["to_id"]
            self.to_user_nickname = facts["to_name"] or facts["to_id"]
            if self.my_msg:  # sent by the account from another device: the conversation is the listener's
                self.other_user_id, self.other_user_nickname = self.to_user_id, self.to_user_nickname
            else:
                self.other_user_id, self.other_user_nickname = self.from_user_id, self.from_user_nickname
            self.actual_user_id, self.actual_user_nickname = self.from_user_id, self.from_user_nickname
        if self.has_media:
            self.content = path or unique_tmp_path(_SUFFIX[kind])
            if fetch is not None:
                self._prepare_fn = lambda: fetch(self)

    @property
    def has_media(self) -> bool:
        return self.ctype != ContextType.TEXT

    def to_record(self) -> dict:
        return {"wxy": {k: self.facts.get(k) for k in _FIELDS}, "path": self.content if self.has_media else None}

    @classmethod
    def from_record(cls, record: dict, fetch: Fetcher | None) -> "WechatyMessage":
        return cls(dict(record["wxy"]), path=record.get("path"), fetch=fetch)
