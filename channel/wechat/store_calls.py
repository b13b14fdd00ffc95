"""State-store calls of the personal-WeChat channels (iLink `wx` and the legacy web-WeChat path)
that must not stop the channel when the store fails: a login, a cursor or a reply token that could
not be saved is logged and the channel goes on (the next save tries again). The accept path of
messages does not use these: a message the store refuses is not taken (channel/chat_channel.py).
"""
from __future__ import annotations

from typing import Any

from common.log import logger
from config import conf


def store_get(namespace: str, key: str) -> Any:
    store = conf().state_store
    if store is None:
        return None
    try:
        return store.get(namespace, key)
    except Exception as e:
        logger.error(f"[wx] the state store could not read {namespace}: {e}")
        return None


def store_put(namespace: str, key: str, value: Any, ttl: float | None = None) -> None:
    store = conf().state_store
    if store is None:
        return
    try:
        store.put(namespace, key, value, ttl)
    except Exception as e:
        logger.error(f"[wx] the state store could not save {namespace}: {e}")


def store_delete(namespace: str, key: str) -> None:
    store = conf().state_store
    if store is None:
        return
    try:
        store.delete(namespace, key)
    except Exception as e:
        logger.error(f"[wx] the state store could not delete {namespace}: {e}")
