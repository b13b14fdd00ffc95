"""`python app.py` with channel_type wxy (personal WeChat through a wechaty puppet service) against
the fake puppet gRPC service (tests/fakes/wechaty) and the Dify simulator, as real processes.

One daemon serves the module: the tests run in file order, the first one logs it in (QR, scan,
login), the last ones kill and restart it on the same data folder.
"""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, ROOT, RunLogReader, plugins_dir, run_app, user_lines, wait_until, write_config
from tests.fakes.audio import make_silk
from tests.fakes.wechaty import FakePuppet
from tests.fakes.wechaty.server import EVENT_SCAN

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2
MEDIA_MAX = 64 * 1024
ROOM = "room-1@chatroom"


class Env(RunLogReader):
    def __init__(self, folder, fake: FakePuppet, dify: DifyServer) -> None:
        self.folder = folder
        self.fake = fake
        self.dify = dify
        self.daemon: Daemon | None = None

    def config(self, **extra) -> str:
        settings = dict(
            channel_type="wxy", wechaty_puppet_service_token=self.fake.token,
            wechaty_discovery_url=self.fake.hosties_url, wechaty_retry_delay=0.2, wechaty_heartbeat_interval=1,
            wechaty_media_max_bytes=MEDIA_MAX,
            bot_type="", model="dify", dify_api_base=self.dify.base_url, dify_api_key="app-test",
            allowed_internal_hosts=["127.0.0.1"], image_recognition=True, shutdown_timeout=2,
            group_name_white_list=["ALL_GROUP"], speech_recognition=True, voice_to_text="dify",
        )
        settings.update(extra)
        return write_config(self.folder, **settings)

    def start(self, **extra) -> Daemon:
        plugins = plugins_dir(self.folder, names=())
        self.daemon = Daemon(self.folder, "--config", self.config(**extra), "--plugins-dir", plugins)
        return self.daemon



@pytest.fixture(scope="module")
def env(tmp_path_factory):
    fake = FakePuppet(redeliver=3).start()
    with DifyServer(api_key="app-test", mode="chat") as dify:
        environment = Env(tmp_path_factory.mktemp("wxy"), fake, dify)
        try:
            yield environment
        finally:
            if environment.daemon is not None:
                environment.daemon.kill()
            fake.stop()


def dify_queries(dify) -> list[str]:
    return [r["json"]["query"] for r in dify.requests_to("/v1/chat-messages")]


def test_missing_token_and_endpoint_stop_start_up_pointing_to_wx(tmp_path):
    result = run_app(tmp_path, "--config", write_config(tmp_path, channel_type="wxy"))
    assert result.returncode != 0
    [line] = user_lines(result.stderr)
    assert "wechaty_puppet_service_token" in line and "wechaty_puppet_service_endpoint" in line
    assert "channel_type `wx`" in line


def test_without_the_client_packages_start_up_names_the_requirements_file(tmp_path):
    # A package of that name that fails to import stands for one that is not installed.
    shadow = tmp_path / "shadow" / "wechaty_grpc"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'wechaty_grpc'\", name='wechaty_grpc')\n")
    config = write_config(tmp_path, channel_type="wxy", wechaty_puppet_service_token="some-token")
    result = run_app(tmp_path, "--config", config, env={"PYTHONPATH": os.pathsep.join([str(shadow.parent), ROOT])})
    assert result.returncode != 0
    [line] = user_lines(result.stderr)
    assert "pip install -r requirements-wxy.txt" in line and "wechaty_grpc" in line


def test_a_token_the_service_refuses_stops_start_up_with_a_clear_error(tmp_path):
    fake = FakePuppet(token="the-right-token").start()
    try:
        config = write_config(tmp_path, channel_type="wxy", wechaty_puppet_service_token="a-wrong-token",
                              wechaty_puppet_service_endpoint=fake.endpoint, wechaty_retry_delay=0.2)
        result = run_app(tmp_path, "--config", config)
    finally:
        fake.stop()
    assert result.returncode != 0
    [line] = user_lines(result.stderr)
    assert "refused the token" in line and "UNAUTHENTICATED" in line and "wechaty_puppet_service_token" in line
    assert fake.authorities and set(fake.authorities) == {"a-wrong-token"}  # sent as the :authority
    assert "Start" not in fake.calls


