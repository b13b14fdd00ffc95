"""Web-WeChat messages (webwxsync's AddMsgList entries) -> ChatMessage, for `wx_protocol: itchat`.

Only translation lives here, with the original's rules (its channel/wechat/wechat_message.py):

* MsgType 1 text -> TEXT; 3 image -> IMAGE (kept for the next question); 34 voice -> VOICE;
  49 with AppMsgType 6 -> FILE; other 49 -> SHARING (the link); 37 friend request -> ACCEPT_FRIEND
  (the content is the request's RecommendInfo, with the ticket needed to accept it);
  10000 notes -> JOIN_GROUP / EXIT_GROUP / PATPAT as the original read them. Anything else
  (emoticons, videos, recalls, the phone's init message) is not for the bot: Unsupported.
* A chat whose user name starts with `@@` is a group. The sender is the `@id:<br/>` before the
  text; their name is their group nickname, else their nickname. The message is an @ of the
  bot when the text holds "@<the bot's group nickname, else its nickname>" followed by U+2005
  (or a space when the text has no U+2005), or ends with it.

What the contacts tell (names, the room's members) is read once, when the message comes in, and
kept with it (`view`): a message kept over a restart is rebuilt from the record alone. A media
message names its tmp/ file at once and is downloaded by the worker (`prepare`).
"""
from __future__ import annotations

import html
import os
import re
import time
from typing import Any, Callable, Protocol

from bridge.context import ContextType
from channel.chat_message import ChatMessage
from common.text import safe_text
from common.tmp_dir import unique_tmp_path

TEXT, IMAGE, VOICE, FRIEND, VIDEO, EMOTICON, APP, INIT, NOTE, RECALL = 1, 3, 34, 37, 43, 47, 49, 51, 10000, 10002
APP_FILE = 6
_SUFFIX = {"image": ".jpg", "voice": ".mp3", "file": ""}

NOTES_JOIN = ("加入群聊", "加入了群聊", "invited", "joined")
NOTES_BOT_JOINED = ("邀请你", "invited you", "You've joined", "你通过扫描")
NOTES_EXIT = ("移出了群聊", "removed")
NOTES_PATPAT = ("拍了拍我", "tickled my", "tickled me")


class Unsupported(ValueError):
    """A message the bot does not take (a type or note it has no use for)."""


class Malformed(ValueError):
    """An entry that cannot be a message (wrong shape, missing fields)."""


class Contacts(Protocol):
    def nickname(self, user_name: str) -> str: ...

    def member(self, room: str, user_name: str) -> dict | None: ...

    def room(self, room: str) -> dict | None: ...


def _str(value: Any) -> str:
    return safe_text(value) if isinstance(value, str) else ("" if value is None else safe_text(str(value)))


def clean_text(text: str) -> str:
    """Web WeChat's markup out of a text: <br/> is a line break, entities are unescaped."""
    return html.unescape(text.replace("<br/>", "\n"))


def is_group_name(user_name: str) -> bool:
    return user_name.startswith("@@")


def at_flag(room: dict | None, own_nickname: str) -> str:
    own = room.get("Self") if isinstance(room, dict) else None
    shown = own.get("DisplayName") if isinstance(own, dict) else ""
    return "@" + (shown or own_nickname)


def mentions(text: str, flag: str) -> bool:
    """The original's @ test: the flag followed by U+2005 (or a space when the text has no
    U+2005), or at the very end."""
    if flag == "@":
        return False
    return (flag + ("\u2005" if "\u2005" in text else " ")) in text or text.endswith(flag)


def _first(found: list) -> str:
    return found[0] if found else ""


def _note(content: str, is_group: bool) -> tuple[ContextType, str]:
    """(ctype, the actual user's nickname) of a system note, or Unsupported."""
    if is_group:
        if any(n in content for n in NOTES_BOT_JOINED):
            raise Unsupported("the bot was added to a group")
        if any(n in content for n in NOTES_JOIN):
            if "invited" in content:
                name = _first(re.findall(r"invited\s+(.+?)\s+to\s+the\s+group\s+chat", content))
            elif "joined" in content:
                name = _first(re.findall(r'"(.*?)" joined the group chat via the QR Code', content))
            else:
                quoted = re.findall(r"\"(.*?)\"", content)
                # "加入了群聊": the last quoted name joined; "加入群聊" (by QR): the first.
                name = (quoted[-1] if "加入了群聊" in content else quoted[0]) if quoted else ""
            return ContextType.JOIN_GROUP, name
        if any(n in content for n in NOTES_EXIT):
            return ContextType.EXIT_GROUP, _first(re.findall(r"\"(.*?)\"", content))
    if any(n in content for n in NOTES_PATPAT):
        if "拍了拍我" in content:
            return ContextType.PATPAT, _first(re.findall(r"\"(.*?)\"", content))
        return ContextType.PATPAT, _first(re.findall(r"^(.*?)(?:tickled my|tickled me)", content)).strip()
    # "你已添加了…" (a friendship now done) needs no accepting: the original made an
    # ACCEPT_FRIEND of it whose sending then failed on a text content.
    raise Unsupported(f"a note the bot has no use for: {content[:40]!r}")


