"""`python app.py` with channel_type wcf (personal WeChat through WeChatFerry) as a real process,
driving the real `wcferry` client against the fake WeChatFerry service of tests/fakes/wcf (the
same nng + protobuf RPC as the service injected into PC WeChat) and the Dify simulator.

One daemon serves the module (starting one costs seconds): the tests run in file order, the first
one logs it in, the last ones restart it, kill it and take its service away, on the same data folder.
"""
from __future__ import annotations

import hashlib
import os
import signal
import time

import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, RunLogReader, free_port, plugins_dir, run_app, user_lines, wait_until, write_config
from tests.fakes.audio import make_mp3
from tests.fakes.wcf import WcfService

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2
MEDIA_MAX = 64 * 1024
ROOM = "20001@chatroom"


class Env(RunLogReader):
    def __init__(self, folder, service: WcfService, dify: DifyServer) -> None:
        self.folder = folder
        self.service = service
        self.dify = dify
        self.daemon: Daemon | None = None

    def config(self, **extra) -> str:
        settings = dict(
            channel_type="wcf", wcf_host="127.0.0.1", wcf_port=self.service.port, wcf_rpc_timeout=1,
            wcf_media_max_bytes=MEDIA_MAX,
            bot_type="", model="dify", dify_api_base=self.dify.base_url, dify_api_key="app-test",
            allowed_internal_hosts=["127.0.0.1"], image_recognition=True, shutdown_timeout=2,
            group_name_white_list=["ALL_GROUP"], speech_recognition=True, voice_to_text="dify",
        )
        settings.update(extra)
        return write_config(self.folder, **settings)

    def start(self, **extra) -> Daemon:
        plugins = plugins_dir(self.folder, names=("media_probe",))  # answers files
        self.daemon = Daemon(self.folder, "--config", self.config(**extra), "--plugins-dir", plugins)
        return self.daemon



def new_service(folder, logged_in: bool = True) -> WcfService:
    service = WcfService(os.path.join(str(folder), "wechat"), logged_in=logged_in)
    service.add_contact("wxid_alice", "Alice")
    service.add_room(ROOM, "Team", {"wxid_bob": "Bob in the room", "wxid_cat": "Cat"})
    return service.start()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wcf")
    service = new_service(folder, logged_in=False)
    with DifyServer(api_key="app-test", mode="chat") as dify:
        environment = Env(folder, service, dify)
        try:
            yield environment
        finally:
            if environment.daemon is not None:
                environment.daemon.kill()
            environment.service.stop()


def inbox_count(env, session: str) -> int:
    import sqlite3

    with sqlite3.connect(os.path.join(str(env.folder), "data", "state.db")) as db:
        return db.execute("SELECT COUNT(*) FROM inbox WHERE channel = 'wcf' AND session = ?", (session,)).fetchone()[0]


def dify_queries(dify) -> list[str]:
    return [r["json"]["query"] for r in dify.requests_to("/v1/chat-messages")]


def test_start_up_waits_for_the_login_then_reads_contacts_and_takes_messages(env):
    service = env.service
    env.start()
    env.wait_log_count("waiting for WeChat to be logged in on the PC")
    assert "FUNC_ENABLE_RECV_TXT" not in service.calls  # nothing is taken before the login
    service.logged_in = True
    env.wait_log_count("[wcf] ready, handling messages")
    log = env.log()
    assert "logged in as 小助手 (wxid_bot)" in log
    assert "1 contacts and 1 rooms read" in log
    assert service.receiving and "FUNC_GET_CONTACTS" in service.calls


def test_a_second_daemon_on_the_same_login_refuses_to_start(env):
    second = Daemon(env.folder, "--config", env.config())
    try:
        assert second.wait(30) == 1
    finally:
        second.kill()
    [line] = user_lines(second.stderr())
    assert "another daemon is running with this WeChat login" in line
    assert env.daemon.proc.poll() is None


def test_a_private_question_is_answered(env):
    env.service.push_text("wxid_alice", "hello")
    [sent] = env.service.wait_sent("wxid_alice")
    assert (sent.func, sent.text, sent.aters) == ("text", "echo: hello", "")


def test_a_group_at_is_answered_with_a_real_at_of_the_member(env):
    service = env.service
    service.push_text("wxid_cat", "just chatting", roomid=ROOM)  # not addressed to the bot
    service.push_text("wxid_bob", "@小助手\u2005what time is it?", roomid=ROOM, at=["wxid_bot"])
    [sent] = service.wait_sent(ROOM)
    assert sent.aters == "wxid_bob"
    assert sent.text == "@Bob in the room\u2005echo: what time is it?"
    time.sleep(0.5)
    assert len(service.sent_to(ROOM)) == 1 and "just chatting" not in dify_queries(env.dify)


