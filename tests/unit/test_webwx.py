"""The web-WeChat client of `wx_protocol: itchat`: its parsers, its message translation (the
original's group @ rules), and the client against the loopback simulator (tests/fakes/webwx)."""
from __future__ import annotations

import pytest

from bridge.context import ContextType
from channel.wechat import webwx_api as api
from channel.wechat.webwx_message import Malformed, Unsupported, describe, mentions
from tests.fakes.webwx import WebWxSimulator

ME, NICK = "@me", "Botty"


# ------------------------------------------------------------------ parsers
def test_uuid_of_a_jslogin_answer():
    assert api.parse_uuid('window.QRLogin.code = 200; window.QRLogin.uuid = "gYmgd1grLg==";') == "gYmgd1grLg=="
    assert api.parse_uuid('window.QRLogin.code = 400; window.QRLogin.uuid = "x";') is None
    assert api.parse_uuid("<html>blocked</html>") is None


@pytest.mark.parametrize("text, expected", [
    ("window.code=408;", ("408", None)),
    ("window.code=201;window.userAvatar = 'data:img/jpg;base64,';", ("201", None)),
    ('window.code=200;\nwindow.redirect_uri="https://wx2.qq.com/cgi-bin/mmwebwx-bin/webwxnewloginpage?ticket=T";',
     ("200", "https://wx2.qq.com/cgi-bin/mmwebwx-bin/webwxnewloginpage?ticket=T")),
    ("window.code=200;", ("400", None)),  # confirmed without a redirect: cannot go on
    ("window.code=400;", ("400", None)),
    ("", ("400", None)),
])
def test_login_poll_states(text, expected):
    assert api.parse_login_poll(text) == expected


def test_ticket_fields_and_a_refused_account():
    ok = api.parse_ticket("<error><ret>0</ret><message></message><skey>@crypt_1</skey><wxsid>s</wxsid>"
                          "<wxuin>42</wxuin><pass_ticket>p%2B</pass_ticket></error>")
    assert ok == {"ret": "0", "message": "", "skey": "@crypt_1", "wxsid": "s", "wxuin": "42", "pass_ticket": "p%2B"}
    assert api.parse_ticket("<error><ret>1203</ret><message>no</message></error>")["ret"] == "1203"


def test_api_hosts_follow_the_redirect():
    assert api.api_hosts("https://wx2.qq.com/cgi-bin/mmwebwx-bin/webwxnewloginpage?x=1") == (
        "https://wx2.qq.com/cgi-bin/mmwebwx-bin", "https://file.wx2.qq.com/cgi-bin/mmwebwx-bin",
        "https://webpush.wx2.qq.com/cgi-bin/mmwebwx-bin")
    local = "http://127.0.0.1:9/cgi-bin/mmwebwx-bin"
    assert api.api_hosts(local + "/webwxnewloginpage?t=1") == (local, local, local)


def test_synccheck_and_sync_key():
    assert api.parse_synccheck('window.synccheck={retcode:"0",selector:"2"}') == ("0", "2")
    assert api.parse_synccheck('window.synccheck={retcode:"1101",selector:"0"}') == ("1101", "0")
    with pytest.raises(api.Malformed):
        api.parse_synccheck("window.synccheck={}")
    assert api.sync_key_text({"Count": 2, "List": [{"Key": 1, "Val": 7}, {"Key": 2, "Val": 9}]}) == "1_7|2_9"
    assert api.sync_key_text("garbage") == ""


@pytest.mark.parametrize("body", [b"<html>502</html>", b"[1, 2]", b"[" * 100000 + b"]" * 100000, b"\xff\xfe"])
def test_json_answers_that_are_not_objects_are_malformed(body):
    with pytest.raises(api.Malformed):
        api.parse_json(body, "webwxsync")


def test_a_login_record_round_trips_and_a_broken_one_is_refused():
    info = api.LoginInfo("u", "f", "s", "skey", "sid", "1", "pt", "e1", {"wxsid": "sid"}, ME, NICK,
                         {"List": [{"Key": 1, "Val": 3}]})
    assert api.LoginInfo.from_record(info.to_record()) == info
    assert "skey" not in repr(info) and "pt" not in repr(info)  # keys stay out of logs
    for broken in (None, "x", {"url": "u"}, {**info.to_record(), "sid": ""}, {**info.to_record(), "bogus": 1}):
        found = api.LoginInfo.from_record(broken)
        assert found is None or found == info  # an unknown field is ignored, nothing else accepted


