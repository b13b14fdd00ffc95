"""`python app.py` with channel_type wecom_bot (long connection) against the WeCom AI bot
simulator (tests/fakes/wecom_aibot) and the Dify simulator, as real processes."""
from __future__ import annotations

import time

import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, wait_until, write_config
from tests.fakes.wecom_aibot import AibotSimulator

pytestmark = pytest.mark.slow

BOT, SECRET = "bot-1", "secret-1"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def sim():
    simulator = AibotSimulator(bots={BOT: SECRET}, bot_name="RobotA").start()
    yield simulator
    simulator.stop()


@pytest.fixture
def dify():
    with DifyServer(api_key="app-test", mode="chat") as server:
        yield server


def start(tmp_path, sim, dify, **settings) -> Daemon:
    config = dict(
        channel_type="wecom_bot", wecom_bot_id=BOT, wecom_bot_secret=SECRET, wecom_bot_ws_url=sim.ws_url,
        bot_type="", model="dify", dify_api_base=dify.base_url, dify_api_key="app-test",
        group_name_white_list=["ALL_GROUP"], single_chat_prefix=["bot"], shutdown_timeout=5,
        allowed_internal_hosts=["127.0.0.1"],
    )
    config.update(settings)
    daemon = Daemon(tmp_path, "--config", write_config(tmp_path, **config))
    try:
        sim.wait_subscribed(BOT, timeout=20)
    except Exception:
        daemon.kill()
        raise AssertionError(f"the daemon never subscribed: {daemon.stderr()[-3000:]}")
    return daemon


def markdown_texts(sim, req_id) -> list[str]:
    return [r["markdown"]["content"] for r in sim.replies(req_id) if r.get("msgtype") == "markdown"]


def test_a_private_question_is_answered_as_a_stream_that_grows_and_finishes(tmp_path, sim, dify):
    dify.push_answer("Hello there, this answer is written in many small pieces.", chunk_size=3, chunk_delay=0.05)
    daemon = start(tmp_path, sim, dify, dify_stream_reply=True)
    try:
        pushed = sim.push_text(BOT, "alice", "hi")  # no prefix needed in a single chat
        [bubble] = sim.wait_finished(pushed.req_id, timeout=20)
        assert bubble.text == "Hello there, this answer is written in many small pieces."
        assert len(bubble.frames) >= 3, bubble.frames  # it grew: several snapshots
        assert all(bubble.text.startswith(f) for f in bubble.frames)  # each a prefix of the whole
        assert bubble.frames[-1] == bubble.text and bubble.text.strip()
        assert not sim.errors, sim.errors
    finally:
        daemon.kill()


def test_without_streaming_the_answer_is_one_markdown_reply(tmp_path, sim, dify):
    daemon = start(tmp_path, sim, dify)
    try:
        pushed = sim.push_text(BOT, "alice", "plain please")
        wait_until(lambda: markdown_texts(sim, pushed.req_id), what="the markdown answer")
        assert markdown_texts(sim, pushed.req_id) == ["echo: plain please"]
        assert not sim.bubbles(pushed.req_id)
        assert not sim.errors, sim.errors
    finally:
        daemon.kill()


def test_a_group_at_question_is_answered_in_the_group(tmp_path, sim, dify):
    daemon = start(tmp_path, sim, dify)
    try:
        pushed = sim.push_text(BOT, "bob", "what time is it", chatid="group-7")
        wait_until(lambda: markdown_texts(sim, pushed.req_id), what="the group answer")
        [answer] = markdown_texts(sim, pushed.req_id)
        assert "echo: what time is it" in answer  # the @RobotA prefix was taken off
        assert "@RobotA" not in dify.requests_to("/v1/chat-messages")[-1]["json"]["query"]
    finally:
        daemon.kill()


