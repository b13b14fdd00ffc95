"""`python app.py` with channel_type wework as a real process, driven through the ntwork simulator
(tests/fakes/ntwork, controlled from here with tests/fakes/ntwork_control.py) and answered by the
Dify simulator running in this process."""
from __future__ import annotations

import base64
import io
import json
import os
import signal
import sys
import time

import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, plugins_dir, run_app, user_lines, write_config
from tests.fakes.ntwork_control import SimControl

pytestmark = pytest.mark.slow

BOT_ID = "1688854420437671"
BOT_NAME = "Bot"
ALICE = "7881303235927249"
ALICE_NAME = "悠悠"
ROOM = "R:10822887504240095"
ROOM_NAME = "测试群"
PRIVATE = f"S:{BOT_ID}_{ALICE}"

SCENARIO = {
    "login_info": {"user_id": BOT_ID, "username": "张三", "nickname": BOT_NAME},
    "data_ready_after": 0.3,
    "external_contacts": [{"user_id": ALICE, "username": ALICE_NAME}],
    "rooms": [{"conversation_id": ROOM, "nickname": ROOM_NAME}],
    "room_members": {ROOM: [{"user_id": ALICE, "room_nickname": ALICE_NAME, "username": ALICE_NAME}]},
}


@pytest.fixture
def dify():
    with DifyServer(api_key="app-test", mode="chat") as server:
        yield server


def make_png(width: int, height: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 60, 60)).save(out, "PNG")
    return out.getvalue()


def start(folder, server, scenario=None, plugins=(), **settings):
    """A daemon logged in to a simulated WeCom; returns (daemon, control) once it is ready."""
    ctl = SimControl(os.path.join(str(folder), "sim"))
    ctl.write_scenario(**{**SCENARIO, **(scenario or {})})
    base = dict(
        channel_type="wework", bot_type="", model="dify", dify_api_base=server.base_url, dify_api_key="app-test",
        wework_reply_delay=0, wework_init_wait=5, group_name_white_list=["ALL_GROUP"],
        single_chat_prefix=[""], group_chat_prefix=["@bot"],
    )
    base.update(settings)
    config = write_config(folder, **base)
    args = ["--config", config]
    if plugins:
        args += ["--plugins-dir", plugins_dir(folder, plugins)]
    daemon = Daemon(folder, *args, env=ctl.env())
    return daemon, ctl


def wait_ready(daemon, timeout=15):
    daemon.wait_for_log("[wework] ready", timeout)


def sends(ctl, conversation_id=None):
    return [
        c for c in ctl.calls()
        if c["method"] in ("send_text", "send_room_at_msg", "send_image", "send_file", "send_video")
        and (conversation_id is None or c["data"].get("conversation_id") == conversation_id)
    ]


def contents(ctl, conversation_id=None):
    return [c["data"].get("content") for c in sends(ctl, conversation_id)]


def stop(daemon, sig=signal.SIGTERM, timeout=20):
    daemon.proc.send_signal(sig)
    return daemon.wait(timeout)


# Tests that end the daemon with SIGTERM (on Windows send_signal(SIGTERM) kills the process).
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@posix_only
def test_start_files_private_answer_sigterm_and_user_data(tmp_path, dify):
    daemon, ctl = start(tmp_path, dify, plugins=("counter",))
    try:
        wait_ready(daemon)
        folder = tmp_path / "tmp"
        rooms_text = (folder / "wework_rooms.json").read_text(encoding="utf-8")
        assert ROOM_NAME in rooms_text and '\n    "room_list"' in rooms_text  # ensure_ascii=False, indent=4
        assert json.loads(rooms_text) == {"room_list": SCENARIO["rooms"]}
        contacts = json.loads((folder / "wework_contacts.json").read_text(encoding="utf-8"))
        assert contacts == {"contact_list": SCENARIO["external_contacts"]}
        members = json.loads((folder / "wework_room_members.json").read_text(encoding="utf-8"))
        assert members == {ROOM: {"member_list": SCENARIO["room_members"][ROOM]}}
        assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]

        ctl.inject(ctl.text(PRIVATE, ALICE, ALICE_NAME, "你好"))
        answer = ctl.wait_for_call("send_text", lambda c: c["data"]["content"] == "echo: 你好")
        assert answer["data"]["conversation_id"] == PRIVATE
        ctl.inject(ctl.text(PRIVATE, ALICE, ALICE_NAME, "count"))
        ctl.wait_for_call("send_text", lambda c: c["data"]["content"] == "count=1")

        assert stop(daemon) == 0
    finally:
        daemon.kill()
    assert ctl.calls("exit_"), "SIGTERM must close the hook with ntwork.exit_()"
    assert ctl.calls("open")[0]["data"] == {"smart": True}
    # NTWORK_LOG (upper case, as ntwork reads it) was set before ntwork was imported.
    levels = ctl.calls("sim.import")[0]["data"]["log_levels"]
    assert levels and set(levels.values()) == {"ERROR"}, levels

    # The user data written before SIGTERM is there after a restart.
    os.remove(tmp_path / "run.log")  # so that "ready" is the new run's
    ctl.clear_calls()
    again, ctl2 = start(tmp_path, dify, plugins=("counter",))
    try:
        wait_ready(again)
        ctl2.inject(ctl2.text(PRIVATE, ALICE, ALICE_NAME, "count"))
        ctl2.wait_for_call("send_text", lambda c: c["data"]["content"] == "count=2")
        assert stop(again) == 0
    finally:
        again.kill()


