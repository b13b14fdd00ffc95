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
* When an item could not be taken (the store failed, the queues are full, the daemon is stopping)
  the cursor is not moved past it. A pull that does not get to the end (that, an API error, a
  platform that says has_more without moving the cursor) is tried again by itself after 5 s,
  10 s, 20 s ... up to 5 minutes: the callback was acknowledged, so WeCom will not call again for
  these messages.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from common.log import logger
from common.wechat_api import WechatApi, WechatApiError

CURSOR_NAMESPACE = "wechatcs:cursor"
FIRST_SEEN_NAMESPACE = "wechatcs:first_seen"  # open_kfid -> when it was first announced (time.time())
RETRY_FIRST, RETRY_MAX = 5.0, 300.0  # seconds before a failed pull is tried again (doubling)
PAGE_LIMIT = 1000  # the platform's maximum
KF_INVALID_SYNC_TOKEN = 95007
MAX_PAGES_PER_PULL = 1000  # a runaway has_more cannot keep the worker forever

# take(item, first_seen) -> False when the item was not taken and the cursor must not pass it;
# first_seen is when the account was first announced while it has no cursor yet, else None.
Take = Callable[[dict, "float | None"], bool]


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
        self._failures: dict[str, int] = {}  # open_kfid -> pulls in a row that did not finish

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
            self.store.put(FIRST_SEEN_NAMESPACE, open_kfid, time.time())
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
                finished = self.pull(open_kfid, token)
            except Exception:
                logger.exception(f"[{self.label}] pulling the messages of {open_kfid} failed")
                finished = False
            if finished:
                self._failures.pop(open_kfid, None)
            else:
                self._retry_later(open_kfid)

    def _retry_later(self, open_kfid: str) -> None:
        failures = self._failures[open_kfid] = self._failures.get(open_kfid, 0) + 1
        delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (failures - 1))
        logger.info(f"[{self.label}] pulling {open_kfid} again in {delay:g} s")
        timer = threading.Timer(delay, self.notify, (open_kfid, None))
        timer.daemon = True
        timer.start()

    # ------------------------------------------------------------------ pulling
    def pull(self, open_kfid: str, token: str | None) -> bool:
        """Take every message after the kept cursor; False when the pull did not get to the end
        (it is then tried again later)."""
        cursor = self.store.get(CURSOR_NAMESPACE, open_kfid) or ""
        first_seen = None
        if not cursor:
            seen = self.store.get(FIRST_SEEN_NAMESPACE, open_kfid)
            first_seen = float(seen) if isinstance(seen, (int, float)) else time.time()
        for _ in range(MAX_PAGES_PER_PULL):
            if self._stopped:
                return True
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
                logger.error(f"[{self.label}] kf/sync_msg for {open_kfid} failed: {e}")
                return False
            items = page.get("msg_list") if isinstance(page.get("msg_list"), list) else []
            for item in items:
                if not self.take(item, first_seen):
                    logger.warning(f"[{self.label}] a message of {open_kfid} could not be taken now; the cursor stays "
                                   f"before it and a later pull reads it again")
                    return False
            next_cursor = page.get("next_cursor")
            moved = isinstance(next_cursor, str) and bool(next_cursor) and next_cursor != cursor
            if moved:
                self.store.put(CURSOR_NAMESPACE, open_kfid, next_cursor)
                cursor, first_seen = next_cursor, None
            if not page.get("has_more"):
                return True
            if not moved:
                logger.warning(f"[{self.label}] kf/sync_msg says {open_kfid} has more but gave no new cursor")
                return False
        logger.warning(f"[{self.label}] {open_kfid} still has more after {MAX_PAGES_PER_PULL} pages; going on later")
        return False


def too_old(item: dict, max_age: float, now: float | None = None) -> bool:
    """Whether the item was sent more than `max_age` seconds ago."""
    try:
        sent = float(item.get("send_time"))
    except (TypeError, ValueError):
        return False
    return (time.time() if now is None else now) - sent > max_age
