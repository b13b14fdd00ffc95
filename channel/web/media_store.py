"""Images and files the web page fetches after an answer named them (`/media/<user>/<id>`).

Image bytes are kept in memory, so the store is bounded: per user (`web_media_user_max_bytes`)
and in all (`web_media_max_bytes`); past a bound the oldest items go first. Items also expire
after `ttl` seconds (`expire`, run on a schedule by the channel). Files already on disk (FILE,
VIDEO replies) cost no memory; they are held from the tmp/ janitor while the page may fetch them.
Thread-safe: worker threads put, the server's event loop gets.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from common import tmp_dir


@dataclass
class Media:
    data: bytes | None  # in memory (images), or None when `path` names a file
    path: str | None
    mime: str
    name: str
    created: float = field(default_factory=time.monotonic)

    @property
    def size(self) -> int:
        """Bytes held in memory."""
        return len(self.data) if self.data is not None else 0


class MediaTooLarge(Exception):
    """One item is larger than a user may keep."""


class MediaStore:
    def __init__(self, user_max_bytes: Callable[[], int], max_bytes: Callable[[], int],
                 ttl: float, user_max_items: int) -> None:
        # Callables: a changed setting applies at the next put.
        self._user_max_bytes = user_max_bytes
        self._max_bytes = max_bytes
        self.ttl = ttl
        self.user_max_items = user_max_items
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, str], Media] = OrderedDict()  # oldest first
        self._users: dict[str, OrderedDict[str, Media]] = {}
        self._user_bytes: dict[str, int] = {}
        self.total_bytes = 0

    def put(self, user_id: str, media: Media) -> str:
        """Keep `media` for the user; returns its id. Raises MediaTooLarge when it alone is
        more than a user may keep."""
        user_cap, total_cap = int(self._user_max_bytes()), int(self._max_bytes())
        if media.size > min(user_cap, total_cap):
            raise MediaTooLarge(f"{media.size} bytes, more than the {min(user_cap, total_cap)} bytes a user may keep")
        media_id = secrets.token_urlsafe(16)
        if media.path is not None:
            tmp_dir.hold(media.path)
        with self._lock:
            mine = self._users.setdefault(user_id, OrderedDict())
            while mine and (len(mine) >= self.user_max_items or self._user_bytes.get(user_id, 0) + media.size > user_cap):
                self._drop(user_id, next(iter(mine)))
            while self._items and self.total_bytes + media.size > total_cap:
                self._drop(*next(iter(self._items)))
            mine = self._users.setdefault(user_id, OrderedDict())
            mine[media_id] = media
            self._items[(user_id, media_id)] = media
            self._user_bytes[user_id] = self._user_bytes.get(user_id, 0) + media.size
            self.total_bytes += media.size
        return media_id

    def get(self, user_id: str, media_id: str) -> Media | None:
        with self._lock:
            media = self._users.get(user_id, {}).get(media_id)
            if media is not None and time.monotonic() - media.created > self.ttl:
                self._drop(user_id, media_id)
                return None
            return media

    def has_user(self, user_id: str) -> bool:
        with self._lock:
            return bool(self._users.get(user_id))

    def count(self, user_id: str | None = None) -> int:
        with self._lock:
            return len(self._items) if user_id is None else len(self._users.get(user_id, {}))

    def expire(self, now: float | None = None) -> int:
        """Drop the items older than `ttl`; returns how many."""
        now = time.monotonic() if now is None else now
        dropped = 0
        with self._lock:
            for key, media in list(self._items.items()):
                if now - media.created <= self.ttl:
                    break  # oldest first: the rest are younger
                self._drop(*key)
                dropped += 1
        return dropped

    def _drop(self, user_id: str, media_id: str) -> None:
        """Call with the lock held."""
        media = self._items.pop((user_id, media_id), None)
        mine = self._users.get(user_id)
        if mine is not None:
            mine.pop(media_id, None)
            if not mine:
                del self._users[user_id]
        if media is None:
            return
        left = self._user_bytes.get(user_id, 0) - media.size
        if left > 0:
            self._user_bytes[user_id] = left
        else:
            self._user_bytes.pop(user_id, None)
        self.total_bytes -= media.size
        if media.path is not None:
            tmp_dir.release(media.path)