def test_an_image_goes_with_the_next_question(env):
    service, dify = env.service, env.dify
    uploads_before = len(dify.requests_to("/v1/files/upload"))
    service.push_image("wxid_carol", PNG)
    service.push_text("wxid_carol", "what is in the picture?")
    [sent] = service.wait_sent("wxid_carol")
    assert sent.text == "echo: what is in the picture?"
    uploads = dify.requests_to("/v1/files/upload")[uploads_before:]
    assert len(uploads) == 1 and PNG in uploads[0]["body"]  # decrypted by the service's call
    assert dify.requests_to("/v1/chat-messages")[-1]["json"]["files"]
    assert {"FUNC_DOWNLOAD_ATTACH", "FUNC_DECRYPT_IMAGE"} <= set(service.calls)


def test_a_voice_message_is_transcribed_and_answered(env, tmp_path):
    env.dify.stt_text = "语音里的问题"
    with open(make_mp3(str(tmp_path / "voice.mp3")), "rb") as f:
        audio = f.read()
    env.service.push_voice("wxid_dave", audio)
    [sent] = env.service.wait_sent("wxid_dave")
    assert sent.text == "echo: 语音里的问题"
    assert len(env.dify.requests_to("/v1/audio-to-text")) == 1
    assert "FUNC_GET_AUDIO_MSG" in env.service.calls


def test_a_received_file_reaches_plugins(env):
    document = b"%PDF-1.4 notes\n" * 300
    env.service.push_file("wxid_fred", "notes.pdf", document)
    [sent] = env.service.wait_sent("wxid_fred")
    assert sent.text == f"file {len(document)} bytes sha256 {hashlib.sha256(document).hexdigest()}"


def test_a_file_in_the_answer_is_sent_as_a_file(env):
    service, dify = env.service, env.dify
    report = b"quarterly report\n" * 200
    dify.add_file("/files/report.txt", report, "text/plain")
    dify.push_answer(f"here it is [report.txt]({dify.host_url}/files/report.txt)")
    service.push_text("wxid_gina", "send me the report")
    files = wait_until(lambda: [s for s in service.sent_to("wxid_gina") if s.func == "file"], what="the file")
    assert len(files) == 1 and files[0].data == report
    assert os.path.basename(files[0].path) == "report.txt"
    assert not service.errors, service.errors


def test_a_picture_in_the_answer_is_sent_as_an_image(env):
    service, dify = env.service, env.dify
    dify.add_file("/files/chart.png", PNG, "image/png")
    dify.push_answer(f"the chart ![chart]({dify.host_url}/files/chart.png)")
    service.push_text("wxid_gus", "draw it")
    [image] = wait_until(lambda: [s for s in service.sent_to("wxid_gus") if s.func == "image"], what="the image")
    assert image.data == PNG


def test_a_duplicate_message_is_handled_once(env):
    service = env.service
    once = service.push_text("wxid_frank", "once only")
    service.wait_sent("wxid_frank")
    service.push_text("wxid_frank", "once only", msg_id=once.id)  # the same message again
    service.push_text("wxid_frank", "next one")
    service.wait_sent("wxid_frank", 2)
    time.sleep(0.5)
    assert service.texts_to("wxid_frank") == ["echo: once only", "echo: next one"]
    assert dify_queries(env.dify).count("once only") == 1


def test_a_failed_send_is_logged_and_retried(env):
    service = env.service
    service.fail_next_send(-1, receiver="wxid_henry")
    service.push_text("wxid_henry", "retry me")
    service.wait_sent("wxid_henry", timeout=20)
    time.sleep(0.3)
    assert service.texts_to("wxid_henry") == ["echo: retry me"]
    log = env.log()
    assert "send failed (attempt 1 of 3)" in log and "refused the text for wxid_henry (status -1)" in log


