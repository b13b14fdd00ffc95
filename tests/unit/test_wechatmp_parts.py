"""The Official Account channel's small parts: passive reply XML, the cut of long text, and the
per-user queue of waiting answers in a real state store."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from channel.wechatmp.message import WechatMPMessage, message_key
from channel.wechatmp.pending import CONTINUED, TEXT_MAX_BYTES, PendingReplies, cut_for_reply
from channel.wechatmp.reply_xml import media_reply, text_reply
from common.store import SQLiteStore


def test_text_reply_keeps_a_cdata_terminator_inside_the_content():
    text = "a ]]> b <xml> & 你好"
    root = ET.fromstring(text_reply("o-user", "gh_acc", text))
    assert root.findtext("Content") == text
    assert (root.findtext("ToUserName"), root.findtext("FromUserName"), root.findtext("MsgType")) == \
        ("o-user", "gh_acc", "text")


def test_media_reply_names_the_media():
    root = ET.fromstring(media_reply("o-user", "gh_acc", "voice", "MEDIA-1"))
    assert root.findtext("MsgType") == "voice" and root.findtext("Voice/MediaId") == "MEDIA-1"


def test_long_text_is_cut_on_a_character_boundary():
    text = "汉" * 1000 + "x"  # 3001 bytes, every character 3 bytes
    head, rest = cut_for_reply(text)
    assert len(head.encode("utf-8")) <= TEXT_MAX_BYTES and head.endswith(CONTINUED)
    assert head[: -len(CONTINUED)] + rest == text
    assert cut_for_reply("short") == ("short", "")


def test_waiting_answers_survive_reopening_the_store(tmp_path):
    path = str(tmp_path / "state.db")
    store = SQLiteStore(path)
    pending = PendingReplies(store)
    pending.add("u1", "text", "y" * 3000)
    pending.add("u1", "image", "MEDIA-9")
    store.close()

    pending = PendingReplies(SQLiteStore(path))
    assert pending.has("u1") and not pending.has("u2")
    kind, first = pending.pop("u1")
    assert kind == "text" and first.endswith(CONTINUED)
    assert pending.pop("u1") == ("text", "y" * (3000 - len(first) + len(CONTINUED)))
    assert pending.pop("u1") == ("image", "MEDIA-9")
    assert pending.pop("u1") is None and not pending.has("u1")


def test_messages_are_keyed_by_msgid_and_events_by_sender_and_time():
    assert message_key({"MsgId": "123", "FromUserName": "o"}) == "123"
    assert message_key({"FromUserName": "o", "CreateTime": "17"}) != message_key({"FromUserName": "o", "CreateTime": "18"})
    voice = WechatMPMessage({"MsgType": "voice", "FromUserName": "o", "MsgId": "5", "MediaId": "../../etc/x",
                             "Format": "amr"})
    assert voice.ctype.name == "VOICE" and "/etc/" not in voice.content and voice.content.endswith(".amr")
    heard = WechatMPMessage({"MsgType": "voice", "FromUserName": "o", "MsgId": "6", "Recognition": "你好"})
    assert heard.ctype.name == "TEXT" and heard.content == "你好"


def test_a_question_dropped_from_the_queue_is_not_waited_for(monkeypatch):
    """#reset drops waiting questions; their users must not stay in "still thinking" forever."""
    import config
    from bridge.context import Context, ContextType
    from channel.wechatmp.wechatmp_channel import WechatMPChannel

    for key, value in (("wechatmp_token", "t"), ("wechatmp_app_id", "wx1"), ("wechatmp_app_secret", "s")):
        monkeypatch.setitem(config.conf(), key, value)
    channel = WechatMPChannel()
    channel.dispatcher.halt()  # nothing is handled: the questions wait in the queue
    for user in ("o-1", "o-2"):
        channel._job_begins(user)
        context = Context(ContextType.TEXT, "q", {"receiver": user, "session_id": user, "wechatmp_job": True})
        channel.dispatcher.submit(user, context)
    assert channel._busy_with("o-1") and channel._busy_with("o-2")
    channel.cancel_session("o-1")
    assert not channel._busy_with("o-1") and channel._busy_with("o-2")
    channel.cancel_all_session()
    assert not channel._busy_with("o-2")
    channel.stop()