def test_first_start_shows_the_qr_then_logs_in(env):
    fake = env.fake
    env.start()
    fake.wait_streams(1)
    env.wait_log_count("scan the QR with WeChat", 1)
    with open(os.path.join(str(env.folder), "tmp", "login.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "█" in "".join(env.daemon.stdout)  # drawn in the terminal
    assert fake.qrcode not in env.log()  # a login credential while it lives
    fake.scan()
    env.wait_log_count("QR scanned", 1)
    fake.login()
    env.wait_log_count("[wxy] logged in as Bot (wxid_bot)", 1)
    env.wait_log_count("[wxy] ready, handling messages", 1)
    # Found through discovery, by token; the token went as the :authority of every call.
    assert f"hosties:{fake.token}" in fake.calls and fake.calls.index("Start") < fake.calls.index("Event")
    assert set(fake.authorities) == {fake.token}


def test_a_private_question_is_answered(env):
    fake = env.fake
    fake.push_text("wxid_alice", "hello")
    [sent] = fake.wait_sent("wxid_alice")
    assert sent.kind == "text" and sent.text == "echo: hello" and sent.mentions == []


def test_a_group_at_is_answered_with_an_at(env):
    fake = env.fake
    fake.add_room(ROOM, "Team")
    fake.push_text("wxid_bob", "nobody asked the bot", room=ROOM, name="Bob")
    fake.push_text("wxid_bob", "@Bot\u2005what time is it?", room=ROOM, mentions=[fake.self_id], name="Bob")
    [sent] = fake.wait_sent(ROOM)
    assert sent.text == "@Bob\necho: what time is it?"
    assert sent.mentions == ["wxid_bob"]  # a real @ of the asker
    # The original's fallback: a pasted "@Bot " counts as an @ even without the mention list.
    fake.push_text("wxid_carl", "@Bot and now?", room=ROOM, name="Carl")
    sent = fake.wait_sent(ROOM, 2)
    assert sent[1].text == "@Carl\necho: and now?" and sent[1].mentions == ["wxid_carl"]
    time.sleep(0.3)
    assert "nobody asked the bot" not in dify_queries(env.dify)


def test_an_image_goes_with_the_next_question(env):
    fake, dify = env.fake, env.dify
    uploads_before = len(dify.requests_to("/v1/files/upload"))
    fake.push_image("wxid_dora", PNG)
    fake.push_text("wxid_dora", "what is in the picture?")
    [sent] = fake.wait_sent("wxid_dora")
    assert sent.text == "echo: what is in the picture?"
    uploads = dify.requests_to("/v1/files/upload")[uploads_before:]
    assert len(uploads) == 1 and PNG in uploads[0]["body"]
    assert dify.requests_to("/v1/chat-messages")[-1]["json"]["files"]


def test_a_voice_message_is_transcribed_and_answered(env, tmp_path):
    env.dify.stt_text = "语音里的问题"
    with open(make_silk(str(tmp_path / "voice.sil"), tencent=True), "rb") as f:
        audio = f.read()
    env.fake.push_voice("wxid_emil", audio)
    [sent] = env.fake.wait_sent("wxid_emil")
    assert sent.text == "echo: 语音里的问题"
    [stt] = env.dify.requests_to("/v1/audio-to-text")
    [part] = stt["files"].values()
    assert part["content"][:4] == b"RIFF"  # the SILK from the puppet, converted to WAV


def test_a_picture_in_the_answer_is_sent_as_a_file_box(env):
    fake, dify = env.fake, env.dify
    dify.add_file("/files/chart.png", PNG, "image/png")
    dify.push_answer(f"the chart ![chart]({dify.host_url}/files/chart.png)")
    fake.push_text("wxid_gus", "draw it")
    files = wait_until(lambda: [s for s in fake.sent_to("wxid_gus") if s.kind == "file"], what="the image")
    assert files[0].data == PNG and files[0].box["name"].endswith(".png") and files[0].box["boxType"] == 1


def test_a_duplicate_message_event_is_handled_once(env):
    fake = env.fake
    once = fake.push_text("wxid_frank", "once only")
    fake.wait_sent("wxid_frank")
    fake.deliver(once)  # the service sends the same MESSAGE event again
    fake.push_text("wxid_frank", "next one")
    fake.wait_sent("wxid_frank", 2)
    time.sleep(0.5)
    assert fake.texts_to("wxid_frank") == ["echo: once only", "echo: next one"]
    assert dify_queries(env.dify).count("once only") == 1


def test_a_failed_send_is_logged_and_retried(env):
    fake = env.fake
    failures_before = env.log().count("send failed (attempt 1 of 3)")
    fake.fail_next_sends("the phone is offline")
    fake.push_text("wxid_henry", "retry me")
    fake.wait_sent("wxid_henry", timeout=20)
    time.sleep(0.3)
    assert fake.texts_to("wxid_henry") == ["echo: retry me"]
    log = env.log()
    assert log.count("send failed (attempt 1 of 3)") == failures_before + 1 and "the phone is offline" in log


def test_malformed_events_and_payloads_are_refused_cleanly(env):
    fake = env.fake
    fake.emit(2, "not json {")
    fake.emit(2, {"no": "messageId"})
    fake.deliver("msg-that-does-not-exist")  # MessagePayload answers NOT_FOUND
    fake.push_payload({"id": "no-talker", "type": 6, "text": "who?", "to_id": fake.self_id})
    fake.push_payload({"id": "a-link", "type": 14, "text": "http://x", "from_id": "wxid_ivan", "to_id": fake.self_id})
    broken = fake.push_image("wxid_ivan", PNG)
    fake.media[broken] = '{"boxType": 1, "name": "x.jpg", "base64": "!!not base64!!"}'
    huge = fake.push_image("wxid_ivan", b"\xff\xd8\xff" + bytes(MEDIA_MAX))
    # Its size is refused from the length of its base64, before any of it is decoded.
    huge_broken = fake.push_image("wxid_ivan", PNG)
    fake.media[huge_broken] = json.dumps({"boxType": 1, "name": "x.jpg", "base64": "A" * (2 * MEDIA_MAX) + "!!"})
    fake.push_text("wxid_ivan", "still there?")
    sent = fake.wait_sent("wxid_ivan", 4)
    time.sleep(0.3)
    texts = fake.texts_to("wxid_ivan")
    assert len(texts) == 4 and texts[-1] == "echo: still there?", texts
    assert "could not be received" in texts[0] and "too large" in texts[1] and "too large" in texts[2], texts
    log = env.log()
    assert "a malformed event of type 2 skipped" in log and "without a messageId" in log
    assert "msg-that-does-not-exist could not be read" in log and "has no talker" in log
    assert "a-link of type 14 is not handled" in log
    assert f"message {huge} is over wechaty_media_max_bytes" in log
    assert env.daemon.proc.poll() is None and sent


def test_a_dropped_event_stream_is_reconnected_and_answers_go_on(env):
    fake = env.fake
    opened = fake.streams_opened
    answered_before = len(fake.sent)
    recognised = env.log().count("was handled before, ignored")
    fake.drop_streams()
    env.wait_log_count("the puppet service ended the event stream; connecting again", 1)
    fake.wait_streams(opened + 1)
    # The service sent its last MESSAGE events again on the new stream: all handled already.
    fake.push_text("wxid_jack", "after the reconnect")
    [sent] = fake.wait_sent("wxid_jack")
    time.sleep(0.5)
    assert sent.text == "echo: after the reconnect"
    assert len(fake.sent) == answered_before + 1
    assert env.log().count("was handled before, ignored") >= recognised + 3


def test_a_silent_service_is_pinged_then_reconnected(env):
    fake = env.fake
    opened = fake.streams_opened
    dings = fake.calls.count("Ding")
    fake.freeze()  # the connection stays open but nothing comes, not even DONG
    fake.wait_streams(opened + 1)
    assert fake.calls.count("Ding") > dings
    assert "no event from the puppet service for 2 s" in env.log()
    fake.push_text("wxid_kim", "are you back?")
    [sent] = fake.wait_sent("wxid_kim")
    assert sent.text == "echo: are you back?"


def test_a_message_taken_before_a_crash_is_answered_once_after_the_restart(env):
    fake, dify = env.fake, env.dify
    dify.push_answer("the slow answer", latency=30)
    asked = len(dify.requests_to("/v1/chat-messages"))
    leo = fake.push_text("wxid_leo", "answer me once")
    wait_until(lambda: len(dify.requests_to("/v1/chat-messages")) > asked, what="Dify to be asked")
    env.daemon.proc.send_signal(signal.SIGKILL)
    env.daemon.wait(10)
    assert fake.sent_to("wxid_leo") == []
    opened = fake.streams_opened
    env.start()
    fake.wait_streams(opened + 1)  # the redelivered MESSAGE event of leo's message comes too
    fake.wait_sent("wxid_leo", timeout=20)
    time.sleep(1.0)
    assert fake.texts_to("wxid_leo") == ["echo: answer me once"]
    # Its MESSAGE event came again on the new stream and was recognised.
    assert [line for line in env.log().splitlines() if f"{leo} was" in line and "before, ignored" in line]
    assert "scan the QR" not in env.log().split("logged in as Bot")[-1]  # the service kept the login


def test_a_restart_replays_nothing_already_answered(env):
    fake = env.fake
    env.daemon.proc.send_signal(signal.SIGTERM)
    assert env.daemon.wait(20) == 0
    sent_before = len(fake.sent)
    opened = fake.streams_opened
    recognised = env.log().count("was handled before, ignored")
    env.start()
    fake.wait_streams(opened + 1)  # the last MESSAGE events come again on the new stream
    fake.push_text("wxid_mia", "after the restart")
    fake.wait_sent("wxid_mia")
    time.sleep(0.5)
    assert len(fake.sent) == sent_before + 1
    assert env.log().count("was handled before, ignored") >= recognised + 3


def test_a_logout_leads_to_a_new_qr_and_answers_go_on_after_the_new_login(env):
    fake = env.fake
    shown = env.log().count("scan the QR with WeChat")
    logins = env.log().count("[wxy] logged in as Bot (wxid_bot)")
    fake.logout()  # the login expired or was ended on the phone
    fake.qrcode = "https://login.weixin.qq.com/l/fake-qr-2"
    fake.emit(EVENT_SCAN, {"status": 2, "qrcode": fake.qrcode})
    env.wait_log_count("scan the QR with WeChat", shown + 1)
    assert fake.qrcode not in env.log()
    fake.login()
    env.wait_log_count("[wxy] logged in as Bot (wxid_bot)", logins + 1)
    before = len(fake.sent_to("wxid_mia"))
    fake.push_text("wxid_mia", "back again")
    assert fake.wait_sent("wxid_mia", count=before + 1)[-1].text == "echo: back again"


@pytest.mark.parametrize("puppet", [
    dict(send_ids=False),  # wechaty-puppet lets a send resolve to no id
    dict(echo_first=True),  # the echo comes before the send's answer
], ids=["sends-without-id", "echo-before-the-send-returns"])
def test_our_own_sends_echoed_back_are_never_questions(tmp_path, puppet):
    """The service reports what the account sent as MESSAGE events: a private one is never a
    question, and in a room only the account's own messages that are not our answers are."""
    fake = FakePuppet(**puppet).start()
    with DifyServer(api_key="app-test", mode="chat") as dify:
        env = Env(tmp_path, fake, dify)
        try:
            # The keyword is in every answer: an echo taken in the room would answer itself.
            env.start(group_chat_keyword=["loop"])
            env.wait_log_count("scan the QR with WeChat", 1)
            fake.login()
            env.wait_log_count("[wxy] ready, handling messages", 1)
            fake.add_room(ROOM, "Team")
            fake.push_text("wxid_alice", "hello loop")
            fake.wait_sent("wxid_alice")
            fake.push_text("wxid_bob", "a loop question", room=ROOM, name="Bob")
            fake.wait_sent(ROOM)
            # The account itself, from the phone: privately never a question; in a room it may
            # trigger the bot (trigger_by_self, on by default).
            fake.push_payload({"id": "own-1", "type": 6, "text": "loop from my phone", "timestamp": int(time.time()),
                               "from_id": fake.self_id, "to_id": "wxid_alice", "room_id": "", "mention_ids": []})
            fake.push_payload({"id": "own-2", "type": 6, "text": "my own loop question",
                               "timestamp": int(time.time()), "from_id": fake.self_id, "to_id": "", "room_id": ROOM,
                               "mention_ids": []})
            fake.wait_sent(ROOM, 2)
            # Events are handled in order: once this is answered, every echo before it was seen.
            fake.push_text("wxid_zed", "last")
            fake.wait_sent("wxid_zed")
            fake.push_text("wxid_zed", "really last")
            fake.wait_sent("wxid_zed", 2)
            assert dify_queries(dify) == ["hello loop", "a loop question", "my own loop question", "last",
                                          "really last"]
            assert fake.texts_to("wxid_alice") == ["echo: hello loop"]
            assert len(fake.texts_to(ROOM)) == 2
        finally:
            env.daemon.kill()
            fake.stop()


def test_a_message_that_arrives_while_the_daemon_stops_is_answered_after_the_restart(tmp_path):
    """The puppet service sends a MESSAGE event once: one that comes while a stop waits for a
    running answer is kept in the inbox, not dropped."""
    fake = FakePuppet().start()
    with DifyServer(api_key="app-test", mode="chat") as dify:
        env = Env(tmp_path, fake, dify)
        try:
            env.start(shutdown_timeout=3)
            env.wait_log_count("scan the QR with WeChat", 1)
            fake.login()
            env.wait_log_count("[wxy] ready, handling messages", 1)
            dify.push_answer("too slow", latency=30)
            fake.push_text("wxid_alice", "a slow one")
            wait_until(lambda: dify_queries(dify) == ["a slow one"], 15, "Dify to be asked")
            env.daemon.proc.send_signal(signal.SIGTERM)
            env.wait_log_count("signal 15 received", 1)
            time.sleep(0.3)  # the stop has begun: no new message is started
            fake.push_text("wxid_bob", "while stopping")
            env.wait_log_count("kept in the inbox, answered after the next start", 1)
            assert env.daemon.wait(30) == 0
            assert fake.sent_to("wxid_bob") == []
            env.start()
            [sent] = fake.wait_sent("wxid_bob")
            assert sent.text == "echo: while stopping"
        finally:
            env.daemon.kill()
            fake.stop()
