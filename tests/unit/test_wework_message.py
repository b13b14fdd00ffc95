"""ntwork notifications -> WeworkMessage, with the ntwork simulator in this process (downloads go
through its CDN)."""
from __future__ import annotations

import os
import sys
import time
import wave

import pytest

from bridge.context import ContextType
from channel.wework.wework_message import (
    LoginInfo,
    UnsupportedMessage,
    WeworkMessage,
    message_id,
    safe_file_name,
    split_join_notice,
)
from tests.fakes import ntwork_control as nc


BOT_ID = nc.DEFAULT_USER_ID
ALICE = "7881303235927249"
ROOM = "R:10822887504240095"
PRIVATE = f"S:{BOT_ID}_{ALICE}"
LOGIN = LoginInfo(BOT_ID, "张三", "Bot")


@pytest.fixture
def sim(ntwork, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # media go to ./tmp
    ntwork.simulator.SIM.reset()
    ntwork.simulator.SIM.configure(login_info={"user_id": BOT_ID, "username": "张三", "nickname": "Bot"})
    yield ntwork.simulator.SIM
    ntwork.simulator.SIM.reset()


@pytest.fixture
def wework(ntwork, sim):
    client = ntwork.WeWork()
    assert client.open(True)
    client.wait_login(timeout=3)
    assert client.login_status
    return client


def build(raw, wework=None, **kwargs):
    return WeworkMessage(raw, wework, login=LOGIN, **kwargs)


# ------------------------------------------------------------------------------------------------ text
def test_private_text_fields():
    raw = nc.text(PRIVATE, ALICE, "悠悠", "你好", server_id="1000604")
    msg = build(raw)
    assert (msg.ctype, msg.content, msg.msg_id, msg.is_group) == (ContextType.TEXT, "你好", "1000604", False)
    assert msg.create_time == int(raw["data"]["send_time"])
    assert (msg.from_user_id, msg.from_user_nickname) == (PRIVATE, "悠悠")
    assert (msg.to_user_id, msg.to_user_nickname) == (BOT_ID, "张三(Bot)")
    assert (msg.other_user_id, msg.other_user_nickname) == (PRIVATE, "悠悠")
    assert (msg.actual_user_id, msg.actual_user_nickname) == (ALICE, "悠悠")
    assert msg.my_msg is False and msg._rawmsg is raw


def test_msg_id_is_the_message_not_the_conversation():
    first = build(nc.text(PRIVATE, ALICE, "悠悠", "a"))
    second = build(nc.text(PRIVATE, ALICE, "悠悠", "b"))
    assert first.msg_id != second.msg_id and PRIVATE not in (first.msg_id, second.msg_id)


def test_msg_id_falls_back_to_local_id_then_a_stable_hash():
    data = dict(nc.text(PRIVATE, ALICE, "悠悠", "a")["data"], server_id="")
    assert message_id(data) == "local-" + data["local_id"]
    data.pop("local_id")
    assert message_id(data) == message_id(dict(data)) and message_id(data).startswith("hash-")
    assert message_id(data) != message_id(dict(data, content="other"))


def test_own_message_is_marked():
    msg = build(nc.text(PRIVATE, BOT_ID, "Bot", "from my phone"))
    assert msg.my_msg and msg.from_user_id == BOT_ID


@pytest.mark.parametrize("content", ["[该消息类型暂不能展示]", "收到一条不支持的消息类型，请在手机上查看"])
def test_placeholder_texts_are_unsupported(content):
    with pytest.raises(UnsupportedMessage):
        build(nc.text(PRIVATE, ALICE, "悠悠", content))


def test_unknown_type_is_unsupported_not_a_key_error():
    with pytest.raises(NotImplementedError):
        build({"type": 11048, "data": {"conversation_id": PRIVATE, "sender": ALICE}})
    with pytest.raises(UnsupportedMessage):
        build({"type": 11041, "data": {"content": "no conversation"}})


# ------------------------------------------------------------------------------------------------ groups
def test_group_at_by_nickname_user_id_or_typed_text():
    by_name = build(nc.text(ROOM, ALICE, "悠悠", "@Bot\u2005hi", at_list=[{"nickname": "Bot"}]), room_name="测试群")
    assert by_name.is_group and by_name.is_at and by_name.at_list == ["Bot"]
    assert (by_name.other_user_id, by_name.other_user_nickname, by_name.from_user_nickname) == (ROOM, "测试群", "测试群")
    assert (by_name.actual_user_id, by_name.actual_user_nickname) == (ALICE, "悠悠")
    by_id = build(nc.text(ROOM, ALICE, "悠悠", "@小助手 hi", at_list=[{"user_id": BOT_ID, "nickname": "小助手"}]))
    assert by_id.is_at
    typed = build(nc.text(ROOM, ALICE, "悠悠", "@张三(Bot) hi"))
    assert typed.is_at
    typed_username = build(nc.text(ROOM, ALICE, "悠悠", "@张三\u2005hi"))
    assert typed_username.is_at


def test_group_without_at_and_at_of_someone_else():
    assert not build(nc.text(ROOM, ALICE, "悠悠", "hello all")).is_at
    other = build(nc.text(ROOM, ALICE, "悠悠", "@Bob hi", at_list=[nc.at("7881000000000002", "Bob")]))
    assert not other.is_at and other.at_list == ["Bob"]
    assert not build(nc.text(ROOM, ALICE, "悠悠", "mail me@Botany.com")).is_at


def test_member_joined():
    msg = build(nc.member_joined(ROOM, "7881000000000009", "新人"), room_name="测试群")
    assert (msg.ctype, msg.content, msg.is_group) == (ContextType.JOIN_GROUP, "新人加入了群聊！", True)
    assert (msg.actual_user_id, msg.actual_user_nickname) == ("7881000000000009", "新人")
    assert msg.other_user_nickname == "测试群" and msg.msg_id
    fallback = build(nc.member_joined(ROOM, "7881000000000009", "新人", room_key="room_conversation_id"))
    assert fallback.other_user_id == ROOM


def test_a_notice_of_two_members_becomes_two_messages():
    raw = nc.member_joined(ROOM, "u1", "One")
    raw["data"]["member_list"].append({"user_id": "u2", "name": "Two"})
    msgs = [build(part) for part in split_join_notice(raw)]
    assert [m.actual_user_id for m in msgs] == ["u1", "u2"] and msgs[0].msg_id != msgs[1].msg_id


def test_link_card_is_sharing():
    msg = build(nc.link(PRIVATE, ALICE, "悠悠", "https://example.com/a"))
    assert (msg.ctype, msg.content) == (ContextType.SHARING, "https://example.com/a")


# ------------------------------------------------------------------------------------------------ media
def test_image_downloads_only_on_prepare_to_a_unique_file(sim, wework):
    now = str(int(time.time()))
    first = WeworkMessage(nc.image(PRIVATE, ALICE, "悠悠", send_time=now), wework)
    second = WeworkMessage(nc.image(PRIVATE, ALICE, "悠悠", send_time=now), wework)
    assert first.ctype == ContextType.IMAGE and first.content != second.content
    assert not sim.calls_of("c2c_cdn_download")
    first.prepare()
    first.prepare()  # once only
    [call] = sim.calls_of("c2c_cdn_download")
    assert call["data"]["file_type"] == 2 and call["data"]["save_path"] == first.content
    assert os.path.isabs(first.content)
    with open(first.content, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not os.path.exists(second.content)


def test_image_from_wechat_uses_the_raw_wx_cdn_request_with_aes_key(sim, wework):
    msg = WeworkMessage(nc.image(PRIVATE, ALICE, "悠悠", url="https://wx.example/pic", aes_key="k1"), wework)
    msg.prepare()
    [call] = sim.calls_of("wx_cdn_download")
    assert call["type"] == 11171
    assert call["data"]["aes_key"] == "k1" and call["data"]["url"] == "https://wx.example/pic"
    assert os.path.getsize(msg.content) > 0


def test_voice_prepare_gives_a_wav_and_leaves_no_silk(ntwork, sim, wework):
    sim.configure(cdn_files={"voice-1": ntwork.simulator.make_silk()})
    msg = WeworkMessage(nc.voice(PRIVATE, ALICE, "悠悠", file_id="voice-1"), wework)
    assert msg.ctype == ContextType.VOICE and msg.content.endswith(".wav")
    msg.prepare()
    with wave.open(msg.content) as w:
        assert w.getframerate() == 24000 and w.getnframes() > 0
    assert not [n for n in os.listdir(os.path.dirname(msg.content)) if n.endswith(".silk")]


def test_file_keeps_its_name_in_a_folder_of_its_own(sim, wework):
    msg = WeworkMessage(nc.file(PRIVATE, ALICE, "悠悠", file_name="季度报告.pdf"), wework)
    evil = WeworkMessage(nc.file(PRIVATE, ALICE, "悠悠", file_name="..\\..\\evil:name?.txt"), wework)
    assert msg.ctype == ContextType.FILE and os.path.basename(msg.content) == "季度报告.pdf"
    assert os.path.basename(evil.content) == "evil_name_.txt"
    assert os.path.dirname(os.path.dirname(evil.content)) == os.path.abspath("tmp")
    msg.prepare()
    assert sim.calls_of("c2c_cdn_download")[0]["data"]["file_type"] == 5
    assert os.path.getsize(msg.content) > 0


def test_a_failed_download_raises(sim, wework):
    sim.configure(fail={"c2c_cdn_download": 1})
    msg = WeworkMessage(nc.image(PRIVATE, ALICE, "悠悠"), wework)
    with pytest.raises(OSError):
        msg.prepare()


def test_login_names():
    assert LOGIN.display_name == "Bot" and LOGIN.full_name == "张三(Bot)"
    plain = LoginInfo.from_dict({"user_id": "1", "username": "张三", "nickname": ""})
    assert plain.display_name == plain.full_name == "张三" and plain.names() == ["张三"]


def test_safe_file_name():
    assert safe_file_name("") == "file"
    assert safe_file_name("a/b/c.txt") == "c.txt"
    assert len(safe_file_name("x" * 300 + ".pdf")) == 150 and safe_file_name("x" * 300 + ".pdf").endswith(".pdf")
