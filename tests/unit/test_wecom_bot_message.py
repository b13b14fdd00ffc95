"""channel/wecom_bot/message.py and crypto.py: callback bodies as the pipeline sees them, and media
decryption checked against the simulator's own encryptor (written separately from the reference)."""
from __future__ import annotations

import base64

import pytest

from bridge.context import ContextType
from channel.wecom_bot import message as wmsg
from channel.wecom_bot.crypto import CryptoError, decrypt_media
from channel.wecom_bot.message import UnsupportedMessage, WecomBotMessage
from tests.fakes.wecom_aibot.crypto import encrypt_media, new_aeskey


def body(**fields):
    base = {"msgid": "m1", "aibotid": "bot", "chattype": "single", "from": {"userid": "u1"}}
    base.update(fields)
    return base


def test_group_text_loses_its_leading_at_and_single_text_keeps_everything():
    group = body(chattype="group", chatid="g1", msgtype="text", text={"content": "@RobotA  what is @this"})
    [part] = wmsg.parts_of(group)
    assert part.ctype == ContextType.TEXT and part.content == "what is @this"
    single = body(msgtype="text", text={"content": "@RobotA hi"})
    assert wmsg.parts_of(single)[0].content == "@RobotA hi"


def test_a_group_message_names_the_group_as_the_conversation_and_is_at():
    group = body(chattype="group", chatid="g1", msgtype="text", text={"content": "@R hi"})
    cmsg = WecomBotMessage(group, wmsg.parts_of(group)[0], "req", "bot")
    assert cmsg.is_group and cmsg.is_at and cmsg.other_user_id == "g1" and cmsg.actual_user_id == "u1"
    assert cmsg.chat_target == "g1"
    single = body(msgtype="text", text={"content": "hi"})
    cmsg = WecomBotMessage(single, wmsg.parts_of(single)[0], "req", "bot")
    assert not cmsg.is_group and cmsg.other_user_id == "u1" and cmsg.chat_target == "u1"


def test_mixed_gives_its_pictures_first_then_its_text_each_with_its_own_id():
    mixed = body(chattype="group", chatid="g", msgtype="mixed", mixed={"msg_item": [
        {"msgtype": "text", "text": {"content": "@RobotA compare"}},
        {"msgtype": "image", "image": {"url": "http://x/1", "aeskey": "k1"}},
        {"msgtype": "image", "image": {"url": "http://x/2", "aeskey": "k2"}},
    ]})
    parts = wmsg.parts_of(mixed)
    assert [(p.ctype, p.content) for p in parts] == [
        (ContextType.IMAGE, "http://x/1"), (ContextType.IMAGE, "http://x/2"), (ContextType.TEXT, "compare")]
    ids = [WecomBotMessage(mixed, p, "r", "bot").msg_id for p in parts]
    assert ids == ["m1#1", "m1#2", "m1"] and len(set(ids)) == 3  # dedup keys must not collide


def test_a_quote_is_shown_above_the_question():
    quoted = body(msgtype="text", text={"content": "and this?"},
                  quote={"msgtype": "text", "text": {"content": "the earlier answer"}})
    assert wmsg.parts_of(quoted)[0].content.startswith("「the earlier answer」")
    assert wmsg.parts_of(quoted)[0].content.endswith("and this?")
    image_quote = body(msgtype="text", text={"content": "what is it"}, quote={"msgtype": "image", "image": {}})
    assert "[图片]" in wmsg.parts_of(image_quote)[0].content


@pytest.mark.parametrize("bad", [
    body(msgtype="sticker"), body(msgtype="image", image={}), body(msgtype="mixed", mixed={"msg_item": []}),
    body(msgtype="file", file="not an object"),
])
def test_unknown_or_broken_messages_are_refused_cleanly(bad):
    with pytest.raises(UnsupportedMessage):
        wmsg.parts_of(bad)


def test_a_lone_surrogate_is_made_safe_where_the_text_enters():
    [part] = wmsg.parts_of(body(msgtype="text", text={"content": "a\ud800b"}))
    part.content.encode("utf-8")  # would raise UnicodeEncodeError if the surrogate stayed


@pytest.mark.parametrize("strip", [True, False])
@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, 1000])
def test_media_decrypts_with_its_own_key_with_or_without_the_trailing_equals(strip, size):
    raw, aeskey = new_aeskey(strip_padding=strip)
    data = bytes(range(256)) * 4
    data = data[:size]
    assert decrypt_media(encrypt_media(raw, data), aeskey) == data


def test_media_with_the_wrong_key_or_cut_short_is_refused():
    # Fixed keys: with random ones a wrong key could, rarely, still end in valid-looking padding.
    raw, other_raw = bytes(range(32)), bytes(range(1, 33))
    aeskey, other = (base64.b64encode(k).decode().rstrip("=") for k in (raw, other_raw))
    blob = encrypt_media(raw, b"picture bytes" * 10)
    with pytest.raises(CryptoError):
        decrypt_media(blob, other)
    with pytest.raises(CryptoError):
        decrypt_media(blob[:-5], aeskey)
    with pytest.raises(CryptoError):
        decrypt_media(blob, "not base64 !!")
