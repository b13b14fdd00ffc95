"""The ntwork simulator (tests/fakes/ntwork) behaves like ntwork 0.1.3 as reference/ntwork.md describes,
and its in-process and cross-process controls work."""
from __future__ import annotations

import base64
import os
import subprocess
import sys
import textwrap
import threading
import time
import wave

import pytest

from tests.fakes import ntwork_control
from tests.fakes.ntwork_control import SimControl

FAKES = os.path.dirname(os.path.abspath(ntwork_control.__file__))

ROOM = "R:10822887504240095"
SINGLE = "S:1688854420437671_7881303235927249"
ALICE = "7881303235927249"


@pytest.fixture
def sim(ntwork):
    ntwork.simulator.SIM.reset()
    yield ntwork.simulator.SIM
    ntwork.simulator.SIM.reset()


def login(ntwork, smart=True):
    wework = ntwork.WeWork()
    assert wework.open(smart) is True
    wework.wait_login(timeout=3)
    assert wework.login_status is True
    return wework


# ------------------------------------------------------------------------------------------------ names
def test_constants_and_names(ntwork, sim):
    from ntwork.const import notify_type, send_type
    from ntwork.core.wework import WeWork
    from ntwork.utils import ObjectDict, generate_guid
    from ntwork.utils.singleton import Singleton

    assert ntwork.__version__ == "0.1.3" and ntwork.conf.VERSION == "0.1.3"
    assert ntwork.WeWork is WeWork
    assert ntwork.conf.LOG_KEY == "NTWORK_LOG" and ntwork.conf.LOG_LEVEL == "DEBUG"
    assert ntwork.utils.logger.LEVELS_SEEN == {"WeWorkInstance": "ERROR", "WeWorkManager": "ERROR"}
    expected_notify = {
        "MT_ALL": 11000, "MT_RECV_WEWORK_QUIT_MSG": 11001, "MT_READY_MSG": 11024, "MT_USER_LOGIN_MSG": 11026,
        "MT_USER_LOGOUT_MSG": 11027, "MT_RECV_LOGIN_QRCODE_MSG": 11028, "MT_RECV_TEXT_MSG": 11041,
        "MT_RECV_IMAGE_MSG": 11042, "MT_RECV_VIDEO_MSG": 11043, "MT_RECV_VOICE_MSG": 11044,
        "MT_RECV_FILE_MSG": 11045, "MT_RECV_LOCATION_MSG": 11046, "MT_RECV_LINK_CARD_MSG": 11047,
        "MT_RECV_EMOTION_MSG": 11048, "MT_RECV_RED_PACKET_MSG": 11049, "MT_RECV_FRIEND_MSG": 11049,
        "MT_RECV_PERSON_CARD_MSG": 11050, "MT_RECV_CARD_MSG": 11050, "MT_RECV_OTHER_MSG": 11051,
        "MT_RECV_MIMI_APP_MSG": 11066, "MT_RECV_FINDER_MSG": 11124,
    }
    for name, value in expected_notify.items():
        assert getattr(notify_type, name) == value
        assert getattr(ntwork, name) == value  # star-exported at top level
    expected_send = {
        "MT_GET_SELF_MSG": 11035, "MT_GET_INNER_CONTACTS_MSG": 11036, "MT_GET_EXTERNAL_CONTACTS_MSG": 11037,
        "MT_GET_ROOMS_MSG": 11038, "MT_GET_CONTACT_DETAIL_MSG": 11039, "MT_GET_ROOM_MEMBERS_MSG": 11040,
        "MT_SEND_TEXT_MSG": 11029, "MT_SEND_IMAGE_MSG": 11030, "MT_SEND_FILE_MSG": 11031,
        "MT_SEND_LINK_MSG": 11033, "MT_SEND_CARD_MSG": 11034, "MT_SEND_VIDEO_MSG": 11067,
        "MT_SEND_ROOM_AT_MSG": 11069, "MT_SEND_GIF_MSG": 11070, "MT_C2CCDN_DOWNLOAD_MSG": 11170,
        "MT_WXCDN_DOWNLOAD_MSG": 11171,
    }
    for name, value in expected_send.items():
        assert getattr(send_type, name) == value
        assert not hasattr(ntwork, name)  # send_type is not re-exported
    for name in ("WeWorkVersionNotMatchError", "WeWorkBindError", "WeWorkNotLoginError"):
        exc = getattr(ntwork, name)
        assert issubclass(exc, Exception) and exc is getattr(ntwork.exception, name)
    assert ObjectDict(a=1).a == 1 and len(generate_guid("req")) == 36
    assert isinstance(Singleton._instances, dict)
    for name in ("open", "attach", "detach", "exit", "send", "init_env", "init_callback",
                 "get_install_wework_version"):
        assert callable(getattr(ntwork.wcprobe, name))
    assert ntwork.get_install_wework_version() == "4.0.8.6027"

    assert (WeWork.client_id, WeWork.pid, WeWork.status, WeWork.login_status) == (0, 0, False, False)
    wework = ntwork.WeWork()
    for private in ("_WeWork__wait_login_event", "_WeWork__req_data_cache", "_WeWork__login_info",
                    "_WeWork__send", "_WeWork__send_sync"):
        assert hasattr(wework, private)
    assert wework.get_login_info() == {} and repr(wework) == "WeWorkInstance(pid: 0, client_id: 0)"
    for method in ("get_self_info", "get_inner_contacts", "get_external_contacts", "get_contact_detail",
                   "get_rooms", "get_room_members", "send_text", "send_room_at_msg", "send_card",
                   "send_link_card", "send_image", "send_file", "send_video", "send_gif", "c2c_cdn_download",
                   "wx_cdn_download", "on", "msg_register", "open", "attach", "detach", "wait_login"):
        assert callable(getattr(wework, method))


