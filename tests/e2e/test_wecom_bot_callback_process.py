"""`python app.py` with channel_type wecom_bot in callback mode: the callback driver plays WeCom
(signing and encrypting with its own crypto), the Dify simulator is the bot."""
from __future__ import annotations

import base64
import hashlib
import time

import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, free_port, run_app, user_lines, wait_healthy, write_config
from tests.fakes.wecom_aibot.callback_driver import CallbackCrypto, CallbackDriver, WecomHost

pytestmark = pytest.mark.slow

TOKEN = "callback-token"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


@pytest.fixture
def dify():
    with DifyServer(api_key="app-test", mode="chat") as server:
        yield server


def start(tmp_path, dify, port: int, key: str, **settings) -> Daemon:
    """`python app.py` in callback mode on `port`, once its callback server answers."""
    config = write_config(
        tmp_path, channel_type="wecom_bot", wecom_bot_mode="callback", wecom_bot_token=TOKEN, wecom_bot_aes_key=key,
        wecom_bot_host="127.0.0.1", wecom_bot_port=port, bot_type="", model="dify", dify_api_base=dify.base_url,
        dify_api_key="app-test", group_name_white_list=["ALL_GROUP"], shutdown_timeout=5, **settings,
    )
    process = Daemon(tmp_path, "--config", config)
    wait_healthy(f"http://127.0.0.1:{port}", daemon=process)
    return process


@pytest.fixture
def daemon(tmp_path, dify, request):
    settings = getattr(request, "param", {})
    key = CallbackCrypto.random_aes_key()
    port = free_port()
    process = start(tmp_path, dify, port, key, **settings)
    driver = CallbackDriver(f"http://127.0.0.1:{port}/wecombot", TOKEN, key, aibotid="bot-1", bot_name="RobotA")
    yield process, driver
    driver.close()
    process.kill()


@pytest.fixture
def host(daemon):
    """WeCom's media host and response_url endpoint, with the daemon's EncodingAESKey."""
    with WecomHost(daemon[1].crypto) as h:
        yield h


def test_url_verification_answers_the_bare_plaintext(daemon):
    _, driver = daemon
    status, _body = driver.verify()
    assert status == 200 and driver.last_verify_ok


def test_a_question_is_answered_through_stream_refreshes(daemon, dify):
    _, driver = daemon
    dify.push_answer("A streamed answer, written in pieces.", chunk_size=3, chunk_delay=0.03)
    reply = driver.text("alice", "hello")
    assert reply.ok and not reply.problems, reply.problems
    assert reply.stream and reply.stream["id"] and reply.stream["finish"] is False
    view = driver.follow(reply, "alice", interval=0.1, window=20)
    assert view.finished and view.text == "A streamed answer, written in pieces."
    assert not view.problems, view.problems


def test_a_group_question_loses_its_at_and_is_answered(daemon, dify):
    _, driver = daemon
    reply = driver.text("bob", "what now", chatid="group-1")
    view = driver.follow(reply, "bob", chatid="group-1", interval=0.1, window=20)
    assert view.finished and "echo: what now" in view.text
    assert dify.requests_to("/v1/chat-messages")[-1]["json"]["query"] == "what now"


def test_a_redelivered_message_gets_the_same_stream_and_one_answer(daemon, dify):
    _, driver = daemon
    first = driver.text("carol", "only once", msgid="m-dup-1")
    again = driver.text("carol", "only once", msgid="m-dup-1")
    assert again.stream["id"] == first.stream["id"]
    view = driver.follow(first, "carol", interval=0.1, window=20)
    assert view.finished and view.text == "echo: only once"
    assert len(dify.requests_to("/v1/chat-messages")) == 1


@pytest.mark.parametrize("daemon", [{"subscribe_msg": "welcome aboard"}], indirect=True)
def test_enter_chat_is_answered_with_the_welcome(daemon):
    _, driver = daemon
    reply = driver.enter_chat("dave")
    assert reply.ok and not reply.problems, reply.problems
    assert reply.plaintext == {"msgtype": "text", "text": {"content": "welcome aboard"}}
    assert reply.elapsed < 5


