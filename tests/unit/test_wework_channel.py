"""The WeCom channel inside this process, against the ntwork simulator: start-up, the hook's thread,
room caches, and every kind of reply it sends."""
from __future__ import annotations

import io
import json
import os
import sys
import threading
import time

import pytest

from bridge.bridge import Bridge
from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from channel.channel import EXIT_PLATFORM_LOST
from channel.channel_factory import ChannelError
from channel.wework import wework_channel as wc
from channel.wework import wework_media as media
from channel.wework.wework_message import WeworkMessage
from sandbox.dify_server import DifyServer
from tests.fakes import ntwork_control as nc
from tests.unit.test_wework_message import sim  # noqa: F401 - the simulator fixture

BOT_ID = nc.DEFAULT_USER_ID
ALICE = "7881303235927249"
ROOM = "R:10822887504240095"
PRIVATE = f"S:{BOT_ID}_{ALICE}"


def png_bytes(size=(8, 8), noise=False) -> bytes:
    from PIL import Image

    if noise:
        image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        image = Image.new("RGB", size, (10, 200, 10))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def start(sim, settings, monkeypatch):  # noqa: F811
    """start(**scenario) -> a running WeworkChannel (not the singleton: a fresh one per test)."""
    monkeypatch.setenv("NTWORK_LOG", "ERROR")
    settings["bot_type"] = "tests.fakes.bots:EchoBot"
    settings["single_chat_prefix"] = [""]
    settings["group_name_white_list"] = ["ALL_GROUP"]
    settings["wework_reply_delay"] = 0
    settings["wework_init_wait"] = 5
    Bridge().reset_bot()
    channels = []

    def make(wait=True, **scenario):
        sim.configure(**{
            "login_info": {"user_id": BOT_ID, "username": "张三", "nickname": "Bot"},
            "rooms": [{"conversation_id": ROOM, "nickname": "测试群"}],
            "external_contacts": [{"user_id": ALICE, "username": "悠悠"}],
            "room_members": {ROOM: [{"user_id": ALICE, "room_nickname": "悠悠", "username": "悠悠"}]},
            **scenario,
        })
        channel = wc.WeworkChannel.__wrapped__()
        channel.channel_type = "wework"
        channel.SEND_RETRY_DELAYS = (0.01, 0.01)
        channel.thread = threading.Thread(target=channel.startup, daemon=True)
        channel.thread.start()
        channels.append(channel)
        if wait:
            wait_until(lambda: channel.inited or not channel.thread.is_alive())
        return channel

    yield make
    for channel in channels:
        channel.stop()
        channel.thread.join(5)
    Bridge().reset_bot()


def context_for(channel, raw, isgroup=None):
    msg = WeworkMessage(raw, channel.wework, login=channel.login, room_name="测试群")
    group = msg.is_group if isgroup is None else isgroup
    return Context(ContextType.TEXT, msg.content, {"msg": msg, "receiver": msg.other_user_id, "isgroup": group})


def sent(sim, *methods):  # noqa: F811
    methods = methods or ("send_text", "send_room_at_msg", "send_image", "send_file", "send_video")
    return [c for c in sim.calls if c["method"] in methods]


# ------------------------------------------------------------------------------------------------ start-up
def test_ready_soon_after_the_client_data_is_readable(start, sim):  # noqa: F811
    started = time.monotonic()
    channel = start(data_ready_after=0.5)
    elapsed = time.monotonic() - started
    assert channel.inited and elapsed < 2.0
    assert 2 <= len(sim.calls_of("get_rooms")) <= 8
    assert channel.user_id == BOT_ID and channel.name == "Bot"
    members = json.loads(open("tmp/wework_room_members.json", encoding="utf-8").read())
    assert members[ROOM]["member_list"][0]["user_id"] == ALICE


def test_contacts_unreadable_stops_start_up_with_exit(start, sim, settings, monkeypatch):  # noqa: F811
    settings["wework_init_wait"] = 0
    monkeypatch.setattr(wc, "READ_RETRY_SECONDS", 0.01)
    channel = wc.WeworkChannel.__wrapped__()
    sim.configure(fail={"get_external_contacts": 99})
    errors = []
    try:
        channel.startup()
    except ChannelError as e:
        errors.append(str(e))
    assert errors and "contacts" in errors[0] and "\n" not in errors[0]
    assert len(sim.calls_of("get_external_contacts")) == 5 and sim.calls_of("exit_")
    assert channel.exit_code == 0  # our own exit_() is not "the client quit"


