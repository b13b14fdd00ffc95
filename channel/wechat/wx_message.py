"""iLink updates -> ChatMessage (reference/personal-wechat.md §1.5).

Only translation lives here. The iLink bot is a contact of its own that talks 1:1 with whoever
writes to it, so every message is private; `from_user_id` is the sender and the one to answer.
A message holds a list of items; each item becomes one part for the pipeline:

* 1 text -> TEXT (a quoted message, `ref_msg`, is shown before it the way WeChat shows quotes);
* 2 image -> IMAGE (kept for the next question), 4 file -> FILE, 5 video -> VIDEO;
* 3 voice -> TEXT of WeChat's own transcript when there is one, else VOICE (the SILK audio,
  transcribed by the configured engine).

A media part names its file in tmp/ from the start (plugins see the path at ON_RECEIVE_MESSAGE)
and is fetched from the CDN when someone calls ``prepare()`` (the worker, before handling): the
poll thread never waits for a download, and a message kept over a restart still holds its CDN
reference (message_record / from_record) rather than a file the janitor may have removed.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from bridge.context import ContextType
from channel.chat_message import ChatMessage
from common.text import safe_text
from common.tmp_dir import unique_tmp_path

USER_MESSAGE = 1
TEXT, IMAGE, VOICE, FILE, VIDEO = 1, 2, 3, 4, 5
_KINDS = {IMAGE: "image", VOICE: "voice", FILE: "file", VIDEO: "video"}
_QUOTE_NAMES = {IMAGE: "[图片]", VOICE: "[语音]", FILE: "[文件]", VIDEO: "[视频]"}
# WeChat pictures are JPEG (the name is chosen before the bytes are seen).
_SUFFIX = {"image": ".jpg", "voice": ".silk", "video": ".mp4", "file": ""}


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


def media_suffix(part: Part) -> str:
    """The ending of the tmp/ file a media part is written to: a file keeps its (cleaned) name."""
    if part.kind == "file":
        name = re.sub(r"[\x00-\x1f<>:\"|?*/\\]", "_", os.path.basename(part.file_name.replace("\\", "/")))[:120]
        return "-" + name if name else ""
    return _SUFFIX.get(part.kind, "")


# (the message) -> writes its media file at message.content, raising on failure.
Fetcher = Callable[["WxMessage"], None]


class WxMessage(ChatMessage):
    """One part of an iLink message, as the pipeline sees it."""

    def __init__(self, msg: dict, part: Part, bot_id: str, first: bool, *, path: str | None = None,
                 fetch: Fetcher | None = None) -> None:
        super().__init__(msg)
        self.raw = msg
        self.first = first
        self.bot_id = bot_id
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
        if part.ctype != ContextType.TEXT:
            self.content = path or unique_tmp_path(media_suffix(part))
            if fetch is not None:
                self._prepare_fn = lambda: fetch(self)

    @property
    def has_media(self) -> bool:
        return self.part.ctype != ContextType.TEXT

    def to_record(self) -> dict:
        """What rebuilds this message after a restart (with the CDN reference, not a file)."""
        return {"wx": self.raw, "part": self.part.index, "first": self.first, "bot": self.bot_id,
                "path": self.content if self.has_media else None}

    @classmethod
    def from_record(cls, record: dict, fetch: Fetcher | None) -> "WxMessage":
        raw = record["wx"]
        [part] = [p for p in parts_of(raw) if p.index == record["part"]]
        return cls(raw, part, str(record.get("bot") or ""), bool(record.get("first")), path=record.get("path"),
                   fetch=fetch)