@posix_only
def test_group_at_is_answered_with_a_real_at_and_untriggered_is_ignored(tmp_path, dify):
    daemon, ctl = start(tmp_path, dify, group_chat_reply_prefix="[bot] ")
    try:
        wait_ready(daemon)
        ctl.inject(ctl.text(ROOM, ALICE, ALICE_NAME, "大家好，今天开会吗"))
        ctl.inject(ctl.text(ROOM, ALICE, ALICE_NAME, f"@{BOT_NAME}\u2005今天开会吗", at_list=[ctl.at(BOT_ID, BOT_NAME)]))
        answer = ctl.wait_for_call("send_room_at_msg")
        assert answer["data"] == {"conversation_id": ROOM, "content": "\n[bot] echo: 今天开会吗", "at_list": [ALICE]}
        # An @ typed by hand (not in at_list) triggers too.
        ctl.inject(ctl.text(ROOM, ALICE, ALICE_NAME, f"@{BOT_NAME} 第二个问题"))
        ctl.wait_for_call("send_room_at_msg", lambda c: "第二个问题" in c["data"]["content"])
        time.sleep(0.3)
        # Messages of one member are handled in order: the untriggered one was seen first, and ignored.
        assert [c["method"] for c in sends(ctl)] == ["send_room_at_msg", "send_room_at_msg"]
        assert not any("大家好" in (text or "") for text in contents(ctl))
        assert len(dify.requests_to("/v1/chat-messages")) == 2
        assert stop(daemon) == 0
    finally:
        daemon.kill()


@posix_only
def test_duplicate_delivery_is_answered_once_and_own_and_old_messages_are_skipped(tmp_path, dify):
    daemon, ctl = start(tmp_path, dify)
    try:
        wait_ready(daemon)
        twice = ctl.text(PRIVATE, ALICE, ALICE_NAME, "只回答一次", server_id="5550001")
        ctl.inject(twice)
        ctl.inject(twice)
        ctl.inject(ctl.text(PRIVATE, BOT_ID, BOT_NAME, "sent from my phone"))  # own message
        ctl.inject(ctl.text(PRIVATE, ALICE, ALICE_NAME, "old news", send_time=int(time.time()) - 600))
        ctl.inject(ctl.text(PRIVATE, ALICE, ALICE_NAME, "该消息类型暂不能展示"))
        # Same server_id in another conversation is another message.
        ctl.inject(ctl.text(ROOM, ALICE, ALICE_NAME, f"@{BOT_NAME}\u2005只回答一次", server_id="5550001",
                            at_list=[ctl.at(BOT_ID, BOT_NAME)]))
        ctl.inject(ctl.text(PRIVATE, ALICE, ALICE_NAME, "last"))
        ctl.wait_for_call("send_text", lambda c: c["data"]["content"] == "echo: last")
        ctl.wait_for_call("send_room_at_msg")
        time.sleep(0.3)
        assert contents(ctl, PRIVATE) == ["echo: 只回答一次", "echo: last"]
        assert stop(daemon) == 0
    finally:
        daemon.kill()


