"""The XML of inbound callbacks (reference §1.3, §2.3, §3.1) and the reading of passive replies (§1.5).

Strings go in CDATA, numbers bare, elements in the platform's order: ToUserName, FromUserName,
CreateTime, MsgType, the type's own elements, MsgId (absent on events).
"""
from __future__ import annotations

import itertools
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Optional, Union

Value = Union[str, int]
UNSUPPORTED_TEXT = "【收到不支持的消息类型，暂无法显示】"

# MsgIds are 64-bit and grow; start high like real ones so a daemon storing them as 32-bit breaks.
_msg_ids = itertools.count(24_000_000_000_000_000 + int(time.time()) * 1000)


def next_msg_id() -> int:
    return next(_msg_ids)


def cdata(value: str) -> str:
    # "]]>" cannot appear inside a CDATA section: close it and open a new one around the ">".
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def element(name: str, value: Value) -> str:
    return f"<{name}>{value if isinstance(value, int) else cdata(value)}</{name}>"


def build_xml(fields: list[tuple[str, Value]]) -> str:
    return "<xml>" + "".join(element(name, value) for name, value in fields) + "</xml>"


@dataclass
class Inbound:
    """One callback's plaintext. Re-deliveries send the same fields (same MsgId, same CreateTime)."""

    fields: list[tuple[str, Value]]
    user: Optional[str]  # FromUserName (None for kf_msg_or_event, which has none)
    msg_id: Optional[int]
    agent_id: Optional[int] = None  # WeCom envelope AgentID

    @property
    def msg_type(self) -> str:
        return str(self.get("MsgType"))

    def get(self, name: str) -> Optional[Value]:
        return next((v for k, v in self.fields if k == name), None)

    def xml(self) -> str:
        return build_xml(self.fields)


def message(to: str, sender: str, msgtype: str, extra: list[tuple[str, Value]], msg_id: Optional[int] = None,
            agent_id: Optional[int] = None, create_time: Optional[int] = None) -> Inbound:
    """A user message; `agent_id` adds the WeCom AgentID element (after the type's elements)."""
    msg_id = next_msg_id() if msg_id is None else msg_id
    fields: list[tuple[str, Value]] = [("ToUserName", to), ("FromUserName", sender),
                                       ("CreateTime", create_time or int(time.time())), ("MsgType", msgtype)]
    fields += extra
    fields.append(("MsgId", msg_id))
    if agent_id is not None:
        fields.append(("AgentID", agent_id))
    return Inbound(fields, sender, msg_id, agent_id)


def event(to: str, sender: Optional[str], name: str, extra: list[tuple[str, Value]] = (),
          agent_id: Optional[int] = None, create_time: Optional[int] = None) -> Inbound:
    """An event: no MsgId (the daemon dedups on FromUserName + CreateTime)."""
    fields: list[tuple[str, Value]] = [("ToUserName", to)]
    if sender is not None:
        fields.append(("FromUserName", sender))
    fields += [("CreateTime", create_time or int(time.time())), ("MsgType", "event"), ("Event", name)]
    fields += list(extra)
    if agent_id is not None:
        fields.append(("AgentID", agent_id))
    return Inbound(fields, sender, None, agent_id)


# --- reading what comes back -----------------------------------------------------------------
class NotXml(ValueError):
    pass


def parse(text: str) -> dict:
    """<xml> children as a dict: text for leaves, a dict for nested elements (Image/MediaId), a
    list for repeated ones (Articles/item). A DOCTYPE is refused: a reply has no business with
    entities, and the parser here must not expand any."""
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise NotXml("reply contains a DOCTYPE or ENTITY declaration")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise NotXml(f"not XML: {exc}") from None
    if root.tag != "xml":
        raise NotXml(f"root element is <{root.tag}>, not <xml>")
    return _children(root)


def _children(node: ET.Element) -> dict:
    out: dict = {}
    for child in node:
        value = _children(child) if len(child) else (child.text or "")
        if child.tag in out:
            if not isinstance(out[child.tag], list):
                out[child.tag] = [out[child.tag]]
            out[child.tag].append(value)
        else:
            out[child.tag] = value
    return out


@dataclass
class ParsedReply:
    """A passive reply as the user would get it."""

    msgtype: str
    fields: dict
    text: Optional[str] = None
    media_id: Optional[str] = None
    problems: list[str] = field(default_factory=list)


REPLY_MEDIA = {"image": "Image", "voice": "Voice", "video": "Video"}


def read_reply(fields: dict, user: Optional[str], account: str) -> ParsedReply:
    """Check a decrypted reply against §1.5: addressed back to the user from the account, a known
    MsgType with its elements. Problems make it invalid (the user gets the "unavailable" text)."""
    msgtype = str(fields.get("MsgType", ""))
    reply = ParsedReply(msgtype, fields)
    p = reply.problems
    if user is not None and fields.get("ToUserName") != user:
        p.append(f"ToUserName is {fields.get('ToUserName')!r}, not the user {user!r}")
    if fields.get("FromUserName") != account:
        p.append(f"FromUserName is {fields.get('FromUserName')!r}, not {account!r}")
    if not str(fields.get("CreateTime", "")).isdigit():
        p.append("CreateTime missing or not a number")
    if msgtype == "text":
        if not isinstance(fields.get("Content"), str):
            p.append("text reply without Content")
        else:
            reply.text = fields["Content"]
    elif msgtype in REPLY_MEDIA:
        inner = fields.get(REPLY_MEDIA[msgtype])
        media_id = inner.get("MediaId") if isinstance(inner, dict) else None
        if not media_id:
            p.append(f"{msgtype} reply without {REPLY_MEDIA[msgtype]}/MediaId")
        reply.media_id = media_id
    elif msgtype == "news":
        if not str(fields.get("ArticleCount", "")).isdigit() or "Articles" not in fields:
            p.append("news reply without ArticleCount/Articles")
    elif msgtype not in ("music", "transfer_customer_service"):
        p.append(f"unknown reply MsgType {msgtype!r}")
    return reply
