"""A DingTalk robot message (the `data` of a `/v1.0/im/bot/messages/get` callback,
reference/channel-protocols.md §5.3) as the pipeline's ChatMessage.

One callback may hold several parts: a richText with pictures and text becomes one IMAGE part per
picture (kept for the next question, as on other channels) and one TEXT part. Pictures and files
are downloaded when something needs them (`prepare()`), through the robot's messageFiles API.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from dingtalk_stream import ChatbotMessage

from bridge.context import ContextType
from channel.chat_message import ChatMessage
from common import fetch
from common.log import logger
from common.tmp_dir import unique_tmp_path
from common.utils import safe_file_name

MEDIA_MAX_BYTES = 20 * 1024 * 1024
_SUFFIX = {ContextType.IMAGE: ".png", ContextType.VIDEO: ".mp4", ContextType.FILE: ""}


class UnsupportedMessage(Exception):
    """A well-formed message this channel does not handle (skipped, acknowledged)."""


class MalformedMessage(ValueError):
    """A message without the fields every robot message has, or with fields of the wrong type."""


@dataclass
class Part:
    ctype: ContextType
    content: str  # the text, or for media the downloadCode
    index: int = 0
    file_name: str = ""


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parts_of(data: dict) -> list[Part]:
    """The parts of a robot message. Raises MalformedMessage, or UnsupportedMessage for a type
    or content not handled."""
    for key in ("msgId", "msgtype", "conversationId"):
        if not _text(data.get(key)):
            raise MalformedMessage(f"no {key}")
    if str(data.get("conversationType")) not in ("1", "2"):
        raise MalformedMessage(f"conversationType {str(data.get('conversationType'))[:20]!r}")
    if not (_text(data.get("senderStaffId")) or _text(data.get("senderId"))):
        raise MalformedMessage("no sender")
    kind = data.get("msgtype")
    if kind in ("text",) and not isinstance(data.get("text"), dict):
        raise MalformedMessage("a text message without its text object")
    if kind in ("picture", "richText", "audio", "file", "video") and not isinstance(data.get("content"), dict):
        raise MalformedMessage(f"a {kind} message without its content object")
    content = _dict(data.get("content"))
    if kind == "text":
        text = _text(_dict(data.get("text")).get("content")).strip()
        if not text:
            raise UnsupportedMessage("an empty text")
        return [Part(ContextType.TEXT, text)]
    if kind == "audio":
        # DingTalk sends its own transcript with the audio: that is the question (as the original).
        text = _text(content.get("recognition")).strip()
        if not text:
            raise UnsupportedMessage("a voice message DingTalk could not transcribe")
        return [Part(ContextType.TEXT, text)]
    if kind == "picture":
        code = _text(content.get("downloadCode")) or _text(content.get("pictureDownloadCode"))
        if not code:
            raise UnsupportedMessage("a picture without a downloadCode")
        return [Part(ContextType.IMAGE, code)]
    if kind == "richText":
        parts, texts = [], []
        for item in content.get("richText") or []:
            item = _dict(item)
            if _text(item.get("downloadCode")) and item.get("type", "picture") == "picture":
                parts.append(Part(ContextType.IMAGE, item["downloadCode"], len(parts) + 1))
            elif _text(item.get("text")):
                texts.append(item["text"])
        text = "\n".join(t.strip() for t in texts if t.strip())
        if text:
            parts.append(Part(ContextType.TEXT, text))
        if not parts:
            raise UnsupportedMessage("a richText with nothing in it")
        return parts
    if kind in ("file", "video"):
        code = _text(content.get("downloadCode"))
        if not code:
            raise UnsupportedMessage(f"a {kind} without a downloadCode")
        ctype = ContextType.FILE if kind == "file" else ContextType.VIDEO
        return [Part(ctype, code, file_name=os.path.basename(_text(content.get("fileName")).replace("\\", "/")))]
    raise UnsupportedMessage(f"message type {kind!r} is not handled")


class DingTalkMessage(ChatMessage):
    """One part of a robot message. `data` (the callback's JSON) goes with it, so the answer can
    be sent after a restart (its sessionWebhook, or the ids the robot API needs)."""

    def __init__(self, data: dict, part: Part, downloader: Callable[[str, str], str] | None = None,
                 path: str | None = None) -> None:
        super().__init__(data)
        self.data = data
        self.part = part
        # The SDK's reading of the fields, under the original's attribute names (plugins read them).
        self.incoming_message = ChatbotMessage.from_dict(data)
        self.message_type = data.get("msgtype")
        msg_id = _text(data.get("msgId"))
        self.msg_id = msg_id if part.index == 0 else f"{msg_id}#{part.index}"
        created = data.get("createAt")
        self.create_time = int(created) // 1000 if isinstance(created, (int, float)) else int(time.time())
        self.ctype = part.ctype
        sender = _text(data.get("senderStaffId")) or _text(data.get("senderId"))
        nick = _text(data.get("senderNick")) or sender
        self.sender_staff_id = _text(data.get("senderStaffId"))
        self.robot_code = _text(data.get("robotCode"))
        self.conversation_id = _text(data.get("conversationId"))
        self.is_group = str(data.get("conversationType")) == "2"
        self.to_user_id = self.to_user_nickname = _text(data.get("chatbotUserId"))
        self.actual_user_id, self.actual_user_nickname = sender, nick
        if self.is_group:
            self.other_user_id = self.from_user_id = self.conversation_id
            self.other_user_nickname = self.from_user_nickname = _text(data.get("conversationTitle")) or self.conversation_id
            # DingTalk delivers a group message only when it @-s the robot; it says so here.
            self.is_at = bool(data.get("isInAtList"))
        else:
            self.other_user_id = self.from_user_id = sender
            self.other_user_nickname = self.from_user_nickname = nick
        if part.ctype in _SUFFIX:
            suffix = _SUFFIX[part.ctype]
            if part.ctype == ContextType.FILE and part.file_name:
                # The user's name, made safe: in bytes (a name of 100 CJK characters is 300 bytes,
                # over the file system's 255) and without characters Windows refuses.
                suffix = "-" + safe_file_name(part.file_name)
            self.content = path or unique_tmp_path(suffix)
            if downloader is not None:
                self._prepare_fn = lambda: self._download(downloader)
        else:
            self.content = part.content

    @property
    def session_webhook(self) -> str:
        return _text(self.data.get("sessionWebhook"))

    @property
    def webhook_expires_ms(self) -> int:
        value = self.data.get("sessionWebhookExpiredTime")
        return int(value) if isinstance(value, (int, float)) else 0

    def _download(self, downloader: Callable[[str, str], str]) -> None:
        url = downloader(self.part.content, self.robot_code)
        # The URL comes from DingTalk's API in an authenticated answer: its host is trusted.
        size, _ = fetch.fetch_to_file(url, self.content, MEDIA_MAX_BYTES, extra_hosts=[urlsplit(url).hostname or ""])
        logger.debug(f"[dingtalk] {self.ctype.name.lower()} of message {self.msg_id} fetched: {size} bytes")
