"""WeCom AI bot callbacks -> ChatMessage (reference/wecom-aibot.md §2.4, §3.2).

Only translation lives here: which field means what, how a group @ is taken off, how a quote is
shown to the bot, and how a media file is fetched and decrypted. What to answer is the pipeline's.

* `chattype` is `single` or `group`; a single chat has no `chatid`. In a group the bot only hears
  messages that @ it, and the text starts with that @ (`"@RobotA hello"`): it is taken off.
* `from.userid` is an opaque id (encrypted unless the bot's creator is a super-admin).
* Media URLs live 5 minutes, so media are fetched when the message arrives, not when it is
  handled; each is AES-encrypted with the key sent next to it (long connection) or with the
  callback EncodingAESKey (callback mode).
* `mixed` (text with pictures; also what a group @ with a picture becomes) is split into the
  pictures, which the pipeline keeps for the next question, and then the text.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from bridge.context import ContextType
from channel.chat_message import ChatMessage
from channel.wecom_bot.crypto import decrypt_media
from common.fetch import FetchBusy, fetch_with_headers
from common.log import logger
from common.text import safe_text
from common.tmp_dir import unique_tmp_path

# Longest media we fetch (WeCom delivers files up to 100 MB).
MEDIA_MAX_BYTES = 100 * 1024 * 1024
# The URL lives 5 minutes: a busy download pool is waited for, up to this long.
MEDIA_WAIT_SECONDS = 120.0
_LEADING_AT = re.compile(r"^\s*@[^\s\u2005]+[\s\u2005]*")
_SUFFIX = {"image": ".jpg", "video": ".mp4", "file": ""}
_QUOTE_NAMES = {"image": "[图片]", "voice": "[语音]", "file": "[文件]", "video": "[视频]"}


class UnsupportedMessage(ValueError):
    """A callback that carries nothing to handle (unknown type, missing fields)."""


class MediaError(Exception):
    """A media file could not be fetched or decrypted; the message says why."""


@dataclass
class Part:
    """One thing a callback asks the bot to handle, in order."""

    ctype: ContextType
    content: str  # the text, or the media's URL until fetch() makes it a file path
    aeskey: str | None = None
    kind: str = ""  # image / file / video for media
    index: int = 0  # position in a mixed message (for its own message id)


def _text_of(value: Any) -> str:
    return safe_text(value if isinstance(value, str) else "" if value is None else str(value))


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def describe_quote(quote: Any) -> str:
    """The quoted message as text for the bot ("" when there is none)."""
    quote = _dict(quote)
    kind = quote.get("msgtype")
    if kind == "text":
        return _text_of(_dict(quote.get("text")).get("content"))
    if kind == "voice":
        return _text_of(_dict(quote.get("voice")).get("content")) or _QUOTE_NAMES["voice"]
    if kind == "mixed":
        pieces = []
        for item in _dict(quote.get("mixed")).get("msg_item") or []:
            item = _dict(item)
            if item.get("msgtype") == "text":
                pieces.append(_text_of(_dict(item.get("text")).get("content")))
            elif item.get("msgtype") in _QUOTE_NAMES:
                pieces.append(_QUOTE_NAMES[item["msgtype"]])
        return " ".join(p for p in pieces if p)
    return _QUOTE_NAMES.get(str(kind), "")


def with_quote(text: str, quote: Any) -> str:
    quoted = describe_quote(quote)
    if not quoted:
        return text
    # WeChat's own way of showing a quote in text, which bots and plugins already know.
    return f"「{quoted}」\n- - - - - - - - - - - - - - -\n{text}"


def parts_of(body: dict) -> list[Part]:
    """What the callback `body` carries, in order. Raises UnsupportedMessage."""
    kind = body.get("msgtype")
    group = body.get("chattype") == "group"
    if kind == "text":
        text = _text_of(_dict(body.get("text")).get("content"))
        if group:
            text = _LEADING_AT.sub("", text, count=1)
        return [Part(ContextType.TEXT, with_quote(text, body.get("quote")))]
    if kind == "voice":
        # WeCom sends its own transcript only (no audio): it is the question.
        text = _text_of(_dict(body.get("voice")).get("content"))
        return [Part(ContextType.TEXT, with_quote(text, body.get("quote")))]
    if kind in ("image", "file", "video"):
        media = _dict(body.get(kind))
        url = media.get("url")
        if not isinstance(url, str) or not url:
            raise UnsupportedMessage(f"a {kind} message without a url")
        ctype = {"image": ContextType.IMAGE, "file": ContextType.FILE, "video": ContextType.VIDEO}[kind]
        return [Part(ctype, url, media.get("aeskey"), kind)]
    if kind == "mixed":
        images, texts = [], []
        for item in _dict(body.get("mixed")).get("msg_item") or []:
            item = _dict(item)
            if item.get("msgtype") == "text":
                texts.append(_text_of(_dict(item.get("text")).get("content")))
            elif item.get("msgtype") == "image":
                image = _dict(item.get("image"))
                if isinstance(image.get("url"), str) and image["url"]:
                    images.append(Part(ContextType.IMAGE, image["url"], image.get("aeskey"), "image", len(images) + 1))
        text = "\n".join(t for t in texts if t.strip())
        if group:
            text = _LEADING_AT.sub("", text, count=1)
        parts = list(images)
        if text.strip():
            parts.append(Part(ContextType.TEXT, with_quote(text, body.get("quote"))))
        if not parts:
            raise UnsupportedMessage("a mixed message with nothing in it")
        return parts
    raise UnsupportedMessage(f"message type {kind!r} is not handled")


def _filename(headers: Any, url: str) -> str:
    """The file's name from Content-Disposition (RFC 5987 `filename*=` first), else the URL."""
    disposition = str(headers.get("Content-Disposition", "") if headers is not None else "")
    match = re.search(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", disposition, re.I)
    if match:
        try:
            name = unquote(match.group(2).strip().strip('"'), encoding=match.group(1) or "utf-8")
        except LookupError:
            name = unquote(match.group(2).strip().strip('"'))
    else:
        match = re.search(r'filename\s*=\s*"?([^";]+)"?', disposition, re.I)
        name = match.group(1).strip() if match else os.path.basename(urlsplit(url).path)
    name = os.path.basename(name.replace("\\", "/")).strip()
    return re.sub(r"[\x00-\x1f<>:\"|?*]", "_", name)[:120]


def fetch_media(part: Part, fallback_key: str | None, timeout: float | None = None) -> str:
    """Fetch and decrypt a media part into tmp/; returns the file's path. Raises MediaError."""
    key = part.aeskey or fallback_key
    if not key:
        raise MediaError(f"the {part.kind} came without a key to decrypt it")
    host = urlsplit(part.content).hostname or ""
    deadline = time.monotonic() + MEDIA_WAIT_SECONDS
    while True:
        try:
            # The URL comes from WeCom in an authenticated frame: its host is trusted even on a
            # private deployment's internal address.
            data, headers = fetch_with_headers(part.content, MEDIA_MAX_BYTES, extra_hosts=[host], timeout=timeout)
            break
        except FetchBusy:
            if time.monotonic() > deadline:
                raise MediaError(f"the {part.kind} could not be fetched: every download slot stayed busy") from None
            time.sleep(0.5)
        except Exception as e:
            raise MediaError(f"the {part.kind} could not be fetched: {e}") from None
    try:
        plain = decrypt_media(data, key)
    except ValueError as e:
        raise MediaError(f"the {part.kind} could not be decrypted: {e}") from None
    suffix = _SUFFIX.get(part.kind, "")
    if part.kind == "file":
        name = _filename(headers, part.content)
        suffix = "-" + name if name else ""
    path = unique_tmp_path(suffix)
    with open(path, "wb") as f:
        f.write(plain)
    logger.debug(f"[wecom_bot] {part.kind} fetched: {len(plain)} bytes -> {path}")
    return path


class WecomBotMessage(ChatMessage):
    """One part of a callback, as the pipeline sees it. `body` is the callback's body; the
    reply handles (`req_id`, `response_url`) go with it so an answer can be sent after a restart."""

    def __init__(self, body: dict, part: Part, req_id: str, bot_id: str) -> None:
        super().__init__(body)
        self.body = body
        self.req_id = req_id
        self.response_url = body.get("response_url") if isinstance(body.get("response_url"), str) else None
        sender = _text_of(_dict(body.get("from")).get("userid"))
        self.chatid = _text_of(body.get("chatid")) or None
        msgid = _text_of(body.get("msgid"))
        self.msg_id = msgid if part.index == 0 else f"{msgid}#{part.index}"
        self.create_time = body.get("create_time") if isinstance(body.get("create_time"), int) else int(time.time())
        self.ctype = part.ctype
        self.content = part.content
        self.is_group = body.get("chattype") == "group" and bool(self.chatid)
        self.from_user_id = self.actual_user_id = sender
        self.from_user_nickname = self.actual_user_nickname = sender
        self.to_user_id = self.to_user_nickname = bot_id
        if self.is_group:
            # WeCom names neither the group nor its members: the ids stand for both.
            self.other_user_id = self.other_user_nickname = self.chatid
            self.from_user_id = self.chatid
            self.is_at = True  # a group only delivers messages that @ the bot
        else:
            self.other_user_id = self.other_user_nickname = sender
        self.chat_target = self.chatid or sender  # whom a proactive message goes to

    @property
    def kind(self) -> str:
        return str(self.body.get("msgtype") or "")