def test_construction_and_registration_have_no_side_effects(ntwork, sim):
    wework = ntwork.WeWork()

    @wework.msg_register([ntwork.MT_RECV_TEXT_MSG, 11072])
    def handler(instance, message):
        pass

    assert handler.__name__ == "handler"  # msg_register returns f unchanged
    time.sleep(0.1)
    assert [c["method"] for c in sim.calls] == []
    assert wework.login_status is False and wework.status is False


def test_version_mismatch_raises_on_first_construction(ntwork, sim):
    from ntwork.core.mgr import WeWorkMgr
    from ntwork.utils.singleton import Singleton

    manager = Singleton._instances.pop(WeWorkMgr, None)
    try:
        sim.configure(version_match=False)
        with pytest.raises(ntwork.WeWorkVersionNotMatchError):
            ntwork.WeWork()
        sim.configure(version_match=True)
        ntwork.WeWork()
    finally:
        if manager is not None:
            Singleton._instances[WeWorkMgr] = manager


# ------------------------------------------------------------------------------------------------ login
def test_not_logged_in_raises_and_is_recorded(ntwork, sim):
    wework = ntwork.WeWork()
    with pytest.raises(ntwork.WeWorkNotLoginError):
        wework.send_text(SINGLE, "hi")
    with pytest.raises(ntwork.WeWorkNotLoginError):
        wework.get_rooms()
    assert [(c["method"], c["error"]) for c in sim.calls] == [
        ("send_text", "WeWorkNotLoginError"), ("get_rooms", "WeWorkNotLoginError")]


def test_open_wait_login_and_login_info(ntwork, sim):
    info = {"user_id": "1688850000000001", "username": "张三", "nickname": "bot"}
    sim.configure(login_info=info, login_delay=0.1)
    wework = ntwork.WeWork()
    seen = []
    wework.on(ntwork.MT_USER_LOGIN_MSG, lambda w, m: seen.append(("login", w.login_status, m["data"])))
    wework.on(ntwork.MT_ALL, lambda w, m: seen.append(("all", m["type"])))
    started = time.monotonic()
    assert wework.open(smart=True) is True
    assert wework.pid != 0 and wework.login_status is False
    assert wework.wait_login(timeout=5) is None
    assert time.monotonic() - started >= 0.09
    assert wework.login_status is True and wework.status is True and wework.client_id != 0
    assert wework.get_login_info() == info
    sim.wait_idle()
    # READY is consumed by the manager; login reaches its own handlers (login_status already set) and MT_ALL
    assert seen == [("login", True, info), ("all", 11026)]
    methods = [c["method"] for c in sim.calls]
    assert methods[:2] == ["open", "wait_login"] and sim.calls[0]["data"] == {"smart": True}
    assert sim.calls[0]["result"] == wework.pid and sim.calls[1]["logged_in"] is True
    assert wework.get_self_info() == info


