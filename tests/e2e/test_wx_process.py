"""`python app.py` with channel_type wx (personal WeChat through iLink) against the iLink simulator
(tests/fakes/ilink) and the Dify simulator, as real processes.

One daemon serves the module (starting one costs seconds): the tests run in file order, the first
one logs it in, the last ones restart it and kill it, on the same data folder.
"""
from __future__ import annotations

import copy
import hashlib
import os
import shutil
import signal
import time

import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, RunLogReader, plugins_dir, run_app, user_lines, write_config
from tests.fakes.audio import make_silk
from tests.fakes.ilink import IlinkSimulator

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2
MEDIA_MAX = 64 * 1024


class Env(RunLogReader):
    def __init__(self, folder, sim: IlinkSimulator, dify: DifyServer) -> None:
        self.folder = folder
        self.sim = sim
        self.dify = dify
        self.daemon: Daemon | None = None

    def config(self, **extra) -> str:
        settings = dict(
            channel_type="wx", wx_ilink_api_base=self.sim.entry_url, wx_ilink_cdn_base=self.sim.cdn_url,
            wx_ilink_poll_timeout=2, wx_ilink_retry_delay=0.2, wx_media_max_bytes=MEDIA_MAX,
            bot_type="", model="dify", dify_api_base=self.dify.base_url, dify_api_key="app-test",
            allowed_internal_hosts=["127.0.0.1"], image_recognition=True, shutdown_timeout=2,
            group_name_white_list=["ALL_GROUP"],  # meaningless on iLink: reported at start
            speech_recognition=True, voice_to_text="dify",
        )
        settings.update(extra)
        return write_config(self.folder, **settings)

    def start(self, **extra) -> Daemon:
        plugins = plugins_dir(self.folder, names=("media_probe",))  # answers files and videos
        self.daemon = Daemon(self.folder, "--config", self.config(**extra), "--plugins-dir", plugins)
        return self.daemon



@pytest.fixture(scope="module")
def env(tmp_path_factory):
    sim = IlinkSimulator(hold=0.3).start()
    with DifyServer(api_key="app-test", mode="chat") as dify:
        environment = Env(tmp_path_factory.mktemp("wx"), sim, dify)
        try:
            yield environment
        finally:
            if environment.daemon is not None:
                environment.daemon.kill()
            sim.stop()


