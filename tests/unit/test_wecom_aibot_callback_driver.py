"""Self-tests of the WeCom AI bot callback driver (tests/fakes/wecom_aibot/callback_driver.py).

The driver's crypto is hand-written; here it is cross-checked both ways against wechatpy, and the
driver is run against a tiny fake daemon (wechatpy's PrpCrypto, an http.server) that answers like
a correct bot, or with one injected fault the driver must catch.
"""
from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from wechatpy.crypto import PKCS7Encoder, PrpCrypto, WeChatCipher, _get_signature

from tests.fakes.clock import FakeClock
from tests.fakes.wecom_aibot.callback_driver import (
    CallbackCrypto,
    CallbackDriver,
    CallbackReply,
    StreamView,
    WecomHost,
)

TOKEN = "tok-123"
KEY = CallbackCrypto.random_aes_key()


def _key_bytes(key: str = KEY) -> bytes:
    return base64.b64decode(key + "=")


# --- crypto -------------------------------------------------------------------------------


def test_random_aes_key_is_a_valid_encoding_aes_key():
    key = CallbackCrypto.random_aes_key()
    assert len(key) == 43 and len(base64.b64decode(key + "=")) == 32
    with pytest.raises(ValueError):
        CallbackCrypto(TOKEN, key[:42])
    with pytest.raises(ValueError):
        CallbackCrypto(TOKEN, "!" * 43)


@pytest.mark.parametrize("text", ["", "a", "x" * 11, "x" * 12, "x" * 44, '{"k": "中文 ✓"}', "y" * 5000])
def test_encryption_matches_wechatpy_both_ways(text):
    crypto, prp = CallbackCrypto(TOKEN, KEY), PrpCrypto(_key_bytes())
    mine = crypto.encrypt_text(text)
    assert len(base64.b64decode(mine)) % 32 == 0  # PKCS#7 to 32-byte blocks
    assert prp.decrypt(mine, "") == text
    assert crypto.decrypt(prp.encrypt(text, "").decode()) == text


def test_padding_adds_a_full_block_when_aligned():
    crypto = CallbackCrypto(TOKEN, KEY)
    msg = "z" * 12  # 16 random + 4 length + 12 = 32 bytes, already aligned
    assert len(base64.b64decode(crypto.encrypt_text(msg))) == 64


def test_decrypt_rejects_non_empty_receiveid_and_garbage():
    crypto = CallbackCrypto(TOKEN, KEY)
    with pytest.raises(ValueError, match="receiveid"):
        crypto.decrypt(PrpCrypto(_key_bytes()).encrypt("{}", "wwcorp").decode())
    with pytest.raises(ValueError):
        crypto.decrypt(base64.b64encode(b"\0" * 17).decode())
    with pytest.raises(ValueError):
        crypto.decrypt("not base64!")
    other = CallbackCrypto(TOKEN, CallbackCrypto.random_aes_key())
    with pytest.raises(ValueError):  # wrong key: padding or framing breaks
        crypto.decrypt(other.encrypt_text("hello world" * 3))


def test_envelope_signature_matches_wechatpy():
    crypto = CallbackCrypto(TOKEN, KEY)
    env = crypto.encrypt('{"a": 1}')
    assert set(env) == {"encrypt", "msgsignature", "timestamp", "nonce"}
    assert env["timestamp"].isdigit() and abs(int(env["timestamp"]) - time.time()) < 5
    assert env["nonce"].isalnum()
    assert env["msgsignature"] == _get_signature(TOKEN, env["timestamp"], env["nonce"], env["encrypt"])
    assert env["msgsignature"] == env["msgsignature"].lower() and len(env["msgsignature"]) == 40
    fixed = crypto.encrypt("{}", nonce="n1", timestamp="1700000000")
    assert (fixed["nonce"], fixed["timestamp"]) == ("n1", "1700000000")
    assert crypto.encrypt("{}")["nonce"] != crypto.encrypt("{}")["nonce"]