# ------------------------------------------------------------------ translation
class FakeContacts:
    def __init__(self, rooms=None, names=None):
        self.rooms = rooms or {}
        self.names = names or {}

    def nickname(self, user):
        return self.names.get(user, "")

    def room(self, room):
        return self.rooms.get(room)

    def member(self, room, user):
        return (self.rooms.get(room) or {}).get("MemberList", {}).get(user)


ROOM = {"@@r": {"NickName": "Team", "Self": {"UserName": ME, "DisplayName": "小助手"},
                "MemberList": {"@bob": {"UserName": "@bob", "NickName": "Bob", "DisplayName": "Bobby"},
                               "@eve": {"UserName": "@eve", "NickName": "Eve", "DisplayName": ""}}}}


def msg(sender, content, msg_type=1, to=ME, **extra):
    return {"MsgId": "9", "FromUserName": sender, "ToUserName": to, "MsgType": msg_type, "Content": content, **extra}


def test_a_private_text_with_markup():
    view = describe(msg("@alice", "a&amp;b<br/>c"), ME, NICK, FakeContacts(names={"@alice": "Alice"}))
    assert view["ctype"] == "TEXT" and view["content"] == "a&b\nc" and not view["is_group"]
    assert view["other"] == "@alice" and view["other_nickname"] == "Alice" and not view["my_msg"]
    mine = describe(msg(ME, "note to self", to="@alice"), ME, NICK, FakeContacts())
    assert mine["my_msg"] and mine["other"] == "@alice"


@pytest.mark.parametrize("text, at", [
    ("@小助手\u2005hello", True),
    ("hello @小助手", True),  # at the very end
    ("@小助手 hello", True),  # a space, in a text without U+2005
    ("@小助手 hi\u2005there", False),  # the text has U+2005, so a space does not count
    ("@Botty\u2005hello", False),  # the group nickname is set: the account's name is not the flag
    ("hello", False),
])
def test_group_at_detection_follows_the_original(text, at):
    view = describe(msg("@@r", f"@bob:<br/>{text}"), ME, NICK, FakeContacts(ROOM))
    assert view["is_group"] and view["actual_user_id"] == "@bob"
    assert view["actual_user_nickname"] == "Bobby"  # the group nickname before the nickname
    assert view["is_at"] is at and view["self_display_name"] == "小助手"


def test_without_a_group_nickname_the_account_name_is_the_flag():
    rooms = {"@@r": {**ROOM["@@r"], "Self": {"UserName": ME, "DisplayName": ""}}}
    view = describe(msg("@@r", "@eve:<br/>@Botty\u2005hi"), ME, NICK, FakeContacts(rooms))
    assert view["is_at"] and view["actual_user_nickname"] == "Eve"
    assert mentions("@", "@") is False


def test_an_unknown_member_is_not_an_at_and_an_own_group_message_is_the_bot():
    view = describe(msg("@@r", "@stranger:<br/>@小助手\u2005hi"), ME, NICK, FakeContacts(ROOM))
    assert not view["is_at"] and view["actual_user_nickname"] == ""
    own = describe(msg(ME, "hi all", to="@@r"), ME, NICK, FakeContacts(ROOM))
    assert own["is_group"] and own["actual_user_id"] == ME and own["other"] == "@@r"


def test_media_sharing_and_friend_requests():
    contacts = FakeContacts()
    assert describe(msg("@a", "", 3), ME, NICK, contacts)["kind"] == "image"
    assert describe(msg("@a", "", 34), ME, NICK, contacts)["ctype"] == "VOICE"
    file = describe(msg("@a", "", 49, AppMsgType=6, FileName="../x.pdf"), ME, NICK, contacts)
    assert file["ctype"] == "FILE" and file["file_name"] == "../x.pdf"
    link = describe(msg("@a", "", 49, AppMsgType=5, Url="https://e.com/?a=1&amp;b=2"), ME, NICK, contacts)
    assert link["ctype"] == "SHARING" and link["content"] == "https://e.com/?a=1&b=2"
    request = describe(msg("fmessage", "", 37, Ticket="v4_t", RecommendInfo={"UserName": "@n", "NickName": "N",
                                                                           "Content": "加好友"}), ME, NICK, contacts)
    assert request["ctype"] == "ACCEPT_FRIEND" and request["content"]["Ticket"] == "v4_t"
    assert request["other"] == "@n"


