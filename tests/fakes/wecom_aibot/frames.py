"""Shapes of the frames WeCom pushes (reference §2.1, §2.4, §2.5) and their serialisation."""
from __future__ import annotations

import base64
import json
import os
import re
import time
import uuid
from typing import Optional


def new_req_id() -> str:
    # Server req_ids are 24-char base64-looking strings (§2.1); clients must treat them as opaque.
    return base64.b64encode(os.urandom(16) + b"\x03\x00").decode()


def new_msgid() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]


def message_body(*, msgid: str, bot_id: str, userid: str, chatid: Optional[str], response_url: str,
                 msgtype: str, payload: dict, quote: Optional[dict] = None) -> dict:
    """Field order and presence as in real captures: no create_time, no chatid in single chats."""
    body: dict = {"msgid": msgid, "aibotid": bot_id}
    if chatid is not None:
        body["chatid"] = chatid
    body["chattype"] = "group" if chatid is not None else "single"
    body["from"] = {"userid": userid}
    body["response_url"] = response_url
    body["msgtype"] = msgtype
    body[msgtype] = payload
    if quote is not None:
        body["quote"] = quote
    return body


def event_body(*, msgid: str, bot_id: str, userid: Optional[str], chatid: Optional[str], eventtype: str,
               payload: Optional[dict], response_url: Optional[str] = None) -> dict:
    """Events nest their payload under a key named after the event type (§2.5); payload-less
    events (enter_chat, disconnected_event) carry only `eventtype`."""
    body: dict = {"msgid": msgid, "create_time": int(time.time()), "aibotid": bot_id}
    if chatid is not None:
        body["chatid"] = chatid
    if userid is not None:
        body["chattype"] = "group" if chatid is not None else "single"
        body["from"] = {"userid": userid}
    if response_url is not None:
        body["response_url"] = response_url
    event: dict = {"eventtype": eventtype}
    if payload is not None:
        event[eventtype] = payload
    body["msgtype"] = "event"
    body["event"] = event
    return body


def envelope(cmd: str, req_id: str, body: dict) -> dict:
    return {"cmd": cmd, "headers": {"req_id": req_id}, "body": body}


def ack(req_id: Optional[str], errcode: int, errmsg: str, body: Optional[dict] = None) -> dict:
    """Acks carry no cmd (§2.1); some errors carry no req_id either."""
    frame: dict = {"headers": {"req_id": req_id}} if req_id is not None else {}
    frame["errcode"] = errcode
    frame["errmsg"] = errmsg
    if body is not None:
        frame["body"] = body
    return frame


# An escaped \n, \t or \r not itself preceded by an escaped backslash.
_ESCAPED_CONTROL = re.compile(r'(?<!\\)((?:\\\\)*)\\([ntr])')
_RAW = {"n": "\n", "t": "\t", "r": "\r"}


def dumps(frame: dict, raw_controls: bool = False) -> str:
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
    if raw_controls:
        # The server quirk of §2.1: control characters left raw inside JSON strings, which strict
        # parsers (json.loads) reject. Only strings that contained \n/\t/\r are affected.
        text = _ESCAPED_CONTROL.sub(lambda m: m.group(1) + _RAW[m.group(2)], text)
    return text