def test_media_encryption_matches_the_reference_cipher():
    crypto = CallbackCrypto(TOKEN, KEY)
    for data in (b"", b"\x89PNG" + bytes(range(256)) * 3, b"q" * 32):
        enc = crypto.encrypt_media(data)
        assert len(enc) % 32 == 0 and len(enc) > len(data)
        assert PKCS7Encoder.decode(WeChatCipher(_key_bytes()).decrypt(enc)) == data
        assert crypto.decrypt_media(enc) == data
        assert crypto.decrypt_media(WeChatCipher(_key_bytes()).encrypt(PKCS7Encoder.encode(data))) == data


# --- a fake daemon that answers like a correct bot ------------------------------------------


class FakeBot:
    """Decrypts with wechatpy, answers streams in three snapshots; `faults` bends one rule."""

    def __init__(self, token: str = TOKEN, key: str = KEY) -> None:
        self.token, self.prp = token, PrpCrypto(_key_bytes(key))
        self.faults: set[str] = set()
        self.verify_mode = "ok"
        self.received: list[dict] = []  # decrypted POST bodies
        self.queries: list[str] = []  # raw query strings
        self.streams: dict[str, list[str]] = {}
        self.polls: dict[str, int] = {}
        self.lock = threading.Lock()

    def answer(self, msg: dict) -> dict | None:
        kind = msg["msgtype"]
        if kind == "event":
            etype = msg["event"]["eventtype"]
            if etype == "enter_chat":
                return {"msgtype": "text", "text": {"content": "welcome"}}
            if etype == "template_card_event":
                task = msg["event"]["template_card_event"]["task_id"]
                return {"response_type": "update_template_card",
                        "template_card": {"card_type": "text_notice", "task_id": task, "main_title": {"title": "ok"}}}
            return {"msgtype": "text", "text": {"content": "thanks"}} if "feedback_reply" in self.faults else None
        if kind == "stream":
            sid = msg["stream"]["id"]
            if "empty_refresh" in self.faults:
                return None
            if "refresh_markdown" in self.faults:
                return {"msgtype": "markdown", "markdown": {"content": "x"}}
            with self.lock:
                self.polls[sid] += 1
                snaps, n = self.streams[sid], self.polls[sid]
            done = n >= len(snaps) - 1 and "never_finish" not in self.faults
            if "other_stream_id" in self.faults:
                sid = "other"
            return {"msgtype": "stream", "stream": {"id": sid, "finish": done, "content": snaps[min(n, len(snaps) - 1)]}}
        if kind == "text":
            full = "echo: " + msg["text"]["content"]
            sid = f"s{len(self.streams) + 1}"
            snaps = ["", full[: len(full) // 2], full]
            if "empty_final" in self.faults:
                snaps[-1] = ""
            if "huge" in self.faults:
                snaps[-1] = "长" * 7000  # 21000 bytes
            with self.lock:
                self.streams[sid], self.polls[sid] = snaps, 0
            return {"msgtype": "stream", "stream": {"id": sid, "finish": False, "content": snaps[0]}}
        return {"msgtype": "stream", "stream": {"id": "one", "finish": True, "content": f"got {kind}"}}

    def envelope(self, plain: dict, nonce: str) -> bytes:
        text = json.dumps(plain, ensure_ascii=False)
        enc = self.prp.encrypt(text, "wwcorp" if "wrong_receiveid" in self.faults else "").decode()
        ts = str(int(time.time() * 1000) if "ms_timestamp" in self.faults else int(time.time()))
        env = {"encrypt": enc, "msgsignature": _get_signature(self.token, ts, nonce, enc), "timestamp": ts, "nonce": nonce}
        if "bad_signature" in self.faults:
            env["msgsignature"] = "0" * 40
        if "wrong_nonce" in self.faults:
            env["nonce"] = "other"
        if "missing_nonce" in self.faults:
            del env["nonce"]
        if "not_json" in self.faults:
            return b"success"
        return json.dumps(env).encode()


def _handler(bot: FakeBot):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, status: int, body: bytes = b"") -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except ConnectionError:  # the driver gave up waiting (timeout test)
                pass

        def _query(self) -> dict:
            raw = urlparse(self.path).query
            bot.queries.append(raw)
            return {k: v[0] for k, v in parse_qs(raw).items()}  # decodes %XX and '+' like WeCom's peers

        def do_GET(self):
            q = self._query()
            if q.get("msg_signature") != _get_signature(bot.token, q["timestamp"], q["nonce"], q["echostr"]):
                return self._reply(403)
            text = bot.prp.decrypt(q["echostr"], "")
            mode = bot.verify_mode
            if mode == "slow":
                time.sleep(1.1)
            out = {"quoted": json.dumps(text), "newline": text + "\n", "bom": "\ufeff" + text}.get(mode, text)
            self._reply(200, out.encode("utf-8"))

        def do_POST(self):
            q = self._query()
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                enc = json.loads(data)["encrypt"]
            except (ValueError, KeyError, TypeError):
                return self._reply(400)
            if q.get("msg_signature") != _get_signature(bot.token, q.get("timestamp", ""), q.get("nonce", ""), enc):
                return self._reply(403)
            msg = json.loads(bot.prp.decrypt(enc, ""))
            bot.received.append(msg)
            if "slow_post" in bot.faults:
                time.sleep(0.5)
            plain = bot.answer(msg)
            self._reply(200, b"" if plain is None else bot.envelope(plain, q["nonce"]))

    return Handler


@pytest.fixture
def bot():
    fake = FakeBot()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/wecom/callback"
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def driver(bot):
    with CallbackDriver(bot.url, TOKEN, KEY, aibotid="bot-1", timeout=2.0, bot_name="Helper") as d:
        yield d


# --- driver against a correct bot -----------------------------------------------------------


def test_verify_round_trip_with_url_encoded_query(bot, driver):
    status, body = driver.verify()
    assert status == 200 and body.isdigit() and driver.last_verify_ok is True
    query = bot.queries[-1]
    assert set(parse_qs(query)) == {"msg_signature", "timestamp", "nonce", "echostr"}
    echostr = query.split("echostr=")[1].split("&")[0]
    assert "%3D" in echostr and not set("+/=") & set(echostr)  # base64 padding arrives encoded


@pytest.mark.parametrize("mode", ["quoted", "newline", "bom", "slow"])
def test_verify_flags_a_decorated_or_late_answer(bot, driver, mode):
    bot.verify_mode = mode
    status, _ = driver.verify()
    assert status == 200 and driver.last_verify_ok is False


def test_verify_with_the_wrong_token_is_refused(bot):
    with CallbackDriver(bot.url, "wrong", KEY) as d:
        assert d.verify()[0] == 403 and d.last_verify_ok is False


def test_single_text_then_follow_the_stream(bot, driver):
    reply = driver.text("alice", "hello there")
    assert isinstance(reply, CallbackReply)
    assert reply.status == 200 and reply.signature_ok is True and reply.ok, reply.problems
    assert reply.envelope["nonce"] == reply.nonce and reply.stream["id"] == "s1"
    sent = bot.received[0]
    assert sent == {"msgid": sent["msgid"], "aibotid": "bot-1", "chattype": "single", "from": {"userid": "alice"},
                    "msgtype": "text", "text": {"content": "hello there"}}

    view = driver.follow(reply, "alice", interval=0.01)
    assert isinstance(view, StreamView)
    assert view.finished and view.problems == [] and view.stream_id == "s1"
    assert view.snapshots == ["", "echo: he", "echo: hello there"] and view.text == "echo: hello there"
    assert view.refreshes == 2
    refreshes = bot.received[1:]
    assert [r["msgtype"] for r in refreshes] == ["stream", "stream"]
    assert all(r["stream"] == {"id": "s1"} and "response_url" not in r and "chatid" not in r for r in refreshes)
    assert len({r["msgid"] for r in bot.received}) == 3  # every refresh has its own msgid
    assert len({q.split("nonce=")[1].split("&")[0] for q in bot.queries}) == 3  # fresh nonce each time


def test_group_text_mentions_the_bot_and_carries_chatid(bot, driver):
    reply = driver.text("bob", "hi", chatid="grp-1", msgid="m-1", response_url="http://127.0.0.1:1/resp?code=x")
    view = driver.follow(reply, "bob", chatid="grp-1", interval=0.01)
    assert view.finished and not view.problems and view.text == "echo: @Helper hi"
    sent = bot.received[0]
    assert (sent["msgid"], sent["chattype"], sent["chatid"]) == ("m-1", "group", "grp-1")
    assert sent["text"]["content"] == "@Helper hi" and sent["response_url"].startswith("http://")
    assert all(r["chatid"] == "grp-1" and r["chattype"] == "group" for r in bot.received[1:])


def test_media_and_voice_bodies(bot, driver):
    assert driver.image("u", "http://media/1").ok
    assert driver.file("u", "http://media/2").ok
    assert driver.voice("u", "spoken words").ok
    assert driver.mixed("u", ["look", {"url": "http://media/3"}]).ok
    assert driver.image("u", "http://media/4", chatid="g").ok
    img, fil, voice, mixed, group_img = bot.received
    assert img["image"] == {"url": "http://media/1"} and "aeskey" not in img["image"]
    assert fil["file"] == {"url": "http://media/2"} and voice["voice"] == {"content": "spoken words"}
    assert mixed["mixed"]["msg_item"] == [{"msgtype": "text", "text": {"content": "look"}},
                                          {"msgtype": "image", "image": {"url": "http://media/3"}}]
    assert group_img["msgtype"] == "mixed" and group_img["chatid"] == "g"
    assert group_img["mixed"]["msg_item"][0] == {"msgtype": "text", "text": {"content": "@Helper"}}
    view = driver.follow(driver.voice("u", "x"), "u")
    assert view.finished and view.refreshes == 0 and view.text == "got voice"


def test_events(bot, driver):
    welcome = driver.enter_chat("alice")
    assert welcome.ok and welcome.plaintext == {"msgtype": "text", "text": {"content": "welcome"}}
    fb = driver.feedback("alice", "fb-1", type=2, content="meh", reasons=[1])
    assert fb.empty and fb.ok and fb.signature_ok is None
    card = driver.card_click("alice", "btn_yes", "task-9")
    assert card.ok and card.plaintext["template_card"]["task_id"] == "task-9"
    enter, feedback, click = bot.received
    assert enter["event"] == {"eventtype": "enter_chat"} and isinstance(enter["create_time"], int)
    assert feedback["event"]["feedback_event"] == {"id": "fb-1", "type": 2, "content": "meh", "inaccurate_reason_list": [1]}
    assert click["event"]["template_card_event"]["event_key"] == "btn_yes"


def test_send_fills_msgid_and_aibotid(bot, driver):
    driver.send({"msgtype": "voice", "chattype": "single", "from": {"userid": "u"}, "voice": {"content": "a"}}, msgid="fixed")
    assert (bot.received[0]["msgid"], bot.received[0]["aibotid"]) == ("fixed", "bot-1")


# --- the driver catches a misbehaving bot ---------------------------------------------------


@pytest.mark.parametrize("fault, expected", [
    ("bad_signature", "msgsignature does not verify"),
    ("wrong_receiveid", "receiveid"),
    ("not_json", "not JSON"),
    ("missing_nonce", "lacks 'nonce'"),
    ("wrong_nonce", "nonce 'other'"),
    ("ms_timestamp", "timestamp"),
])
def test_reply_envelope_faults(bot, driver, fault, expected):
    bot.faults.add(fault)
    reply = driver.text("alice", "hi")
    assert any(expected in p for p in reply.problems), reply.problems
    if fault == "bad_signature":
        assert reply.signature_ok is False


@pytest.mark.parametrize("fault, expected", [
    ("other_stream_id", "stream id changed"),
    ("empty_final", "content shrank to empty at the end"),
    ("huge", "> 20480"),
    ("refresh_markdown", "not a stream"),
    ("empty_refresh", "empty body"),
])
def test_stream_faults(bot, driver, fault, expected):
    bot.faults.add(fault)
    view = driver.follow(driver.text("alice", "hello"), "alice", interval=0.01, window=0.3)
    assert any(expected in p for p in view.problems), view.problems


def test_follow_gives_up_after_the_window(bot, driver):
    bot.faults.add("never_finish")
    clock = FakeClock()
    view = driver.follow(driver.text("alice", "hello"), "alice", interval=60, window=360, clock=clock, sleep=clock.advance)
    assert not view.finished and view.refreshes == 6
    assert view.problems == ["stream not finished within 360 s of the user's message"]


def test_follow_on_a_non_stream_reply(bot, driver):
    view = driver.follow(driver.enter_chat("alice"), "alice")
    assert view.stream_id is None and "not a stream" in view.problems[0]


def test_feedback_must_get_an_empty_reply(bot, driver):
    bot.faults.add("feedback_reply")
    assert "feedback_event must get an empty reply" in driver.feedback("alice", "fb").problems


def test_no_answer_in_time_is_a_problem_not_an_exception(bot):
    bot.faults.add("slow_post")
    with CallbackDriver(bot.url, TOKEN, KEY, timeout=0.2) as d:
        reply = d.text("alice", "hi")
    assert reply.status == 0 and "no HTTP answer" in reply.problems[0]


def test_raw_requests_for_hostile_input(bot, driver):
    assert driver.raw("POST", {"msg_signature": "x" * 40, "timestamp": "1", "nonce": "n"}, '{"encrypt": "AAAA"}').status_code == 403
    assert driver.raw("POST", {}, b"{not json").status_code == 400
    assert driver.raw("POST", {}, "x" * 200_000).status_code == 400


# --- WeCom's HTTP side: media host and response_url ------------------------------------------


@pytest.fixture
def host():
    clock = FakeClock()
    with WecomHost(CallbackCrypto(TOKEN, KEY), clock=clock) as h:
        yield h, clock


def test_media_is_served_encrypted_with_the_callback_key_for_5_minutes(host):
    import httpx

    h, clock = host
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    url = h.add_media(data)
    r = httpx.get(url)
    assert r.status_code == 200 and r.content != data
    assert PKCS7Encoder.decode(WeChatCipher(_key_bytes()).decrypt(r.content)) == data
    assert httpx.get(h.url + "/media/nope").status_code == 404
    clock.advance(301)
    assert httpx.get(url).status_code == 403
    assert [s for _, s in h.fetches] == [200, 404, 403]


def test_a_response_url_takes_one_markdown_within_an_hour(host):
    import httpx

    h, clock = host
    url = h.new_response_url()
    assert httpx.post(url, json={"msgtype": "text", "text": {"content": "x"}}).json()["errcode"] != 0
    assert httpx.post(url, json={"msgtype": "markdown", "markdown": {"content": "y" * 20481}}).json()["errcode"] != 0
    assert httpx.post(url, json={"msgtype": "markdown", "markdown": {"content": "hi"}}).json() == {
        "errcode": 0, "errmsg": "ok"}
    assert httpx.post(url, json={"msgtype": "markdown", "markdown": {"content": "again"}}).json()["errcode"] != 0
    late = h.new_response_url()
    clock.advance(3601)
    assert httpx.post(late, json={"msgtype": "markdown", "markdown": {"content": "late"}}).json()["errcode"] != 0
    assert h.posts == [{"msgtype": "markdown", "markdown": {"content": "hi"}}]
    assert len(h.attempts) == 5
