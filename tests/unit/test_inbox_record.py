"""A context as JSON data and back (channel/inbox_record.py), as the inbox keeps it."""
from __future__ import annotations

import json

import pytest

from bridge.context import Context, ContextType
from bridge.reply import ReplyType
from channel import inbox_record
from tests.fakes.recording_channel import make_msg


def roundtrip(context: Context) -> Context:
    record = inbox_record.context_to_record(context, inbox_record.message_fields)
    text = json.dumps(record, ensure_ascii=False)  # what the store writes
    return inbox_record.context_from_record(json.loads(text), inbox_record.message_from_fields)


def test_a_group_context_comes_back_whole():
    msg = make_msg("@Bot hello", group=("room-1", "Room"), sender="carol", sender_name="Carol", at=True,
                   at_list=["Bot"], msg_id="m-1")
    context = Context(ContextType.TEXT, "hello", {
        "msg": msg, "isgroup": True, "session_id": "carol@@room-1", "receiver": "room-1",
        "origin_ctype": ContextType.VOICE, "desire_rtype": ReplyType.VOICE, "openai_api_key": None,
        "tags": ["a", 1],
    })
    back = roundtrip(context)
    assert back.type is ContextType.TEXT and back.content == "hello"
    assert back["origin_ctype"] is ContextType.VOICE and back["desire_rtype"] is ReplyType.VOICE
    assert {k: back[k] for k in ("isgroup", "session_id", "receiver", "openai_api_key", "tags")} == {
        "isgroup": True, "session_id": "carol@@room-1", "receiver": "room-1", "openai_api_key": None, "tags": ["a", 1],
    }
    got = back["msg"]
    for name in ("msg_id", "content", "is_group", "is_at", "at_list", "actual_user_id", "actual_user_nickname",
                 "other_user_id", "other_user_nickname", "ctype"):
        assert getattr(got, name) == getattr(msg, name), name


def test_a_text_written_once_still_fills_both_contents():
    msg = make_msg("same text")
    context = Context(ContextType.TEXT, "same text", {"msg": msg, "receiver": "alice"})
    record = inbox_record.context_to_record(context, inbox_record.message_fields)
    assert json.dumps(record).count("same text") == 1
    back = roundtrip(context)
    assert back.content == back["msg"].content == "same text"


def test_what_is_not_json_data_is_left_out_or_refused():
    context = Context(ContextType.TEXT, "q", {"msg": make_msg("q"), "receiver": "alice", "channel": object()})
    assert "channel" not in roundtrip(context).kwargs
    with pytest.raises(TypeError):
        inbox_record.context_to_record(Context(ContextType.IMAGE, object(), {}), inbox_record.message_fields)


def test_a_record_of_another_version_is_refused():
    with pytest.raises(ValueError):
        inbox_record.context_from_record({"v": 2}, inbox_record.message_from_fields)
