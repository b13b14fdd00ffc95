"""iLink updates -> ChatMessage (reference/personal-wechat.md §1.5).

Only translation lives here. The iLink bot is a contact of its own that talks 1:1 with whoever
writes to it, so every message is private; `from_user_id` is the sender and the one to answer.
A message holds a list of items; each item becomes one part for the pipeline:

* 1 text -> TEXT (a quoted message, `ref_msg`, is shown before it the way WeChat shows quotes);
* 2 image -> IMAGE (kept for the next question), 4 file -> FILE, 5 video -> VIDEO;
* 3 voice -> TEXT of WeChat's own transcript when there is one, else VOICE (the SILK audio,
  transcribed by the configured engine).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bridge.context import ContextType
from channel.chat_message import ChatMessage
from common.text import safe_text

USER_MESSAGE = 1
TEXT, IMAGE, VOICE, FILE, VIDEO = 1, 2, 3, 4, 5
_KINDS = {IMAGE: "image", VOICE: "voice", FILE: "file", VIDEO: "video"}
_QUOTE_NAMES = {IMAGE: "[图片]", VOICE: "[语音]", FILE: "[文件]", VIDEO: "[视频]"}


class Malformed(ValueError):
    """An update that cannot be a user's message (wrong shape, missing fields)."""


@dataclass
class Part:
    ctype: ContextType
    content: str  # the text; for media, "" until the file is fetched
    kind: str = ""  # image / voice / file / video
    media: dict = field(default_factory=dict)  # the CDN reference
    aeskey: str = ""  # the item's own key (image_item.aeskey), else media.aes_key
    file_name: str = ""
    index: int = 0


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return safe_text(value) if isinstance(value, str) else ""


def _quote(item: dict) -> str:
    ref = _dict(item.get("ref_msg"))
    if not ref:
        return ""
    inner = _dict(ref.get("message_item"))
    kind = inner.get("type")
    if kind == TEXT:
        quoted = _text(_dict(inner.get("text_item")).get("text"))
    elif kind == VOICE:
        quoted = _text(_dict(inner.get("voice_item")).get("text")) or _QUOTE_NAMES[VOICE]
    else:
        quoted = _QUOTE_NAMES.get(kind, "")
    title = _text(ref.get("title"))
    return quoted or title


def _with_quote(text: str, item: dict) -> str:
    quoted = _quote(item)
    if not quoted:
        return text
    return f"「{quoted}」\n- - - - - - - - - - - - - - -\n{text}"


def sender_of(msg: Any) -> str:
    """The sender of a user message, or raises Malformed."""
    if not isinstance(msg, dict):
        raise Malformed(f"an update that is a {type(msg).__name__}, not an object")
    sender = msg.get("from_user_id")
    if not isinstance(sender, str) or not sender.strip():
        raise Malformed("a message without from_user_id")
    return sender


def message_id(msg: dict) -> str:
    for key in ("message_id", "seq"):
        value = msg.get(key)
        if isinstance(value, (int, str)) and not isinstance(value, bool) and str(value).strip():
            return str(value)
    raise Malformed("a message without message_id or seq")


def parts_of(msg: dict) -> list[Part]:
    """The parts of a user message, in order. Raises Malformed."""
    items = msg.get("item_list")
    if not isinstance(items, list) or not items:
        raise Malformed("a message without items")
    parts: list[Part] = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == TEXT:
            text = _text(_dict(item.get("text_item")).get("text"))
            if text.strip():
                parts.append(Part(ContextType.TEXT, _with_quote(text, item), index=n))
            continue
        if kind == VOICE:
            voice = _dict(item.get("voice_item"))
            transcript = _text(voice.get("text"))
            if transcript.strip():
                parts.append(Part(ContextType.TEXT, transcript, kind="voice", index=n))
                continue
        if kind in (IMAGE, VOICE, FILE, VIDEO):
            payload = _dict(item.get(f"{_KINDS[kind]}_item"))
            media = _dict(payload.get("media"))
            if not (media.get("encrypt_query_param") or media.get("full_url")):
                continue
            ctype = {IMAGE: ContextType.IMAGE, VOICE: ContextType.VOICE, FILE: ContextType.FILE,
                     VIDEO: ContextType.VIDEO}[kind]
            aeskey = _text(payload.get("aeskey")) if kind == IMAGE else ""
            parts.append(Part(ctype, "", _KINDS[kind], media, aeskey or _text(media.get("aes_key")),
                              _text(payload.get("file_name")), n))
    if not parts:
        raise Malformed("a message with nothing this channel can read")
    return parts


class WxMessage(ChatMessage):
    """One part of an iLink message, as the pipeline sees it."""

    def __init__(self, msg: dict, part: Part, bot_id: str, first: bool) -> None:
        super().__init__(msg)
        sender = sender_of(msg)
        base_id = message_id(msg)
        self.msg_id = base_id if first else f"{base_id}#{part.index}"
        created = msg.get("create_time_ms")
        self.create_time = int(created) // 1000 if isinstance(created, int) and created > 0 else int(time.time())
        self.ctype = part.ctype
        self.content = part.content
        self.from_user_id = self.other_user_id = self.actual_user_id = sender
        self.from_user_nickname = self.other_user_nickname = self.actual_user_nickname = sender
        self.to_user_id = self.to_user_nickname = bot_id
        self.is_group = False
        token = msg.get("context_token")
        self.context_token = token if isinstance(token, str) else ""
        self.part = part