def test_forged_signatures_and_malformed_bodies_are_refused_and_never_answered(daemon, dify):
    _, driver = daemon
    good = driver.crypto.encrypt('{"msgid":"forged-1","msgtype":"text","chattype":"single",'
                                 '"from":{"userid":"eve"},"text":{"content":"hi"}}')
    query = {"msg_signature": "0" * 40, "timestamp": good["timestamp"], "nonce": good["nonce"]}
    forged = driver.raw("POST", query, '{"encrypt": "%s"}' % good["encrypt"])
    assert forged.status_code == 403
    signed = {"msg_signature": good["msgsignature"], "timestamp": good["timestamp"], "nonce": good["nonce"]}
    assert driver.raw("POST", signed, "{not json").status_code == 400
    assert driver.raw("POST", signed, '{"other": 1}').status_code == 400
    assert driver.raw("POST", signed, "[" * 5000 + "]" * 5000).status_code == 400
    bad_echo = driver.raw("GET", {"msg_signature": "1" * 40, "timestamp": "1", "nonce": "n", "echostr": "abc"})
    assert bad_echo.status_code == 403
    time.sleep(0.5)
    assert not dify.requests_to("/v1/chat-messages")
    # and a good message still goes through afterwards
    view = driver.follow(driver.text("eve", "after the noise"), "eve", interval=0.1, window=20)
    assert view.finished and view.text == "echo: after the noise"


def test_a_voice_message_is_answered_from_its_transcript(daemon):
    _, driver = daemon
    view = driver.follow(driver.voice("fay", "明天会下雨吗"), "fay", interval=0.1, window=20)
    assert view.finished and view.text == "echo: 明天会下雨吗"
    assert not view.problems, view.problems


@pytest.mark.parametrize("daemon", [{"image_recognition": True}], indirect=True)
def test_an_image_goes_with_the_next_question(daemon, host, dify):
    _, driver = daemon
    picture = driver.image("carol", host.add_media(PNG))
    assert picture.ok, picture.problems  # kept for the next question: an empty answer is allowed
    view = driver.follow(driver.text("carol", "what is in the picture?"), "carol", interval=0.1, window=20)
    assert view.finished and not view.problems, view.problems
    assert [status for _, status in host.fetches] == [200]
    # Decrypted with the EncodingAESKey: Dify got the very picture the user sent.
    assert [u["content"] for u in dify.uploads.values()] == [PNG]
    chat = dify.requests_to("/v1/chat-messages")[-1]["json"]
    assert chat["query"] == "what is in the picture?"
    assert [f["upload_file_id"] for f in chat["files"]] == list(dify.uploads)


@pytest.mark.parametrize("daemon", [{"allowed_internal_hosts": ["127.0.0.1"]}], indirect=True)
def test_an_image_answer_is_shown_in_the_finished_stream(daemon, dify):
    _, driver = daemon
    dify.add_file("/files/chart.png", PNG, "image/png")
    dify.push_answer(f"here is the chart ![chart]({dify.host_url}/files/chart.png)")
    view = driver.follow(driver.text("gina", "draw it"), "gina", interval=0.1, window=20)
    assert view.finished and not view.problems, view.problems
    assert view.text == "here is the chart"
    [item] = view.msg_item or [None]
    assert item["msgtype"] == "image"
    assert base64.b64decode(item["image"]["base64"]) == PNG
    assert item["image"]["md5"] == hashlib.md5(PNG).hexdigest()
    # Images go only in the last frame (finish:true).
    assert all("msg_item" not in (r.stream or {}) for r in view.replies[:-1])


