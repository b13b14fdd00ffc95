"""WeChatFerry messages (wcf.proto's WxMsg, as the wcferry package's WxMsg) -> ChatMessage.

Only translation lives here. WeChat message types taken: 1 text, 3 image, 34 voice, 49 with an
appmsg of type 6 (a file). A group message has `is_group`, the room in `roomid` and the member
in `sender`; the members it @-mentions are in `<atuserlist>` of its `xml` (the msgsource).

A picture, voice or file names its file in tmp/ from the start and is fetched through the
service when someone calls ``prepare()`` (the worker): the receiving thread never waits for a
download, and a message kept over a restart still holds what fetching it needs (its raw fields).
"""
from __future__ import annotations

import os
import re
import time
from typing import Any, Callable

import xmltodict
from xml.parsers.expat import ExpatError

from bridge.context import ContextType
from channel.chat_message import ChatMessage
from common.text import safe_text
from common.tmp_dir import unique_tmp_path

TEXT, IMAGE, VOICE, APP = 1, 3, 34, 49
APP_FILE = "6"
RAW_FIELDS = ("id", "type", "ts", "sender", "roomid", "content", "xml", "thumb", "extra", "sign")
_SUFFIX = {IMAGE: ".jpg", VOICE: ".mp3"}
_AT_LIST = re.compile(r"<atuserlist>(.*?)</atuserlist>", re.S)


class Malformed(ValueError):
    """A message that cannot be a user's message (wrong shape, missing fields)."""


class Unsupported(ValueError):
    """A message of a kind this channel does not take (system notices, cards, emoji...)."""


def raw_fields(msg: Any) -> dict:
    """The fields of a WxMsg as plain data (what the inbox keeps)."""
    raw = {name: getattr(msg, name, None) for name in RAW_FIELDS}
    raw["is_group"] = bool(msg.from_group()) if hasattr(msg, "from_group") else bool(getattr(msg, "_is_group", False))
    raw["is_self"] = bool(msg.from_self()) if hasattr(msg, "from_self") else bool(getattr(msg, "_is_self", False))
    return raw


def describe(raw: dict) -> str:
    """A message for the log: chosen fields as one repr (the user's text may hold line breaks
    that would forge log lines), its content cut short."""
    fields = {k: raw.get(k) for k in ("id", "type", "sender", "roomid", "is_group", "is_self")}
    content = raw.get("content")
    fields["content"] = content[:80] if isinstance(content, str) else content
    return repr(fields)


def at_list(xml: str) -> list[str]:
    """The wxids a group message @-mentions."""
    found = _AT_LIST.search(xml or "")
    if not found:
        return []
    inner = found.group(1).replace("<![CDATA[", "").replace("]]>", "")
    return [w.strip() for w in inner.split(",") if w.strip()]


def file_info(content: str) -> tuple[str, int]:
    """(file name, declared size) of a type-49 message that is a file; Unsupported otherwise."""
    try:
        # Entity declarations refused, as in common/wechat_callback.py.
        document = xmltodict.parse(content, disable_entities=True)
    except (ExpatError, ValueError) as e:
        raise Malformed(f"an app message whose xml cannot be read ({e})") from None
    msg = document.get("msg") if isinstance(document, dict) else None
    appmsg = msg.get("appmsg") if isinstance(msg, dict) else None
    if not isinstance(appmsg, dict) or str(appmsg.get("type") or "").strip() != APP_FILE:
        raise Unsupported("an app message that is not a file (a link, a card, a mini program...)")
    name = appmsg.get("title")
    name = name.strip() if isinstance(name, str) else ""
    attach = appmsg.get("appattach")
    try:
        size = int(str(attach.get("totallen") or "0").strip()) if isinstance(attach, dict) else 0
    except ValueError:
        size = 0
    return name, size


def _clean_name(name: str) -> str:
    name = re.sub(r"[\x00-\x1f<>:\"|?*/\\]", "_", os.path.basename(name.replace("\\", "/")))[:120]
    return name.strip(" .") or "file"


