"""Which Dify conversation each chat session is in, kept in the state store.

Dify keeps the history; the bot only has to remember, per session id, the
``conversation_id``, the Dify ``user`` the conversation belongs to, how many
user messages went into it, and an optional system prompt. These live in the
daemon's StateStore (namespace ``dify_session``), so a restart, even after
``kill -9``, continues the same conversation; the original kept them in a
dict and lost them on every restart.

Rules kept from the original:

* ``dify_conversation_max_messages`` (N): before each call, when N > 0 and the
  session already counted N messages, the conversation id is dropped and the
  count starts again at 0; then the count goes up by one. So a conversation
  holds at most N user messages.
* The conversation id from an answer is stored only when the session has none.
* A session unused for ``expires_in_seconds`` (0: never) is forgotten.

New: ``clear_session`` and ``clear_all_session`` remove the records from the
store (godcmd's ``#reset`` / ``#resetall``), and a turn that was running when
its session was cleared does not write its conversation id back (each record
carries an ``epoch`` that a reset changes).
"""
from __future__ import annotations

import threading
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from common.log import logger
from common.store import MemoryStore, StateStore
from config import conf

NAMESPACE = "dify_session"


@dataclass
class DifySession:
    session_id: str
    user: str = "default"
    conversation_id: str = ""
    user_message_count: int = 0
    # Sent as the input variable ``system_prompt``. Dify only uses inputs that the app
    # defines, and only when a conversation starts: an app without a ``system_prompt``
    # variable ignores it.
    system_prompt: str | None = None
    epoch: str = field(default_factory=lambda: uuid.uuid4().hex)

    # The original's accessors (plugins written for it call these).
    def get_session_id(self) -> str:
        return self.session_id

    def get_user(self) -> str:
        return self.user

    def get_conversation_id(self) -> str:
        return self.conversation_id

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("session_id")
        return record

    @classmethod
    def from_record(cls, session_id: str, record: Any) -> "DifySession | None":
        if not isinstance(record, dict):
            return None
        try:
            return cls(
                session_id=session_id,
                user=str(record.get("user") or "default"),
                conversation_id=str(record.get("conversation_id") or ""),
                user_message_count=int(record.get("user_message_count") or 0),
                system_prompt=record.get("system_prompt") if isinstance(record.get("system_prompt"), str) else None,
                epoch=str(record.get("epoch") or uuid.uuid4().hex),
            )
        except (TypeError, ValueError):
            return None


class DifySessionManager:
    """Dify sessions by session id, durable through ``conf().state_store``.

    ``store`` overrides the daemon's store; without either, a MemoryStore of this
    manager is used (state then lasts as long as the process).

    The Coze bot keeps its conversations the same way: a subclass sets its own
    ``namespace``, ``max_messages_setting`` and log ``tag``.
    """

    namespace = NAMESPACE
    max_messages_setting = "dify_conversation_max_messages"
    tag = "[DIFY]"

    def __init__(self, store: StateStore | None = None) -> None:
        self._explicit_store = store
        self._fallback: StateStore | None = None
        # Serialises read-modify-write of records (the store makes each write atomic,
        # this makes "read, change, write" atomic within the process).
        self._lock = threading.RLock()

    # -- storage ---------------------------------------------------------------------------
    @property
    def store(self) -> StateStore:
        if self._explicit_store is not None:
            return self._explicit_store
        store = conf().state_store
        if store is not None:
            return store
        with self._lock:
            if self._fallback is None:
                self._fallback = MemoryStore()
            return self._fallback

    @staticmethod
    def _ttl() -> float | None:
        expires = conf().get("expires_in_seconds")
        return float(expires) if expires and expires > 0 else None

    def _load(self, session_id: str) -> DifySession | None:
        return DifySession.from_record(session_id, self.store.get(self.namespace, session_id))

    def _save(self, session: DifySession) -> None:
        self.store.put(self.namespace, session.session_id, session.to_record(), ttl=self._ttl())

    # -- the original's API ------------------------------------------------------------------
    def get_session(self, session_id: Any, user: str | None = None) -> DifySession:
        """The stored session, or a new one (not stored until used)."""
        session_id = str(session_id)
        with self._lock:
            session = self._load(session_id)
            if session is None:
                session = DifySession(session_id, user=user or "default")
            return session

    def build_session(self, session_id: Any, system_prompt: str | None = None) -> DifySession:
        """The session, created if needed; with ``system_prompt`` that prompt is stored and,
        when it differs from the one in use, a new Dify conversation starts (Dify reads
        inputs only when a conversation is created)."""
        session_id = str(session_id)
        with self._lock:
            session = self._load(session_id) or DifySession(session_id)
            if system_prompt is not None and system_prompt != session.system_prompt:
                session.system_prompt = system_prompt
                session.conversation_id = ""
                session.user_message_count = 0
                session.epoch = uuid.uuid4().hex
            self._save(session)
            return session

    def clear_session(self, session_id: Any) -> None:
        """Forget the session: its next message starts a new Dify conversation."""
        with self._lock:
            self.store.delete(self.namespace, str(session_id))

    def clear_all_session(self) -> None:
        with self._lock:
            removed = self.store.clear(self.namespace)
        logger.info(f"{self.tag} cleared {removed} session(s)")

    def session_ids(self) -> list[str]:
        return [key for key, _ in self.store.items(self.namespace)]

    # -- one turn ----------------------------------------------------------------------------
    def begin_turn(self, session_id: Any, user: str) -> DifySession:
        """Load (or create) the session for a new user message, apply the message-count
        rule and store the result. Returns a snapshot to build the request from."""
        session_id = str(session_id)
        limit = conf().get(self.max_messages_setting)
        with self._lock:
            session = self._load(session_id) or DifySession(session_id, user=user)
            if session.user != user:
                # Dify scopes conversations to their user: another user cannot continue it.
                if session.conversation_id:
                    logger.info(f"{self.tag} session {session_id}: user changed from {session.user!r} to {user!r}, new conversation")
                session.user = user
                session.conversation_id = ""
                session.user_message_count = 0
            if limit and limit > 0 and session.user_message_count >= limit:
                session.conversation_id = ""
                session.user_message_count = 0
            session.user_message_count += 1
            self._save(session)
            return session  # a fresh object from the store: the caller's own snapshot

    def remember_conversation(self, session: DifySession, conversation_id: str | None) -> None:
        """Store the conversation id an answer came from, if the session has none yet and
        was not reset while the answer was being generated."""
        # A turn that continued a conversation has nothing to record: skip the store read.
        if not conversation_id or session.conversation_id:
            return
        with self._lock:
            current = self._load(session.session_id)
            if current is None or current.epoch != session.epoch:
                logger.debug(f"{self.tag} session {session.session_id} was reset meanwhile; conversation id not kept")
                return
            if current.conversation_id:
                return
            current.conversation_id = conversation_id
            self._save(current)
        session.conversation_id = conversation_id

    def restart_conversation(self, session: DifySession) -> None:
        """Dify no longer knows the session's conversation: continue in a new one, with the
        current message as its first."""
        with self._lock:
            current = self._load(session.session_id)
            if current is not None and current.epoch == session.epoch:
                if current.conversation_id in ("", session.conversation_id):
                    current.conversation_id = ""
                    current.user_message_count = 1
                    self._save(current)
        session.conversation_id = ""
        session.user_message_count = 1
