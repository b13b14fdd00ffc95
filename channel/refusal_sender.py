"""Busy / not-saved refusals sent on a thread of their own (ChatChannel._send_refusal).

A channel whose intake must answer the platform quickly (Feishu waits 3 s, then pushes the event
again) or whose intake is one thread for every chat (DingTalk's Stream) cannot wait for a send and
its retries there. At most `limit` refusals wait; past that one is dropped with a warning: its
message was refused to the platform anyway, so nothing is lost but the note to the user.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from common.log import logger


class RefusalSender:
    def __init__(self, label: str, limit: int = 50) -> None:
        self.label = label
        self.limit = limit
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"{label}-refusal")
        self._lock = threading.Lock()
        self._pending = 0

    def submit(self, send: Callable[[], None]) -> None:
        with self._lock:
            if self._pending >= self.limit:
                logger.warning(f"[{self.label}] {self._pending} refusals waiting to be sent; this one is dropped "
                               f"(its message was refused to the platform)")
                return
            self._pending += 1
        try:
            self._executor.submit(self._run, send)
        except RuntimeError:  # stopped
            self._done()

    def _run(self, send: Callable[[], None]) -> None:
        try:
            send()
        except Exception as e:
            logger.warning(f"[{self.label}] a refusal was not sent: {e}")
        finally:
            self._done()

    def _done(self) -> None:
        with self._lock:
            self._pending -= 1

    def stop(self) -> None:
        self._executor.shutdown(wait=False)
