"""`python app.py` with channel_type wechatcom_app: the WeCom platform simulator's callback
sender signs and encrypts like WeCom (tests/fakes/wechat_platform), its API server takes the
replies, the Dify simulator is the bot; all real processes and sockets."""
from __future__ import annotations

import sys
import time

import httpx
import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, free_port, run_app, wait_healthy, write_config
from tests.fakes.audio import make_amr
from tests.fakes.wechat_platform import WeChatPlatformSimulator, WeComSender, hostile, random_aes_key

pytestmark = pytest.mark.slow

CORP, SECRET, AGENT, TOKEN = "wwcorp0000000001", "app-secret-1", 1000002, "callback-token"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 64


@pytest.fixture
def sim():
    # No per-member rate limit: the tests send more than 30 messages a minute to one member.
    with WeChatPlatformSimulator(wecom_apps={CORP: {SECRET: AGENT}}, member_limits=()) as simulator:
        yield simulator


@pytest.fixture
def dify():
    with DifyServer(api_key="app-test", mode="chat") as server:
        yield server


class App:
    def __init__(self, tmp_path, sim, dify, **settings) -> None:
        self.tmp_path, self.sim, self.dify = tmp_path, sim, dify
        self.port = free_port()
        self.key = random_aes_key()
        self.settings = settings
        self.daemon: Daemon | None = None
        self.sender = WeComSender(self.url, TOKEN, self.key, CORP, AGENT, platform=sim)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/wxcomapp"

    def config(self) -> str:
        return write_config(
            self.tmp_path, channel_type="wechatcom_app", wechatcom_corp_id=CORP, wechatcomapp_token=TOKEN,
            wechatcomapp_aes_key=self.key, wechatcomapp_secret=SECRET, wechatcomapp_agent_id=str(AGENT),
            wechatcomapp_port=self.port, wechatcom_api_base=self.sim.base_url, bot_type="", model="dify",
            dify_api_base=self.dify.base_url, dify_api_key="app-test", shutdown_timeout=5,
            allowed_internal_hosts=["127.0.0.1"], **self.settings)

    def start(self) -> "App":
        self.daemon = Daemon(self.tmp_path, "--config", self.config())
        wait_healthy(f"http://127.0.0.1:{self.port}", daemon=self.daemon)
        return self

    def kill(self) -> None:
        if self.daemon is not None:
            self.daemon.kill()


@pytest.fixture
def app(tmp_path, sim, dify):
    application = App(tmp_path, sim, dify).start()
    yield application
    application.kill()


def texts_of(sim, user: str, count: int, timeout: float = 15) -> list[str]:
    sim.wait_shown(user, count, timeout=timeout)
    return sim.texts(user)


def test_url_verification_answers_the_plaintext_and_a_forged_one_is_refused(app):
    assert app.sender.verify().ok
    forged = app.sender.verify(forge=True)
    assert not forged.ok and forged.status == 403


def test_a_text_is_acknowledged_at_once_and_answered_through_message_send(app, sim, dify):
    exchange = app.sender.text("alice", "你好")
    # One delivery, acknowledged with "success" (the reply goes through the API, not the response).
    assert len(exchange.deliveries) == 1 and exchange.final.raw == b"success", exchange.problems
    assert texts_of(sim, "alice", 1) == ["echo: 你好"]
    [call] = [c for c in sim.calls("message/send") if c.errcode == 0]
    assert call.body["agentid"] == AGENT and call.body["touser"] == "alice"
    assert [r["json"]["query"] for r in dify.requests_to("/v1/chat-messages")] == ["你好"]


def test_a_redelivered_message_is_answered_once(app, sim, dify):
    app.sender.text("bob", "only once", msg_id=777001)
    app.sender.text("bob", "only once", msg_id=777001)  # WeCom's retry of the same MsgId
    app.sender.text("bob", "next", msg_id=777002)
    assert texts_of(sim, "bob", 2) == ["echo: only once", "echo: next"]
    time.sleep(0.5)
    assert sim.texts("bob") == ["echo: only once", "echo: next"]


def test_a_long_answer_is_split_at_2048_bytes_in_order_without_markdown(app, sim, dify):
    answer = "**重要**\n" + "".join(f"第{n}段：港口很忙，船来船往。" for n in range(400))
    dify.push_answer(answer, chunk_size=500)
    app.sender.text("carol", "讲个长故事")
    sim.wait(lambda: "".join(sim.texts("carol")).endswith("第399段：港口很忙，船来船往。"), timeout=20)
    pieces = sim.texts("carol")
    assert len(pieces) > 1
    assert all(len(p.encode("utf-8")) <= 2048 for p in pieces)
    assert "".join(pieces) == answer.replace("**重要**", "重要")
    assert not any(s.truncated for s in sim.shown("carol"))