@pytest.mark.parametrize("daemon", [{"allowed_internal_hosts": ["127.0.0.1"]}], indirect=True)
def test_a_file_answer_is_named_in_the_stream_not_dropped(daemon, dify):
    # Callback mode has no way to send a file (only images, in msg_item): the user is told.
    _, driver = daemon
    dify.add_file("/files/report.txt", b"quarterly report\n" * 10, "text/plain")
    dify.push_answer(f"here it is [report.txt]({dify.host_url}/files/report.txt)")
    view = driver.follow(driver.text("hank", "send me the report"), "hank", interval=0.1, window=20)
    assert view.finished and not view.problems, view.problems
    assert not view.msg_item
    assert view.text.startswith("here it is\n\n")
    note = view.text.split("\n\n", 1)[1]
    assert "report.txt" in note and "cannot be sent" in note
    assert "/" not in note  # the file's name, not where it lies on the server
    # A user who writes Chinese is told in Chinese.
    dify.push_answer(f"给你 [report.txt]({dify.host_url}/files/report.txt)")
    view = driver.follow(driver.text("hank", "把报告发给我"), "hank", interval=0.1, window=20)
    assert view.finished and not view.problems, view.problems
    note = view.text.split("\n\n", 1)[1]
    assert "report.txt" in note and "无法发送" in note


@pytest.mark.parametrize("settings, key", [
    ({"wecom_bot_aes_key": "x" * 42}, "wecom_bot_aes_key"),
    ({"wecom_bot_aes_key": "!" * 43}, "wecom_bot_aes_key"),
    ({"wecom_bot_aes_key": CallbackCrypto.random_aes_key() + "AAAA"}, "wecom_bot_aes_key"),
    ({"wecom_bot_token": ""}, "wecom_bot_token"),
    ({"wecom_bot_token": None}, "wecom_bot_token"),
], ids=["key-42-chars", "key-not-base64", "key-too-long", "token-empty", "token-missing"])
def test_a_wrong_callback_configuration_stops_start_up_with_one_line(tmp_path, settings, key):
    config = {"channel_type": "wecom_bot", "wecom_bot_mode": "callback", "wecom_bot_token": TOKEN,
              "wecom_bot_aes_key": CallbackCrypto.random_aes_key(), "wecom_bot_host": "127.0.0.1",
              "wecom_bot_port": free_port(), "bot_type": "", "model": "dify", "dify_api_base": "http://127.0.0.1:9",
              "dify_api_key": "app-test"}
    config.update(settings)
    if config["wecom_bot_token"] is None:
        del config["wecom_bot_token"]
    result = run_app(tmp_path, "--config", write_config(tmp_path, **config), timeout=30)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    [line] = user_lines(result.stderr)
    assert line.startswith("config error: ") and key in line, line


def test_messages_accepted_before_a_crash_are_answered_after_the_restart(tmp_path, dify):
    # WeCom keeps refreshing the stream for 6 minutes: after the restart, the refreshes of the
    # same stream id get the answer, once (not a second time through the response_url).
    key, port = CallbackCrypto.random_aes_key(), free_port()
    dify.push_hang(30)  # the first question never gets its answer before the kill
    process = start(tmp_path, dify, port, key, dify_read_timeout=60, dify_answer_timeout=60)
    driver = CallbackDriver(f"http://127.0.0.1:{port}/wecombot", TOKEN, key)
    try:
        with WecomHost(driver.crypto) as host:
            first = driver.text("ivan", "do not lose me", response_url=host.new_response_url())
            assert first.ok and first.stream["finish"] is False, first.problems
            deadline = time.monotonic() + 15
            while not dify.requests_to("/v1/chat-messages"):
                assert time.monotonic() < deadline, "the question never reached Dify"
                time.sleep(0.05)
            process.kill()  # SIGKILL: no clean stop
            down = driver.refresh("ivan", first.stream["id"])
            assert down.status == 0  # WeCom's refreshes fail while the daemon is down
            process = start(tmp_path, dify, port, key)
            view = driver.follow(first, "ivan", interval=0.1, window=20)
            assert view.finished and not view.problems, view.problems
            assert view.text == "echo: do not lose me"
            # Asked again once after the restart, and the answer went only in the stream.
            assert [r["json"]["query"] for r in dify.requests_to("/v1/chat-messages")] == ["do not lose me"] * 2
            time.sleep(0.3)
            assert host.posts == []
    finally:
        driver.close()
        process.kill()