def test_bad_input_is_refused_cleanly_and_good_messages_still_answered(env):
    service = env.service
    service.push_raw(b"\xff\xfe not a protobuf Response \x00")
    service.push(type=1, sender="", content="who am I?", xml="")  # no sender
    service.push(type=1, sender="wxid_ivan", is_group=True, roomid="", content="which room?", xml="")
    # A user's text with line breaks cannot forge a line of the log.
    service.push(type=3, sender="wxid_ivan", roomid="wxid_ivan", content="<msg/>\n[ERROR][forged] - owned", xml="",
                 extra="")
    service.push(type=49, sender="wxid_ivan", roomid="wxid_ivan", content="<msg><appmsg", extra="/x")
    service.push(type=10000, sender="wxid_ivan", roomid="wxid_ivan", content="a system notice", xml="")
    service.push_image("wxid_ivan", PNG, missing=True)  # the service cannot download it
    service.push_file("wxid_ivan", "huge.bin", b"x" * (MEDIA_MAX + 1))  # declared too large
    service.push_file("wxid_ivan", "liar.bin", b"y" * (MEDIA_MAX + 1), declared=10)  # found too large
    service.push_text("wxid_ivan", "still there?")
    service.wait_sent("wxid_ivan", 4)
    time.sleep(0.5)
    texts = service.texts_to("wxid_ivan")
    assert len(texts) == 4 and texts[-1] == "echo: still there?", texts
    assert "could not be received" in texts[0], texts
    assert "too large" in texts[1] and "too large" in texts[2], texts
    log = env.log()
    assert log.count("a malformed message skipped") == 4
    assert "\n[ERROR][forged]" not in log and "<msg/>\\n[ERROR][forged] - owned" in log
    assert "over wcf_media_max_bytes" in log
    assert "[wcf] wcferry: 下载失败" in log  # the package's own log reaches run.log
    assert env.daemon.proc.poll() is None
    assert "liar.bin" not in "".join(os.listdir(os.path.join(str(env.folder), "tmp")))  # not kept


def test_a_restart_replays_nothing_already_answered(env):
    service = env.service
    env.daemon.proc.send_signal(signal.SIGTERM)
    assert env.daemon.wait(20) == 0
    sent_before = len(service.sent)
    asked_before = len(env.dify.requests_to("/v1/chat-messages"))
    env.start()
    env.wait_log_count("[wcf] ready, handling messages", 2)
    answered = next(s for s in service.sent if s.receiver == "wxid_alice")
    first = next(m for m in service.pushed if m.sender == "wxid_alice")
    service.push_text("wxid_alice", first.content, msg_id=first.id)  # an answered message seen again
    service.push_text("wxid_kate", "after the restart")
    service.wait_sent("wxid_kate")
    time.sleep(0.5)
    assert len(service.sent) == sent_before + 1
    assert len(env.dify.requests_to("/v1/chat-messages")) == asked_before + 1
    assert answered.text == "echo: hello"


def test_a_crash_after_the_message_was_taken_answers_it_once_after_restart(env):
    service, dify = env.service, env.dify
    dify.push_answer("the slow answer", latency=30)
    asked = len(dify.requests_to("/v1/chat-messages"))
    service.push_text("wxid_leo", "answer me once")
    wait_until(lambda: len(dify.requests_to("/v1/chat-messages")) > asked, what="Dify to be asked")
    document = b"%PDF-1.4 kept\n" * 100
    service.push_file("wxid_leo", "kept.pdf", document)  # queued behind it, in the inbox
    wait_until(lambda: inbox_count(env, "wxid_leo") == 2, what="both messages in the inbox")
    env.daemon.proc.send_signal(signal.SIGKILL)
    env.daemon.wait(10)
    assert service.sent_to("wxid_leo") == []
    env.start()
    service.wait_sent("wxid_leo", 2, timeout=30)
    time.sleep(1.0)
    assert service.texts_to("wxid_leo") == [
        "echo: answer me once", f"file {len(document)} bytes sha256 {hashlib.sha256(document).hexdigest()}"]


def test_the_service_going_away_ends_the_daemon_and_a_restart_answers_what_was_kept(env):
    service, dify = env.service, env.dify
    dify.push_answer("answered before the service left", latency=1.0)
    asked = len(dify.requests_to("/v1/chat-messages"))
    service.push_text("wxid_mia", "keep me")
    wait_until(lambda: len(dify.requests_to("/v1/chat-messages")) > asked, what="Dify to be asked")
    service.stop()
    assert env.daemon.wait(30) == 4  # EXIT_PLATFORM_LOST: a supervisor starts it again
    log = env.log()
    assert "stopped answering" in log and "the daemon exits (code 4)" in log
    # The service is back (a new WeChat session, on another port here): the kept message is answered.
    env.service = new_service(os.path.join(str(env.folder), "again"))
    env.start()
    [sent] = env.service.wait_sent("wxid_mia", timeout=30)
    assert sent.text in ("echo: keep me", "answered before the service left")


