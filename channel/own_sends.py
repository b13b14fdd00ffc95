"""What this daemon sent lately, so that a platform's echo of it is not taken as a question.

Personal-WeChat services (a wechaty puppet, WeChatFerry, web WeChat) report the messages the
account itself sends as ordinary incoming messages. The channels drop a private message the
account sent (as the original did); in a room the account's own messages can still trigger the
bot (trigger_by_self), so there only the echo of one of our own answers must be recognised, or an
answer could answer itself without end.

An echo is recognised by its message id when the send returned one, and otherwise by what was
sent to that conversation: a short-lived record (conversation, kind, text), noted BEFORE the send
goes out because a service may report the echo before the send call returns. Each noted send
matches one echo only.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

from channel.chat_message import ChatMessage

# Long enough for a slow service to report the echo, short enough that the account typing the
# same text in that room a little later is not mistaken for an echo.
ECHO_SECONDS = 120.0
MAX_RECORDS = 2000
TEXT, MEDIA = "text", "media"


class OwnSends:
    def __init__(self, ttl: float = ECHO_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._ids: dict[str, tuple[float, "_Sent | None"]] = {}
        self._sent: deque[_Sent] = deque()
        self._lock = threading.Lock()

    def _purge(self, now: float) -> None:
        while self._sent and (now - self._sent[0].when > self.ttl or len(self._sent) > MAX_RECORDS):
            self._sent.popleft()
        if len(self._ids) > MAX_RECORDS or any(now - t > self.ttl for t, _ in self._ids.values()):
            self._ids = {k: v for k, v in self._ids.items() if now - v[0] <= self.ttl}

    def note_send(self, conversation: str, kind: str, text: str = "") -> "_Sent":
        """Call before a send goes out; what it returns goes to note_id with the send's id."""
        now = self._clock()
        record = _Sent(now, conversation, kind, _norm(text))
        with self._lock:
            self._purge(now)
            self._sent.append(record)
        return record

    def note_id(self, message_id: str, record: "_Sent | None" = None) -> None:
        """The id a send returned (when the service gives one): its echo is known by it, and the
        record of its text is dropped when that echo comes."""
        if message_id:
            with self._lock:
                self._ids[message_id] = (self._clock(), record)

    def is_echo(self, message_id: str, conversation: str, kind: str, text: str = "") -> bool:
        """Whether a message the account sent is the echo of one of our sends (consumes the match)."""
        now = self._clock()
        with self._lock:
            self._purge(now)
            known = self._ids.pop(message_id, None) if message_id else None
            if known is not None:
                if known[1] in self._sent:
                    self._sent.remove(known[1])
                return True
            wanted = (conversation, kind, _norm(text))
            for record in self._sent:
                if (record.conversation, record.kind, record.text) == wanted:
                    self._sent.remove(record)
                    return True
        return False


class _Sent:
    __slots__ = ("when", "conversation", "kind", "text")

    def __init__(self, when: float, conversation: str, kind: str, text: str) -> None:
        self.when, self.conversation, self.kind, self.text = when, conversation, kind, text


def _norm(text: str) -> str:
    # Services may trim or turn the mention space (U+2005) into a plain one.
    return " ".join((text or "").replace("\u2005", " ").split())


def own_message_skip(cmsg: ChatMessage, own: OwnSends, kind: str) -> str | None:
    """Why a message must not be taken ("" / None: take it): a private message the account sent
    itself, or the echo of one of our sends in a room."""
    if not cmsg.my_msg:
        return None
    if not cmsg.is_group:
        return "sent by the account itself"
    if own.is_echo(str(cmsg.msg_id or ""), str(cmsg.other_user_id or ""), kind,
                   str(cmsg.content or "") if kind == TEXT else ""):
        return "the echo of one of our own sends"
    return None