def test_an_image_goes_with_the_next_question(tmp_path, sim, dify):
    app = App(tmp_path, sim, dify, image_recognition=True).start()
    try:
        media_id = sim.add_media(CORP, "image", PNG, "photo.png")
        assert app.sender.image("dave", media_id).final.raw == b"success"
        app.sender.text("dave", "这是什么")
        assert texts_of(sim, "dave", 1) == ["echo: 这是什么"]
        [upload] = dify.uploads.values()
        assert upload["content"] == PNG  # the very bytes the user sent, fetched with media/get
        [chat] = dify.requests_to("/v1/chat-messages")
        assert chat["json"]["files"][0]["upload_file_id"] in dify.uploads
    finally:
        app.kill()


def test_a_voice_message_is_transcribed_and_answered(tmp_path, sim, dify):
    dify.stt_text = "语音里的问题"
    app = App(tmp_path, sim, dify, speech_recognition=True, voice_to_text="dify").start()
    try:
        with open(make_amr(str(tmp_path / "voice.amr")), "rb") as f:
            media_id = sim.add_media(CORP, "voice", f.read(), "voice.amr")
        app.sender.voice("erin", media_id)
        assert texts_of(sim, "erin", 1) == ["echo: 语音里的问题"]
        assert dify.requests_to("/v1/audio-to-text")
    finally:
        app.kill()


def test_an_image_answer_is_uploaded_and_sent_as_an_image(app, sim, dify):
    dify.add_file("/files/chart.png", PNG, "image/png")
    dify.push_answer(f"![chart]({dify.host_url}/files/chart.png)")
    app.sender.text("fay", "画个图")
    try:
        sim.wait(lambda: any(s.msgtype == "image" for s in sim.shown("fay")), timeout=15)
    except TimeoutError:
        raise AssertionError(app.daemon.stderr()[-3000:] + str(sim.calls()[-5:]))
    [image] = [s for s in sim.shown("fay") if s.msgtype == "image"]
    assert image.media == PNG and image.via == "message/send"


def test_hostile_callbacks_are_refused_and_good_messages_still_answered(app, sim, dify):
    sender = app.sender
    assert sender.forged_signature("mallory").status == 403
    assert sender.wrong_corp_id("mallory").status == 403
    assert sender.send_xml(hostile.entity_bomb(CORP, "mallory")).status == 400
    assert sender.send_xml(hostile.external_entity(CORP, "mallory")).status == 400
    assert sender.post_raw(hostile.NON_XML_BODY).status == 400
    assert sender.post_raw(hostile.TRUNCATED_XML).status == 400
    assert sender.post_raw(b"<xml>" + b"A" * (10 * hostile.MB) + b"</xml>").status == 413
    unknown = sender.message("mallory", "hologram", [("Payload", "x")])
    assert unknown.final.raw == b"success"
    stale = httpx.post(app.url, params={"msg_signature": "0" * 40, "timestamp": "1", "nonce": "n"},
                       content=b"<xml><Encrypt>x</Encrypt></xml>")
    assert stale.status_code == 403
    # Nothing of that reached the bot or the user; a good message is answered as usual.
    assert dify.requests_to("/v1/chat-messages") == []
    app.sender.text("grace", "still there?")
    assert texts_of(sim, "grace", 1) == ["echo: still there?"]
    assert sim.shown("mallory") == []


def test_an_old_timestamp_is_refused_even_when_signed(app, sim, dify):
    # A callback recorded an hour ago and played again, correctly signed for its timestamp.
    from tests.fakes.wechat_platform import xml_messages

    plaintext = xml_messages.message(CORP, "heidi", "text", [("Content", "replayed")], agent_id=AGENT).xml()
    encrypt = app.sender.envelope.encrypt(plaintext, None)
    timestamp, nonce = str(int(time.time()) - 3600), "nonce1"
    query = {"msg_signature": app.sender.envelope.msg_signature(timestamp, nonce, encrypt), "timestamp": timestamp,
             "nonce": nonce}
    body = f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    assert app.sender.post_raw(body, query=query).status == 403
    # The same message with a fresh timestamp is taken.
    query["timestamp"] = timestamp = str(int(time.time()))
    query["msg_signature"] = app.sender.envelope.msg_signature(timestamp, nonce, encrypt)
    assert app.sender.post_raw(body, query=query).status == 200
    assert texts_of(sim, "heidi", 1) == ["echo: replayed"]
    assert [r["json"]["query"] for r in dify.requests_to("/v1/chat-messages")] == ["replayed"]