def test_client_quit_ends_startup_with_exit_code_4(start, sim):  # noqa: F811
    channel = start()
    sim.crash()
    channel.thread.join(5)
    assert not channel.thread.is_alive()
    assert (channel.exit_code, channel.finished) == (EXIT_PLATFORM_LOST, True)


def test_quit_while_waiting_for_the_client_data_also_ends_it(start, sim):  # noqa: F811
    channel = start(wait=False, data_ready_after=30)
    sim.wait_for_call("get_rooms")
    sim.crash()
    channel.thread.join(5)
    assert channel.exit_code == EXIT_PLATFORM_LOST and not channel.inited and not channel.thread.is_alive()


def test_stop_calls_exit_and_returns_startup(start, sim):  # noqa: F811
    channel = start()
    channel.stop()
    channel.thread.join(5)
    assert not channel.thread.is_alive() and channel.exit_code == 0
    assert len(sim.calls_of("exit_")) == 1


def test_open_failure_is_one_line(start, sim):  # noqa: F811
    channel = wc.WeworkChannel.__wrapped__()
    sim.configure(fail={"open": 1})
    with pytest.raises(ChannelError, match="could not open PC WeCom"):
        channel.startup()


def test_version_mismatch_is_one_line(start, sim):  # noqa: F811
    from ntwork.core.mgr import WeWorkMgr
    from ntwork.utils.singleton import Singleton

    channel = wc.WeworkChannel.__wrapped__()
    manager = Singleton._instances.pop(WeWorkMgr, None)  # the manager checks the version when first built
    errors = []

    def run():
        try:
            channel.startup()
        except ChannelError as e:
            errors.append(str(e))

    try:
        sim.configure(version_match=False)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(5)
    finally:
        channel.stop()
        if manager is not None:
            Singleton._instances[WeWorkMgr] = manager
    assert errors and "4.0.8.6027" in errors[0] and "\n" not in errors[0]
    assert "channel_type wecom_bot" in errors[0]  # the WeCom way that works without the PC client


def test_missing_ntwork_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "ntwork", None)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(ChannelError) as linux:
        wc.import_ntwork()
    assert "Windows" in str(linux.value) and "web or terminal" in str(linux.value)  # only channels that run here
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(ChannelError) as windows:
        wc.import_ntwork()
    assert "ntwork-0.1.3-cp310-cp310-win_amd64.whl" in str(windows.value) and "\n" not in str(windows.value)
    assert "channel_type wecom_bot" in str(linux.value) and "channel_type wecom_bot" in str(windows.value)


# ------------------------------------------------------------------------------------------------ receiving
def test_group_messages_use_the_room_cache_and_an_unknown_room_is_looked_up_once(start, sim):  # noqa: F811
    channel = start()
    before = len(sim.calls_of("get_rooms"))
    for i in range(3):
        sim.inject(nc.text(ROOM, ALICE, "悠悠", f"@Bot\u2005q{i}", at_list=[nc.at(BOT_ID, "Bot")]))
    wait_until(lambda: len(sent(sim, "send_room_at_msg")) == 3)
    assert len(sim.calls_of("get_rooms")) == before
    for i in range(2):
        sim.inject(nc.text("R:999", ALICE, "悠悠", f"@Bot\u2005x{i}", at_list=[nc.at(BOT_ID, "Bot")]))
    wait_until(lambda: len(sent(sim, "send_room_at_msg")) == 5)
    assert len(sim.calls_of("get_rooms")) == before + 1


def test_reply_delay_never_blocks_the_hook_thread_and_keeps_the_order(start, sim, settings):  # noqa: F811
    channel = start()
    settings["wework_reply_delay"] = "0.8-1"
    injected = time.monotonic()
    for i in range(5):
        sim.inject(nc.text(PRIVATE, ALICE, "悠悠", f"m{i}"))
    assert sim.wait_idle(2.0)  # every callback returned...
    assert not sent(sim)  # ...before the delay was over
    wait_until(lambda: len(sent(sim)) == 5)
    assert time.monotonic() - injected >= 0.8
    assert [c["data"]["content"] for c in sent(sim)] == [f"echo: m{i}" for i in range(5)]


