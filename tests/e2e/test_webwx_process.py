"""`python app.py` with channel_type wx and `wx_protocol: itchat` (the legacy web-WeChat path) against
the web-WeChat simulator (tests/fakes/webwx) and the Dify simulator, as real processes.

One daemon serves the module (starting one costs seconds): the tests run in file order, the first
one logs it in, the later ones restart it, on the same data folder.
"""
from __future__ import annotations

import hashlib
import os
import signal
import time

import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, RunLogReader, plugins_dir, run_app, user_lines, wait_until, write_config
from tests.fakes.webwx import WebWxSimulator

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2
MEDIA_MAX = 1024 * 1024  # above one upload chunk (512 KiB)
ALICE, BOB, CAROL, ROOM = "@a11ce", "@b0b", "@ca401", "@@7ea3"


class Env(RunLogReader):
    def __init__(self, folder, sim: WebWxSimulator, dify: DifyServer) -> None:
        self.folder = folder
        self.sim = sim
        self.dify = dify
        self.daemon: Daemon | None = None

    def config(self, **extra) -> str:
        settings = dict(
            channel_type="wx", wx_protocol="itchat", itchat_base_url=self.sim.base_url, itchat_poll_timeout=2,
            itchat_retry_delay=0.2, wx_media_max_bytes=MEDIA_MAX, hot_reload=True,
            bot_type="", model="dify", dify_api_base=self.dify.base_url, dify_api_key="app-test",
            allowed_internal_hosts=["127.0.0.1"], image_recognition=True, shutdown_timeout=2,
            group_name_white_list=["ALL_GROUP"], speech_recognition=True, voice_to_text="dify",
            accept_friend_commands=["加好友"], accept_friend_msg="你好，我是机器人",
        )
        settings.update(extra)
        return write_config(self.folder, **settings)

    def start(self, **extra) -> Daemon:
        plugins = plugins_dir(self.folder, names=("media_probe",))  # answers files
        self.daemon = Daemon(self.folder, "--config", self.config(**extra), "--plugins-dir", plugins)
        return self.daemon



@pytest.fixture(scope="module")
def env(tmp_path_factory):
    sim = WebWxSimulator(hold=0.3).start()
    sim.add_friend(ALICE, "Alice")
    sim.add_friend(CAROL, "Carol")
    sim.add_room(ROOM, "Team", {BOB: "Bob", ALICE: "Alice"}, own_display="小助手")
    with DifyServer(api_key="app-test", mode="chat") as dify:
        environment = Env(tmp_path_factory.mktemp("webwx"), sim, dify)
        try:
            yield environment
        finally:
            if environment.daemon is not None:
                environment.daemon.kill()
            sim.stop()


def dify_queries(dify) -> list[str]:
    return [r["json"]["query"] for r in dify.requests_to("/v1/chat-messages")]