def test_a_stale_token_is_replaced_and_the_reply_still_goes_out(app, sim, dify):
    app.sender.text("ivan", "first")
    assert texts_of(sim, "ivan", 1) == ["echo: first"]
    sim.revoke_tokens(CORP)  # the platform no longer takes the token the daemon holds
    app.sender.text("ivan", "second")
    assert texts_of(sim, "ivan", 2) == ["echo: first", "echo: second"]
    assert len([c for c in sim.calls("gettoken") if c.errcode == 0]) == 2


def test_a_send_error_is_logged_with_its_cause(app, sim, dify):
    sim.fail_next("message/send", 45009)
    app.sender.text("judy", "are you rate limited?")
    app.daemon.wait_for_log("45009")
    app.daemon.wait_for_log("rate or daily quota")
    # The pipeline's retry delivers it, once.
    assert texts_of(sim, "judy", 1, timeout=20) == ["echo: are you rate limited?"]


def test_a_piece_that_fails_is_retried_without_sending_the_earlier_pieces_again(app, sim, dify):
    answer = "".join(f"第{n}段：港口很忙，船来船往。" for n in range(250))  # six pieces of <= 2048 bytes
    dify.push_answer(answer, chunk_size=500)
    sim.inject("message/send", delay=0.01)  # the first piece goes through
    sim.inject("message/send", errcode=-1, errmsg="system busy")  # the second is refused once
    app.sender.text("kate", "讲个长故事")
    sim.wait(lambda: "".join(sim.texts("kate")) == answer, timeout=30)
    time.sleep(0.5)
    # Each piece once: a piece sent twice would make the joined text longer than the answer.
    assert "".join(sim.texts("kate")) == answer
    assert all(len(t.encode("utf-8")) <= 2048 for t in sim.texts("kate"))


def test_messages_accepted_before_a_crash_are_answered_after_the_restart(tmp_path, sim, dify):
    dify.push_hang(30)
    app = App(tmp_path, sim, dify, dify_read_timeout=60, dify_answer_timeout=60).start()
    try:
        assert app.sender.text("kim", "do not lose me").final.raw == b"success"
        deadline = time.monotonic() + 15
        while not dify.requests_to("/v1/chat-messages"):
            assert time.monotonic() < deadline, "the question never reached Dify"
            time.sleep(0.05)
        app.daemon.kill()
        app.start()
        assert texts_of(sim, "kim", 1, timeout=30) == ["echo: do not lose me"]
        app.sender.text("kim", "do not lose me", msg_id=None)  # a new message with the same text is new
        assert texts_of(sim, "kim", 2) == ["echo: do not lose me"] * 2
    finally:
        app.kill()


@pytest.mark.parametrize("settings, key", [
    ({"wechatcom_corp_id": ""}, "wechatcom_corp_id"),
    ({"wechatcomapp_aes_key": "x" * 42}, "wechatcomapp_aes_key"),
    ({"wechatcomapp_agent_id": "app"}, "wechatcomapp_agent_id"),
], ids=["no-corp-id", "short-key", "agent-id-not-a-number"])
def test_wrong_settings_stop_start_up_with_one_line(tmp_path, sim, dify, settings, key):
    app = App(tmp_path, sim, dify)
    config = app.config()
    import json

    with open(config, encoding="utf-8") as f:
        data = json.load(f)
    data.update(settings)
    with open(config, "w", encoding="utf-8") as f:
        json.dump(data, f)
    result = run_app(tmp_path, "--config", config, timeout=30)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert key in result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prlimit on another process")
def test_a_store_that_cannot_write_makes_wecom_deliver_again_and_healthz_say_degraded(app, sim, dify):
    import resource

    pid = app.daemon.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    # The daemon's files may not grow: every write fails (EFBIG), as on a full disk.
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))
    try:
        health = poll_health(app.port, lambda h: h.json()["state"] == "degraded")
        assert health.status_code == 503
        refused = app.sender.send_once(_text_message("lena", "keep me", 880001))
        assert refused.status == 503  # not a 200 that would lose it: WeCom delivers it again
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))
    assert poll_health(app.port, lambda h: h.json()["state"] == "running").status_code == 200
    again = app.sender.send_once(_text_message("lena", "keep me", 880001), attempt=2)
    assert again.status == 200
    sim.wait(lambda: "echo: keep me" in sim.texts("lena"), timeout=15)
    time.sleep(0.5)
    # The 503 was the refusal: no "could not be saved" text to the user as well.
    assert sim.texts("lena") == ["echo: keep me"]


def poll_health(port: int, done, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        if done(health) or time.monotonic() > deadline:
            return health
        time.sleep(0.2)


def _text_message(user: str, content: str, msg_id: int | None = None):
    from tests.fakes.wechat_platform import xml_messages

    return xml_messages.message(CORP, user, "text", [("Content", content)], msg_id, agent_id=AGENT)