@posix_only
def test_image_then_question_reaches_dify_and_voice_is_transcribed(tmp_path, dify):
    png = make_png(16, 16)
    dify.stt_text = "语音里的问题"
    daemon, ctl = start(
        tmp_path, dify, image_recognition=True, speech_recognition=True, voice_to_text="dify",
        scenario={"cdn_files": {"img-file-1": base64.b64encode(png).decode()}},
    )
    try:
        wait_ready(daemon)
        ctl.inject(ctl.image(PRIVATE, ALICE, ALICE_NAME, file_id="img-file-1"))
        ctl.inject(ctl.text(PRIVATE, ALICE, ALICE_NAME, "这是什么"))
        ctl.wait_for_call("send_text", lambda c: c["data"]["content"] == "echo: 这是什么")
        download = ctl.wait_for_call("c2c_cdn_download")
        assert download["data"]["file_type"] == 2 and os.path.isabs(download["data"]["save_path"])
        [upload] = dify.uploads.values()
        assert upload["content"] == png
        [request] = dify.requests_to("/v1/chat-messages")
        assert request["json"]["files"][0]["upload_file_id"] in dify.uploads

        ctl.inject(ctl.voice(PRIVATE, ALICE, ALICE_NAME))  # the simulator's CDN serves SILK made by pilk
        ctl.wait_for_call("send_text", lambda c: c["data"]["content"] == "echo: 语音里的问题")
        assert dify.requests_to("/v1/audio-to-text")
        assert stop(daemon) == 0
    finally:
        daemon.kill()
    leftovers = [n for n in os.listdir(tmp_path / "tmp") if n.endswith((".silk", ".wav"))]
    assert leftovers == []


@posix_only
def test_member_joined_reaches_plugins_as_join_group(tmp_path, dify):
    daemon, ctl = start(tmp_path, dify, plugins=("greeter",))
    try:
        wait_ready(daemon)
        new_member = [{"user_id": "7881300000000009", "room_nickname": "", "username": "新人"}]
        ctl.configure(room_members={ROOM: SCENARIO["room_members"][ROOM] + new_member})
        ctl.inject(ctl.member_joined(ROOM, "7881300000000009", "新人"))
        greeting = ctl.wait_for_call("send_room_at_msg")
        assert greeting["data"]["at_list"] == ["7881300000000009"]
        assert greeting["data"]["content"] == f"\n欢迎 新人 加入「{ROOM_NAME}」！"
        # The member list is re-read in the background and the file rewritten.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            members = json.loads((tmp_path / "tmp" / "wework_room_members.json").read_text(encoding="utf-8"))
            if len(members[ROOM]["member_list"]) == 2:
                break
            time.sleep(0.05)
        assert len(members[ROOM]["member_list"]) == 2
        assert stop(daemon) == 0
    finally:
        daemon.kill()


def test_client_crash_ends_the_daemon_with_exit_code_4(tmp_path, dify):
    daemon, ctl = start(tmp_path, dify)
    try:
        wait_ready(daemon)
        ctl.crash()
        assert daemon.wait(20) == 4
    finally:
        daemon.kill()


def test_rooms_unreadable_five_times_stops_start_up_cleanly(tmp_path, dify):
    daemon, ctl = start(tmp_path, dify, scenario={"fail": {"get_rooms": 5}}, wework_init_wait=0)
    try:
        code = daemon.wait(30)
        err = daemon.stderr()
    finally:
        daemon.kill()
    assert code == 1
    lines = user_lines(err)
    assert len(lines) == 1 and "rooms" in lines[0] and "Traceback" not in err, err
    assert len(ctl.calls("get_rooms")) == 5
    assert ctl.calls("exit_")
    assert not (tmp_path / "tmp" / "wework_rooms.json").exists()


def test_without_ntwork_start_up_says_what_to_do_in_one_line(tmp_path):
    config = write_config(tmp_path, channel_type="wework")
    result = run_app(tmp_path, "--config", config, timeout=30)
    assert result.returncode == 1
    lines = user_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    if sys.platform == "win32":
        assert "ntwork" in lines[0] and ".whl" in lines[0]
    else:
        # It names only channels that run here.
        assert "Windows" in lines[0] and "web or terminal" in lines[0] and "wechatcom_app" not in lines[0]