def test_join_refreshes_members_in_the_background(start, sim):  # noqa: F811
    channel = start()
    sim.configure(room_members={ROOM: [{"user_id": "u1"}, {"user_id": "u2"}]})
    sim.inject(nc.member_joined(ROOM, "u2", "新人"))
    sim.inject(nc.member_joined(ROOM, BOT_ID, "Bot"))  # the bot itself joined: nothing to greet

    def rewritten():
        with open("tmp/wework_room_members.json", encoding="utf-8") as f:
            return len(json.load(f)[ROOM]["member_list"]) == 2

    wait_until(rewritten)
    assert not sent(sim)  # no plugin answers JOIN_GROUP here


def test_refused_send_is_retried_by_the_pipeline(start, sim):  # noqa: F811
    channel = start(send_results={"send_text": [False, True]})
    sim.inject(nc.text(PRIVATE, ALICE, "悠悠", "again"))
    wait_until(lambda: any(c["result"] for c in sent(sim, "send_text")))
    assert [c["result"] for c in sent(sim, "send_text")] == [False, True]


# ------------------------------------------------------------------------------------------------ sending
def test_long_text_is_split_on_character_boundaries(start, sim):  # noqa: F811
    channel = start()
    text = "长" * 2000 + "end"
    channel.send(Reply(ReplyType.TEXT, text), context_for(channel, nc.text(PRIVATE, ALICE, "悠悠", "q")))
    pieces = [c["data"]["content"] for c in sent(sim, "send_text")]
    assert len(pieces) == 4 and "".join(pieces) == text
    assert all(len(p.encode("utf-8")) <= wc.TEXT_MAX_BYTES for p in pieces)


def test_a_retry_continues_after_the_pieces_that_arrived(start, sim):  # noqa: F811
    channel = start(send_results={"send_text": [True, False]})
    reply = Reply(ReplyType.TEXT, "a" * 2500)
    context = context_for(channel, nc.text(PRIVATE, ALICE, "悠悠", "q"))
    with pytest.raises(wc.SendRefused):
        channel.send(reply, context)
    channel.send(reply, context)
    results = [(len(c["data"]["content"]), c["result"]) for c in sent(sim, "send_text")]
    assert results == [(2000, True), (500, False), (500, True)]


def test_group_reply_is_a_real_at_even_after_a_prefix(start, sim, settings):  # noqa: F811
    channel = start()
    context = context_for(channel, nc.text(ROOM, ALICE, "悠悠", "@Bot q"))
    channel.send(Reply(ReplyType.TEXT, "@悠悠\nanswer"), context)
    settings["group_chat_reply_prefix"] = "[bot] "
    channel.send(Reply(ReplyType.TEXT, "[bot] @悠悠\nanswer 2"), context)
    channel.send(Reply(ReplyType.TEXT, "@someone else\nnot for the asker"), context)
    calls = [(c["method"], c["data"]["content"], c["data"].get("at_list")) for c in sent(sim)]
    assert calls == [
        ("send_room_at_msg", "\nanswer", [ALICE]),
        ("send_room_at_msg", "\n[bot] answer 2", [ALICE]),
        ("send_text", "@someone else\nnot for the asker", None),
    ]


def test_private_reply_starting_with_an_at_is_plain_text(start, sim):  # noqa: F811
    channel = start()
    context = context_for(channel, nc.text(PRIVATE, ALICE, "悠悠", "q"))
    channel.send(Reply(ReplyType.TEXT, "@悠悠\nhello"), context)
    channel.send(Reply(ReplyType.ERROR, "[ERROR]\nboom"), context)
    assert [(c["method"], c["data"]["content"]) for c in sent(sim)] == [
        ("send_text", "@悠悠\nhello"), ("send_text", "[ERROR]\nboom"),
    ]


def test_image_file_is_kept_until_the_client_has_read_it(start, sim, monkeypatch):  # noqa: F811
    channel = start()
    monkeypatch.setattr(media, "KEEP_SECONDS", 0.3)
    data = png_bytes()
    channel.send(Reply(ReplyType.IMAGE, io.BytesIO(data)), context_for(channel, nc.text(PRIVATE, ALICE, "悠悠", "q")))
    [call] = sent(sim, "send_image")
    path = call["data"]["file"]
    assert os.path.isabs(path) and path.endswith(".png")
    with open(path, "rb") as f:
        assert f.read() == data
    wait_until(lambda: not os.path.exists(path), timeout=3)