def test_an_image_goes_with_the_next_question(tmp_path, sim, dify):
    daemon = start(tmp_path, sim, dify, image_recognition=True)
    try:
        sim.push_image(BOT, "carol", PNG)
        pushed = sim.push_text(BOT, "carol", "what is in the picture?")
        wait_until(lambda: markdown_texts(sim, pushed.req_id), what="the answer")
        uploads = dify.requests_to("/v1/files/upload")
        assert uploads, "the picture was not given to Dify"
        chat = dify.requests_to("/v1/chat-messages")[-1]["json"]
        assert chat["files"] and chat["query"] == "what is in the picture?"
    finally:
        daemon.kill()


def test_a_voice_message_is_answered_from_its_transcript(tmp_path, sim, dify):
    daemon = start(tmp_path, sim, dify)
    try:
        pushed = sim.push_voice(BOT, "dave", "天气怎么样")
        wait_until(lambda: markdown_texts(sim, pushed.req_id), what="the answer")
        assert markdown_texts(sim, pushed.req_id) == ["echo: 天气怎么样"]
    finally:
        daemon.kill()


def test_a_welcome_on_enter_chat(tmp_path, sim, dify):
    daemon = start(tmp_path, sim, dify, subscribe_msg="欢迎! 发消息即可提问")
    try:
        pushed = sim.push_enter_chat(BOT, "erin")
        wait_until(lambda: sim.welcome(pushed.req_id), timeout=5, what="the welcome within 5 s")
        assert sim.welcome(pushed.req_id)["text"]["content"] == "欢迎! 发消息即可提问"
    finally:
        daemon.kill()


def test_a_duplicate_msgid_is_answered_once(tmp_path, sim, dify):
    daemon = start(tmp_path, sim, dify)
    try:
        first = sim.push_text(BOT, "frank", "once only")
        wait_until(lambda: markdown_texts(sim, first.req_id), what="the answer")
        again = sim.push_text(BOT, "frank", "once only", msgid=first.msgid)
        later = sim.push_text(BOT, "frank", "next one")
        wait_until(lambda: markdown_texts(sim, later.req_id), what="the next answer")
        assert not sim.replies(again.req_id)
        assert len(dify.requests_to("/v1/chat-messages")) == 2
    finally:
        daemon.kill()


def test_a_file_reply_is_uploaded_and_sent(tmp_path, sim, dify):
    dify.add_file("/files/report.txt", b"quarterly report\n" * 100, "text/plain")
    dify.push_answer(f"here it is [report.txt]({dify.host_url}/files/report.txt)")
    daemon = start(tmp_path, sim, dify)
    try:
        pushed = sim.push_text(BOT, "gina", "send me the report")
        wait_until(lambda: any(r.get("msgtype") == "file" for r in sim.replies(pushed.req_id)), what="the file")
        [file_reply] = [r for r in sim.replies(pushed.req_id) if r.get("msgtype") == "file"]
        kind, name, data = sim.media(file_reply["file"]["media_id"])
        assert kind == "file" and data == b"quarterly report\n" * 100
    finally:
        daemon.kill()


def test_a_connection_dropped_mid_stream_delivers_the_answer_once_complete(tmp_path, sim, dify):
    text = "One. Two. Three. Four. Five. Six. Seven. Eight. Nine. Ten."
    dify.push_answer(text, chunk_size=2, chunk_delay=0.1)
    daemon = start(tmp_path, sim, dify, dify_stream_reply=True)
    try:
        pushed = sim.push_text(BOT, "henry", "count")
        sim.drop_after_frames(BOT, 2)  # cut after the second frame of the growing answer
        wait_until(lambda: sim.connection_count(BOT) >= 2, timeout=20, what="the reconnect")
        wait_until(lambda: [b for b in sim.bubbles(pushed.req_id) if b.finished], timeout=30, what="the finished answer")
        finished = [b for b in sim.bubbles(pushed.req_id) if b.finished]
        assert [b.text for b in finished] == [text]
        # The whole answer reached the chat once: no second copy pushed elsewhere.
        shown = [item for item in sim.conversation(userid="henry") if text in "".join(map(str, item[1:]))]
        assert len(shown) == 1, sim.conversation(userid="henry")
    finally:
        daemon.kill()