def wait_until(predicate, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def dify_queries(dify) -> list[str]:
    return [r["json"]["query"] for r in dify.requests_to("/v1/chat-messages")]


def test_first_run_shows_a_qr_and_logs_in_after_the_scan(env):
    sim = env.sim
    env.start()
    first = sim.wait_qr(timeout=20)
    png = os.path.join(str(env.folder), "tmp", "login.png")
    env.wait_log_count("scan the QR with WeChat", 1)
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "█" in "".join(env.daemon.stdout)  # drawn in the terminal
    # Its link is a login credential while it lives: never in the log (reference §1.8).
    assert f"/qr/{first}" not in env.log() and first not in env.log()
    sim.set_status(first, "expired")  # the QR ran out: a new one is shown
    second = sim.wait_qr(after=1)
    sim.set_status(second, "scaned")
    env.wait_log_count("QR scanned", 1)
    sim.confirm(second)
    env.wait_log_count("[wx] ready, handling messages", 1)
    wait_until(lambda: sim.polls, "the first getupdates")
    # The host WeChat named at login is used from then on.
    polls = [prefix for prefix, endpoint in sim.calls if endpoint == "getupdates"]
    assert polls and set(polls) == {"/api"}
    assert {p for p, e in sim.calls if e.startswith("get_")} == {"/entry"}
    assert env.log().count("these group settings are ignored: group_name_white_list") == 1


def test_a_second_daemon_on_the_same_login_refuses_to_start(env):
    second = Daemon(env.folder, "--config", env.config())
    try:
        assert second.wait(30) == 1
    finally:
        second.kill()
    [line] = user_lines(second.stderr())
    assert "another daemon is running with this WeChat login" in line
    assert env.daemon.proc.poll() is None


def test_a_private_question_is_answered_with_its_context_token(env):
    sim = env.sim
    first = sim.push_text("alice@im.wechat", "hello")
    [sent] = sim.wait_sent("alice@im.wechat")
    assert sent.texts == ["echo: hello"]
    assert sent.context_token == first["context_token"]
    # An answer that comes after the user wrote again carries the newer token.
    env.dify.push_answer("a slow answer", latency=1.0)
    asked = len(env.dify.requests_to("/v1/chat-messages"))
    sim.push_text("alice@im.wechat", "slow one")
    wait_until(lambda: len(env.dify.requests_to("/v1/chat-messages")) > asked, "Dify to be asked")
    newer = sim.push_text("alice@im.wechat", "and again")
    wait_until(lambda: sim.context_tokens["alice@im.wechat"] == newer["context_token"], "the newer message taken")
    slow, again = sim.wait_sent("alice@im.wechat", 3)[1:]
    assert slow.texts == ["a slow answer"] and again.texts == ["echo: and again"]
    assert slow.context_token == again.context_token == newer["context_token"]
    assert not sim.errors, sim.errors


def test_an_image_goes_with_the_next_question(env):
    sim, dify = env.sim, env.dify
    uploads_before = len(dify.requests_to("/v1/files/upload"))
    sim.push_image("carol@im.wechat", PNG, key_style="b64raw")
    sim.push_text("carol@im.wechat", "what is in the picture?")
    [sent] = sim.wait_sent("carol@im.wechat")
    assert sent.texts == ["echo: what is in the picture?"]
    uploads = dify.requests_to("/v1/files/upload")[uploads_before:]
    assert len(uploads) == 1 and PNG in uploads[0]["body"]  # the decrypted picture went to Dify
    assert dify.requests_to("/v1/chat-messages")[-1]["json"]["files"]


def test_an_image_while_tmp_cannot_be_written_is_not_lost_silently(env):
    sim, dify = env.sim, env.dify
    uploads_before = len(dify.requests_to("/v1/files/upload"))
    # tmp/ replaced by a file (a broken deployment, a full disk): the picture cannot be saved.
    tmp = os.path.join(str(env.folder), "tmp")
    os.rename(tmp, tmp + ".away")
    try:
        with open(tmp, "w") as f:
            f.write("not a folder")
        sim.push_image("tina@im.wechat", PNG)
        time.sleep(1.0)
    finally:
        os.remove(tmp)
        os.rename(tmp + ".away", tmp)
    sim.push_text("tina@im.wechat", "what is in it?")
    sent = sim.wait_sent("tina@im.wechat")
    wait_until(lambda: any(t.startswith("echo: what is in it?") for t in sim.texts_to("tina@im.wechat")), "the answer")
    # Either the user was told, or the picture was taken once tmp/ was back: never lost silently.
    told = any("tmp/ folder is not writable" in t for t in sim.texts_to("tina@im.wechat"))
    uploads = dify.requests_to("/v1/files/upload")[uploads_before:]
    assert told or (uploads and PNG in uploads[0]["body"]), (sim.texts_to("tina@im.wechat"), len(uploads))
    assert sent and env.daemon.proc.poll() is None


def test_a_cdn_failing_for_a_moment_is_tried_again(env):
    sim, dify = env.sim, env.dify
    uploads_before = len(dify.requests_to("/v1/files/upload"))
    sim.fail_downloads(1, status=503)
    sim.push_image("cora@im.wechat", PNG)
    sim.push_text("cora@im.wechat", "and this picture?")
    [sent] = sim.wait_sent("cora@im.wechat")
    assert sent.texts == ["echo: and this picture?"]  # not "send it again"
    uploads = dify.requests_to("/v1/files/upload")[uploads_before:]
    assert len(uploads) == 1 and PNG in uploads[0]["body"]


def test_a_slow_file_does_not_hold_up_other_messages(env):
    sim = env.sim
    sim.delay_downloads(4.0)
    sim.push_file("sam@im.wechat", "slow.pdf", b"%PDF-1.4 slow\n" * 10)
    started = time.monotonic()
    sim.push_text("sue@im.wechat", "are you there?")
    [sent] = sim.wait_sent("sue@im.wechat")
    assert sent.texts == ["echo: are you there?"]
    assert time.monotonic() - started < 3.0  # not behind the 4 s download


def test_a_voice_message_is_answered_from_its_transcript(env):
    env.sim.push_voice("dave@im.wechat", "天气怎么样")
    [sent] = env.sim.wait_sent("dave@im.wechat")
    assert sent.texts == ["echo: 天气怎么样"]
    assert dify_queries(env.dify)[-1] == "天气怎么样"


def test_a_voice_message_without_a_transcript_is_transcribed_from_its_audio(env, tmp_path):
    env.dify.stt_text = "语音里的问题"
    with open(make_silk(str(tmp_path / "voice.silk"), tencent=True), "rb") as f:
        audio = f.read()
    env.sim.push_voice("dora@im.wechat", audio=audio)
    [sent] = env.sim.wait_sent("dora@im.wechat")
    assert sent.texts == ["echo: 语音里的问题"]
    [stt] = env.dify.requests_to("/v1/audio-to-text")
    [part] = stt["files"].values()
    assert part["content"][:4] == b"RIFF"  # the decrypted SILK, converted to WAV


def test_files_and_videos_reach_plugins_decrypted(env):
    sim = env.sim
    document, video = b"%PDF-1.4 notes\n" * 300, b"\x00\x00\x00\x18ftypmp42" + bytes(3000)
    with sim.batch():  # one update batch: each answer carries the newest token when it is sent
        sim.push_file("fred@im.wechat", "notes.pdf", document)
        sim.push_video("fred@im.wechat", video)
    sim.wait_sent("fred@im.wechat", 2)
    assert sim.texts_to("fred@im.wechat") == [
        f"file {len(document)} bytes sha256 {hashlib.sha256(document).hexdigest()}",
        f"video {len(video)} bytes sha256 {hashlib.sha256(video).hexdigest()}",
    ]


def test_a_file_in_the_answer_is_uploaded_and_sent_as_a_file(env):
    sim, dify = env.sim, env.dify
    report = b"quarterly report\n" * 200
    dify.add_file("/files/report.txt", report, "text/plain")
    dify.push_answer(f"here it is [report.txt]({dify.host_url}/files/report.txt)")
    sim.push_text("gina@im.wechat", "send me the report")
    deadline = time.monotonic() + 15
    files = []
    while not files and time.monotonic() < deadline:
        files = [i["file_item"] for s in sim.sent_to("gina@im.wechat") for i in s.items if i["type"] == 4]
        time.sleep(0.05)
    assert len(files) == 1, (sim.sent_to("gina@im.wechat"), sim.errors)
    assert files[0]["file_name"] == "report.txt"
    assert sim.media_of(files[0]["media"]) == report
    assert not sim.errors, sim.errors


def test_a_picture_in_the_answer_is_uploaded_and_sent_as_an_image(env):
    sim, dify = env.sim, env.dify
    dify.add_file("/files/chart.png", PNG, "image/png")
    dify.push_answer(f"the chart ![chart]({dify.host_url}/files/chart.png)")
    sim.push_text("gus@im.wechat", "draw it")
    wait_until(lambda: [i for s in sim.sent_to("gus@im.wechat") for i in s.items if i["type"] == 2], "the image")
    [image] = [i["image_item"] for s in sim.sent_to("gus@im.wechat") for i in s.items if i["type"] == 2]
    assert sim.media_of(image["media"]) == PNG
    assert not sim.errors, sim.errors


def test_a_closed_reply_window_is_named_in_the_log_and_not_retried(env):
    sim = env.sim
    failures_before = env.log().count("send failed (attempt")
    sim.fail_next_send(ret=-2, errmsg="")
    sim.push_text("ivy@im.wechat", "too late")
    env.wait_log_count("the reply window is closed", 1)
    sim.push_text("ivy@im.wechat", "in time")
    sim.wait_sent("ivy@im.wechat")
    assert sim.texts_to("ivy@im.wechat") == ["echo: in time"]  # the refused one was not sent again
    assert env.log().count("send failed (attempt") == failures_before


def test_a_duplicate_update_is_handled_once(env):
    sim = env.sim
    once = sim.push_text("frank@im.wechat", "once only")
    sim.wait_sent("frank@im.wechat")
    sim.push(copy.deepcopy(once))  # the platform delivers it again
    sim.push_text("frank@im.wechat", "next one")
    sim.wait_sent("frank@im.wechat", 2)
    time.sleep(0.5)
    assert sim.texts_to("frank@im.wechat") == ["echo: once only", "echo: next one"]
    assert dify_queries(env.dify).count("once only") == 1


def test_a_failed_send_is_logged_and_retried(env):
    sim = env.sim
    sim.fail_next_send(ret=-1, errmsg="system busy", to="henry@im.wechat")
    # A send that arrived but whose answer was lost: the retry carries the same client_id,
    # by which WeChat can tell it from a second message.
    sim.fail_next_send(to="hank@im.wechat", taken=True)
    sim.push_text("henry@im.wechat", "retry me")
    sim.push_text("hank@im.wechat", "answer me once")
    sim.wait_sent("henry@im.wechat", timeout=20)
    first, retry = sim.wait_sent("hank@im.wechat", 2, timeout=20)
    time.sleep(0.3)
    assert sim.texts_to("henry@im.wechat") == ["echo: retry me"]
    log = env.log()
    assert "send failed (attempt 1 of 3)" in log and "system busy" in log
    assert first.texts == retry.texts == ["echo: answer me once"]
    assert first.client_id == retry.client_id


def test_bad_input_is_refused_cleanly_and_good_messages_still_answered(env):
    sim = env.sim
    sim.inject_updates_answer(b"<html>502 Bad Gateway</html>")
    sim.push("not an object")
    sim.push({"message_type": 1, "message_id": 1, "item_list": [{"type": 1, "text_item": {"text": "who?"}}]})
    sim.push({"from_user_id": "ivan@im.wechat", "message_type": 1, "message_id": 2, "item_list": "nonsense",
              "context_token": "ctx-in-a-malformed-update"})
    sim.push_image("ivan@im.wechat", PNG, key_style="b64hex", broken=True)
    sim.push_file("ivan@im.wechat", "huge.bin", b"x" * (MEDIA_MAX + 1))
    sim.push_text("ivan@im.wechat", "still there?")
    sent = sim.wait_sent("ivan@im.wechat", 3)
    time.sleep(0.3)
    texts = sim.texts_to("ivan@im.wechat")
    assert len(texts) == 3 and texts[-1] == "echo: still there?", texts
    assert "could not be received" in texts[0] and "too large" in texts[1], texts
    assert sent[-1].context_token == sim.context_tokens["ivan@im.wechat"]  # each was the newest when sent
    log = env.log()
    assert "not JSON" in log and "a malformed update skipped" in log
    assert "could not be received" in log and "over wx_media_max_bytes" in log
    assert "ctx-in-a-malformed-update" not in log  # a reply credential stays out of the log
    assert env.daemon.proc.poll() is None
    assert not [e for e in sim.errors if "sendmessage" in e], sim.errors


def state_db(env, sql: str) -> None:
    """A statement on the daemon's state database, as a fault the store then meets (a trigger
    that refuses writes stands for a full disk or a broken database)."""
    import sqlite3

    with sqlite3.connect(os.path.join(str(env.folder), "data", "state.db")) as db:
        db.execute(sql)


def test_a_message_the_store_refuses_keeps_the_cursor_before_it(env):
    sim = env.sim
    state_db(env, "CREATE TRIGGER refuse_nora BEFORE INSERT ON inbox WHEN NEW.session = 'nora@im.wechat' "
                  "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    try:
        msg = sim.push_text("nora@im.wechat", "keep me")
        wait_until(lambda: sim.deliveries.get(str(msg["message_id"]), 0) >= 2, "a second delivery")
    finally:
        state_db(env, "DROP TRIGGER refuse_nora")
    [sent] = sim.wait_sent("nora@im.wechat")
    time.sleep(0.3)
    assert sent.texts == ["echo: keep me"] and len(sim.sent_to("nora@im.wechat")) == 1  # no refusal notice


def test_an_expired_token_leads_to_a_new_qr_login(env):
    sim, dify = env.sim, env.dify
    shown = len(sim.qrs)
    old_token = sim.sent[-1].token
    # A question whose answer is made while the login is gone: it waits for the new login.
    dify.push_answer("answered after the scan", latency=0.5)
    asked = len(dify.requests_to("/v1/chat-messages"))
    sim.push_text("jack@im.wechat", "in flight")
    wait_until(lambda: len(dify.requests_to("/v1/chat-messages")) > asked, "Dify to be asked")
    sim.expire_token()
    qr = sim.wait_qr(after=shown)
    assert sim.local_tokens(qr) == [old_token]  # offered back, as the official client does
    # A hostile status answer (nesting that blows Python's parser) must not end the WeChat thread.
    sim.inject_status_answer(b'{"status": ' + b"[" * 100000 + b"]" * 100000 + b"}")
    wait_until(lambda: not sim.status_answers, "the hostile status answer to be read")
    env.wait_log_count("login expired (-14)", 1)
    env.wait_log_count("waits for the new login", 1)
    token = sim.confirm(qr)
    env.wait_log_count("logged in as bot", 2)
    [waited] = sim.wait_sent("jack@im.wechat")
    assert waited.texts == ["echo: in flight"] or waited.texts == ["answered after the scan"]
    assert waited.token == token
    sim.push_text("judy@im.wechat", "after the new login")
    [sent] = sim.wait_sent("judy@im.wechat")
    assert sent.texts == ["echo: after the new login"] and sent.token == token
    assert "RecursionError" not in env.log()


def test_a_login_by_another_wechat_starts_receiving_afresh(env):
    sim = env.sim
    shown = len(sim.qrs)
    sim.expire_token()
    qr = sim.wait_qr(after=shown)
    polls_before = len(sim.polls)
    sim.bot_id = "beef@im.bot"  # someone else scans: another bot, messages to it from now on
    sim.confirm(qr)
    env.wait_log_count("logged in as another bot", 1)
    sim.push_text("zoe@im.wechat", "hello new bot")
    [sent] = sim.wait_sent("zoe@im.wechat")
    assert sent.texts == ["echo: hello new bot"]
    assert sim.polls[polls_before]["get_updates_buf"] == ""  # not the other bot's cursor
    assert not [e for e in sim.errors if "cursor" in e], sim.errors


def test_a_restart_keeps_the_login_and_cursor_and_replays_nothing(env):
    sim = env.sim
    env.daemon.proc.send_signal(signal.SIGTERM)
    assert env.daemon.wait(20) == 0
    shown, sent_before = len(sim.qrs), len(sim.sent)
    polls_before, delivered_before = len(sim.polls), dict(sim.deliveries)
    env.start(channel_type="weixin")  # the alias shares the login
    env.wait_log_count("using the saved login", 1)
    sim.push_text("kate@im.wechat", "after the restart")
    sim.wait_sent("kate@im.wechat")
    time.sleep(0.5)
    assert len(sim.qrs) == shown  # no new scan
    assert sim.polls[polls_before]["get_updates_buf"]  # went on from the kept cursor
    assert {k: n for k, n in sim.deliveries.items() if k in delivered_before} == delivered_before  # no replay
    assert len(sim.sent) == sent_before + 1


def test_a_crash_after_the_message_was_taken_answers_it_once_after_restart(env):
    sim, dify = env.sim, env.dify
    delivered_before = dict(sim.deliveries)
    dify.push_answer("the slow answer", latency=30)
    asked = len(dify.requests_to("/v1/chat-messages"))
    sim.push_text("leo@im.wechat", "answer me once")
    deadline = time.monotonic() + 15
    while len(dify.requests_to("/v1/chat-messages")) == asked and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(dify.requests_to("/v1/chat-messages")) > asked, "Dify was never asked"
    # A file queued behind it: kept in the inbox with its CDN reference, not a tmp/ file.
    document = b"%PDF-1.4 kept\n" * 100
    kept = sim.push_file("leo@im.wechat", "kept.pdf", document)
    polls = len(sim.polls)
    wait_until(lambda: sim.deliveries.get(str(kept["message_id"])) and len(sim.polls) > polls + 1,
               "the file to be taken and the cursor to pass it")
    env.daemon.proc.send_signal(signal.SIGKILL)
    env.daemon.wait(10)
    assert sim.sent_to("leo@im.wechat") == []
    # The janitor (or an operator) empties tmp/ while the daemon is down.
    tmp = os.path.join(str(env.folder), "tmp")
    shutil.rmtree(tmp)
    os.mkdir(tmp)
    env.start()
    sim.wait_sent("leo@im.wechat", 2, timeout=20)
    time.sleep(1.0)
    assert sim.texts_to("leo@im.wechat") == [
        "echo: answer me once", f"file {len(document)} bytes sha256 {hashlib.sha256(document).hexdigest()}"]
    assert {k: n for k, n in sim.deliveries.items() if k in delivered_before} == delivered_before


def test_a_crash_after_a_message_was_stored_but_before_the_cursor_was_saved(env):
    sim, dify = env.sim, env.dify
    state_db(env, "CREATE TRIGGER keep_cursor BEFORE INSERT ON kv WHEN NEW.namespace = 'wx:cursor' "
                  "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    dify.push_answer("never sent", latency=30)
    asked = len(dify.requests_to("/v1/chat-messages"))
    msg = sim.push_text("max@im.wechat", "in the window")
    wait_until(lambda: len(dify.requests_to("/v1/chat-messages")) > asked, "Dify to be asked")
    env.wait_log_count("could not save wx:cursor", 1)
    env.daemon.proc.send_signal(signal.SIGKILL)
    env.daemon.wait(10)
    state_db(env, "DROP TRIGGER keep_cursor")
    env.start()
    # The saved cursor is before the message: it comes again, is recognised, and answered once.
    wait_until(lambda: sim.deliveries.get(str(msg["message_id"])) == 2, "the re-delivery")
    sim.wait_sent("max@im.wechat")
    time.sleep(0.5)
    assert sim.texts_to("max@im.wechat") == ["echo: in the window"]


def test_a_cursor_that_cannot_be_read_stops_the_daemon_instead_of_replaying(env):
    import sqlite3

    sim = env.sim
    env.daemon.proc.send_signal(signal.SIGTERM)
    assert env.daemon.wait(20) == 0
    delivered_before = dict(sim.deliveries)
    with sqlite3.connect(os.path.join(str(env.folder), "data", "state.db")) as db:
        assert db.execute("UPDATE kv SET value = 'not json {' WHERE namespace = 'wx:cursor'").rowcount == 1
    env.start()
    assert env.daemon.wait(20) == 4  # EXIT_PLATFORM_LOST: a supervisor sees it, nothing is replayed
    assert "could not read the receiving cursor" in env.log()
    assert sim.deliveries == delivered_before


def test_gewechat_stops_start_up_naming_the_channels_that_work(tmp_path):
    result = run_app(tmp_path, "--config", write_config(tmp_path, channel_type="gewechat"))
    assert result.returncode == 2
    [line] = user_lines(result.stderr)
    assert "gewechat" in line and "shut down" in line
    assert all(f"`{name}`" in line for name in ("wx", "wxy", "wework"))