def test_image_url_is_downloaded_and_compressed_when_too_big(start, sim, settings, monkeypatch):  # noqa: F811
    settings["allowed_internal_hosts"] = ["127.0.0.1"]  # the file server is on loopback
    channel = start()
    monkeypatch.setattr(media, "IMAGE_MAX_BYTES", 40_000)
    big = png_bytes((200, 200), noise=True)
    assert len(big) > 40_000
    with DifyServer() as server:
        server.add_file("/files/big.png", big, "image/png")
        server.add_file("/files/small.png", png_bytes(), "image/png")
        context = context_for(channel, nc.text(PRIVATE, ALICE, "悠悠", "q"))
        channel.send(Reply(ReplyType.IMAGE_URL, server.host_url + "/files/big.png"), context)
        channel.send(Reply(ReplyType.IMAGE_URL, server.host_url + "/files/small.png"), context)
    first, second = (c["data"]["file"] for c in sent(sim, "send_image"))
    assert first.endswith(".jpg") and os.path.getsize(first) <= 40_000
    assert second.endswith(".png")


def test_video_url_too_big_tells_the_user_and_leaves_nothing(start, sim, settings, monkeypatch):  # noqa: F811
    settings["allowed_internal_hosts"] = ["127.0.0.1"]  # the file server is on loopback
    channel = start()
    monkeypatch.setattr(media, "VIDEO_MAX_BYTES", 1000)
    with DifyServer() as server:
        server.add_file("/files/v.mp4", b"\0" * 5000, "video/mp4")
        server.add_file("/files/ok.mp4", b"\0" * 500, "video/mp4")
        context = context_for(channel, nc.text(PRIVATE, ALICE, "悠悠", "发个视频"))
        channel.send(Reply(ReplyType.VIDEO_URL, server.host_url + "/files/v.mp4"), context)
        channel.send(Reply(ReplyType.VIDEO_URL, server.host_url + "/files/ok.mp4"), context)
    calls = sent(sim)
    assert calls[0]["method"] == "send_text" and "视频太大" in calls[0]["data"]["content"]
    assert calls[1]["method"] == "send_video" and os.path.getsize(calls[1]["data"]["file"]) == 500
    assert [n for n in os.listdir(media.send_dir())] == [os.path.basename(calls[1]["data"]["file"])]


def test_image_and_video_urls_to_internal_addresses_are_sent_as_links(start, sim, settings):  # noqa: F811
    # Issue 11 (SSRF): a reply linking to this machine or its LAN is not fetched and re-sent.
    settings["allowed_internal_hosts"] = []
    channel = start()
    with DifyServer() as server:
        server.add_file("/files/secret.png", png_bytes(), "image/png")
        image = f"http://localhost:{server.port}/files/secret.png"
        video = "http://169.254.169.254/latest/meta-data"
        context = context_for(channel, nc.text(PRIVATE, ALICE, "悠悠", "发个图"))
        channel.send(Reply(ReplyType.IMAGE_URL, image), context)
        channel.send(Reply(ReplyType.VIDEO_URL, video), context)
        assert [r["path"] for r in server.requests] == []
    assert [(c["method"], c["data"]["content"]) for c in sent(sim)] == [
        ("send_text", f"图片链接：{image}"), ("send_text", f"视频链接：{video}"),
    ]


def test_file_voice_and_video_are_sent(start, sim, tmp_path):  # noqa: F811
    channel = start()
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4")
    context = context_for(channel, nc.text(PRIVATE, ALICE, "悠悠", "q"))
    os.makedirs("tmp", exist_ok=True)
    with open("tmp/answer.mp3", "wb") as f:
        f.write(b"ID3")
    channel.send(Reply(ReplyType.FILE, str(report)), context)
    channel.send(Reply(ReplyType.VOICE, "./tmp/answer.mp3"), context)
    channel.send(Reply(ReplyType.VIDEO, io.BytesIO(b"\0" * 100)), context)
    calls = [(c["method"], c["data"]["file"]) for c in sent(sim)]
    assert calls[0] == ("send_file", str(report))
    assert calls[1] == ("send_file", os.path.abspath("tmp/answer.mp3"))
    assert calls[2][0] == "send_video" and calls[2][1].endswith(".mp4")


def test_unsupported_reply_type_is_not_implemented(start, sim):  # noqa: F811
    channel = start()
    with pytest.raises(NotImplementedError):
        channel.send(Reply(ReplyType.CARD, "x"), context_for(channel, nc.text(PRIVATE, ALICE, "悠悠", "q")))


