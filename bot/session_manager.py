"""Conversation history of the session-based bots (OpenAI-style chat APIs).

Same classes, methods and behaviour as the original. Differences, on purpose:

* Memory is bounded. Sessions live in an ExpiredDict that drops idle sessions
  after ``expires_in_seconds`` even if they are never read again, and that
  holds at most MAX_SESSIONS sessions (the least recently used one goes
  first). With ``expires_in_seconds`` 0 sessions never expire, as before, but
  the size bound still applies. The original kept every session of every user
  ever seen when the TTL was 0, and kept never-read sessions forever otherwise.
* Thread-safe: creating a session is atomic (two threads asking for the same
  new session get the same object), and a session's history is changed by one
  thread at a time.
* The base Session starts with the system message already in ``messages``
  (the original left that to each subclass's constructor).
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable

from common.expired_dict import ExpiredDict
from common.log import logger
from config import conf

# Most sessions kept in memory at once. Deliberately not a setting: it only
# exists so memory cannot grow without limit, and 10,000 concurrent
# conversations is far beyond what one bot account handles; a session pushed
# out simply starts again with an empty history.
MAX_SESSIONS = 10_000


class Session:
    def __init__(self, session_id: Any, system_prompt: str | None = None):
        self.session_id = session_id
        if system_prompt is None:
            self.system_prompt = conf().get("character_desc")
        else:
            self.system_prompt = system_prompt
        # Not via self.reset(): a subclass's reset() may rely on attributes its
        # own __init__ sets after calling this one.
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": self.system_prompt}]
        self._lock = threading.RLock()

    def reset(self) -> None:
        """Forget the conversation; keep only the system message."""
        self.messages = [{"role": "system", "content": self.system_prompt}]

    def set_system_prompt(self, system_prompt: str) -> None:
        self.system_prompt = system_prompt
        self.reset()

    def add_query(self, query: Any) -> None:
        self.messages.append({"role": "user", "content": query})

    def add_reply(self, reply: Any) -> None:
        self.messages.append({"role": "assistant", "content": reply})

    def add_messages(self, messages: list[dict[str, Any]]) -> None:
        self.messages.extend(messages)

    def discard_exceeding(self, max_tokens: int | None = None, cur_tokens: int | None = None) -> int:
        """Drop the oldest turns until the history fits in ``max_tokens``; return the token count."""
        raise NotImplementedError

    def calc_tokens(self) -> int:
        raise NotImplementedError


def session_ttl() -> float:
    """Seconds a chat session lives (`expires_in_seconds`; 0 or less: for ever)."""
    expires = conf().get("expires_in_seconds")
    return expires if expires and expires > 0 else math.inf


class SessionManager:
    # The time source of the session store; tests replace it to step time.
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, sessioncls: type[Session], **session_args: Any):
        self.sessions = ExpiredDict(session_ttl(), maxsize=MAX_SESSIONS, clock=self.clock)
        self.sessioncls = sessioncls
        self.session_args = session_args
        self._lock = threading.RLock()

    def build_session(self, session_id: Any, system_prompt: str | None = None) -> Session:
        """The session of ``session_id``, created if needed.

        A new ``system_prompt`` on an existing session replaces its prompt and
        resets its history. ``session_id`` None gives a throw-away session that
        is not stored.
        """
        if session_id is None:
            return self.sessioncls(session_id, system_prompt, **self.session_args)
        with self._lock:
            session = self.sessions.get(session_id)
            if session is None:
                session = self.sessioncls(session_id, system_prompt, **self.session_args)
                self.sessions[session_id] = session
            elif system_prompt is not None:
                with _lock_of(session, self._lock):
                    session.set_system_prompt(system_prompt)
            return session

    def session_query(self, query: Any, session_id: Any) -> Session:
        session = self.build_session(session_id)
        with _lock_of(session, self._lock):
            session.add_query(query)
            try:
                max_tokens = conf().get("conversation_max_tokens")
                total_tokens = session.discard_exceeding(max_tokens, None)
                logger.debug("prompt tokens used={}".format(total_tokens))
            except Exception as e:
                logger.warning("Exception when counting tokens precisely for prompt: {}".format(str(e)))
        return session

    def session_reply(self, reply: Any, session_id: Any, total_tokens: int | None = None) -> Session:
        session = self.build_session(session_id)
        with _lock_of(session, self._lock):
            session.add_reply(reply)
            try:
                max_tokens = conf().get("conversation_max_tokens")
                tokens_cnt = session.discard_exceeding(max_tokens, total_tokens)
                logger.debug("raw total_tokens={}, savesession tokens={}".format(total_tokens, tokens_cnt))
            except Exception as e:
                logger.warning("Exception when counting tokens precisely for session: {}".format(str(e)))
        return session

    def lock_for(self, session: Any) -> Any:
        """The lock that guards `session`'s messages: its own, else this manager's."""
        return _lock_of(session, self._lock)

    def clear_session(self, session_id: Any) -> None:
        with self._lock:
            self.sessions.pop(session_id, None)

    def clear_all_session(self) -> None:
        with self._lock:
            self.sessions.clear()


def _lock_of(session: Any, fallback: threading.RLock) -> Any:
    # Sessions of classes that do not call Session.__init__ have no lock of
    # their own; the manager's lock then serialises them.
    lock = getattr(session, "_lock", None)
    return lock if lock is not None else fallback
