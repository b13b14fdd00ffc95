"""An Official Account message (reference §1.3) as a ChatMessage.

Built from the callback's XML fields, which are also what the state store's inbox keeps, so a
message accepted before a restart is rebuilt the same way (with its lazy media download).
"""
from __future__ import annotations

import os
import re
from typing import Callable

from bridge.context import ContextType
from channel.chat_message import ChatMessage
from common.log import logger
from common.tmp_dir import TmpDir

# What a user can send that the channel takes into the pipeline.
HANDLED_TYPES = ("text", "voice", "image")
# WeChat's caps on what a user sends (voice 2 MB, image 10 MB); a little more is allowed.
MEDIA_MAX_BYTES = {"voice": 4 * 1024 * 1024, "image": 12 * 1024 * 1024}

# downloads(media_id, max_bytes) -> bytes; WechatApi.download bound to media/get.
Downloader = Callable[[str, int], bytes]


def message_key(fields: dict[str, str]) -> str:
    """The dedup key of a callback: MsgId, or for events (which have none) sender + time."""
    msg_id = fields.get("MsgId") or ""
    return msg_id or f"{fields.get('FromUserName', '')}@{fields.get('CreateTime', '')}"


def _safe_name(text: str) -> str:
    # A media id is the platform's string: kept to file-name characters before it names a file.
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:80] or "media"


class WechatMPMessage(ChatMessage):
    def __init__(self, fields: dict[str, str], download: Downloader | None = None) -> None:
        super().__init__(fields)
        self.fields = dict(fields)
        kind = fields.get("MsgType", "")
        if kind not in HANDLED_TYPES:
            raise ValueError(f"message type {kind!r} is not handled")
        self.msg_id = message_key(fields)
        self.create_time = fields.get("CreateTime")
        self.is_group = False
        self.from_user_id = self.other_user_id = self.actual_user_id = fields.get("FromUserName", "")
        self.to_user_id = fields.get("ToUserName", "")
        self.kind = kind
        if kind == "text":
            self.ctype, self.content = ContextType.TEXT, fields.get("Content", "")
        elif kind == "voice" and fields.get("Recognition"):
            # WeChat's own speech recognition: the words, no download needed.
            self.ctype, self.content = ContextType.TEXT, fields["Recognition"]
        else:
            media_id = fields.get("MediaId", "")
            suffix = "." + _safe_name(fields.get("Format") or "amr") if kind == "voice" else ".jpg"
            self.ctype = ContextType.VOICE if kind == "voice" else ContextType.IMAGE
            self.content = os.path.join(TmpDir().path(), f"wechatmp-{_safe_name(media_id)}{suffix}")
            if download is not None:
                self._prepare_fn = lambda: self._download(download, media_id)

    @property
    def recognized_voice(self) -> bool:
        return self.kind == "voice" and self.ctype == ContextType.TEXT

    def _download(self, download: Downloader, media_id: str) -> None:
        try:
            data = download(media_id, MEDIA_MAX_BYTES[self.kind])
        except Exception as e:  # the pipeline then finds no file and says the media is missing
            logger.error(f"[wechatmp] {self.kind} {media_id} of message {self.msg_id} could not be downloaded: {e}")
            return
        with open(self.content, "wb") as f:
            f.write(data)