def test_an_answer_finished_just_before_a_crash_reaches_the_refreshes_after_the_restart(tmp_path, dify):
    # The answer is written and the message marked answered, then the daemon dies before WeCom's
    # next refresh: the refreshes after the restart still get it, and Dify is not asked again.
    key, port = CallbackCrypto.random_aes_key(), free_port()
    process = start(tmp_path, dify, port, key)
    driver = CallbackDriver(f"http://127.0.0.1:{port}/wecombot", TOKEN, key)
    try:
        with WecomHost(driver.crypto) as host:
            first = driver.text("mia", "keep my answer", response_url=host.new_response_url())
            assert first.ok, first.problems
            process.wait_for_log(f"answer in stream {first.stream['id']} finished")
            process.kill()
            process = start(tmp_path, dify, port, key)
            view = driver.follow(first, "mia", interval=0.1, window=20)
            assert view.finished and not view.problems, view.problems
            assert view.text == "echo: keep my answer"
            assert [r["json"]["query"] for r in dify.requests_to("/v1/chat-messages")] == ["keep my answer"]
            assert host.posts == []
    finally:
        driver.close()
        process.kill()


def test_a_message_sent_again_after_a_crash_gets_its_stream_and_one_answer(tmp_path, dify):
    # The crash may also eat the response to the message itself: WeCom then sends the message
    # again, here while the answer queued again at the restart is still being written.
    key, port = CallbackCrypto.random_aes_key(), free_port()
    dify.push_hang(30)
    process = start(tmp_path, dify, port, key, dify_read_timeout=60, dify_answer_timeout=60)
    driver = CallbackDriver(f"http://127.0.0.1:{port}/wecombot", TOKEN, key)
    try:
        with WecomHost(driver.crypto) as host:
            url = host.new_response_url()
            first = driver.text("liam", "still there?", msgid="m-crash-2", response_url=url)
            deadline = time.monotonic() + 15
            while not dify.requests_to("/v1/chat-messages"):
                assert time.monotonic() < deadline, "the question never reached Dify"
                time.sleep(0.05)
            process.kill()
            dify.push_answer("yes, still here", latency=1.5)  # the answer after the restart takes a while
            process = start(tmp_path, dify, port, key)
            again = driver.text("liam", "still there?", msgid="m-crash-2", response_url=url)
            assert again.ok and again.stream and again.stream["id"] == first.stream["id"], again.problems
            view = driver.follow(again, "liam", interval=0.1, window=20)
            assert view.finished and view.text == "yes, still here", view.problems
            assert len(dify.requests_to("/v1/chat-messages")) == 2
            time.sleep(0.3)
            assert host.posts == []
    finally:
        driver.close()
        process.kill()


def test_a_duplicate_msgid_with_another_body_gets_the_first_stream(daemon, dify):
    _, driver = daemon
    dify.push_answer("the first answer", latency=0.5)
    first = driver.text("judy", "the first question", msgid="m-same")
    other = driver.text("judy", "a different question", msgid="m-same")
    assert first.ok and other.ok, (first.problems, other.problems)
    assert other.stream["id"] == first.stream["id"]
    view = driver.follow(other, "judy", interval=0.1, window=20)
    assert view.finished and view.text == "the first answer"
    assert [r["json"]["query"] for r in dify.requests_to("/v1/chat-messages")] == ["the first question"]


def test_a_refresh_for_an_unknown_stream_is_answered_cleanly(daemon, dify):
    _, driver = daemon
    for stream_id in ("s-never-opened", "x" * 5000, "流"):
        reply = driver.refresh("kim", stream_id)
        assert reply.status == 200 and reply.ok, reply.problems  # a stream reply for that same id
        assert reply.stream["content"] == ""
    # No usable stream id: refused (a stream reply with an empty or made-up id would be invalid).
    for stream in (None, 42, ["id"], {}, {"id": None}, {"id": ""}, {"id": {"nested": 1}}):
        body = {"msgid": "r-odd", "chattype": "single", "from": {"userid": "kim"}, "msgtype": "stream",
                "stream": stream}
        assert driver.send(body).status == 400, stream
    time.sleep(0.3)
    assert not dify.requests_to("/v1/chat-messages")
    view = driver.follow(driver.text("kim", "still fine?"), "kim", interval=0.1, window=20)
    assert view.finished and view.text == "echo: still fine?"