def test_wait_login_times_out_silently_when_nobody_logs_in(ntwork, sim):
    sim.configure(login_delay=None)
    wework = ntwork.WeWork()
    assert wework.open(False) is True
    assert wework.wait_login(timeout=0.1) is None
    assert wework.login_status is False
    sim.configure(fail={"open": 1})
    assert ntwork.WeWork().open() is False


def test_logout_and_login_again(ntwork, sim):
    wework = login(ntwork)
    sim.logout()
    sim.wait_idle()
    assert wework.login_status is False
    with pytest.raises(ntwork.WeWorkNotLoginError):
        wework.send_text(SINGLE, "x")
    sim.login()
    sim.wait_idle()
    assert wework.login_status is True and wework.send_text(SINGLE, "x") is True


# ------------------------------------------------------------------------------------------------ sync
def test_sync_calls_answer_from_the_model(ntwork, sim):
    rooms = [{"conversation_id": ROOM, "nickname": "Team"}, {"conversation_id": "R:2", "nickname": "Two"}]
    members = [{"user_id": ALICE, "room_nickname": "Al", "username": "Alice"}]
    external = [{"user_id": ALICE, "username": "Alice", "nickname": ""}]
    sim.configure(rooms=rooms, room_members={ROOM: members}, external_contacts=external,
                  inner_contacts=[{"user_id": "1688850000000009", "username": "Colleague"}])
    wework = login(ntwork)
    assert wework.get_rooms() == {"room_list": rooms}
    assert wework.get_rooms(page_num=2, page_size=1) == {"room_list": rooms[1:]}
    assert wework.get_room_members(ROOM) == {"member_list": members}
    assert wework.get_room_members("R:unknown") == {"member_list": []}
    assert wework.get_external_contacts() == {"contact_list": external}
    assert wework.get_inner_contacts()["contact_list"][0]["username"] == "Colleague"
    assert wework.get_contact_detail(ALICE) == external[0]
    record = sim.calls_of("get_room_members")[0]
    assert record["type"] == 11040 and record["data"] == {"conversation_id": ROOM, "page_num": 1, "page_size": 500}
    assert record["result"] == {"member_list": members}


def test_sync_timeout_returns_none_after_sync_timeout(ntwork, sim):
    sim.configure(room_members={ROOM: []}, timeout={"get_room_members": 1}, sync_timeout=0.2)
    wework = login(ntwork)
    started = time.monotonic()
    assert wework.get_room_members(ROOM) is None
    assert 0.18 <= time.monotonic() - started < 1.5
    assert wework.get_room_members(ROOM) == {"member_list": []}
    assert [c.get("error") for c in sim.calls_of("get_room_members")] == ["timeout", None]


def test_failure_counts(ntwork, sim):
    sim.configure(rooms=[{"conversation_id": ROOM, "nickname": "Team"}], fail={"get_rooms": 2})
    wework = login(ntwork)
    started = time.monotonic()
    assert [wework.get_rooms(), wework.get_rooms()] == [None, None]
    assert time.monotonic() - started < 0.2  # failures answer at once
    assert wework.get_rooms()["room_list"][0]["conversation_id"] == ROOM


def test_data_not_ready_right_after_login(ntwork, sim):
    sim.configure(rooms=[{"conversation_id": ROOM, "nickname": "Team"}], external_contacts=[{"user_id": ALICE}],
                  data_ready_after=0.3)
    wework = login(ntwork)
    rooms = wework.get_rooms()
    assert isinstance(rooms, dict) and "room_list" not in rooms
    assert not wework.get_external_contacts()
    time.sleep(0.35)
    assert wework.get_rooms()["room_list"]
    assert wework.get_external_contacts()["contact_list"]


