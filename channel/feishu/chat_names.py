"""Group names for the group rules (group_name_white_list, group_name_keyword_white_list,
group_chat_in_one_session match names on every channel). Feishu events carry only the chat id,
so the name is read once from `GET /open-apis/im/v1/chats/{chat_id}` and kept for an hour; when it
cannot be read (the app lacks `im:chat:readonly`, Feishu is unreachable) the chat id stands in for
it, and is tried again after a few minutes.
"""
from __future__ import annotations

import threading
import time

from channel.feishu.api import FeishuApi, FeishuApiError
from common.log import logger

KEEP_NAME = 3600.0
RETRY_AFTER = 300.0
# Read while Feishu waits for its acknowledgement (3 s): a slow answer gives up, the chat id stands in.
LOOKUP_TIMEOUT = (1.0, 1.0)
MAX_CHATS = 10000


class ChatNames:
    def __init__(self, api: FeishuApi) -> None:
        self.api = api
        self._names: dict[str, tuple[str, float]] = {}  # chat id -> (name, valid until)
        self._lock = threading.Lock()

    def name(self, chat_id: str) -> str:
        now = time.monotonic()
        with self._lock:
            known = self._names.get(chat_id)
        if known is not None and known[1] > now:
            return known[0]
        try:
            data = self.api.call("GET", f"/open-apis/im/v1/chats/{chat_id}", timeout=LOOKUP_TIMEOUT)
            name, keep = str((data.get("data") or {}).get("name") or chat_id), KEEP_NAME
        except FeishuApiError as e:
            logger.warning(f"[feishu] the name of group {chat_id} could not be read ({e}); the group rules see "
                           f"its chat id instead (grant the app im:chat:readonly)")
            name, keep = chat_id, RETRY_AFTER
        with self._lock:
            if len(self._names) >= MAX_CHATS:
                self._names.clear()  # a crude bound: names are read again as needed
            self._names[chat_id] = (name, now + keep)
        return name