def test_a_takeover_stops_the_daemon_reconnecting_and_it_says_why(tmp_path, sim, dify):
    daemon = start(tmp_path, sim, dify)
    try:
        sim.takeover(BOT, drop_after=0.5)
        daemon.wait_for_log("another client logged in as WeCom AI bot", timeout=10)
        time.sleep(4)  # a reconnecting client would have subscribed again by now (1-2 s back-off)
        assert sim.connection_count(BOT) == 1
        assert daemon.proc.poll() is None  # kept running: a supervisor must not restart it into a fight
    finally:
        daemon.kill()


def test_wrong_credentials_stop_start_up_with_the_reason(tmp_path, sim, dify):
    config = write_config(tmp_path, channel_type="wecom_bot", wecom_bot_id=BOT, wecom_bot_secret="wrong",
                          wecom_bot_ws_url=sim.ws_url, bot_type="", model="dify", dify_api_base=dify.base_url,
                          dify_api_key="app-test")
    daemon = Daemon(tmp_path, "--config", config)
    try:
        assert daemon.wait(30) == 2
        err = daemon.stderr()
        assert "wecom_bot_secret" in err and "853000" in err
        # One login tried, not a tight loop of them.
        subscribes = [f for _, _, f in sim.frames if isinstance(f, dict) and f.get("cmd") == "aibot_subscribe"]
        assert len(subscribes) == 1
    finally:
        daemon.kill()


def test_messages_accepted_before_a_crash_are_answered_after_the_restart(tmp_path, sim, dify):
    dify.push_hang(30)  # the first question never gets its answer before the kill
    daemon = start(tmp_path, sim, dify, dify_read_timeout=60, dify_answer_timeout=60)
    try:
        pushed = sim.push_text(BOT, "ivan", "do not lose me")
        wait_until(lambda: dify.requests_to("/v1/chat-messages"), what="the question reaching Dify")
        daemon.kill()
        daemon = start(tmp_path, sim, dify)
        wait_until(lambda: markdown_texts(sim, pushed.req_id) or [s for s in sim.sent if s.get("chatid") == "ivan"],
                   timeout=30, what="the answer after the restart")
        answers = markdown_texts(sim, pushed.req_id) + [s["markdown"]["content"] for s in sim.sent
                                                         if s.get("chatid") == "ivan" and s.get("msgtype") == "markdown"]
        assert answers == ["echo: do not lose me"]
    finally:
        daemon.kill()


def test_an_answer_past_the_bubble_size_goes_on_in_a_new_bubble(tmp_path, sim, dify):
    # WeCom takes at most 20480 bytes in a bubble: a 30,000-byte answer needs two.
    text = "".join(f"line {n:05d} of a very long answer\n" for n in range(1000))  # 33,000 bytes
    dify.push_answer(text, chunk_size=2000, chunk_delay=0.05)
    daemon = start(tmp_path, sim, dify, dify_stream_reply=True)
    try:
        pushed = sim.push_text(BOT, "jane", "a long one")
        bubbles = sim.wait_finished(pushed.req_id, timeout=30, count=2)
        assert all(len(b.text.encode("utf-8")) <= 20480 for b in bubbles)
        assert "".join(b.text for b in bubbles) == text.strip() or "".join(b.text for b in bubbles) == text
        assert not sim.errors, sim.errors
    finally:
        daemon.kill()


def test_unanswered_heartbeats_make_it_reconnect(tmp_path, sim, dify):
    daemon = start(tmp_path, sim, dify, wecom_bot_heartbeat=1)
    try:
        sim.ack_pings = False
        wait_until(lambda: sim.connection_count(BOT) >= 2, timeout=15, what="a reconnect after two missed heartbeats")
        sim.ack_pings = True
        pushed = sim.push_text(BOT, "kate", "still there?")
        wait_until(lambda: markdown_texts(sim, pushed.req_id), what="the answer on the new connection")
    finally:
        daemon.kill()
