"""WeChatFerry messages -> ChatMessage (channel/wcf/wcf_message.py): the fields the real service
fills, the @ list of a group message, files, and the inbox record a restart rebuilds from."""
from __future__ import annotations

import pytest

from bridge.context import ContextType
from channel.wcf.wcf_message import Malformed, Unsupported, WcfMessage, at_list, check, file_info

ROOM = "123@chatroom"
NAMES = {("wxid_bob", ""): "Bob", ("wxid_bob", ROOM): "Bob in the room", (ROOM, ""): "Team",
         ("wxid_bot", ROOM): "Bot in the room"}


def names(wxid: str, room: str) -> str:
    return NAMES.get((wxid, room), "")


def raw(**fields) -> dict:
    base = dict(id=7, type=1, ts=1700000000, sender="wxid_bob", roomid="wxid_bob", content="hi", xml="",
                thumb="", extra="", sign="", is_group=False, is_self=False)
    base.update(fields)
    return base


def test_a_group_at_is_read_from_the_at_list_of_the_xml():
    xml = "<msgsource><atuserlist><![CDATA[,wxid_bot,wxid_cat]]></atuserlist></msgsource>"
    assert at_list(xml) == ["wxid_bot", "wxid_cat"]
    cmsg = WcfMessage(raw(is_group=True, roomid=ROOM, content="@Bot\u2005hello", xml=xml), "wxid_bot", "Bot", names)
    assert cmsg.is_at and cmsg.other_user_id == ROOM and cmsg.other_user_nickname == "Team"
    assert cmsg.actual_user_id == "wxid_bob" and cmsg.actual_user_nickname == "Bob in the room"
    assert cmsg.self_display_name == "Bot in the room"
    everyone = WcfMessage(raw(is_group=True, roomid=ROOM, content="@所有人 meeting", xml=xml), "wxid_bot", "Bot", names)
    assert not everyone.is_at  # @all is not an @ of the bot
    other = WcfMessage(raw(is_group=True, roomid=ROOM, xml="<msgsource/>"), "wxid_bot", "Bot", names)
    assert not other.is_at


def test_a_file_message_names_its_file_and_declared_size():
    content = ('<msg><appmsg><title>../../etc/passwd</title><type>6</type>'
               '<appattach><totallen>1234</totallen></appattach></appmsg></msg>')
    assert file_info(content) == ("../../etc/passwd", 1234)
    cmsg = WcfMessage(raw(type=49, content=content, extra="C:/x/passwd"), "wxid_bot", "Bot", names)
    assert cmsg.ctype == ContextType.FILE and cmsg.declared_size == 1234
    assert cmsg.file_name == "passwd" and cmsg.content.endswith("-passwd")  # no path from the sender
    with pytest.raises(Unsupported):
        file_info("<msg><appmsg><type>5</type><title>a link</title></appmsg></msg>")
    with pytest.raises(Malformed):
        file_info('<!DOCTYPE m [<!ENTITY e "x">]><msg>&e;</msg>')  # entities refused


@pytest.mark.parametrize("fields, error", [
    (dict(id=0), Malformed),
    (dict(sender=" "), Malformed),
    (dict(is_group=True, roomid="wxid_bob"), Malformed),
    (dict(content="  "), Malformed),
    (dict(type=3, extra=""), Malformed),
    (dict(type=49, content="<msg", extra="/x"), Malformed),
    (dict(content=b"bytes"), Malformed),
    (dict(type=10000), Unsupported),
    (dict(type=47), Unsupported),
])
def test_messages_the_channel_cannot_take_are_named(fields, error):
    with pytest.raises(error):
        check(raw(**fields))


def test_a_record_rebuilds_the_message_with_its_names_and_path():
    fetched = []
    cmsg = WcfMessage(raw(type=3, is_group=True, roomid=ROOM, extra="C:/a.dat", xml=""), "wxid_bot", "Bot", names,
                      fetch=fetched.append)
    record = cmsg.to_record()
    again = WcfMessage.from_record(record, "wxid_bot", fetched.append)
    assert again.content == cmsg.content and again.ctype == ContextType.IMAGE
    assert (again.other_user_nickname, again.actual_user_nickname) == ("Team", "Bob in the room")
    assert again.self_display_name == "Bot in the room" and again.msg_id == "7"
    again.prepare()
    assert fetched == [again]


def test_a_message_the_account_sent_itself_belongs_to_the_chat_with_the_other_side():
    cmsg = WcfMessage(raw(sender="wxid_bot", roomid="wxid_bob", is_self=True), "wxid_bot", "Bot", names)
    assert cmsg.my_msg and cmsg.from_user_id == "wxid_bot"
    assert (cmsg.other_user_id, cmsg.other_user_nickname) == ("wxid_bob", "Bob")  # answered there, if at all
