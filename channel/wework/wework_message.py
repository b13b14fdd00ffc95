"""ntwork notifications -> ChatMessage.

Only translation lives here: which fields mean what, and how a media file is fetched from WeCom's
CDN when someone calls ``prepare()``. What to answer is the pipeline's business.

Payload facts (reference/ntwork.md §4): every id and ``send_time`` is a string; a group
conversation id starts with ``R:``; ``at_list`` items carry ``nickname`` and/or ``user_id``;
media carry ``data["cdn"]``, either ``{file_id, aes_key, size}`` (C2C, sender on WeCom) or
``{url, auth_key, aes_key, size}`` (WX-CDN, sender on WeChat). 11072 (a member joined a room)
has no ntwork constant name and carries ``member_list``.

Fixed against the original (channel/wework/wework_message.py of dify-on-wechat):
- ``msg_id`` is the message's own ``server_id`` (then ``local_id``, then a hash of the payload);
  the original used the conversation id, so dedup and plugins saw one id for a whole chat;
- media go to unique file names (the original named them by the second they arrived, so two
  images in the same second overwrote each other);
- the room name comes from the channel's cache instead of a ``get_rooms()`` round-trip and a 1 s
  sleep per message; member lists are refreshed by the channel in the background, not here;
- placeholder texts and unknown types raise ``UnsupportedMessage`` (dropped cleanly) instead of
  leaving a half-filled message, or a KeyError on ``wework_msg["MsgType"]``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from bridge.context import ContextType
from channel.chat_message import ChatMessage
from common.log import logger
from common.tmp_dir import TmpDir, unique_tmp_path
from common.utils import safe_file_name  # noqa: F401 - shared; imported from here by older code
from voice.audio_convert import sil_to_wav

# Inbound notification ids (the values of ntwork.const.notify_type).
MT_RECV_WEWORK_QUIT_MSG = 11001
MT_RECV_TEXT_MSG = 11041
MT_RECV_IMAGE_MSG = 11042
MT_RECV_VOICE_MSG = 11044
MT_RECV_FILE_MSG = 11045
MT_RECV_LINK_CARD_MSG = 11047
MT_ROOM_MEMBER_JOINED = 11072  # not named by ntwork; the original registers the bare number

HANDLED_TYPES = (
    MT_RECV_TEXT_MSG, MT_RECV_IMAGE_MSG, MT_RECV_VOICE_MSG, MT_RECV_FILE_MSG,
    MT_RECV_LINK_CARD_MSG, MT_ROOM_MEMBER_JOINED,
)

# Outbound request id the 0.1.x ``wx_cdn_download`` cannot send properly (it lacks aes_key),
# so the request is sent raw, as the original does (ntwork.const.send_type.MT_WXCDN_DOWNLOAD_MSG).
MT_WXCDN_DOWNLOAD_MSG = 11171
# c2c_cdn_download file_type values.
C2C_IMAGE = 2
C2C_FILE = 5

# What WeCom puts in a text message whose real type the hook cannot show.
PLACEHOLDER_TEXTS = ("该消息类型暂不能展示", "不支持的消息类型")

GROUP_PREFIX = "R:"
# The separators WeCom puts after an @mention: U+2005 (four-per-em space) or a plain space.
_AT_END = "(?:\u2005|\u0020|$)"
# How long to wait for WeCom to show a downloaded file on disk after the hook answered.
DOWNLOAD_SETTLE_SECONDS = 3.0


class UnsupportedMessage(NotImplementedError):
    """A notification that carries nothing to handle (placeholder text, unknown type)."""


@dataclass(frozen=True)
class LoginInfo:
    """The logged-in account, from ``WeWork.get_login_info()``."""

    user_id: str = ""
    username: str = ""
    nickname: str = ""

    @classmethod
    def from_dict(cls, info: dict | None) -> "LoginInfo":
        info = info or {}
        return cls(str(info.get("user_id") or ""), str(info.get("username") or ""), str(info.get("nickname") or ""))

    @property
    def display_name(self) -> str:
        """The name the bot goes by (the original's ``channel.name``)."""
        return self.nickname or self.username

    @property
    def full_name(self) -> str:
        """``username(nickname)``, the original's name for the bot in messages."""
        return f"{self.username}({self.nickname})" if self.nickname else self.username

    def names(self) -> list[str]:
        """Every name an @mention of the bot may show, longest first (for text matching)."""
        found = {n for n in (self.full_name, self.nickname, self.username) if n}
        return sorted(found, key=len, reverse=True)


def conversation_of(data: dict) -> str | None:
    conversation = data.get("conversation_id") or data.get("room_conversation_id")
    return str(conversation) if conversation else None


def is_group_conversation(conversation_id: str | None) -> bool:
    return bool(conversation_id) and str(conversation_id).startswith(GROUP_PREFIX)


def message_id(data: dict) -> str:
    """The message's own id: ``server_id``, else ``local_id``, else a hash of the payload.

    A payload without ``send_time`` (a member-joined notice) is hashed with the 10-minute slot it
    arrived in, so an immediate redelivery is recognised while a member who leaves and joins
    again later is greeted again.
    """
    server_id = data.get("server_id")
    if server_id not in (None, "", 0, "0"):
        return str(server_id)
    local_id = data.get("local_id")
    if local_id not in (None, "", 0, "0"):
        return f"local-{local_id}"
    digest = hashlib.sha1(json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
    if not data.get("send_time"):
        digest.update(str(int(time.time()) // 600).encode())
    return "hash-" + digest.hexdigest()[:24]


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def cdn_download(wework: Any, cdn: dict, save_path: str, file_type: int) -> None:
    """Have WeCom download and decrypt a media file to ``save_path`` (absolute: the WeCom process
    writes it). Raises OSError when no file appears."""
    if not isinstance(cdn, dict):
        raise OSError("the message has no cdn information")
    if cdn.get("url") and cdn.get("auth_key"):
        # Sender on WeChat. ntwork 0.1.3's wx_cdn_download lacks aes_key: send the request raw.
        request = {
            "url": cdn["url"], "auth_key": cdn["auth_key"], "aes_key": cdn.get("aes_key"),
            "size": cdn.get("size"), "save_path": save_path,
        }
        result = wework._WeWork__send_sync(MT_WXCDN_DOWNLOAD_MSG, request)
    elif cdn.get("file_id"):
        result = wework.c2c_cdn_download(cdn["file_id"], cdn.get("aes_key"), cdn.get("size"), file_type, save_path)
    else:
        raise OSError(f"the message's cdn has neither file_id nor url: {sorted(cdn)}")
    # The hook answers after writing the file; an answer without the file gets a short grace
    # period, no answer (None: refused or timed out) none.
    deadline = time.monotonic() + (DOWNLOAD_SETTLE_SECONDS if result else 0)
    while not (os.path.isfile(save_path) and os.path.getsize(save_path) > 0):
        if time.monotonic() >= deadline:
            raise OSError(f"WeCom did not download the file to {save_path} (answer: {result})")
        time.sleep(0.05)
    logger.debug(f"[wework] downloaded {save_path}")


def _absolute_tmp_path(suffix: str) -> str:
    return os.path.abspath(unique_tmp_path(suffix))


class WeworkMessage(ChatMessage):
    """One WeCom notification as a ChatMessage (field meanings: channel/chat_message.py).

    ``login`` defaults to ``wework.get_login_info()``; ``room_name`` is the group's name when
    the caller knows it (the channel fills it from its cache otherwise).
    """

    def __init__(self, wework_msg: dict, wework: Any = None, is_group: bool | None = None,
                 login: LoginInfo | None = None, room_name: str | None = None):
        super().__init__(wework_msg)
        data = wework_msg.get("data") if isinstance(wework_msg, dict) else None
        if not isinstance(data, dict):
            raise UnsupportedMessage("notification without data")
        msg_type = _as_int(wework_msg.get("type"))
        if login is None:
            login = LoginInfo.from_dict(wework.get_login_info() if wework is not None else None)
        conversation = conversation_of(data)
        if not conversation:
            raise UnsupportedMessage("notification without a conversation id")
        self.wework = wework
        self.login = login
        self.msg_type = msg_type
        self.is_group = is_group_conversation(conversation) if is_group is None else bool(is_group)
        self.msg_id = message_id(data)
        self.create_time = _as_int(data.get("send_time"))

        self._translate(msg_type, data)

        sender = str(data.get("sender") or "")
        sender_name = data.get("sender_name")
        self.my_msg = bool(sender) and sender == login.user_id
        self.from_user_id = login.user_id if self.my_msg else conversation
        self.from_user_nickname = login.full_name if self.my_msg else sender_name
        self.to_user_id = login.user_id
        self.to_user_nickname = login.full_name
        self.other_user_id = conversation
        self.other_user_nickname = sender_name
        self.self_display_name = login.username if login.nickname else None
        if self.actual_user_id is None:
            self.actual_user_id = sender or None
            self.actual_user_nickname = sender_name
        if self.is_group:
            # In a group the "other side" and the sender shown are the room (the original's shape).
            self.from_user_nickname = room_name
            self.other_user_nickname = room_name
            self._detect_at(data)

    # ----------------------------------------------------------------------- types
    def _translate(self, msg_type: int | None, data: dict) -> None:
        if msg_type == MT_RECV_TEXT_MSG:
            content = data.get("content")
            if not isinstance(content, str) or not content:
                raise UnsupportedMessage("text message without content")
            if any(p in content for p in PLACEHOLDER_TEXTS):
                raise UnsupportedMessage("a message type WeCom cannot show to the hook")
            self.ctype = ContextType.TEXT
            self.content = content
        elif msg_type == MT_RECV_IMAGE_MSG:
            self.ctype = ContextType.IMAGE
            self.content = _absolute_tmp_path(".jpg")
            cdn = data.get("cdn")
            self._prepare_fn = lambda: self._download(cdn, self.content, C2C_IMAGE)
        elif msg_type == MT_RECV_VOICE_MSG:
            self.ctype = ContextType.VOICE
            self.content = _absolute_tmp_path(".wav")
            cdn = data.get("cdn")
            self._prepare_fn = lambda: self._download_voice(cdn, self.content)
        elif msg_type == MT_RECV_FILE_MSG:
            self.ctype = ContextType.FILE
            cdn = data.get("cdn") or {}
            name = safe_file_name(cdn.get("file_name") if isinstance(cdn, dict) else None)
            # A folder of its own keeps the sender's file name and never collides.
            self.content = os.path.abspath(os.path.join(TmpDir().path(), uuid.uuid4().hex, name))
            self._prepare_fn = lambda: self._download(cdn, self.content, C2C_FILE)
        elif msg_type == MT_RECV_LINK_CARD_MSG:
            self.ctype = ContextType.SHARING
            self.content = data.get("url")
            if not self.content:
                raise UnsupportedMessage("link card without url")
        elif msg_type == MT_ROOM_MEMBER_JOINED:
            members = data.get("member_list") or []
            member = members[0] if members and isinstance(members[0], dict) else None
            if member is None:
                raise UnsupportedMessage("member-joined notice without member_list")
            name = member.get("name") or member.get("username") or member.get("nickname") or ""
            self.ctype = ContextType.JOIN_GROUP
            self.content = f"{name}加入了群聊！"
            self.actual_user_id = str(member.get("user_id") or "") or None
            self.actual_user_nickname = name
        else:
            raise UnsupportedMessage(f"message type {msg_type} is not handled")

    def _detect_at(self, data: dict) -> None:
        at_names: list[str] = []
        at_ids: set[str] = set()
        for item in data.get("at_list") or []:
            if isinstance(item, dict):
                if item.get("nickname"):
                    at_names.append(str(item["nickname"]))
                if item.get("user_id"):
                    at_ids.add(str(item["user_id"]))
            elif isinstance(item, str) and item:
                at_names.append(item)
        self.at_list = at_names
        names = self.login.names()
        self.is_at = bool(self.login.user_id and self.login.user_id in at_ids) or any(n in names for n in at_names)
        if not self.is_at and self.ctype == ContextType.TEXT:
            # A pasted or typed "@name" is not in at_list.
            self.is_at = any(re.search("@" + re.escape(n) + _AT_END, self.content) for n in names)

    # ----------------------------------------------------------------------- media
    def _download(self, cdn: Any, path: str, file_type: int) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cdn_download(self.wework, cdn, path, file_type)

    def _download_voice(self, cdn: Any, wav_path: str) -> None:
        silk_path = os.path.splitext(wav_path)[0] + ".silk"
        # Ours to create (the WeCom process only writes into it): a broken tmp/ fails here, by name.
        os.makedirs(os.path.dirname(silk_path), exist_ok=True)
        try:
            cdn_download(self.wework, cdn, silk_path, C2C_FILE)
            sil_to_wav(silk_path, wav_path)
        finally:
            try:
                os.remove(silk_path)
            except OSError:
                pass


def split_join_notice(wework_msg: dict) -> list[dict]:
    """A member-joined notice naming several members, as one notice per member."""
    data = wework_msg.get("data") or {}
    members = data.get("member_list") or []
    if len(members) <= 1:
        return [wework_msg]
    return [dict(wework_msg, data=dict(data, member_list=[m])) for m in members]