def test_used_material_is_deleted_when_due_even_after_a_restart(tmp_path, settings):
    """The ledger of permanent material (materials.py) against the platform simulator's API:
    shown material goes after MATERIAL_KEEP, an answer never fetched after it expires, one still
    waiting stays, a failed delete is tried again, and the records survive a restart."""
    from channel.wechatmp.api import make_api, upload
    from channel.wechatmp.materials import MATERIAL_KEEP, NAMESPACE, MaterialLedger
    from channel.wechatmp.pending import KEEP_SECONDS
    from tests.fakes.clock import FakeClock
    from tests.fakes.wechat_platform import WeChatPlatformSimulator

    sim = WeChatPlatformSimulator(oa_apps={"wx-app": "secret"}).start()
    clock = FakeClock()
    path = str(tmp_path / "state.db")
    store = SQLiteStore(path, clock=clock)
    try:
        settings["wechatmp_api_base"] = sim.base_url
        api = make_api("wx-app", "secret")
        png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
        ledger = MaterialLedger(store, api, clock=clock)
        shown, waiting, forgotten = (upload(api, "image", f"{n}.png", png, permanent=True) for n in range(3))
        for media_id in (shown, waiting, forgotten):
            ledger.uploaded(media_id)
        PendingReplies(store).add("u1", "image", waiting)
        ledger.shown(shown)
        assert ledger.sweep() == 0  # nothing is due yet
        clock.advance(MATERIAL_KEEP + 1)
        assert ledger.sweep() == 1
        assert [sim.media(m).deleted for m in (shown, waiting, forgotten)] == [True, False, False]

        store.close()  # a restart
        store = SQLiteStore(path, clock=clock)
        ledger = MaterialLedger(store, api, clock=clock)
        clock.advance(KEEP_SECONDS - 100)
        PendingReplies(store).add("u1", "text", "later")  # the user's queue stays alive
        clock.advance(200)  # past the due time of both unshown ones
        sim.fail_next("material/del_material", -1)
        assert ledger.sweep() == 0  # the delete failed: kept for the next sweep
        assert ledger.sweep() == 1  # the forgotten one; the waiting one is still named by an answer
        assert [sim.media(m).deleted for m in (waiting, forgotten)] == [False, True]

        pending = PendingReplies(store)
        assert pending.pop("u1") == ("image", waiting)  # fetched at last
        ledger.shown(waiting)
        ledger.uploaded("deleted-by-hand")  # gone already: the platform says 40007
        clock.advance(KEEP_SECONDS + MATERIAL_KEEP + 1)
        assert ledger.sweep() == 2
        assert sim.media(waiting).deleted
        assert store.items(NAMESPACE) == []
    finally:
        store.close()
        sim.stop()


def test_delivery_counts_survive_a_restart(tmp_path, settings):
    """WeChat's third delivery of a message is the one that says "write again": a restart after
    the second must not count the third as a first (it would stay silent and WeChat would show
    the user "this account cannot serve you")."""
    from channel.wechatmp.wechatmp_channel import WechatMPChannel

    for key, value in (("wechatmp_token", "t"), ("wechatmp_app_id", "wx1"), ("wechatmp_app_secret", "s")):
        settings[key] = value
    store = SQLiteStore(str(tmp_path / "state.db"))
    try:
        first = WechatMPChannel()
        first._pending = PendingReplies(store)
        assert [first._count_delivery("msg-1"), first._count_delivery("msg-1"), first._count_delivery("msg-2")] \
            == [1, 2, 1]
        first.stop()
        after_restart = WechatMPChannel()
        after_restart._pending = PendingReplies(store)
        assert after_restart._count_delivery("msg-1") == 3
        after_restart.stop()
    finally:
        store.close()
