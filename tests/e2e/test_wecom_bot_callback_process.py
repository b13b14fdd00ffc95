"""`python app.py` with channel_type wecom_bot in callback mode: the callback driver plays WeCom
(signing and encrypting with its own crypto), the Dify simulator is the bot."""
from __future__ import annotations

import time

import httpx
import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, free_port, write_config
from tests.fakes.wecom_aibot.callback_driver import CallbackCrypto, CallbackDriver

pytestmark = pytest.mark.slow

TOKEN = "callback-token"


@pytest.fixture
def dify():
    with DifyServer(api_key="app-test", mode="chat") as server:
        yield server


@pytest.fixture
def daemon(tmp_path, dify, request):
    settings = getattr(request, "param", {})
    key = CallbackCrypto.random_aes_key()
    port = free_port()
    config = write_config(
        tmp_path, channel_type="wecom_bot", wecom_bot_mode="callback", wecom_bot_token=TOKEN, wecom_bot_aes_key=key,
        wecom_bot_host="127.0.0.1", wecom_bot_port=port, bot_type="", model="dify", dify_api_base=dify.base_url,
        dify_api_key="app-test", group_name_white_list=["ALL_GROUP"], shutdown_timeout=5, **settings,
    )
    process = Daemon(tmp_path, "--config", config)
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.proc.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the callback server never came up: {process.stderr()[-3000:]}")
        time.sleep(0.05)
    driver = CallbackDriver(f"http://127.0.0.1:{port}/wecombot", TOKEN, key, aibotid="bot-1", bot_name="RobotA")
    yield process, driver
    driver.close()
    process.kill()


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
