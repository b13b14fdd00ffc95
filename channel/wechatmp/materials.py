"""Permanent material the passive channel uploaded for its answers, deleted once it is not needed.

A passive media answer must be permanent material (reference §1.6), and an account may hold
only so much of it, so each item is deleted some seconds after it was shown. The items live in
the state store until deleted: an answer never fetched (its user never wrote again) or a crash
before the deletion would otherwise leave material behind for good. A janitor thread deletes
what is due: shown items after MATERIAL_KEEP, unshown ones once their answer can no longer be
fetched (pending.KEEP_SECONDS), unless a waiting answer still names them.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from channel.wechatmp import pending as pending_replies
from common.log import logger
from common.store import StateStore
from common.wechat_api import WechatApi, WechatApiError

NAMESPACE = "wechatmp:material"
MATERIAL_KEEP = 10.0  # seconds a shown material stays, while WeChat delivers the reply (reference §1.6)
SWEEP_INTERVAL = 3.0  # seconds between janitor runs
# A record whose deletion keeps failing is given up after this (the store must not grow forever).
RECORD_TTL = pending_replies.KEEP_SECONDS + 7 * 24 * 3600
GONE = 40007  # "invalid media_id": deleted already (by hand, or a crash after the delete)


class MaterialLedger:
    def __init__(self, store: StateStore, api: WechatApi, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.api = api
        self.clock = clock
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ records
    def uploaded(self, media_id: str) -> None:
        """Record new material; unless shown, it is due when its waiting answer expires."""
        self._put(media_id, self.clock() + pending_replies.KEEP_SECONDS + MATERIAL_KEEP, shown=False)

    def shown(self, media_id: str) -> None:
        """The material was handed to WeChat in a reply: due in MATERIAL_KEEP seconds."""
        self._put(media_id, self.clock() + MATERIAL_KEEP, shown=True)

    def _put(self, media_id: str, due: float, shown: bool) -> None:
        try:
            self.store.put(NAMESPACE, media_id, {"due": due, "shown": shown}, ttl=RECORD_TTL)
        except Exception as e:  # the material stays in the account's library: say so
            logger.error(f"[wechatmp] could not record material {media_id} for deletion (it may stay in the "
                         f"account's material library): {e}")

    # ------------------------------------------------------------------ deleting
    def sweep(self) -> int:
        """Delete the material that is due; returns how many were deleted."""
        now = self.clock()
        due = [(media_id, record) for media_id, record in self.store.items(NAMESPACE)
               if isinstance(record, dict) and float(record.get("due") or 0) <= now]
        if not due:
            return 0
        waiting = self._waiting_media() if any(not r.get("shown") for _, r in due) else set()
        deleted = 0
        for media_id, record in due:
            if self._stopped.is_set():
                break
            if not record.get("shown") and media_id in waiting:
                # Its answer still waits (the user's queue was kept alive): not yet.
                self._put(media_id, now + pending_replies.KEEP_SECONDS, shown=False)
                continue
            try:
                self.api.call("material/del_material", {"media_id": media_id})
            except WechatApiError as e:
                if e.errcode != GONE:
                    logger.warning(f"[wechatmp] material {media_id} could not be deleted, tried again later: {e}")
                    continue
            except Exception as e:  # the network: the next sweep tries again
                logger.warning(f"[wechatmp] material {media_id} could not be deleted, tried again later: {e}")
                continue
            self.store.delete(NAMESPACE, media_id)
            deleted += 1
            logger.debug(f"[wechatmp] material {media_id} deleted")
        return deleted

    def _waiting_media(self) -> set[str]:
        """Media ids named by any answer still waiting for its user."""
        named: set[str] = set()
        for _user, items in self.store.items(pending_replies.NAMESPACE):
            for item in items if isinstance(items, list) else []:
                if isinstance(item, list) and len(item) == 2 and item[0] != "text":
                    named.add(str(item[1]))
        return named

    # ------------------------------------------------------------------ the janitor
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wechatmp-materials", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self.sweep()
            except Exception:  # a store or API failure must not end the janitor
                logger.exception("[wechatmp] deleting used material failed; trying again later")
            self._stopped.wait(SWEEP_INTERVAL)

