"""Group names for the group rules (group_name_white_list, group_name_keyword_white_list,
group_chat_in_one_session match names on every channel). Feishu events carry only the chat id,
so the name is read from `GET /open-apis/im/v1/chats/{chat_id}` and kept for an hour.

It is read while Feishu waits for the event's acknowledgement (3 s), so the whole lookup, the
token fetch it may need included, is bounded: it runs on a thread of its own and the event waits
at most LOOKUP_DEADLINE for it (a lookup still running then finishes in the background and its
name is kept for Feishu's next push). When the name is not known in time or Feishu could not be
reached, NameUnknown: the channel refuses the event (503), and Feishu pushes it again; taking the
chat id for the name instead would drop every @ of a group the white list names. When Feishu
refuses the lookup itself (the app lacks `im:chat:readonly`, the chat is gone), pushing again
would not help: the chat id stands in for the name, tried again after a few minutes.

Only read when a group rule names groups (feishu_channel.group_names_needed).
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, TimeoutError as FutureTimeout
from urllib.parse import quote

from channel.feishu.api import FeishuApi, FeishuApiError
from common.expired_dict import ExpiredDict
from common.log import logger

KEEP_NAME = 3600.0
RETRY_AFTER = 300.0
LOOKUP_DEADLINE = 1.5  # seconds an event waits for its group's name
LOOKUP_TIMEOUT = (3.0, 5.0)  # the lookup's own call, in the background
MAX_CHATS = 10000
MAX_LOOKUPS = 16  # lookups running at once; past this an event is refused (pushed again later)
RATE_LIMITS = {99991400, 230020}


class NameUnknown(Exception):
    """The group's name could not be read now; the event should come again."""


class ChatNames:
    def __init__(self, api: FeishuApi) -> None:
        self.api = api
        # chat id -> (name, valid for how long): a name read is kept an hour, a stand-in less.
        self._names: ExpiredDict = ExpiredDict(KEEP_NAME, maxsize=MAX_CHATS)
        self._stand_ins: ExpiredDict = ExpiredDict(RETRY_AFTER, maxsize=MAX_CHATS)
        self._pending: dict[str, Future] = {}
        self._lock = threading.Lock()

    def name(self, chat_id: str) -> str:
        known = self._names.get(chat_id) or self._stand_ins.get(chat_id)
        if known is not None:
            return known
        with self._lock:
            future = self._pending.get(chat_id)
            if future is None:
                if len(self._pending) >= MAX_LOOKUPS:
                    raise NameUnknown(f"{len(self._pending)} group names are being read already")
                future = self._pending[chat_id] = Future()
                threading.Thread(target=self._lookup, args=(chat_id, future), name="feishu-chat-name",
                                 daemon=True).start()
        try:
            return future.result(LOOKUP_DEADLINE)
        except FutureTimeout:
            raise NameUnknown(f"Feishu did not give the name within {LOOKUP_DEADLINE:g} s") from None

    def _lookup(self, chat_id: str, future: Future) -> None:
        try:
            data = self.api.call("GET", f"/open-apis/im/v1/chats/{quote(chat_id, safe='')}", timeout=LOOKUP_TIMEOUT)
            name = str((data.get("data") or {}).get("name") or chat_id)
            self._names[chat_id] = name
            future.set_result(name)
        except FeishuApiError as e:
            if e.code is None or e.code in RATE_LIMITS:
                future.set_exception(NameUnknown(str(e)))
            else:
                logger.warning(f"[feishu] the name of group {chat_id} could not be read ({e}); the group rules see "
                               f"its chat id instead (grant the app im:chat:readonly)")
                self._stand_ins[chat_id] = chat_id
                future.set_result(chat_id)
        except Exception as e:  # noqa: BLE001 - the waiting event must not hang on a bug
            future.set_exception(NameUnknown(f"{type(e).__name__}: {e}"))
        finally:
            with self._lock:
                self._pending.pop(chat_id, None)
