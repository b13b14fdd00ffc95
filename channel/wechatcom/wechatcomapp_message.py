"""A WeCom self-built app message (reference/channel-protocols.md §2.3) as a ChatMessage.

Built from the decrypted callback's fields (a dict of strings), which is also what the inbox
keeps: after a restart the message is rebuilt from them. Media (voice, image) are downloaded
when the pipeline needs them (`prepare`), not in the callback, which must be answered within
5 s; a media_id stays valid for three days, so a download after a restart still works.
"""
from __future__ import annotations

from typing import Any, Callable

from bridge.context import ContextType
from channel.chat_message import ChatMessage
from common.tmp_dir import unique_tmp_path

# MsgType -> (context type, file suffix)
HANDLED_TYPES = {"text": (ContextType.TEXT, ""), "voice": (ContextType.VOICE, ".amr"),
                 "image": (ContextType.IMAGE, ".png")}
MEDIA_MAX_BYTES = 20 * 1024 * 1024


class UnsupportedMessage(Exception):
    """A message type this channel does not take (location, link, video...)."""


class WechatComAppMessage(ChatMessage):
    def __init__(self, fields: dict[str, Any], download: Callable[[str, int], bytes] | None = None) -> None:
        super().__init__(fields)
        self.fields = fields
        kind = str(fields.get("MsgType") or "").lower()
        if kind not in HANDLED_TYPES:
            raise UnsupportedMessage(f"message type {kind or '(none)'!r} is not handled")
        self.ctype, suffix = HANDLED_TYPES[kind]
        self.msg_id = str(fields.get("MsgId") or "")
        try:
            self.create_time = int(fields.get("CreateTime") or 0)
        except ValueError:
            self.create_time = 0
        self.from_user_id = self.other_user_id = self.actual_user_id = str(fields.get("FromUserName") or "")
        self.to_user_id = str(fields.get("ToUserName") or "")
        self.is_group = False
        if self.ctype == ContextType.TEXT:
            self.content = str(fields.get("Content") or "")
            return
        media_id = str(fields.get("MediaId") or "")
        if not media_id:
            raise UnsupportedMessage(f"a {kind} message without a MediaId")
        # The file name is ours (a uuid): a media_id is the platform's text, not a safe path.
        self.content = str(fields.get("_path") or unique_tmp_path(suffix))
        fields["_path"] = self.content

        def fetch() -> None:
            if download is None:
                raise RuntimeError("no API client to download the media with")
            data = download(media_id, MEDIA_MAX_BYTES)
            with open(self.content, "wb") as f:
                f.write(data)

        self._prepare_fn = fetch