def test_our_own_sends_echoed_back_are_never_questions(tmp_path):
    """WeChatFerry reports what the account sends (through it, or from the phone) as received
    messages with is_self: a private one is never a question, nor is the echo of an answer in a
    room (there the pipeline's rule holds as well: a message of the account to a room, whose
    listener is the account itself, does not trigger)."""
    service = new_service(tmp_path)
    with DifyServer(api_key="app-test", mode="chat") as dify:
        env = Env(tmp_path, service, dify)
        try:
            env.start(group_chat_keyword=["loop"])  # in every answer: a taken echo would answer itself
            env.wait_log_count("[wcf] ready, handling messages")
            service.push_text("wxid_alice", "hello loop")
            service.wait_sent("wxid_alice")
            service.push_text("wxid_bob", "a loop question", roomid=ROOM)
            service.wait_sent(ROOM)
            service.push_own("wxid_alice", "loop from my phone")
            service.push_own(ROOM, "my own loop question")
            # Messages are taken in order: once these are answered, every echo before them was seen.
            service.push_text("wxid_zed", "last")
            service.wait_sent("wxid_zed")
            service.push_text("wxid_zed", "really last")
            service.wait_sent("wxid_zed", 2)
            assert dify_queries(dify) == ["hello loop", "a loop question", "last", "really last"]
            assert service.texts_to("wxid_alice") == ["echo: hello loop"]
            assert len(service.sent_to(ROOM)) == 1
        finally:
            env.daemon.kill()
            service.stop()


def test_a_room_joined_after_start_is_named_so_the_white_list_matches(tmp_path):
    service = new_service(tmp_path)
    with DifyServer(api_key="app-test", mode="chat") as dify:
        env = Env(tmp_path, service, dify)
        try:
            env.start(group_name_white_list=["Later"])
            env.wait_log_count("[wcf] ready, handling messages")
            service.add_room("30003@chatroom", "Later", {"wxid_dan": "Dan"})  # the account is added to a room now
            service.push_text("wxid_dan", "@小助手\u2005hi", roomid="30003@chatroom", at=["wxid_bot"])
            [sent] = service.wait_sent("30003@chatroom")
            assert sent.text == "@Dan\u2005echo: hi"
            # A room that cannot be found is not looked up again for every message.
            for n in range(3):
                service.push_text("wxid_eve", f"@小助手\u2005hi {n}", roomid="40004@chatroom", at=["wxid_bot"])
            # An id that is no wxid never reaches the SQL text.
            service.push_text("wxid_eve", "@小助手\u2005hi", roomid="5' OR '1'='1@chatroom", at=["wxid_bot"])
            service.push_text("wxid_dan", "@小助手\u2005again", roomid="30003@chatroom", at=["wxid_bot"])
            service.wait_sent("30003@chatroom", 2)
            lookups = [c for c in service.queries if "40004@chatroom" in c and "Contact" in c]
            assert len(lookups) == 1 and dify_queries(dify) == ["hi", "again"]
            assert not [c for c in service.queries if "OR '1'" in c]
        finally:
            env.daemon.kill()
            service.stop()


def test_a_message_that_arrives_while_the_daemon_stops_is_answered_after_the_restart(tmp_path):
    """WeChatFerry pushes a message once: one that comes while a stop waits for a running answer
    is kept in the inbox, not dropped."""
    service = new_service(tmp_path)
    with DifyServer(api_key="app-test", mode="chat") as dify:
        env = Env(tmp_path, service, dify)
        try:
            env.start(shutdown_timeout=3)
            env.wait_log_count("[wcf] ready, handling messages")
            dify.push_answer("too slow", latency=30)
            service.push_text("wxid_alice", "a slow one")
            wait_until(lambda: dify_queries(dify) == ["a slow one"], 15, "Dify to be asked")
            env.daemon.proc.send_signal(signal.SIGTERM)
            env.wait_log_count("signal 15 received")
            time.sleep(0.3)  # the stop has begun: no new message is started
            service.push_text("wxid_bob", "while stopping")
            env.wait_log_count("kept in the inbox, answered after the next start")
            assert env.daemon.wait(30) == 0
            assert service.sent_to("wxid_bob") == []
            env.start()
            [sent] = service.wait_sent("wxid_bob")
            assert sent.text == "echo: while stopping"
        finally:
            env.daemon.kill()
            service.stop()


def test_no_service_at_the_address_stops_start_up_with_one_line(tmp_path):
    config = write_config(tmp_path, channel_type="wcf", wcf_host="127.0.0.1", wcf_port=free_port(),
                          bot_type="tests.fakes.bots:EchoBot")
    result = run_app(tmp_path, "--config", config)
    assert result.returncode == 1
    [line] = user_lines(result.stderr)
    assert "no WeChatFerry service answers at 127.0.0.1:" in line
