"""Message ids answered, kept in the state store longer than the pipeline's dedup keys (6 h).

For channels whose platform can bring an old message back after the dedup key expired: WeCom
customer service re-pulls from its cursor for 3 days, the WeCom AI bot keeps asking about a
message after a restart. A mark that cannot be read or written only risks a second answer.
"""
from __future__ import annotations

from common.log import logger
from config import conf


class AnsweredMarks:
    def __init__(self, namespace: str, ttl: float, label: str) -> None:
        self.namespace = namespace
        self.ttl = ttl
        self.label = label

    def contains(self, msg_id: str) -> bool:
        store = conf().state_store
        if store is None or not msg_id:
            return False
        try:
            return store.is_seen(self.namespace, msg_id)
        except Exception:
            return False

    def add(self, msg_id: str) -> None:
        store = conf().state_store
        if store is None or not msg_id:
            return
        try:
            store.seen(self.namespace, msg_id, self.ttl)
        except Exception as e:
            logger.warning(f"[{self.label}] could not record message {msg_id} as answered: {e}")