def test_group_notes():
    contacts = FakeContacts(ROOM)
    joined = describe(msg("@@r", '"Bob"邀请"Zed"加入了群聊', 10000), ME, NICK, contacts)
    assert joined["ctype"] == ContextType.JOIN_GROUP.name and joined["actual_user_nickname"] == "Zed"
    pat = describe(msg("@@r", '"Bob" 拍了拍我', 10000), ME, NICK, contacts)
    assert pat["ctype"] == "PATPAT" and pat["actual_user_nickname"] == "Bob"
    with pytest.raises(Unsupported):
        describe(msg("@@r", '"Bob"邀请你加入了群聊', 10000), ME, NICK, contacts)  # the bot itself joined
    with pytest.raises(Unsupported):
        describe(msg("@a", "你已添加了A，现在可以开始聊天了。", 10000), ME, NICK, contacts)


@pytest.mark.parametrize("raw", ["text", None, {"MsgType": 1}, msg("@a", "x", "1"), {**msg("@a", "x"), "MsgId": ""},
                                 msg("fmessage", "", 37, RecommendInfo="nope")])
def test_malformed_entries(raw):
    with pytest.raises(Malformed):
        describe(raw, ME, NICK, FakeContacts())


@pytest.mark.parametrize("kind", [43, 47, 51, 10002, 9999])
def test_types_the_bot_does_not_take(kind):
    with pytest.raises(Unsupported):
        describe(msg("@a", "x", kind), ME, NICK, FakeContacts())


# ------------------------------------------------------------------ the client against the simulator
@pytest.fixture
def sim():
    server = WebWxSimulator(hold=0.1).start()
    yield server
    server.stop()


def logged_in(sim: WebWxSimulator) -> api.WebWxClient:
    client = api.WebWxClient(sim.base_url, timeout=5)
    uuid = client.new_uuid()
    sim.confirm(uuid)
    code, redirect = client.poll_login(uuid, True)
    assert code == "200"
    client.finish_login(redirect)
    client.init()
    return client


def test_an_account_web_wechat_refuses_gets_a_clear_error(sim):
    sim.ticket_ret = "1203"
    client = api.WebWxClient(sim.base_url, timeout=5)
    uuid = client.new_uuid()
    sim.confirm(uuid)
    _, redirect = client.poll_login(uuid, True)
    with pytest.raises(api.WebWxError, match="ret 1203"):
        client.finish_login(redirect)


def test_a_kicked_login_is_logged_out_everywhere(sim):
    client = logged_in(sim)
    assert client.info.user_name == sim.user_name and client.info.cookies.get("wxsid")
    sim.kick("1102")
    with pytest.raises(api.LoggedOut, match="1102"):
        client.sync_check(2)
    with pytest.raises(api.LoggedOut):
        client.sync()
    with pytest.raises(api.LoggedOut):
        client.send_text("@a", "hi", "1")


def test_the_sync_key_moves_only_when_advanced(sim):
    client = logged_in(sim)
    first = sim.push_text("@a", "one")
    answer = client.sync()
    assert [m["MsgId"] for m in answer["AddMsgList"]] == [first["MsgId"]]
    again = client.sync()  # not advanced: the same message again
    assert [m["MsgId"] for m in again["AddMsgList"]] == [first["MsgId"]]
    client.advance(again)
    assert client.sync()["AddMsgList"] == []
    assert client.sync_check(0.2) == "0"


def test_media_over_the_limit_is_refused_while_reading(sim):
    client = logged_in(sim)
    image = sim.push_image("@a", b"x" * 5000)
    assert client.download("image", image, 5000) == b"x" * 5000
    with pytest.raises(api.MediaTooLarge):
        client.download("image", image, 4999)


def test_a_resumed_login_keeps_its_own_sync_key(sim):
    client = logged_in(sim)
    sim.push_text("@a", "seen")
    client.advance(client.sync())
    record = client.info.to_record()
    record["cookies"] = client.http.cookies.get_dict()
    later = sim.push_text("@a", "after the stop")
    resumed = api.WebWxClient(sim.base_url, timeout=5)
    resumed.resume(api.LoginInfo.from_record(record))
    resumed.init()
    assert [m["MsgId"] for m in resumed.sync()["AddMsgList"]] == [later["MsgId"]]
    assert not sim.errors, sim.errors
