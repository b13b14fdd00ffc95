"""`python app.py` with channel_type wecom_bot (long connection), as a real process, on the paths
around the ordinary answer: messages sent later by plugins (on the message's req_id, or pushed
with aibot_send_msg when the req_id cannot take them any more), an answer delivered through the
message's response_url while WeCom cannot be reached, a bubble WeCom expires mid-answer, and
pictures, videos and quotes reaching the bot (reference/wecom-aibot.md §2.4-§2.8, §3.5). In
callback mode, where WeCom has no push, a message sent after the answer ended takes the
response_url.

The AI bot simulator runs on a clock that follows the real one but can be moved forward, so the
24-hour reply window and the bubble time limits can pass in a second.
"""
from __future__ import annotations

import hashlib
import os
import time

import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, free_port, plugins_dir, wait_healthy, wait_until, write_config
from tests.fakes.wecom_aibot import AibotSimulator
from tests.fakes.wecom_aibot.callback_driver import CallbackCrypto, CallbackDriver

pytestmark = pytest.mark.slow

BOT, SECRET = "bot-1", "secret-1"
DAY = 24 * 3600


class ShiftedClock:
    """time.monotonic(), plus whatever a test moved it forward by."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock():
    return ShiftedClock()


@pytest.fixture
def sim(clock):
    simulator = AibotSimulator(bots={BOT: SECRET}, bot_name="RobotA", clock=clock).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def dify():
    with DifyServer(api_key="app-test", mode="chat") as server:
        yield server


def start(tmp_path, sim, dify, plugins=(), **settings) -> Daemon:
    config = dict(
        channel_type="wecom_bot", wecom_bot_id=BOT, wecom_bot_secret=SECRET, wecom_bot_ws_url=sim.ws_url,
        bot_type="", model="dify", dify_api_base=dify.base_url, dify_api_key="app-test",
        group_name_white_list=["ALL_GROUP"], single_chat_prefix=["bot"], shutdown_timeout=5,
        allowed_internal_hosts=["127.0.0.1"],
    )
    config.update(settings)
    args = ["--config", write_config(tmp_path, **config)]
    if plugins:
        args += ["--plugins-dir", plugins_dir(tmp_path, plugins)]
    daemon = Daemon(tmp_path, *args)
    try:
        sim.wait_subscribed(BOT, timeout=20)
    except Exception:
        daemon.kill()
        raise AssertionError(f"the daemon never subscribed: {daemon.stderr()[-3000:]}")
    return daemon


def markdown_texts(sim, req_id) -> list[str]:
    return [r["markdown"]["content"] for r in sim.replies(req_id) if r.get("msgtype") == "markdown" and r["errcode"] == 0]


def chat_of(sim, where: str):
    """What the user sees in the chat: a single chat with alice, or the group she wrote in."""
    return sim.conversation(chatid="group-9") if where == "group" else sim.conversation(userid="alice")


def other_chat(sim, where: str):
    return sim.conversation(userid="alice") if where == "group" else sim.conversation(chatid="group-9")


def ask(sim, where: str, text: str):
    return sim.push_text(BOT, "alice", text, chatid="group-9" if where == "group" else None)


def chat_id(where: str) -> str:
    return "group-9" if where == "group" else "alice"


WHERE = pytest.mark.parametrize("where", ["private", "group"])


# ====================================================================== messages sent later by plugins
@WHERE
def test_a_scheduled_message_arrives_after_the_answer_on_the_same_req_id(tmp_path, sim, dify, where):
    # Within the 24-hour reply window the req_id of the message still takes replies (§2.6):
    # the scheduled text is a second reply to it, shown in the chat after the first.
    daemon = start(tmp_path, sim, dify, plugins=("timer_task",))
    try:
        pushed = ask(sim, where, "$timer 1 开会了")
        wait_until(lambda: len(chat_of(sim, where)) >= 2, timeout=10, what="the answer and the scheduled text")
        first, second = chat_of(sim, where)
        assert first[0] == "markdown" and "scheduled in 1 s" in first[1]
        assert second == ("markdown", "开会了")
        log = [entry for entry in sim.reply_log(pushed.req_id) if entry["errcode"] == 0]
        assert [entry["cmd"] for entry in log] == ["aibot_respond_msg", "aibot_respond_msg"]
        assert log[1]["at"] - log[0]["at"] >= 0.9  # sent when the timer fired, not with the answer
        assert not sim.sent and not sim.errors, (sim.sent, sim.errors)
        assert not other_chat(sim, where)
    finally:
        daemon.kill()


@WHERE
def test_a_scheduled_message_is_pushed_to_the_chat_when_its_req_id_expired(tmp_path, clock, sim, dify, where):
    daemon = start(tmp_path, sim, dify, plugins=("timer_task",))
    try:
        pushed = ask(sim, where, "$timer 1 开会了")
        wait_until(lambda: markdown_texts(sim, pushed.req_id), timeout=10, what="the first answer")
        clock.advance(DAY + 60)  # the reply window of the message is over before the timer fires
        wait_until(lambda: sim.sent, timeout=10, what="the scheduled text pushed with aibot_send_msg")
        assert sim.sent == [{"chatid": chat_id(where), "msgtype": "markdown", "markdown": {"content": "开会了"}}]
        # The product tried the req_id first and WeCom refused it as expired.
        refused = [entry["errcode"] for entry in sim.reply_log(pushed.req_id)][1:]
        assert refused == [846604], sim.reply_log(pushed.req_id)
        first, second = chat_of(sim, where)
        assert "scheduled in 1 s" in first[1] and second == ("markdown", "开会了")
        assert not other_chat(sim, where)
    finally:
        daemon.kill()


@WHERE
def test_a_message_without_an_original_message_is_pushed_to_its_receiver(tmp_path, sim, dify, where):
    # A plugin that kept only the receiver (as task plugins keep tasks in a file) sends with a
    # context that has nothing else: there is no req_id, so it can only be a proactive push.
    daemon = start(tmp_path, sim, dify, plugins=("reminder",))
    try:
        pushed = ask(sim, where, "$remind 1 交周报")
        wait_until(lambda: markdown_texts(sim, pushed.req_id), timeout=10, what="the first answer")
        wait_until(lambda: sim.sent, timeout=10, what="the reminder pushed with aibot_send_msg")
        assert sim.sent == [{"chatid": chat_id(where), "msgtype": "markdown", "markdown": {"content": "交周报"}}]
        assert [text for _, text in chat_of(sim, where)][1:] == ["交周报"]
        assert not other_chat(sim, where) and not sim.errors, sim.errors
    finally:
        daemon.kill()


# ====================================================================== response_url while WeCom is unreachable
@pytest.mark.parametrize("streamed", [False, True], ids=["markdown", "stream"])
def test_an_answer_goes_through_the_response_url_once_while_the_connection_is_down(tmp_path, sim, dify, streamed):
    answer = "明天下午三点在三楼会议室开会，请带上季度报表。"
    if streamed:
        dify.push_answer(answer, chunk_size=3, chunk_delay=0.15)
    else:
        dify.push_answer(answer, latency=0.5)
    daemon = start(tmp_path, sim, dify, dify_stream_reply=streamed)
    try:
        pushed = sim.push_text(BOT, "lucy", "什么时候开会?")
        if streamed:
            wait_until(lambda: sim.bubbles(pushed.req_id), timeout=10, what="the answer starting to grow")
        else:
            wait_until(lambda: dify.requests_to("/v1/chat-messages"), timeout=10, what="the question reaching Dify")
        first = sim.live_connection(BOT)
        sim.refuse_connections = True  # WeCom unreachable: the reconnects fail
        sim.drop(BOT)
        wait_until(lambda: sim.response_attempts, timeout=20, what="a POST to the response_url")
        assert sim.refused_connections >= 1  # the connection was really down when the answer went
        sim.refuse_connections = False
        sim.wait_subscribed(BOT, timeout=30, after=first)
        # A question after the reconnect, in the same session: anything still queued for the first
        # one would be sent before its answer.
        later = sim.push_text(BOT, "lucy", "还在吗?")
        wait_until(lambda: [t for t in markdown_texts(sim, later.req_id) if "还在吗" in t] or
                   [b for b in sim.bubbles(later.req_id) if b.finished], timeout=20, what="the next answer")
        [attempt] = sim.response_attempts
        assert attempt["errcode"] == 0 and attempt["body"] == {"msgtype": "markdown", "markdown": {"content": answer}}
        shown = [entry for entry in sim.conversation(userid="lucy") if answer in str(entry)]
        assert shown == [("markdown", answer)], sim.conversation(userid="lucy")
        assert not sim.sent
        # Nothing on the first message's req_id after the reconnect.
        assert not [e for e in sim.reply_log(pushed.req_id) if e["connection"] != first], sim.reply_log(pushed.req_id)
    finally:
        daemon.kill()


# ====================================================================== a bubble WeCom ends mid-answer
def test_a_bubble_wecom_expires_mid_answer_goes_on_in_a_new_one(tmp_path, clock, sim, dify):
    # WeCom ends a bubble 10 minutes after its first frame (and the sources disagree on the exact
    # limit, §2.6); an answer still growing then must go on in a new bubble, complete. (The
    # product's own rollover before that, streams.STREAM_MAX_AGE = 9 min, has no setting: a
    # process test cannot reach it. Here WeCom ends the bubble first.)
    answer = "第一部分说明背景。第二部分给出数据。第三部分是结论和建议。"
    dify.push_answer(answer, chunk_size=3, chunk_delay=0.12)
    daemon = start(tmp_path, sim, dify, dify_stream_reply=True)
    try:
        pushed = sim.push_text(BOT, "mona", "写个总结")
        wait_until(lambda: sim.bubbles(pushed.req_id), timeout=10, what="the first bubble")
        clock.advance(601)  # past the simulator's 600 s total limit for that bubble
        sim.wait_finished(pushed.req_id, timeout=15)
        time.sleep(0.5)  # a late frame to another bubble would show up here
        bubbles = sim.bubbles(pushed.req_id)
        assert bubbles[0].expired and not bubbles[0].finished
        assert [b.text for b in bubbles if b.finished] == [answer]
        assert [entry for entry in sim.conversation(userid="mona")] == [("stream", answer)]
        assert any(code == 846608 for code, _ in sim.errors)
    finally:
        daemon.kill()


# ====================================================================== pictures, videos and quotes in
def png(seed: str) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + hashlib.sha256(seed.encode()).digest() * 8


@WHERE
def test_a_mixed_message_gives_dify_the_decrypted_picture_with_its_text(tmp_path, sim, dify, where):
    picture = png(where)
    daemon = start(tmp_path, sim, dify, image_recognition=True)
    try:
        pushed = sim.push_mixed(BOT, "alice", [("text", "这张图里是什么?"), ("image", picture)],
                                chatid="group-9" if where == "group" else None)
        wait_until(lambda: markdown_texts(sim, pushed.req_id), timeout=15, what="the answer")
        [chat] = dify.requests_to("/v1/chat-messages")
        assert chat["json"]["query"] == "这张图里是什么?"  # the @RobotA of a group is not in it
        [file_ref] = chat["json"]["files"]
        assert dify.uploads[file_ref["upload_file_id"]]["content"] == picture  # fetched and decrypted
        assert [status for _, status in sim.downloads] == [200]
        assert len(markdown_texts(sim, pushed.req_id)) == 1  # one answer for the whole message
    finally:
        daemon.kill()


def test_a_video_is_fetched_decrypted_and_reaches_the_plugins(tmp_path, sim, dify):
    # The bot itself ignores videos (as the original does, only plugins answer them): the
    # decrypted file must be there for them, and nothing goes to Dify.
    video = b"\x00\x00\x00\x18ftypmp42" + os.urandom(300_000)
    daemon = start(tmp_path, sim, dify, plugins=("media_probe",))
    try:
        pushed = sim.push_video(BOT, "nina", video)
        wait_until(lambda: markdown_texts(sim, pushed.req_id), timeout=15, what="the plugin's answer")
        assert markdown_texts(sim, pushed.req_id) == [
            f"video {len(video)} bytes sha256 {hashlib.sha256(video).hexdigest()}"]
        assert not dify.requests_to("/v1/chat-messages")
    finally:
        daemon.kill()


@WHERE
def test_a_quoted_message_reaches_dify_with_the_question(tmp_path, sim, dify, where):
    quote = {"msgtype": "text", "text": {"content": "上季度营收是 42 万元"}}
    daemon = start(tmp_path, sim, dify)
    try:
        pushed = sim.push_text(BOT, "alice", "这个数对吗?", chatid="group-9" if where == "group" else None,
                               quote=quote)
        wait_until(lambda: markdown_texts(sim, pushed.req_id), timeout=15, what="the answer")
        query = dify.requests_to("/v1/chat-messages")[-1]["json"]["query"]
        assert "上季度营收是 42 万元" in query and query.rstrip().endswith("这个数对吗?")
        assert "@RobotA" not in query
    finally:
        daemon.kill()



# ====================================================================== callback mode: only the response_url
@pytest.fixture
def callback_daemon(tmp_path, dify):
    key = CallbackCrypto.random_aes_key()
    port = free_port()
    config = write_config(
        tmp_path, channel_type="wecom_bot", wecom_bot_mode="callback", wecom_bot_token="callback-token",
        wecom_bot_aes_key=key, wecom_bot_host="127.0.0.1", wecom_bot_port=port, bot_type="", model="dify",
        dify_api_base=dify.base_url, dify_api_key="app-test", group_name_white_list=["ALL_GROUP"], shutdown_timeout=5,
    )
    process = Daemon(tmp_path, "--config", config, "--plugins-dir", plugins_dir(tmp_path, ("timer_task",)))
    wait_healthy(f"http://127.0.0.1:{port}", daemon=process)
    driver = CallbackDriver(f"http://127.0.0.1:{port}/wecombot", "callback-token", key, aibotid=BOT, bot_name="RobotA")
    yield process, driver
    driver.close()
    process.kill()


@WHERE
def test_in_callback_mode_a_scheduled_message_goes_to_the_response_url(callback_daemon, sim, where):
    # Callback mode has no push API: once the answer's stream is finished, the message's
    # response_url (usable once, for an hour, §3.5) is the only way to the chat.
    _, driver = callback_daemon
    chatid = "group-9" if where == "group" else None
    url = sim.response_url(BOT, "alice", chatid)
    reply = driver.text("alice", "$timer 1 开会了", chatid=chatid, response_url=url)
    view = driver.follow(reply, "alice", chatid=chatid, interval=0.1, window=20)
    assert view.finished and "scheduled in 1 s" in view.text and "开会了" not in view.text
    wait_until(lambda: sim.response_attempts, timeout=10, what="the scheduled text at the response_url")
    assert sim.response_attempts == [{"response_code": url.rsplit("=", 1)[1], "errcode": 0,
                                      "body": {"msgtype": "markdown", "markdown": {"content": "开会了"}}}]
    assert chat_of(sim, where) == [("markdown", "开会了")]


def test_in_callback_mode_a_message_that_cannot_be_sent_any_more_is_reported(callback_daemon, sim):
    # Without a response_url left, nothing can reach the chat: the loss is logged, not silent.
    process, driver = callback_daemon
    reply = driver.text("alice", "$timer 1 开会了")  # a message without a response_url
    view = driver.follow(reply, "alice", interval=0.1, window=20)
    assert view.finished and "scheduled in 1 s" in view.text
    process.wait_for_log("callback mode cannot send more to this chat", timeout=10)
