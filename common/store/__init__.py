"""Durable state: everything that must survive a restart (DESIGN.md §4).

``open_store(conf().get("state_store", "sqlite"), get_appdata_dir(), ...)`` is the
one way the daemon gets its store.
"""
from __future__ import annotations

import os

from common.store.base import DedupKey, InboxItem, StateStore, StoreError
from common.store.memory_store import MemoryStore
from common.store.pickle_import import import_user_datas_pickle
from common.store.sqlite_store import SQLiteStore

STATE_DB_NAME = "state.db"
STORE_KINDS = ("sqlite", "memory", "redis")

__all__ = [
    "STATE_DB_NAME",
    "STORE_KINDS",
    "DedupKey",
    "InboxItem",
    "MemoryStore",
    "SQLiteStore",
    "StateStore",
    "StoreError",
    "import_user_datas_pickle",
    "open_store",
]


def open_store(kind: str, appdata_dir: str, db_name: str = STATE_DB_NAME, *,
               redis_url: str = "", redis_key_prefix: str = "") -> StateStore:
    """Open the store named by the ``state_store`` setting: "sqlite" (``<appdata_dir>/<db_name>``,
    by default state.db), "memory", or "redis" (the server of ``redis_url``, keys under
    ``redis_key_prefix``)."""
    # An unset setting (None or "") means the default, sqlite.
    normalised = (kind or "sqlite").strip().lower()
    if normalised == "sqlite":
        return SQLiteStore(os.path.join(appdata_dir, db_name))
    if normalised == "memory":
        return MemoryStore()
    if normalised == "redis":
        # Imported here: the redis package is only needed by those who choose it.
        from common.store.redis_store import DEFAULT_PREFIX, RedisStore

        return RedisStore(redis_url, redis_key_prefix or DEFAULT_PREFIX)
    raise ValueError(f"state_store must be one of {', '.join(repr(k) for k in STORE_KINDS)}, got {kind!r}")
