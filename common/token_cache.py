"""An access token shared by an API client's threads (WeChat / WeCom, Feishu, DingTalk).

Fetched under a lock, one fetch at a time: the platforms invalidate the previous token when a new
one is issued, so two threads fetching at once would refuse each other's calls. Kept until `margin`
seconds before it expires; fetched again when a call says the token it used was refused (`stale`),
unless another thread has replaced it meanwhile. A call refused for its token is tried once more.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

from common.log import logger

T = TypeVar("T")


class TokenCache:
    def __init__(self, fetch: Callable[[], tuple[str, float]], margin: float, label: str,
                 what: str = "access token") -> None:
        """`fetch()` returns (token, seconds it is valid) or raises the client's error."""
        self._fetch = fetch
        self.margin = margin
        self.label = label
        self.what = what
        self._token = ""
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def get(self, stale: str = "") -> str:
        """The current token; a new one when there is none, it is about to expire, or it is
        `stale` (refused by the platform just now)."""
        with self._lock:
            if self._token and self._token != stale and time.time() < self._expires_at - self.margin:
                return self._token
            token, valid = self._fetch()
            self._token, self._expires_at = token, time.time() + valid
            logger.info(f"[{self.label}] fetched {self.what} (valid {int(valid)} s)")
            return token

    def use(self, path: str, attempt: Callable[[str], T], refused: Callable[[Exception], bool]) -> T:
        """`attempt(token)`, and once more with a new token when `refused(error)` says the
        platform refused the token."""
        token = self.get()
        try:
            return attempt(token)
        except Exception as e:
            if not refused(e):
                raise
            logger.info(f"[{self.label}] {path}: the {self.what} was refused ({e}); fetching a new one")
            return attempt(self.get(stale=token))