# ------------------------------------------------------------------------------------------------ async
def test_async_sends_return_scripted_results_and_are_recorded(ntwork, sim):
    sim.configure(send_results={"send_text": [False, True]})
    wework = login(ntwork)
    assert [wework.send_text(SINGLE, str(i)) for i in range(3)] == [False, True, True]
    assert wework.send_room_at_msg(ROOM, "\nhello", [ALICE]) is True
    assert wework.send_image(SINGLE, "/tmp/a.png") is True
    assert wework.send_link_card(SINGLE, "t", "d", "https://e.x", "https://e.x/i.png") is True
    texts = sim.calls_of("send_text")
    assert [(c["type"], c["data"]["content"], c["result"]) for c in texts] == [
        (11029, "0", False), (11029, "1", True), (11029, "2", True)]
    assert sim.calls_of("send_room_at_msg")[0]["data"] == {"conversation_id": ROOM, "content": "\nhello",
                                                            "at_list": [ALICE]}
    assert sim.calls_of("send_image")[0]["data"] == {"conversation_id": SINGLE, "file": "/tmp/a.png"}
    assert sim.calls_of("send_link_card")[0]["type"] == 11033


# ------------------------------------------------------------------------------------------------ inbound
def test_inbound_messages_arrive_in_order_on_a_callback_thread(ntwork, sim):
    wework = login(ntwork)
    seen, all_types = [], []

    @wework.msg_register(ntwork.MT_RECV_TEXT_MSG)
    def broken(instance, message):
        raise RuntimeError("handler bug")  # logged by ntwork 0.1.3, never propagated

    @wework.msg_register((ntwork.MT_RECV_TEXT_MSG, ntwork.MT_RECV_IMAGE_MSG))
    def on_message(instance, message):
        assert instance is wework
        seen.append((threading.current_thread() is threading.main_thread(), message["type"],
                     message["data"].get("content")))

    wework.on(ntwork.MT_ALL, lambda instance, message: all_types.append(message["type"]))
    for i in range(5):
        sim.inject(ntwork_control.text(SINGLE, ALICE, "Alice", f"m{i}"))
    sim.inject(ntwork_control.image(ROOM, ALICE, "Alice"))
    assert sim.wait_idle()
    assert seen == [(False, 11041, f"m{i}") for i in range(5)] + [(False, 11042, None)]
    assert all_types == [11041] * 5 + [11042]
    assert len(sim.callback_errors) == 5
    message = sim.calls_of("sim.inject")[0]["data"]
    assert isinstance(message["send_time"], str) and isinstance(message["server_id"], str)


def test_nested_sync_call_from_a_handler(ntwork, sim):
    sim.configure(rooms=[{"conversation_id": ROOM, "nickname": "Team"}],
                  room_members={ROOM: [{"user_id": ALICE, "room_nickname": "", "username": "Alice"}]})
    wework = login(ntwork)
    results = []

    @wework.msg_register(11072)
    def joined(instance, message):
        rooms = instance.get_rooms()
        results.append((rooms["room_list"][0]["nickname"], instance.get_room_members(ROOM)["member_list"][0]["user_id"]))
        instance.send_text(ROOM, "welcome")

    sim.inject(ntwork_control.member_joined(ROOM, ALICE, "Alice"))
    assert sim.wait_idle()
    assert results == [("Team", ALICE)]
    assert sim.calls_of("send_text")[0]["result"] is True


def test_crash_calls_quit_handlers_with_one_argument(ntwork, sim):
    wework = login(ntwork)
    quit_args, all_messages = [], []

    @wework.msg_register(ntwork.MT_RECV_WEWORK_QUIT_MSG)
    def on_quit(*args):
        quit_args.append(args)

    wework.on(ntwork.MT_ALL, lambda *args: all_messages.append(args[1]))
    sim.crash()
    assert sim.wait_idle()
    assert quit_args == [(wework,)]
    assert all_messages == [{"type": 11001, "data": {}}]
    assert wework.login_status is False and wework.status is False
    with pytest.raises(ntwork.WeWorkNotLoginError):
        wework.send_text(SINGLE, "after crash")
    sim.inject(ntwork_control.text(SINGLE, ALICE, "Alice", "lost"))
    sim.wait_idle()
    assert sim.calls_of("sim.dropped")