def check(raw: dict) -> None:
    """Raises Malformed / Unsupported for a message the channel does not take."""
    for name in ("sender", "roomid", "content", "xml", "extra"):
        if raw.get(name) is not None and not isinstance(raw[name], str):
            raise Malformed(f"field {name} is not text")
    if not isinstance(raw.get("id"), int) or raw["id"] <= 0:
        raise Malformed("a message without an id")
    if not (raw.get("sender") or "").strip():
        raise Malformed("a message without a sender")
    if raw.get("is_group") and not (raw.get("roomid") or "").endswith("@chatroom"):
        raise Malformed("a group message without its room")
    kind = raw.get("type")
    if kind == TEXT:
        if not (raw.get("content") or "").strip():
            raise Malformed("an empty text")
    elif kind in (IMAGE, APP):
        if not (raw.get("extra") or "").strip():
            raise Malformed("a picture or file without the path WeChat keeps it at (extra)")
        if kind == APP:
            file_info(raw.get("content") or "")
    elif kind != VOICE:
        raise Unsupported(f"message type {kind}")


# (the message) -> writes its media file at message.content, raising on failure.
Fetcher = Callable[["WcfMessage"], None]


class WcfMessage(ChatMessage):
    """A WeChatFerry message as the pipeline sees it. `names` gives display names: (wxid, room) ->
    name, the room's member name when a room is given."""

    def __init__(self, raw: dict, self_wxid: str, self_name: str, names: Callable[[str, str], str], *,
                 path: str | None = None, fetch: Fetcher | None = None) -> None:
        super().__init__(raw)
        check(raw)
        self.raw = raw
        self.kind = raw["type"]
        self.msg_id = str(raw["id"])
        ts = raw.get("ts")
        self.create_time = int(ts) if isinstance(ts, int) and ts > 0 else int(time.time())
        sender = raw["sender"]
        self.is_group = bool(raw.get("is_group"))
        self.my_msg = bool(raw.get("is_self"))
        self.from_user_id = sender
        self.from_user_nickname = names(sender, "") or sender
        self.to_user_id, self.to_user_nickname = self_wxid, self_name
        self.file_name = ""
        self.declared_size = 0
        if self.is_group:
            room = raw["roomid"]
            self.other_user_id = room
            self.other_user_nickname = names(room, "") or room
            self.actual_user_id = sender
            self.actual_user_nickname = names(sender, room) or self.from_user_nickname
            self.at_list = at_list(raw.get("xml") or "")
            self.is_at = self_wxid in self.at_list and not re.search(r"@(?:所有人|all|All)", raw.get("content") or "")
            self.self_display_name = names(self_wxid, room) or self_name
        else:
            # The service puts the conversation's other side in `roomid` (for a message this
            # account sent from the PC or phone, `sender` is the account itself).
            peer = (raw.get("roomid") or "").strip() or sender
            self.other_user_id, self.other_user_nickname = peer, names(peer, "") or peer
            self.actual_user_id, self.actual_user_nickname = sender, self.from_user_nickname
        if self.kind == TEXT:
            self.ctype, self.content = ContextType.TEXT, safe_text(raw["content"])
            return
        if self.kind == APP:
            self.ctype = ContextType.FILE
            name, self.declared_size = file_info(raw["content"])
            self.file_name = _clean_name(name)
            suffix = "-" + self.file_name
        else:
            self.ctype = ContextType.IMAGE if self.kind == IMAGE else ContextType.VOICE
            suffix = _SUFFIX[self.kind]
        self.content = path or unique_tmp_path(suffix)
        if fetch is not None:
            self._prepare_fn = lambda: fetch(self)

    @property
    def has_media(self) -> bool:
        return self.kind != TEXT

    def to_record(self) -> dict:
        """What rebuilds this message after a restart: its raw fields and names, not a file."""
        return {"wcf": self.raw, "path": self.content if self.has_media else None,
                "names": {"from": self.from_user_nickname, "other": self.other_user_nickname,
                          "actual": self.actual_user_nickname, "self": self.to_user_nickname,
                          "self_in_room": self.self_display_name}}

    @classmethod
    def from_record(cls, record: dict, self_wxid: str, fetch: Fetcher | None) -> "WcfMessage":
        raw, kept = record["wcf"], record.get("names") or {}
        room = raw.get("roomid") or ""

        def names(wxid: str, in_room: str) -> str:
            if wxid == self_wxid:
                return kept.get("self_in_room" if in_room else "self") or ""
            if wxid == room and not in_room:
                return kept.get("other") or ""
            return kept.get("actual" if in_room else "from") or ""

        return cls(raw, self_wxid, kept.get("self") or "", names, path=record.get("path"), fetch=fetch)
