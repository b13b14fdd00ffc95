"""Pulling customer messages with `kf/sync_msg` (reference/channel-protocols.md §3.1-§3.2).

A `kf_msg_or_event` callback carries no content, only a sync Token and the account (open_kfid)
that has news. The messages are pulled here, on one worker thread, after the callback was
acknowledged, page after page while `has_more` is 1, from a cursor kept per open_kfid in the
state store (the original always pulled from an empty cursor and kept only the newest item, so
two messages before one pull lost the first and answered the second twice).

Why nothing is lost or doubled, whatever moment the process dies at:
* Acknowledging the callback first loses nothing: the messages stay on the platform (3 days)
  until our cursor passes them, and the account is written down (an empty cursor) before the
  acknowledgement, so a restart pulls it again even if the worker never ran.
* Every item of a page is handed to `take` (which writes it to the state store's inbox together
  with its dedup key, ChatChannel.produce) before the page's `next_cursor` is saved. A crash
  before the cursor is saved means the page is pulled again after the restart: its items are
  then recognised by their msgid (the dedup key written with the inbox item) and not taken twice,
  while those already in the inbox are answered by resume_inbox.
* When an item could not be stored (the store failed, the daemon is stopping) the cursor is not
  moved past it; the next pull starts at the same page again.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from common.log import logger
from common.wechat_api import WechatApi, WechatApiError

CURSOR_NAMESPACE = "wechatcs:cursor"
PAGE_LIMIT = 1000  # the platform's maximum
KF_INVALID_SYNC_TOKEN = 95007
MAX_PAGES_PER_PULL = 1000  # a runaway has_more cannot keep the worker forever

# take(item, first_pull) -> False when the item was not stored and the cursor must not pass it.
Take = Callable[[dict, bool], bool]


class KfPuller:
    def __init__(self, api: WechatApi, store, take: Take, label: str = "wechatcom_service") -> None:
        self.api = api
        self.store = store
        self.take = take
        self.label = label
        self._pending: dict[str, str | None] = {}  # open_kfid -> newest sync token (None: pull without)
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ scheduling
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wechatcs-pull", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def known_accounts(self) -> list[str]:
        """The open_kfids pulled (or announced) before, from the state store."""
        try:
            return [key for key, _ in self.store.items(CURSOR_NAMESPACE)]
        except Exception as e:
            logger.error(f"[{self.label}] cannot read the kept sync cursors: {e}")
            return []

    def remember(self, open_kfid: str) -> None:
        """Write the account down before its callback is acknowledged (see the module doc)."""
        if self.store.get(CURSOR_NAMESPACE, open_kfid) is None:
            self.store.put(CURSOR_NAMESPACE, open_kfid, "")

    def notify(self, open_kfid: str, token: str | None) -> None:
        """Pull `open_kfid` soon. Notifications that arrive while it waits are merged into one
        pull with the newest token; one that arrives during a pull causes one more pull."""
        with self._cond:
            if token or open_kfid not in self._pending:
                self._pending[open_kfid] = token or None
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                open_kfid = next(iter(self._pending))
                token = self._pending.pop(open_kfid)
            try:
                self.pull(open_kfid, token)
            except Exception:
                logger.exception(f"[{self.label}] pulling the messages of {open_kfid} failed")

    # ------------------------------------------------------------------ pulling
    def pull(self, open_kfid: str, token: str | None) -> int:
        """Take every message after the kept cursor; returns how many items were read."""
        cursor = self.store.get(CURSOR_NAMESPACE, open_kfid) or ""
        first_pull = not cursor
        read = 0
        for _ in range(MAX_PAGES_PER_PULL):
            if self._stopped:
                return read
            body: dict = {"open_kfid": open_kfid, "limit": PAGE_LIMIT, "voice_format": 0}
            if cursor:
                body["cursor"] = cursor
            if token:
                body["token"] = token
            try:
                page = self.api.call("kf/sync_msg", body)
            except WechatApiError as e:
                if e.errcode == KF_INVALID_SYNC_TOKEN and token:
                    # The callback's token lives 10 minutes; without one the pull is only rate-limited harder.
                    logger.info(f"[{self.label}] the sync token of {open_kfid} was refused (95007); pulling without it")
                    token = None
                    continue
                logger.error(f"[{self.label}] kf/sync_msg for {open_kfid} failed: {e}; the next callback pulls again")
                return read
            items = page.get("msg_list") if isinstance(page.get("msg_list"), list) else []
            for item in items:
                read += 1
                if not self.take(item, first_pull):
                    logger.warning(f"[{self.label}] a message of {open_kfid} could not be stored; the cursor stays "
                                   f"before it and the next pull reads it again")
                    return read
            next_cursor = page.get("next_cursor")
            if isinstance(next_cursor, str) and next_cursor and next_cursor != cursor:
                self.store.put(CURSOR_NAMESPACE, open_kfid, next_cursor)
                cursor = next_cursor
            if not page.get("has_more"):
                return read
        logger.warning(f"[{self.label}] {open_kfid} still has more after {MAX_PAGES_PER_PULL} pages; going on at the "
                       f"next callback")
        return read


def too_old(item: dict, max_age: float, now: float | None = None) -> bool:
    """Whether the item was sent more than `max_age` seconds ago."""
    try:
        sent = float(item.get("send_time"))
    except (TypeError, ValueError):
        return False
    return (time.time() if now is None else now) - sent > max_age