def test_exit_flips_login_off_and_is_recorded(ntwork, sim):
    wework = login(ntwork)
    quits = []
    wework.on(ntwork.MT_RECV_WEWORK_QUIT_MSG, lambda instance: quits.append(instance))
    assert ntwork.exit_() is None
    assert wework.login_status is False and quits == [wework]
    assert sim.calls_of("exit_")[0]["result"] is True and sim.exited
    with pytest.raises(ntwork.WeWorkNotLoginError):
        wework.send_text(SINGLE, "after exit")


# ------------------------------------------------------------------------------------------------ cdn
def test_cdn_downloads_write_files(ntwork, sim, tmp_path):
    import pilk

    custom = b"%PDF-1.4 custom"
    sim.configure(cdn_files={"file-1": base64.b64encode(custom).decode()})
    wework = login(ntwork)
    voice = ntwork_control.voice(SINGLE, ALICE, "Alice")
    sim.inject(voice)
    sim.wait_idle()
    cdn = voice["data"]["cdn"]
    silk = str(tmp_path / "v.silk")
    reply = wework.c2c_cdn_download(cdn["file_id"], cdn["aes_key"], cdn["size"], 5, silk)
    assert reply["save_path"] == silk and os.path.getsize(silk) == reply["file_size"]
    wav = str(tmp_path / "v.wav")
    pilk.silk_to_wav(silk, wav, rate=24000)
    with wave.open(wav) as f:
        assert f.getnframes() > 1000

    image = str(tmp_path / "i.jpg")
    assert wework.c2c_cdn_download("img-1", "k", 10, 2, image)
    assert open(image, "rb").read().startswith(b"\x89PNG")
    from ntwork.const import send_type
    url_image = str(tmp_path / "u.jpg")
    assert wework._WeWork__send_sync(send_type.MT_WXCDN_DOWNLOAD_MSG, {
        "url": "https://wework.qpic.cn/x", "auth_key": "a", "aes_key": "k", "size": 10, "save_path": url_image})
    assert os.path.exists(url_image) and sim.calls_of("wx_cdn_download")[0]["data"]["aes_key"] == "k"
    doc = str(tmp_path / "d.pdf")
    assert wework.c2c_cdn_download("file-1", "k", 10, 5, doc)
    assert open(doc, "rb").read() == custom
    assert wework.c2c_cdn_download("file-1", "k", 10, 5, str(tmp_path / "missing" / "x")) is None


# ------------------------------------------------------------------------------------------------ cross-process
SCRIPT = textwrap.dedent("""
    import threading
    import ntwork

    wework = ntwork.WeWork()
    done = threading.Event()

    @wework.msg_register(ntwork.MT_RECV_TEXT_MSG)
    def on_text(instance, message):
        data = message["data"]
        instance.send_text(data["conversation_id"], "echo: " + data["content"])
        done.set()

    wework.open(smart=True)
    wework.wait_login(timeout=5)
    done.wait(10)
    ntwork.exit_()
""")


def test_cross_process_control(tmp_path):
    ctl = SimControl(tmp_path / "sim")
    ctl.write_scenario(login_info={"user_id": "1688850000000002", "username": "Proc", "nickname": ""},
                       login_delay=0.05)
    env = dict(os.environ)
    env.update(ctl.env(), NTWORK_LOG="WARNING")
    assert env["PYTHONPATH"].split(os.pathsep)[0] == FAKES
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ctl.wait_for_call("wait_login", lambda r: r["logged_in"], timeout=10)
        message = ctl.text(SINGLE, ALICE, "Alice", "你好")
        assert message["data"]["receiver"] == "1688850000000002"
        ctl.inject(message)
        record = ctl.wait_for_call("send_text", timeout=10)
        assert record["type"] == 11029 and record["result"] is True
        assert record["data"] == {"conversation_id": SINGLE, "content": "echo: 你好"}
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    methods = [r["method"] for r in ctl.calls()]
    assert methods[0] == "sim.import" and methods[-1] == "exit_"
    assert ctl.calls("sim.import")[0]["data"]["log_levels"]["WeWorkInstance"] == "WARNING"
    assert not os.listdir(ctl.inbox)