def describe(raw: Any, own_user: str, own_nickname: str, contacts: Contacts) -> dict:
    """What the pipeline needs of one AddMsgList entry, as plain data. Raises Malformed or
    Unsupported."""
    if not isinstance(raw, dict):
        raise Malformed(f"an entry that is a {type(raw).__name__}, not an object")
    msg_id = _str(raw.get("MsgId")).strip()
    sender, receiver = _str(raw.get("FromUserName")), _str(raw.get("ToUserName"))
    if not msg_id or not sender or not receiver:
        raise Malformed("an entry without MsgId, FromUserName or ToUserName")
    kind = raw.get("MsgType")
    if not isinstance(kind, int) or isinstance(kind, bool):
        raise Malformed("an entry without a numeric MsgType")
    content = _str(raw.get("Content"))
    other = receiver if sender == own_user else sender
    is_group = is_group_name(sender) or is_group_name(receiver)
    view: dict = {"msg_id": msg_id, "is_group": is_group, "other": other, "kind": "", "file_name": "",
                  "actual_user_id": sender, "actual_user_nickname": "", "is_at": False, "self_display_name": "",
                  "other_nickname": contacts.nickname(other), "my_msg": sender == own_user and receiver != sender}
    if is_group:
        room_name = other
        said = re.match(r"(@[0-9a-zA-Z]*?):<br/>(.*)$", content, re.S)
        room = contacts.room(room_name)
        own = room.get("Self") if isinstance(room, dict) else None
        view["self_display_name"] = _str(own.get("DisplayName")) if isinstance(own, dict) else ""
        if said:
            actual, content = said.group(1), said.group(2)
            member = contacts.member(room_name, actual)
            view["actual_user_id"] = actual
            if member is not None:
                view["actual_user_nickname"] = _str(member.get("DisplayName")) or _str(member.get("NickName"))
                view["is_at"] = mentions(content, at_flag(contacts.room(room_name), own_nickname))
        else:  # written by the bot's own account, or a system note of the group
            view["actual_user_id"] = own_user
            view["actual_user_nickname"] = own_nickname
    text = clean_text(content)
    if kind == TEXT:
        if raw.get("Url"):
            raise Unsupported("a shared location")
        view.update(ctype="TEXT", content=text)
    elif kind == IMAGE:
        view.update(ctype="IMAGE", kind="image")
    elif kind == VOICE:
        view.update(ctype="VOICE", kind="voice")
    elif kind == APP and raw.get("AppMsgType") == APP_FILE:
        name = _str(raw.get("FileName"))
        view.update(ctype="FILE", kind="file", file_name=name)
    elif kind == APP:
        url = clean_text(_str(raw.get("Url")))
        if not url:
            raise Unsupported(f"an app message of type {raw.get('AppMsgType')!r} without a link")
        view.update(ctype="SHARING", content=url)
    elif kind == FRIEND:
        info = raw.get("RecommendInfo")
        if not isinstance(info, dict) or not _str(info.get("UserName")):
            raise Malformed("a friend request without RecommendInfo.UserName")
        info = dict(info)
        info.setdefault("Ticket", _str(raw.get("Ticket")))
        view.update(ctype="ACCEPT_FRIEND", content=info, other=_str(info.get("UserName")),
                    other_nickname=_str(info.get("NickName")), actual_user_id=_str(info.get("UserName")))
    elif kind == NOTE:
        ctype, name = _note(text, is_group)
        view.update(ctype=ctype.name, content=text, actual_user_nickname=name or view["actual_user_nickname"])
    else:
        raise Unsupported(f"MsgType {kind}")
    return view


def media_suffix(view: dict) -> str:
    if view.get("kind") == "file":
        name = re.sub(r"[\x00-\x1f<>:\"|?*/\\]", "_", os.path.basename(str(view.get("file_name", "")).replace("\\", "/")))
        return "-" + name[:120] if name else ""
    return _SUFFIX.get(view.get("kind", ""), "")


# (the message) -> writes its media at message.content, raising on failure.
Fetcher = Callable[["WebWxMessage"], None]


class WebWxMessage(ChatMessage):
    def __init__(self, raw: dict, view: dict, own_user: str, own_nickname: str, *, path: str | None = None,
                 fetch: Fetcher | None = None) -> None:
        super().__init__(raw)
        self.raw = raw
        self.view = view
        self.msg_id = view["msg_id"]
        created = raw.get("CreateTime")
        self.create_time = created if isinstance(created, int) and created > 0 else int(time.time())
        self.ctype = ContextType[view["ctype"]]
        self.content = view.get("content", "")
        self.is_group = view["is_group"]
        self.from_user_id = _str(raw.get("FromUserName"))
        self.to_user_id = _str(raw.get("ToUserName"))
        self.other_user_id = view["other"]
        self.other_user_nickname = view["other_nickname"] or view["other"]
        self.from_user_nickname = own_nickname if self.from_user_id == own_user else self.other_user_nickname
        self.to_user_nickname = own_nickname if self.to_user_id == own_user else self.other_user_nickname
        self.my_msg = view["my_msg"]
        self.self_display_name = view.get("self_display_name", "")
        self.actual_user_id = view["actual_user_id"]
        self.actual_user_nickname = view["actual_user_nickname"] or (
            "" if self.is_group else self.from_user_nickname)
        self.is_at = view["is_at"]
        if self.has_media:
            self.content = path or unique_tmp_path(media_suffix(view))
            if fetch is not None:
                self._prepare_fn = lambda: fetch(self)

    @property
    def kind(self) -> str:
        return self.view.get("kind", "")

    @property
    def has_media(self) -> bool:
        return bool(self.view.get("kind"))

    def to_record(self) -> dict:
        return {"webwx": self.raw, "view": self.view, "path": self.content if self.has_media else None}

    @classmethod
    def from_record(cls, record: dict, own_user: str, own_nickname: str, fetch: Fetcher | None) -> "WebWxMessage":
        return cls(record["webwx"], record["view"], own_user, own_nickname, path=record.get("path"), fetch=fetch)
