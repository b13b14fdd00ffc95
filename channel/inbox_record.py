"""A context as JSON data, for the state store's inbox (ChatChannel.produce / resume_inbox).

A record holds what handling the context needs after a restart: its type, content and
kwargs, with the channel's message object turned into data by the channel's own hook
(ChatChannel.message_to_record). Enum values are written by name; a kwarg whose value is
not JSON data (an object a plugin attached) is left out and named in the log.
"""
from __future__ import annotations

import enum
import json
from typing import Any, Callable

from bridge.context import Context, ContextType
from bridge.reply import ReplyType
from channel.chat_message import ChatMessage
from common.log import logger

RECORD_VERSION = 1
# The enums a context's kwargs hold (origin_ctype, desire_rtype), by the name written down.
_ENUMS: dict[str, type[enum.Enum]] = {"ContextType": ContextType, "ReplyType": ReplyType}
_PLAIN = (str, int, float, bool, type(None))
# Marks a message record whose content is the context's (see context_to_record).
_SAME_CONTENT = "$content_is_context"
# ChatMessage fields that every message has (channel/chat_message.py); `ctype` is an enum.
MESSAGE_FIELDS = (
    "msg_id", "create_time", "content", "from_user_id", "from_user_nickname", "to_user_id",
    "to_user_nickname", "other_user_id", "other_user_nickname", "my_msg", "self_display_name",
    "is_group", "is_at", "actual_user_id", "actual_user_nickname", "at_list",
)


def _encode_value(value: Any) -> tuple[bool, Any]:
    """(True, data) when `value` can be written down, else (False, None)."""
    if isinstance(value, _PLAIN):
        return True, value
    if isinstance(value, enum.Enum) and type(value).__name__ in _ENUMS:
        return True, {"$enum": type(value).__name__, "name": value.name}
    if isinstance(value, (list, dict)):
        try:
            json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            return False, None
        return True, value
    return False, None


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$enum", "name"}:
        return _ENUMS[value["$enum"]][value["name"]]
    return value


def context_to_record(context: Context, message_to_record: Callable[[ChatMessage], dict]) -> dict:
    """Raises TypeError when the context's own type or content cannot be written down."""
    if not isinstance(context.type, ContextType):
        raise TypeError(f"context type {context.type!r} is not a ContextType")
    ok, content = _encode_value(context.content)
    if not ok:
        raise TypeError(f"content of type {type(context.content).__name__}")
    kwargs: dict[str, Any] = {}
    left_out = []
    for key, value in context.kwargs.items():
        if key == "msg":
            continue
        ok, data = _encode_value(value)
        if ok:
            kwargs[key] = data
        else:
            left_out.append(key)
    if left_out:
        logger.debug(f"[chat] context keys not kept in the inbox (not JSON data): {', '.join(left_out)}")
    msg = context.kwargs.get("msg")
    msg_record = None if msg is None else message_to_record(msg)
    if isinstance(msg_record, dict) and isinstance(content, str) and msg_record.get("content") == content:
        # A text is usually both the context's and its message's content: written once.
        msg_record = {**msg_record, "content": None, _SAME_CONTENT: True}
    return {
        "v": RECORD_VERSION,
        "type": context.type.name,
        "content": content,
        "kwargs": kwargs,
        "msg": msg_record,
    }


def context_from_record(record: dict, record_to_message: Callable[[dict], ChatMessage]) -> Context:
    if not isinstance(record, dict) or record.get("v") != RECORD_VERSION:
        raise ValueError(f"not an inbox record of version {RECORD_VERSION}")
    kwargs = {key: _decode_value(value) for key, value in record["kwargs"].items()}
    msg_record = record.get("msg")
    if msg_record is not None:
        if msg_record.get(_SAME_CONTENT):
            msg_record = {key: value for key, value in msg_record.items() if key != _SAME_CONTENT}
            msg_record["content"] = record["content"]
        kwargs["msg"] = record_to_message(msg_record)
    return Context(ContextType[record["type"]], record["content"], kwargs)


def message_fields(cmsg: ChatMessage) -> dict:
    """The common fields of a message, as JSON data (what a text message is made of)."""
    fields: dict[str, Any] = {}
    for name in MESSAGE_FIELDS:
        ok, data = _encode_value(getattr(cmsg, name, None))
        fields[name] = data if ok else None
    ctype = getattr(cmsg, "ctype", None)
    fields["ctype"] = ctype.name if isinstance(ctype, ContextType) else None
    return fields


def message_from_fields(fields: dict) -> ChatMessage:
    cmsg = ChatMessage(None)
    for name in MESSAGE_FIELDS:
        if name in fields:
            setattr(cmsg, name, fields[name])
    if fields.get("ctype"):
        cmsg.ctype = ContextType[fields["ctype"]]
    return cmsg
