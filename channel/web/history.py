"""Each web user's recent conversation, kept in the state store.

A reloaded page (or one opened after a daemon restart) asks for it and shows the
conversation again. Bounded: the newest `size` entries per user; a user who stays
away for HISTORY_TTL seconds is forgotten.
"""
from __future__ import annotations

import threading
from typing import Any

from common.log import logger
from common.store import StateStore
from channel.web.ids import for_log

NAMESPACE = "web_history"
HISTORY_TTL = 30 * 24 * 3600.0


class WebHistory:
    def __init__(self, store: StateStore | None, size: int) -> None:
        self.store = store
        self.size = max(0, size)
        # Appending is read-modify-write of one value per user.
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.store is not None and self.size > 0

    def append(self, user_id: str, entry: dict[str, Any]) -> None:
        """Add one entry; a store failure is logged, never raised (the reply still goes out)."""
        if not self.enabled:
            return
        try:
            with self._lock:
                entries = self.store.get(NAMESPACE, user_id) or []
                entries.append(entry)
                self.store.put(NAMESPACE, user_id, entries[-self.size:], ttl=HISTORY_TTL)
        except Exception as e:
            logger.error(f"[web] history of {for_log(user_id)} not saved: {e}")

    def entries(self, user_id: str) -> list[dict[str, Any]]:
        if not self.enabled:
            return []
        try:
            entries = self.store.get(NAMESPACE, user_id) or []
        except Exception as e:
            logger.error(f"[web] history of {for_log(user_id)} not readable: {e}")
            return []
        return entries if isinstance(entries, list) else []