# ------------------------------------------------------------------------------------------------ helpers
@pytest.mark.parametrize("setting, low, high", [(0, 0, 0), ("0", 0, 0), (1.5, 1.5, 1.5), ("2", 2, 2), ("1-2", 1, 2), ("3 - 1", 1, 3)])
def test_reply_delay_seconds(setting, low, high):
    for _ in range(20):
        assert low <= wc.reply_delay_seconds(setting) <= high


def test_write_json_atomic(tmp_path):
    path = tmp_path / "a.json"
    wc.write_json_atomic(str(path), {"名字": [1, 2]})
    assert path.read_text(encoding="utf-8") == json.dumps({"名字": [1, 2]}, ensure_ascii=False, indent=4)
    wc.write_json_atomic(str(path), {"b": 1})
    assert json.loads(path.read_text()) == {"b": 1} and os.listdir(tmp_path) == ["a.json"]


def test_old_messages_replayed_at_login_are_skipped(start, sim):  # noqa: F811
    start()
    old = int(time.time()) - wc.HISTORY_SECONDS - 30
    sim.inject(nc.text(PRIVATE, ALICE, "悠悠", "old question", send_time=old))
    sim.inject(nc.text(PRIVATE, ALICE, "悠悠", "new question"))
    wait_until(lambda: len(sent(sim)) == 1)
    time.sleep(0.2)
    assert [c["data"]["content"] for c in sent(sim)] == ["echo: new question"]


def test_a_reply_delay_longer_than_the_history_window_still_answers(start, sim, settings, monkeypatch):  # noqa: F811
    # Age is judged when the message arrives, not after the reply delay.
    start()
    monkeypatch.setattr(wc, "HISTORY_SECONDS", 1)
    settings["wework_reply_delay"] = "1.5-1.5"
    sim.inject(nc.text(PRIVATE, ALICE, "悠悠", "slow reply please"))
    wait_until(lambda: len(sent(sim)) == 1, timeout=6)
    assert [c["data"]["content"] for c in sent(sim)] == ["echo: slow reply please"]


# ------------------------------------------------------------------------------------ channel.wework.run
def test_a_plugins_early_msg_register_gets_messages(start, sim, settings):  # noqa: F811
    # Plugins load before the channel starts its client; in the original, a module-level
    # @wework.msg_register(...) already worked then.
    from channel.wework.run import wework
    from ntwork.const import notify_type

    settings["channel_type"] = "wework"
    seen = []

    @wework.msg_register(notify_type.MT_RECV_TEXT_MSG)
    def on_text(client, message):
        seen.append(message["data"]["content"])

    channel = start()
    assert channel.inited
    sim.inject(nc.text(PRIVATE, ALICE, "悠悠", "hello plugin"))
    wait_until(lambda: seen == ["hello plugin"])
    wait_until(lambda: any(c["data"].get("content") == "echo: hello plugin" for c in sent(sim)))  # and the bot too


# ------------------------------------------------------------------------------------------------ the inbox
def test_messages_kept_at_a_stop_are_answered_after_the_restart(start, sim, tmp_path):  # noqa: F811
    from common.store import SQLiteStore
    from config import conf

    store = SQLiteStore(str(tmp_path / "state.db"))
    book = conf().user_data_book
    book.attach(store)
    try:
        first = start()
        first.halt()  # a stop that ran out of time: what is taken stays in the inbox
        sim.inject(nc.text(ROOM, ALICE, "悠悠", "@Bot\u2005in the room", at_list=[nc.at(BOT_ID, "Bot")]))
        sim.inject(nc.text(PRIVATE, ALICE, "悠悠", "in private"))
        wait_until(lambda: store.inbox_count("wework") == 2)
        first.stop()
        first.thread.join(5)
        assert not sent(sim)

        second = start()  # the next start: rebuilt from the client's notices, answered in order
        wait_until(lambda: len(sent(sim)) == 2)
        at_reply, private_reply = sent(sim)
        assert at_reply["method"] == "send_room_at_msg" and at_reply["data"]["conversation_id"] == ROOM
        assert "echo: in the room" in at_reply["data"]["content"]
        assert private_reply["data"]["conversation_id"] == PRIVATE
        assert private_reply["data"]["content"] == "echo: in private"
        assert second.wait_idle(5)
        assert store.inbox_count() == 0
    finally:
        book.close()
        book._store = None
        store.close()