def test_first_run_warns_shows_a_qr_and_logs_in_after_the_scan(env):
    sim = env.sim
    env.start()
    first = sim.wait_qr(timeout=20)
    env.wait_log_count("scan the QR with WeChat", 1)
    log = env.log()
    assert "LEGACY WEB-WECHAT protocol" in log and "restricted" in log  # the loud warning
    with open(os.path.join(str(env.folder), "tmp", "login.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "█" in "".join(env.daemon.stdout)  # drawn in the terminal
    assert first not in log  # the QR's link is a login credential while it lives
    sim.set_status(first, "400")  # the QR ran out: a new one is shown
    second = sim.wait_qr(after=1)
    sim.scan(second)
    env.wait_log_count("QR scanned", 1)
    sim.confirm(second)
    env.wait_log_count("logged in to web WeChat as Botty", 1)
    env.wait_log_count("[wx] ready, handling messages", 1)
    assert not sim.errors, sim.errors


def test_a_private_question_is_answered(env):
    env.sim.push_text(ALICE, "hello")
    [sent] = env.sim.wait_sent(ALICE)
    assert sent.content == "echo: hello" and sent.endpoint == "webwxsendmsg"
    assert dify_queries(env.dify)[-1] == "hello"


def test_a_group_at_is_answered_with_an_at_and_other_group_talk_is_not(env):
    sim = env.sim
    sim.push_group_text(ROOM, BOB, "just chatting")  # not for the bot
    sim.push_group_text(ROOM, BOB, "@小助手\u2005what time is it?")
    [sent] = sim.wait_sent(ROOM)
    assert sent.content == "@Bob\necho: what time is it?"
    time.sleep(0.5)
    assert len(sim.sent_to(ROOM)) == 1 and "just chatting" not in dify_queries(env.dify)


def test_an_image_goes_with_the_next_question(env):
    sim, dify = env.sim, env.dify
    uploads_before = len(dify.requests_to("/v1/files/upload"))
    sim.push_image(CAROL, PNG)
    sim.push_text(CAROL, "what is in the picture?")
    [sent] = sim.wait_sent(CAROL)
    assert sent.content == "echo: what is in the picture?"
    uploads = dify.requests_to("/v1/files/upload")[uploads_before:]
    assert len(uploads) == 1 and PNG in uploads[0]["body"]  # the downloaded picture went to Dify
    assert dify.requests_to("/v1/chat-messages")[-1]["json"]["files"]


def test_a_voice_message_is_transcribed_and_answered(env):
    env.dify.stt_text = "语音里的问题"
    audio = b"ID3\x03\x00\x00\x00" + bytes(2000)  # web WeChat's voice is MP3
    env.sim.push_voice("@d0ra", audio)
    [sent] = env.sim.wait_sent("@d0ra")
    assert sent.content == "echo: 语音里的问题"
    [part] = env.dify.requests_to("/v1/audio-to-text")[-1]["files"].values()
    assert part["content"] == audio


def test_a_file_in_reaches_plugins_and_a_file_in_the_answer_is_sent_as_a_file(env):
    sim, dify = env.sim, env.dify
    document = b"%PDF-1.4 notes\n" * 300
    sim.push_file("@f4ed", "notes.pdf", document)
    [probe] = sim.wait_sent("@f4ed")
    assert probe.content == f"file {len(document)} bytes sha256 {hashlib.sha256(document).hexdigest()}"
    report = b"quarterly report\n" * 40000  # 680 KB: uploaded in two chunks
    dify.add_file("/files/report.txt", report, "text/plain")
    dify.push_answer(f"here it is [report.txt]({dify.host_url}/files/report.txt)")
    sim.push_text("@g1na", "send me the report")
    wait_until(lambda: [s for s in sim.sent_to("@g1na") if s.endpoint == "webwxsendappmsg"], 15, "the file")
    [file] = [s for s in sim.sent_to("@g1na") if s.endpoint == "webwxsendappmsg"]
    assert "<title>report.txt</title>" in file.content and sim.uploads[file.media_id] == report
    assert not sim.errors, sim.errors


def test_a_picture_in_the_answer_is_uploaded_and_sent_as_an_image(env):
    sim, dify = env.sim, env.dify
    dify.add_file("/files/chart.png", PNG, "image/png")
    dify.push_answer(f"the chart ![chart]({dify.host_url}/files/chart.png)")
    sim.push_group_text(ROOM, ALICE, "@小助手 draw it")
    wait_until(lambda: [s for s in sim.sent_to(ROOM) if s.endpoint == "webwxsendmsgimg"], 15, "the image")
    [image] = [s for s in sim.sent_to(ROOM) if s.endpoint == "webwxsendmsgimg"]
    assert image.type == 3 and sim.uploads[image.media_id] == PNG
    assert not sim.errors, sim.errors


def test_a_friend_request_with_the_command_is_accepted_and_greeted(env):
    sim = env.sim
    sim.push_friend_request("@n3w", "Newbie", "你好")  # not the command: left alone
    sim.push_friend_request("@n3w2", "Newbie2", "加好友")
    [greeting] = sim.wait_sent("@n3w2")
    assert greeting.content == "你好，我是机器人"
    assert [v["Value"] for v in sim.verified] == ["@n3w2"] and sim.verified[0]["VerifyUserTicket"].startswith("v4_")
    env.wait_log_count("friend request from Newbie not accepted", 1)


def test_a_duplicate_message_is_handled_once(env):
    sim = env.sim
    once = sim.push_text("@fr4nk", "once only")
    sim.wait_sent("@fr4nk")
    sim.push(dict(once))  # WeChat delivers it again
    sim.push_text("@fr4nk", "next one")
    sim.wait_sent("@fr4nk", 2)
    time.sleep(0.5)
    assert sim.texts_to("@fr4nk") == ["echo: once only", "echo: next one"]
    assert dify_queries(env.dify).count("once only") == 1


def test_a_failed_send_is_logged_and_retried(env):
    sim = env.sim
    sim.fail_next_send(ret=1, to="@h3nry")
    sim.push_text("@h3nry", "retry me")
    sent = sim.wait_sent("@h3nry", timeout=20)
    time.sleep(0.3)
    assert [s.content for s in sent] == ["echo: retry me"]
    assert "send failed (attempt 1 of 3)" in env.log() and "Ret 1" in env.log()


def test_bad_input_is_refused_cleanly_and_good_messages_still_answered(env):
    sim = env.sim
    sim.inject_sync_answer(b"<html>502 Bad Gateway</html>")
    sim.push("not an object")
    sim.push({"MsgType": 1, "Content": "who?"})  # no MsgId, no sender
    sim.push_file("@1van", "huge.bin", b"x" * (MEDIA_MAX + 1))
    sim.push_text("@1van", "still there?")
    sent = sim.wait_sent("@1van", 2)
    time.sleep(0.3)
    texts = sim.texts_to("@1van")
    assert len(texts) == 2 and "too large" in texts[0] and texts[1] == "echo: still there?", texts
    log = env.log()
    assert "not JSON" in log and "a malformed message skipped" in log and "over wx_media_max_bytes" in log
    assert sent and env.daemon.proc.poll() is None


def test_a_restart_with_hot_reload_keeps_the_login_and_replays_nothing(env):
    sim = env.sim
    env.daemon.proc.send_signal(signal.SIGTERM)
    assert env.daemon.wait(20) == 0
    shown, sent_before, delivered_before = len(sim.qrs), len(sim.sent), dict(sim.deliveries)
    sim.fail_next("webwxinit", 503)  # WeChat unreachable for a moment: the saved login is kept
    env.start(channel_type="weixin")  # the alias shares the login
    env.wait_log_count("using the saved login of Botty", 1)
    assert "the saved login could not be tried (webwxinit: HTTP 503)" in env.log()
    sim.push_text("@k4te", "after the restart")
    sim.wait_sent("@k4te")
    time.sleep(0.5)
    assert len(sim.qrs) == shown  # no new scan
    assert {k: n for k, n in sim.deliveries.items() if k in delivered_before} == delivered_before  # no replay
    assert len(sim.sent) == sent_before + 1


def test_a_message_sent_while_the_daemon_was_down_for_minutes_is_answered(env):
    """The saved sync key and the dedup prevent replays; the age of a message does not make it
    history once the session goes on from the saved login."""
    sim = env.sim
    env.daemon.proc.send_signal(signal.SIGTERM)
    assert env.daemon.wait(20) == 0
    msg = sim.message("@k4te", 1, "did you get this?")
    msg["CreateTime"] = int(time.time()) - 300  # written five minutes ago, while the daemon was down
    sim.push(msg)
    env.start()
    [*_, sent] = sim.wait_sent("@k4te", 2)
    assert sent.content == "echo: did you get this?"


def test_a_crash_after_the_message_was_taken_answers_it_once_after_restart(env):
    sim, dify = env.sim, env.dify
    delivered_before = dict(sim.deliveries)
    dify.push_answer("the slow answer", latency=30)
    asked = len(dify.requests_to("/v1/chat-messages"))
    msg = sim.push_text("@l3o", "answer me once")
    wait_until(lambda: len(dify.requests_to("/v1/chat-messages")) > asked, 15, "Dify to be asked")
    env.daemon.proc.send_signal(signal.SIGKILL)
    env.daemon.wait(10)
    assert sim.sent_to("@l3o") == []
    env.start()
    [sent] = sim.wait_sent("@l3o", timeout=20)
    time.sleep(0.5)
    assert sent.content == "echo: answer me once" and len(sim.sent_to("@l3o")) == 1
    assert sim.deliveries[msg["MsgId"]] == 1  # the saved sync key was past it: not delivered again
    assert {k: n for k, n in sim.deliveries.items() if k in delivered_before} == delivered_before


def state_db(env, sql: str) -> None:
    """A statement on the daemon's state database, as a fault the store then meets (a trigger
    that refuses writes stands for a full disk or a broken database)."""
    import sqlite3

    with sqlite3.connect(os.path.join(str(env.folder), "data", "state.db")) as db:
        db.execute(sql)


def test_a_message_the_store_refuses_keeps_the_sync_key_before_it(env):
    sim = env.sim
    state_db(env, "CREATE TRIGGER refuse_nina BEFORE INSERT ON inbox WHEN NEW.session = '@n1na' "
                  "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    try:
        msg = sim.push_text("@n1na", "keep me")
        wait_until(lambda: sim.deliveries.get(msg["MsgId"], 0) >= 2, 15, "a second delivery")
    finally:
        state_db(env, "DROP TRIGGER refuse_nina")
    [sent] = sim.wait_sent("@n1na")
    time.sleep(0.3)
    assert sent.content == "echo: keep me" and len(sim.sent_to("@n1na")) == 1  # no refusal notice


def test_a_crash_after_a_message_was_stored_but_before_the_sync_key_was_saved(env):
    sim, dify = env.sim, env.dify
    state_db(env, "CREATE TRIGGER keep_key BEFORE INSERT ON kv WHEN NEW.namespace = 'wx:itchat' "
                  "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    dify.push_answer("never sent", latency=30)
    asked = len(dify.requests_to("/v1/chat-messages"))
    msg = sim.push_text("@m0e", "in the window")
    wait_until(lambda: len(dify.requests_to("/v1/chat-messages")) > asked, 15, "Dify to be asked")
    env.wait_log_count("could not save wx:itchat", 1)
    env.daemon.proc.send_signal(signal.SIGKILL)
    env.daemon.wait(10)
    state_db(env, "DROP TRIGGER keep_key")
    env.start()
    # The saved sync key is before the message: it comes again, is recognised, and answered once.
    wait_until(lambda: sim.deliveries.get(msg["MsgId"]) == 2, 20, "the re-delivery")
    sim.wait_sent("@m0e")
    time.sleep(0.5)
    assert sim.texts_to("@m0e") == ["echo: in the window"]


def test_a_logout_by_wechat_leads_to_a_new_qr_login(env):
    sim = env.sim
    shown = len(sim.qrs)
    sim.kick("1101")
    qr = sim.wait_qr(after=shown)
    env.wait_log_count("synccheck retcode 1101", 1)
    old = sim.message("@m4x", 1, "an old one")
    old["CreateTime"] = int(time.time()) - 300  # in the first sync after a new login: history (hot_reload)
    sim.push(old)
    sim.push_text("@m4x", "while logged out")  # comes once the new login syncs
    sim.confirm(qr)
    env.wait_log_count("logged in to web WeChat as Botty", 2)
    [sent] = sim.wait_sent("@m4x")
    assert sent.content == "echo: while logged out"
    assert f"message {old['MsgId']} from before the login skipped" in env.log()
    assert not sim.errors, sim.errors


def test_an_expired_hot_login_falls_back_to_a_new_qr(env):
    sim = env.sim
    env.daemon.proc.send_signal(signal.SIGTERM)
    assert env.daemon.wait(20) == 0
    sim.kick("1101")  # the saved login ended while the daemon was down
    shown = len(sim.qrs)
    env.start()
    qr = sim.wait_qr(after=shown, timeout=20)
    env.wait_log_count("the saved login is not taken any more", 1)
    sim.confirm(qr)
    sim.push_text("@n0ra", "after the new scan")
    [sent] = sim.wait_sent("@n0ra")
    assert sent.content == "echo: after the new scan"


def test_an_expired_hot_login_is_confirmed_on_the_phone_when_wechat_pushes_it(env):
    sim = env.sim
    env.daemon.proc.send_signal(signal.SIGTERM)
    assert env.daemon.wait(20) == 0
    sim.kick("1101")
    sim.allow_push = True
    try:
        shown, pushed = len(sim.qrs), len(sim.pushes)
        env.start()
        wait_until(lambda: len(sim.pushes) > pushed, 20, "a login pushed to the phone")
        env.wait_log_count("confirm the login on the phone", 1)
        sim.confirm(sim.pushes[-1])
        sim.push_text("@p3g", "pushed login")
        [sent] = sim.wait_sent("@p3g")
        assert sent.content == "echo: pushed login" and len(sim.qrs) == shown  # no QR this time
    finally:
        sim.allow_push = False


def test_without_hot_reload_every_start_shows_a_qr(env):
    sim = env.sim
    env.daemon.proc.send_signal(signal.SIGTERM)
    assert env.daemon.wait(20) == 0
    resumed = env.log().count("using the saved login")
    for user in ("@0scar", "@0tto"):
        shown = len(sim.qrs)
        env.start(hot_reload=False)
        qr = sim.wait_qr(after=shown, timeout=20)  # the saved login is not used
        sim.confirm(qr)
        sim.push_text(user, "hello again")
        [sent] = sim.wait_sent(user)
        assert sent.content == "echo: hello again"
        env.daemon.proc.send_signal(signal.SIGTERM)  # a stop without hot_reload ends the web session
        assert env.daemon.wait(20) == 0
        assert sim.calls[-1].endswith("/webwxlogout") and sim.login.kicked
    assert env.log().count("using the saved login") == resumed


def test_an_unknown_wx_protocol_stops_start_up(tmp_path):
    result = run_app(tmp_path, "--config", write_config(tmp_path, channel_type="wx", wx_protocol="web"))
    assert result.returncode == 2
    [line] = user_lines(result.stderr)
    assert "wx_protocol" in line and "ilink" in line and "itchat" in line
