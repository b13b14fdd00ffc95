"""A Feishu `im.message.receive_v1` event (reference/channel-protocols.md §4.2) as ChatMessages.

One event can make several messages ("parts"): a rich-text post with pictures is its pictures
(IMAGE, kept for the next question as on every channel) followed by its text. A part is rebuilt
from the event and its index, which is also what the inbox keeps, so after a restart the message
is the same. Media are downloaded when the pipeline needs them (`prepare`), never while the
platform waits for its acknowledgement.

@ placeholders (`@_user_1`) are taken out of the text: the bot's own (matched by its open id,
or by `feishu_bot_name` when the open id is unknown) disappears and makes the message an @ of
the bot; anyone else's becomes `@name`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable

from bridge.context import ContextType
from channel.chat_message import ChatMessage
from common.tmp_dir import unique_tmp_path

MEDIA_MAX_BYTES = 30 * 1024 * 1024
RESOURCE_PATH = "/open-apis/im/v1/messages/{message_id}/resources/{file_key}"
# the resources API's `type` -> file suffix of the download (a file's comes from its name)
_SUFFIX = {"image": ".png", "file": ""}

Downloader = Callable[[str, str, str, int], bytes]  # (message_id, file_key, type, max_bytes) -> bytes


class UnsupportedMessage(Exception):
    """A message this channel does not take (audio, sticker, share card, an empty post...)."""


@dataclass(frozen=True)
class BotIdentity:
    open_id: str = ""
    name: str = ""

    def is_me(self, mention: dict) -> bool:
        ids = mention.get("id") if isinstance(mention.get("id"), dict) else {}
        if self.open_id:
            return ids.get("open_id") == self.open_id
        return bool(self.name) and mention.get("name") == self.name


@dataclass(frozen=True)
class Part:
    ctype: ContextType
    text: str = ""  # TEXT: the text; media: empty
    key: str = ""  # media: image_key / file_key
    kind: str = ""  # media: "image" or "file" (the resources API's type)
    name: str = ""  # file: its name


def _content(message: dict) -> dict:
    raw = message.get("content")
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise UnsupportedMessage("its content is not JSON") from None
    if not isinstance(data, dict):
        raise UnsupportedMessage("its content is not a JSON object")
    return data


def _mention_text(key: str, mentions: dict[str, dict], bot: BotIdentity, hits: list[str]) -> str:
    mention = mentions.get(key)
    if mention is None:
        return key
    if bot.is_me(mention):
        hits.append(key)
        return ""
    return "@" + str(mention.get("name") or "")


def _replace_mentions(text: str, mentions: dict[str, dict], bot: BotIdentity, hits: list[str]) -> str:
    # Longest keys first: "@_user_1" is a prefix of "@_user_10".
    for key in sorted(mentions, key=len, reverse=True):
        if key in text:
            text = text.replace(key, _mention_text(key, mentions, bot, hits))
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def _post_body(data: dict) -> dict:
    if isinstance(data.get("content"), list):
        return data
    # A post as sent (with a locale wrapper): the first locale's body.
    for value in data.values():
        if isinstance(value, dict) and isinstance(value.get("content"), list):
            return value
    raise UnsupportedMessage("a post without content")


def _post_parts(data: dict, mentions: dict[str, dict], bot: BotIdentity, hits: list[str]) -> list[Part]:
    body = _post_body(data)
    images: list[Part] = []
    lines: list[str] = []
    if isinstance(body.get("title"), str) and body["title"].strip():
        lines.append(body["title"].strip())
    for paragraph in body["content"]:
        if not isinstance(paragraph, list):
            continue
        words: list[str] = []
        for element in paragraph:
            if not isinstance(element, dict):
                continue
            tag = element.get("tag")
            if tag in ("text", "code_block", "md"):
                words.append(str(element.get("text") or ""))
            elif tag == "a":
                label, href = str(element.get("text") or ""), str(element.get("href") or "")
                words.append(f"{label} ({href})" if href and href != label else label or href)
            elif tag == "at":
                key = str(element.get("user_id") or "")
                if key in mentions:
                    words.append(_mention_text(key, mentions, bot, hits))
                elif element.get("user_name"):
                    words.append("@" + str(element["user_name"]))
            elif tag == "img" and element.get("image_key"):
                images.append(Part(ContextType.IMAGE, key=str(element["image_key"]), kind="image"))
        line = "".join(words).strip()
        if line:
            lines.append(line)
    text = _replace_mentions("\n".join(lines), mentions, bot, hits)
    parts = images + ([Part(ContextType.TEXT, text=text)] if text else [])
    if not parts:
        raise UnsupportedMessage("an empty post")
    return parts


def parts_of(event: dict, bot: BotIdentity) -> tuple[list[Part], bool]:
    """The parts of a message event and whether it @s the bot; UnsupportedMessage otherwise."""
    message = event.get("message") if isinstance(event.get("message"), dict) else None
    if message is None or not message.get("message_id"):
        raise UnsupportedMessage("no message in the event")
    kind = str(message.get("message_type") or "")
    mentions = {str(m.get("key")): m for m in message.get("mentions") or [] if isinstance(m, dict) and m.get("key")}
    hits: list[str] = []
    data = _content(message)
    if kind == "text":
        text = _replace_mentions(str(data.get("text") or ""), mentions, bot, hits)
        parts = [Part(ContextType.TEXT, text=text)]
    elif kind == "post":
        parts = _post_parts(data, mentions, bot, hits)
    elif kind == "image" and data.get("image_key"):
        parts = [Part(ContextType.IMAGE, key=str(data["image_key"]), kind="image")]
    elif kind == "audio" and data.get("file_key"):
        # Feishu voice clips are Opus; the file goes to the voice_to_text engine as it is.
        parts = [Part(ContextType.VOICE, key=str(data["file_key"]), kind="file", name="voice.opus")]
    elif kind == "file" and data.get("file_key"):
        parts = [Part(ContextType.FILE, key=str(data["file_key"]), kind="file", name=str(data.get("file_name") or ""))]
    else:
        raise UnsupportedMessage(f"message type {kind or '(none)'!r} is not handled")
    return parts, bool(hits)


def _safe_suffix(name: str) -> str:
    suffix = name.rsplit(".", 1)[1] if "." in name else ""
    return "." + suffix if suffix.isalnum() and len(suffix) <= 8 else ""


class FeishuMessage(ChatMessage):
    """Part `index` of a message event. `path` is the file a media part is (or was) saved to."""

    def __init__(self, event: dict, index: int, bot: BotIdentity, download: Downloader | None = None,
                 path: str = "") -> None:
        super().__init__(event)
        self.event = event
        self.index = index
        parts, self.is_at = parts_of(event, bot)
        if not 0 <= index < len(parts):
            raise UnsupportedMessage(f"part {index} of a message with {len(parts)}")
        part = self.part = parts[index]
        message = event["message"]
        sender = event.get("sender") if isinstance(event.get("sender"), dict) else {}
        sender_ids = sender.get("sender_id") if isinstance(sender.get("sender_id"), dict) else {}
        self.message_id = str(message["message_id"])
        # Every part but the last is numbered: each is its own message to the pipeline (and its dedup).
        self.msg_id = self.message_id if index == len(parts) - 1 else f"{self.message_id}#{index}"
        self.chat_id = str(message.get("chat_id") or "")
        self.chat_type = str(message.get("chat_type") or "")
        self.is_group = self.chat_type == "group"
        try:
            self.create_time = int(message.get("create_time") or 0) // 1000
        except (TypeError, ValueError):
            self.create_time = 0
        self.ctype = part.ctype
        self.from_user_id = self.actual_user_id = str(sender_ids.get("open_id") or "")
        self.from_user_nickname = self.actual_user_nickname = ""  # events carry no names
        self.to_user_id = bot.open_id
        self.to_user_nickname = bot.name
        self.my_msg = sender.get("sender_type") == "app"
        self.answering = None  # the context being handled for this message (set by the channel)
        if self.is_group:
            # Events carry no group name: the channel puts it in (chat_names.py); the chat id until then.
            self.other_user_id = self.other_user_nickname = self.chat_id
        else:
            self.other_user_id = self.from_user_id
            self.other_user_nickname = ""
        if part.ctype == ContextType.TEXT:
            self.content = part.text
            return
        self.content = path or unique_tmp_path(_SUFFIX.get(part.kind) or _safe_suffix(part.name))

        def fetch() -> None:
            if download is None:
                raise RuntimeError("no API client to download the media with")
            data = download(self.message_id, part.key, part.kind, MEDIA_MAX_BYTES)
            with open(self.content, "wb") as f:
                f.write(data)

        self._prepare_fn = fetch
