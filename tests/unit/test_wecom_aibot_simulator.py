"""Self-tests of the WeCom AI bot long-connection simulator (tests/fakes/wecom_aibot), driven by a raw
websockets client and httpx, never by product code. Rules under test: reference/wecom-aibot.md §2, §5, §6."""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from urllib.parse import unquote

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.fakes.clock import FakeClock
from tests.fakes.wecom_aibot import AibotSimulator, Bubble, NotConnected, Pushed

BOT, SECRET = "bot-1", "secret-1"


class Client:
    """A bare client: JSON frames in and out, acks matched by req_id, pushes kept aside."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.seen: list[dict] = []
        self._n = 0

    def send(self, cmd: str, body=None, req_id: str | None = None) -> str:
        self._n += 1
        req_id = req_id or f"{cmd}_{self._n}"
        frame = {"cmd": cmd, "headers": {"req_id": req_id}}
        if body is not None:
            frame["body"] = body
        self.ws.send(json.dumps(frame))
        return req_id

    def recv(self, timeout: float = 3.0) -> dict:
        frame = json.loads(self.ws.recv(timeout=timeout))
        self.seen.append(frame)
        return frame

    def ack(self, req_id: str, timeout: float = 3.0) -> dict:
        while True:
            frame = self.recv(timeout)
            if "cmd" not in frame and frame.get("headers", {}).get("req_id") == req_id:
                return frame

    def call(self, cmd: str, body=None, req_id: str | None = None) -> dict:
        return self.ack(self.send(cmd, body, req_id))

    def push(self, timeout: float = 3.0) -> dict:
        while True:
            frame = self.recv(timeout)
            if "cmd" in frame:
                return frame

    def subscribe(self, bot: str = BOT, secret: str = SECRET) -> dict:
        return self.call("aibot_subscribe", {"bot_id": bot, "secret": secret})

    def silent(self, timeout: float = 0.3) -> bool:
        try:
            self.recv(timeout)
        except TimeoutError:
            return True
        return False

    def dropped(self, timeout: float = 3.0) -> ConnectionClosed:
        """The connection ended; returns the exception (rcvd is None when no close frame came)."""
        with pytest.raises(ConnectionClosed) as info:
            while True:
                self.recv(timeout)
        return info.value


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make(clock):
    """make(**knobs) -> a started simulator on the fake clock; stopped after the test."""
    sims = []

    def factory(**knobs) -> AibotSimulator:
        sim = AibotSimulator(bots={BOT: SECRET, "bot-2": "secret-2"}, bot_name="RobotA", clock=clock, **knobs).start()
        sims.append(sim)
        return sim

    yield factory
    for sim in sims:
        sim.stop()


@pytest.fixture
def clients():
    with contextlib.ExitStack() as stack:
        def open_client(sim: AibotSimulator) -> Client:
            return Client(stack.enter_context(connect(sim.ws_url, open_timeout=5, close_timeout=1)))

        yield open_client


@pytest.fixture
def sim(make):
    return make()


@pytest.fixture
def client(sim, clients):
    c = clients(sim)
    assert c.subscribe()["errcode"] == 0
    return c


def stream(req_id_client: Client, req_id: str, sid: str, content: str, finish: bool = False, **extra) -> dict:
    body = {"msgtype": "stream", "stream": {"id": sid, "content": content, "finish": finish, **extra}}
    return req_id_client.call("aibot_respond_msg", body, req_id)


def decrypt(aeskey: str, blob: bytes) -> bytes:
    key = base64.b64decode(aeskey + "=" * (-len(aeskey) % 4))
    plain = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor().update(blob)
    assert len(blob) % 32 == 0 and 1 <= plain[-1] <= 32
    return plain[:-plain[-1]]


def upload(c: Client, data: bytes, kind: str = "image", name: str = "a.png", chunk: int = 4) -> str:
    parts = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    init = c.call("aibot_upload_media_init", {"type": kind, "filename": name, "total_size": len(data),
                                              "total_chunks": len(parts), "md5": hashlib.md5(data).hexdigest()})
    upload_id = init["body"]["upload_id"]
    for i, part in enumerate(parts):
        assert c.call("aibot_upload_media_chunk", {"upload_id": upload_id, "chunk_index": i,
                                                   "base64_data": base64.b64encode(part).decode()})["errcode"] == 0
    return c.call("aibot_upload_media_finish", {"upload_id": upload_id})["body"]["media_id"]


# --- subscribe, heartbeat, bad frames ---------------------------------------------------------------
def test_subscribe_good_and_bad(sim, clients):
    c = clients(sim)
    bad = c.subscribe(secret="wrong")
    assert bad == {"headers": {"req_id": bad["headers"]["req_id"]}, "errcode": 853000,
                   "errmsg": "invalid bot_id or secret"}
    assert sim.connection_count(BOT) == 0
    ok = c.subscribe()  # the socket stayed open after the failure
    assert ok == {"headers": {"req_id": ok["headers"]["req_id"]}, "errcode": 0, "errmsg": "ok"}
    assert sim.wait_subscribed(BOT, timeout=2) == 1 and sim.connection_count(BOT) == 1
    assert sim.connections[0].subscribed_at is not None


def test_close_on_auth_failure(make, clients):
    sim = make(close_on_auth_failure=True)
    c = clients(sim)
    assert c.subscribe(secret="wrong")["errcode"] == 853000
    c.dropped()
    sim.wait(lambda: sim.connections[0].closed_at is not None, timeout=2)
    assert sim.connections[0].close_reason == "auth_failure"


def test_command_before_subscribe(make, clients):
    sim = make()
    c = clients(sim)
    assert c.call("ping")["errcode"] == 853000
    sim.before_subscribe = "ignore"
    c.send("ping")
    assert c.silent()
    sim.before_subscribe = "close"
    c.send("aibot_send_msg", {"chatid": "u1", "msgtype": "markdown", "markdown": {"content": "x"}})
    c.dropped()


def test_ping_ack_and_no_ack_knob(sim, client):
    ack = client.call("ping")
    assert ack == {"headers": {"req_id": ack["headers"]["req_id"]}, "errcode": 0, "errmsg": "ok"}
    sim.ack_pings = False
    client.send("ping")
    assert client.silent()
    assert [f[2]["cmd"] for f in sim.frames if isinstance(f[2], dict)][-1] == "ping"  # read, not acked


def test_idle_timeout_drops_without_close_frame(make, clients, clock):
    sim = make(idle_timeout=30)
    c = clients(sim)
    c.subscribe()
    clock.advance(29)
    assert c.call("ping")["errcode"] == 0  # any frame resets the idle timer
    clock.advance(31)
    assert c.dropped().rcvd is None
    sim.wait(lambda: sim.connections[0].close_reason == "idle_timeout", timeout=2)


def test_non_json_frames_get_an_error_without_req_id(sim, client):
    client.ws.send("not json {")
    ack = client.recv()
    assert ack["errcode"] == 47001 and "headers" not in ack
    client.ws.send(json.dumps({"cmd": "ping"}))  # no req_id
    assert client.recv()["errcode"] == 40058
    assert client.call("aibot_get_mcp_config")["errcode"] == 47001  # unknown cmd, with req_id
    assert (47001, ack) in sim.errors
    assert "not json {" in [f[2] for f in sim.frames]


def test_fail_next_no_ack_and_ack_order(make, clients):
    sim = make(ack_delay=0.05, no_ack_cmds={"aibot_send_msg"})
    c = clients(sim)
    c.subscribe()
    sim.fail_next("ping", -1, count=2)
    assert [c.call("ping")["errcode"] for _ in range(3)] == [-1, -1, 0]
    p = sim.push_text(BOT, "u1", "hi")
    c.push()
    ids = [c.send("aibot_respond_msg", {"msgtype": "stream", "stream": {"id": "s", "content": str(i)}}, p.req_id)
           for i in range(5)]
    assert len(set(ids)) == 1 and [c.ack(p.req_id)["errcode"] for _ in range(5)] == [0] * 5
    assert sim.bubbles(p.req_id)[0].frames == ["0", "1", "2", "3", "4"]
    c.send("aibot_send_msg", {"chatid": "u1", "msgtype": "markdown", "markdown": {"content": "x"}})
    assert c.silent() and len(sim.sent) == 1  # processed, never acked


# --- pushes -------------------------------------------------------------------------------------------
def test_push_text_single_vs_group(sim, client):
    single = sim.push_text(BOT, "u1", "hello", quote={"msgtype": "text", "text": {"content": "earlier"}})
    frame = client.push()
    assert isinstance(single, Pushed) and frame["cmd"] == "aibot_msg_callback"
    assert frame["headers"]["req_id"] == single.req_id and len(single.req_id) == 24
    body = frame["body"]
    assert "chatid" not in body and "create_time" not in body
    assert body["chattype"] == "single" and body["from"] == {"userid": "u1"} and body["aibotid"] == BOT
    assert body["text"] == {"content": "hello"} and body["quote"]["text"]["content"] == "earlier"
    assert body["response_url"] == single.response_url
    assert single.response_url.startswith(f"{sim.http_url}/cgi-bin/aibot/response?response_code=")
    group = sim.push_text(BOT, "u1", "hello", chatid="g1")
    body = client.push()["body"]
    assert body["chatid"] == "g1" and body["chattype"] == "group" and body["text"]["content"] == "@RobotA hello"
    dup = sim.push_text(BOT, "u1", "hello", msgid=single.msgid)  # a re-delivery
    assert dup.msgid == single.msgid and dup.req_id not in (single.req_id, group.req_id)
    assert client.push()["body"]["msgid"] == single.msgid


def test_pushes_raise_without_a_connection(sim):
    with pytest.raises(NotConnected):
        sim.push_text(BOT, "u1", "hi")


def test_voice_event_and_raw_pushes(sim, client):
    sim.push_voice(BOT, "u1", "transcribed")
    assert client.push()["body"]["voice"] == {"content": "transcribed"}
    sim.push_feedback(BOT, "u1", "fb-1", type=2, reasons=[1])
    body = client.push()["body"]
    assert body["msgtype"] == "event" and isinstance(body["create_time"], int) and body["msgid"]
    assert body["event"] == {"eventtype": "feedback_event",
                             "feedback_event": {"id": "fb-1", "type": 2, "inaccurate_reason_list": [1]}}
    sim.push_enter_chat(BOT, "u1")
    assert client.push()["body"]["event"] == {"eventtype": "enter_chat"}
    sim.push_raw(BOT, "{broken")
    assert client.ws.recv(timeout=2) == "{broken"


def test_control_chars_in_json_knob(make, clients):
    sim = make(control_chars_in_json=True)
    c = clients(sim)
    c.subscribe()
    sim.push_text(BOT, "u1", "a\tb\nc")
    raw = c.ws.recv(timeout=2)
    assert "a\tb\nc" in raw
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    assert json.loads(raw, strict=False)["body"]["text"]["content"] == "a\tb\nc"


# --- media host ------------------------------------------------------------------------------------------
def test_image_and_file_download_round_trip(sim, client):
    keys = []
    for data in (b"\x89PNG" + bytes(range(200)), b"x" * 64):  # 64: aligned -> a whole pad block
        sim.push_image(BOT, "u1", data)
        image = client.push()["body"]["image"]
        keys.append(image["aeskey"])
        blob = httpx.get(image["url"]).content
        assert decrypt(image["aeskey"], blob) == data
    assert sorted(len(k) for k in keys) == [43, 44]  # with and without the trailing "="
    sim.push_image(BOT, "u1", b"group-image", chatid="g1")
    body = client.push()["body"]
    assert body["msgtype"] == "mixed"
    text, image = body["mixed"]["msg_item"]
    assert text == {"msgtype": "text", "text": {"content": "@RobotA"}}
    assert decrypt(image["image"]["aeskey"], httpx.get(image["image"]["url"]).content) == b"group-image"
    sim.push_video(BOT, "u1", b"video-bytes")
    video = client.push()["body"]["video"]
    assert decrypt(video["aeskey"], httpx.get(video["url"]).content) == b"video-bytes"


def test_file_content_disposition_alternates(sim, client):
    names = []
    for name in ("报告 1.pdf", "报告 2.pdf"):
        sim.push_file(BOT, "u1", b"%PDF-1.4 data", name)
        file = client.push()["body"]["file"]
        assert set(file) == {"url", "aeskey"}
        response = httpx.get(file["url"])
        assert decrypt(file["aeskey"], response.content) == b"%PDF-1.4 data"
        names.append(dict(response.headers.raw)[b"Content-Disposition"])
    rfc, plain = names
    assert unquote(rfc.decode("ascii").split("filename*=UTF-8''")[1]) == "报告 1.pdf"
    assert plain == 'attachment; filename="报告 2.pdf"'.encode("utf-8")  # raw UTF-8 bytes on the wire


def test_media_url_expiry(sim, client, clock):
    sim.push_image(BOT, "u1", b"abcdef")
    url = client.push()["body"]["image"]["url"]
    clock.advance(299)
    assert httpx.get(url).status_code == 200
    clock.advance(2)
    assert httpx.get(url).status_code == 403
    assert httpx.get(sim.http_url + "/media/nope").status_code == 404
    assert [s for _, s in sim.downloads] == [200, 403, 404]


def test_media_delay_and_trickle(make, clients):
    sim = make(media_delay=0.3, media_trickle=2000)
    c = clients(sim)
    c.subscribe()
    sim.push_file(BOT, "u1", b"z" * 500, "z.bin")
    file = c.push()["body"]["file"]
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(file["url"], timeout=0.15)
    assert decrypt(file["aeskey"], httpx.get(file["url"], timeout=5).content) == b"z" * 500


# --- welcome and event req_ids ----------------------------------------------------------------------------
def test_welcome_window_and_wrong_kind(sim, client, clock):
    first = sim.push_enter_chat(BOT, "u1")
    client.push()
    assert client.call("aibot_respond_msg", {"msgtype": "stream", "stream": {"id": "s", "content": "x"}},
                       first.req_id)["errcode"] == 846605
    clock.advance(4.5)
    body = {"msgtype": "text", "text": {"content": "欢迎"}}
    assert client.call("aibot_respond_welcome_msg", body, first.req_id)["errcode"] == 0
    assert client.call("aibot_respond_welcome_msg", body, first.req_id)["errcode"] == 846605  # once
    assert sim.welcome(first.req_id) == body
    late = sim.push_enter_chat(BOT, "u2")
    client.push()
    clock.advance(5.5)
    assert client.call("aibot_respond_welcome_msg", body, late.req_id)["errcode"] == 846604
    assert sim.welcome(late.req_id) is None
    message = sim.push_text(BOT, "u1", "hi")
    client.push()
    assert client.call("aibot_respond_welcome_msg", body, message.req_id)["errcode"] == 846605
    feedback = sim.push_feedback(BOT, "u1", "fb")
    client.push()
    assert client.call("aibot_respond_msg", {}, feedback.req_id)["errcode"] == 846605
    assert client.call("aibot_respond_msg", {"msgtype": "markdown", "markdown": {"content": "x"}},
                       "unknown-req")["errcode"] == 846605
    assert [r["errcode"] for r in sim.replies(first.req_id)] == [846605, 0, 846605]
    assert sim.replies(first.req_id)[1] == {**body, "errcode": 0}
    assert [r["cmd"] for r in sim.reply_log(first.req_id)] == ["aibot_respond_msg"] + ["aibot_respond_welcome_msg"] * 2


def test_card_event_update(sim, client, clock):
    p = sim.push_card_event(BOT, "u1", "yes", "task-1")
    body = client.push()["body"]
    assert body["event"]["template_card_event"]["task_id"] == "task-1" and body["response_url"] == p.response_url
    update = {"response_type": "update_template_card", "template_card": {"card_type": "text_notice", "task_id": "task-1"}}
    assert client.call("aibot_respond_update_msg", update, p.req_id)["errcode"] == 0
    clock.advance(6)
    assert client.call("aibot_respond_update_msg", update, p.req_id)["errcode"] == 846604


# --- aibot_respond_msg -----------------------------------------------------------------------------------------
def test_stream_snapshots_finish_and_finished_stream(sim, client):
    p = sim.push_text(BOT, "u1", "hi")
    client.push()
    assert stream(client, p.req_id, "s1", "甲", feedback={"id": "fb-1"})["errcode"] == 0
    assert stream(client, p.req_id, "s1", "甲乙", feedback={"id": "ignored"})["errcode"] == 0
    (bubble,) = sim.bubbles(p.req_id)
    assert isinstance(bubble, Bubble) and bubble.text == "甲乙" and not bubble.finished
    assert stream(client, p.req_id, "s1", "甲乙丙", finish=True)["errcode"] == 0
    assert stream(client, p.req_id, "s2", "second", finish=True)["errcode"] == 0  # two streams, one req_id
    bubbles = sim.wait_finished(p.req_id, timeout=1, count=2)
    assert [b.text for b in bubbles] == ["甲乙丙", "second"]
    assert bubbles[0].frames == ["甲", "甲乙", "甲乙丙"] and bubbles[0].feedback_id == "fb-1"
    assert stream(client, p.req_id, "s1", "more")["errcode"] == 846608
    assert sim.bubbles(p.req_id)[0].text == "甲乙丙"


def test_reply_types(sim, client):
    p = sim.push_text(BOT, "u1", "hi")
    client.push()
    for msgtype, body in (("text", {"text": {"content": "x"}}), ("news", {})):
        assert client.call("aibot_respond_msg", {"msgtype": msgtype, **body}, p.req_id)["errcode"] == 40008
    assert client.call("aibot_respond_msg", {"msgtype": "markdown", "markdown": {"content": "**b**"}},
                       p.req_id)["errcode"] == 0
    card = {"card_type": "text_notice", "task_id": "t1"}
    assert client.call("aibot_respond_msg", {"msgtype": "template_card", "template_card": card},
                       p.req_id)["errcode"] == 0
    assert client.call("aibot_respond_msg", {"msgtype": "image", "image": {"media_id": "nope"}},
                       p.req_id)["errcode"] == 40007
    big = "字" * 6827  # 20481 bytes
    assert stream(client, p.req_id, "s", big)["errcode"] == 45002
    assert sim.conversation(userid="u1") == [("markdown", "**b**"), ("template_card", card)]


def test_missing_field_ack_has_no_req_id(sim, client):
    p = sim.push_text(BOT, "u1", "hi")
    client.push()
    for body in ({"msgtype": "stream", "stream": {"content": "no id"}}, {"stream": {"id": "s"}},
                 {"msgtype": "markdown"}):
        client.send("aibot_respond_msg", body, p.req_id)
        ack = client.recv()
        assert ack["errcode"] == 40058 and "headers" not in ack and "missing field" in ack["errmsg"]


def test_stream_expiry(sim, client, clock):
    p = sim.push_text(BOT, "u1", "hi")
    client.push()
    assert stream(client, p.req_id, "idle", "a")["errcode"] == 0
    assert stream(client, p.req_id, "total", "b")["errcode"] == 0
    clock.advance(300)
    assert stream(client, p.req_id, "idle", "a2")["errcode"] == 0  # 300 s idle is fine
    assert stream(client, p.req_id, "total", "b2")["errcode"] == 0
    clock.advance(300)
    assert stream(client, p.req_id, "total", "b3")["errcode"] == 0  # exactly 600 s old
    clock.advance(1)
    assert stream(client, p.req_id, "total", "b4")["errcode"] == 846608  # > 600 s old, 1 s idle
    clock.advance(60)
    assert stream(client, p.req_id, "idle", "a3")["errcode"] == 846608  # 361 s idle
    idle, total = sim.bubbles(p.req_id)
    assert (idle.text, idle.expired, total.text, total.expired) == ("a2", True, "b3", True)
    assert stream(client, p.req_id, "fresh", "f")["errcode"] == 0
    sim.expire_silently = True
    clock.advance(700)
    assert stream(client, p.req_id, "fresh", "late")["errcode"] == 0
    assert sim.bubbles(p.req_id)[2].text == "f"  # dropped silently


def test_reply_window_is_24h(sim, client, clock):
    p = sim.push_text(BOT, "u1", "hi")
    client.push()
    clock.advance(24 * 3600 + 1)
    assert stream(client, p.req_id, "s", "late")["errcode"] == 846604


def test_rate_limit_counts_messages_not_frames(make, clients, clock):
    sim = make(rate_limit=(3, 60.0))
    c = clients(sim)
    c.subscribe()
    p = sim.push_text(BOT, "u1", "hi")
    c.push()
    for i in range(10):  # one stream, many frames: one message
        assert stream(c, p.req_id, "s", "x" * i)["errcode"] == 0
    md = {"msgtype": "markdown", "markdown": {"content": "m"}}
    assert [c.call("aibot_respond_msg", md, p.req_id)["errcode"] for _ in range(3)] == [0, 0, 45009]
    assert c.call("aibot_send_msg", {"chatid": "u1", **md})["errcode"] == 45009
    other = sim.push_text(BOT, "u2", "hi")  # another conversation has its own budget
    c.push()
    assert c.call("aibot_respond_msg", md, other.req_id)["errcode"] == 0
    clock.advance(61)
    assert c.call("aibot_respond_msg", md, p.req_id)["errcode"] == 0
    sim.rate_limit, sim.rate_limit_hourly = None, (5, 3600.0)
    assert [c.call("aibot_respond_msg", md, p.req_id)["errcode"] for _ in range(2)] == [0, 45009]
    sim.rate_limit_hourly = None
    assert all(c.call("aibot_respond_msg", md, p.req_id)["errcode"] == 0 for _ in range(5))


# --- upload -----------------------------------------------------------------------------------------------------
def test_upload_out_of_order_repeats_and_missing(sim, client, clock):
    data = b"0123456789abcdef!"
    parts = [data[0:6], data[6:12], data[12:]]
    init = client.call("aibot_upload_media_init", {"type": "file", "filename": "f.txt", "total_size": len(data),
                                                   "total_chunks": 3, "md5": hashlib.md5(data).hexdigest()})
    upload_id = init["body"]["upload_id"]

    def chunk(i, raw):
        return client.call("aibot_upload_media_chunk", {"upload_id": upload_id, "chunk_index": i,
                                                        "base64_data": base64.b64encode(raw).decode()})["errcode"]

    assert chunk(2, parts[2]) == 0 and chunk(0, parts[0]) == 0
    assert chunk(0, b"XXXXXX") == 0  # a repeat is ignored
    assert chunk(3, b"x") == 40006  # 0-based, out of range
    missing = client.call("aibot_upload_media_finish", {"upload_id": upload_id})
    assert missing["errcode"] == 40006 and "[1]" in missing["errmsg"]
    assert chunk(1, parts[1]) == 0
    done = client.call("aibot_upload_media_finish", {"upload_id": upload_id})
    assert done["errcode"] == 0 and isinstance(done["body"]["created_at"], int) and done["body"]["type"] == "file"
    assert sim.media(done["body"]["media_id"]) == ("file", "f.txt", data)
    assert client.call("aibot_upload_media_finish", {"upload_id": upload_id})["errcode"] == 40007  # gone
    p = sim.push_text(BOT, "u1", "send me the file")
    client.push()
    assert client.call("aibot_respond_msg", {"msgtype": "file", "file": {"media_id": done["body"]["media_id"]}},
                       p.req_id)["errcode"] == 0
    assert client.call("aibot_respond_msg", {"msgtype": "image", "image": {"media_id": done["body"]["media_id"]}},
                       p.req_id)["errcode"] == 40004  # a file is not an image
    assert sim.conversation(userid="u1") == [("file", "f.txt", data)]
    clock.advance(3 * 24 * 3600 + 1)
    assert client.call("aibot_send_msg", {"chatid": "u1", "msgtype": "file",
                                          "file": {"media_id": done["body"]["media_id"]}})["errcode"] == 40007  # > 3 days


def test_upload_caps_md5_and_session(sim, client, clock):
    def init(kind, size, chunks=1, **extra):
        return client.call("aibot_upload_media_init", {"type": kind, "filename": "x", "total_size": size,
                                                       "total_chunks": chunks, **extra})

    MB = 1024 * 1024
    assert init("image", 10 * MB, 20)["errcode"] == 0
    assert init("image", 10 * MB + 1, 21)["errcode"] == 40006
    assert init("voice", 2 * MB + 1, 5)["errcode"] == 40006
    assert init("video", 10 * MB + 1, 21)["errcode"] == 40006
    assert init("file", 20 * MB, 40)["errcode"] == 0
    assert init("file", 4)["errcode"] == 40006  # min 5 bytes
    assert init("file", 100, 101)["errcode"] == 40006  # <= 100 chunks
    assert init("file", 600 * 1024, 1)["errcode"] == 40006  # chunks hold <= 512 KB
    assert init("gif", 100)["errcode"] == 40004
    upload_id = init("file", 512 * 1024 + 1, 2)["body"]["upload_id"]
    assert client.call("aibot_upload_media_chunk", {"upload_id": upload_id, "chunk_index": 0,
                                                    "base64_data": base64.b64encode(b"a" * (512 * 1024 + 1)).decode()
                                                    })["errcode"] == 40006
    bad_md5 = init("file", 5, 1, md5="0" * 32)["body"]["upload_id"]
    client.call("aibot_upload_media_chunk", {"upload_id": bad_md5, "chunk_index": 0,
                                             "base64_data": base64.b64encode(b"hello").decode()})
    assert "md5" in client.call("aibot_upload_media_finish", {"upload_id": bad_md5})["errmsg"]
    clock.advance(30 * 60 + 1)
    assert client.call("aibot_upload_media_chunk", {"upload_id": upload_id, "chunk_index": 0,
                                                    "base64_data": "aGVsbG8="})["errcode"] == 40007  # session over
    client.send("aibot_upload_media_init", {"type": "file"})
    assert client.recv()["errcode"] == 40058


def test_fail_concurrent_chunks_knob(make, clients):
    sim = make(fail_concurrent_chunks=True, ack_delay=0.2)
    c = clients(sim)
    c.subscribe()
    upload_id = c.call("aibot_upload_media_init", {"type": "file", "filename": "f", "total_size": 10,
                                                   "total_chunks": 2})["body"]["upload_id"]
    first, second = (c.send("aibot_upload_media_chunk", {"upload_id": upload_id, "chunk_index": i,
                                                         "base64_data": base64.b64encode(b"12345").decode()})
                     for i in range(2))
    assert c.ack(first)["errcode"] == 0 and c.ack(second)["errcode"] == -1  # sent before the first ack
    assert c.call("aibot_upload_media_chunk", {"upload_id": upload_id, "chunk_index": 1,
                                               "base64_data": base64.b64encode(b"12345").decode()})["errcode"] == 0
    assert c.call("aibot_upload_media_finish", {"upload_id": upload_id})["errcode"] == 0


# --- proactive send -----------------------------------------------------------------------------------------------
def test_send_msg_rules(sim, client):
    md = {"msgtype": "markdown", "markdown": {"content": "hello"}}
    assert client.call("aibot_send_msg", {"chatid": "u1", **md})["errcode"] == 93006  # never messaged
    sim.push_text(BOT, "u1", "hi")
    sim.push_text(BOT, "u1", "hi", chatid="g1")
    client.push(), client.push()
    client.send("aibot_send_msg", md)
    assert client.recv()["errcode"] == 40058  # no chatid
    assert client.call("aibot_send_msg", {"chatid": "u1", "msgtype": "text", "text": {"content": "x"}})["errcode"] == 40008
    client.send("aibot_send_msg", {"chatid": "u1", "msgtype": "image", "image": {"url": "http://x/a.png"}})
    ack = client.recv()
    assert ack["errcode"] == 40058 and "body.image.media_id" in ack["errmsg"] and "headers" not in ack
    assert client.call("aibot_send_msg", {"chatid": "u1", "msgtype": "image",
                                          "image": {"media_id": "unknown"}})["errcode"] == 40007
    assert client.call("aibot_send_msg", {"chatid": "u1", **md})["errcode"] == 0
    media_id = upload(client, b"\x89PNG-image-bytes")
    assert client.call("aibot_send_msg", {"chatid": "g1", "msgtype": "image", "image": {"media_id": media_id}})["errcode"] == 0
    assert sim.sent == [{"chatid": "u1", **md}, {"chatid": "g1", "msgtype": "image", "image": {"media_id": media_id}}]
    assert sim.conversation(chatid="g1") == [("image", b"\x89PNG-image-bytes")]
    assert sim.conversation(userid="u1") == [("markdown", "hello")]


# --- connections --------------------------------------------------------------------------------------------------
def test_takeover_sends_disconnected_event_then_drops(sim, client, clients):
    p = sim.push_text(BOT, "u1", "hi")
    client.push()
    assert sim.takeover(BOT) == 1
    event = client.push()
    assert event["cmd"] == "aibot_event_callback" and event["body"]["event"] == {"eventtype": "disconnected_event"}
    assert client.dropped().rcvd is None  # TCP drop, no close frame
    with pytest.raises(NotConnected):
        sim.push_text(BOT, "u1", "hi")
    sim.wait(lambda: sim.connections[0].close_reason == "takeover", timeout=2)
    assert sim.takeovers[0]["kicked"] == 1 and sim.takeovers[0]["by"] is None
    c2 = clients(sim)
    c2.subscribe()
    assert sim.wait_subscribed(BOT, timeout=2) == 2 and sim.connection_count(BOT) == 2
    assert stream(c2, p.req_id, "s", "answer", finish=True)["errcode"] == 0  # req_ids survive by default


def test_second_client_takes_over_after_delay(make, clients, clock):
    sim = make(takeover_drop_after=100)
    old, new = clients(sim), clients(sim)
    old.subscribe()
    new.subscribe()
    assert old.push()["body"]["event"]["eventtype"] == "disconnected_event"
    assert sim.wait_subscribed(BOT, timeout=2) == 2
    assert old.call("ping")["errcode"] == 0  # still alive at transport level
    sim.push_text(BOT, "u1", "to the newest")
    assert new.push()["body"]["text"]["content"] == "to the newest"
    clock.advance(101)
    assert old.dropped().rcvd is None
    assert new.call("ping")["errcode"] == 0
    assert sim.takeovers[0] | {"at": 0} == {"at": 0, "bot_id": BOT, "kicked": 1, "by": 2}


def test_drop_after_frames_cuts_a_stream(sim, client, clients):
    p = sim.push_text(BOT, "u1", "hi")
    client.push()
    sim.drop_after_frames(BOT, 2)
    assert stream(client, p.req_id, "s", "one")["errcode"] == 0
    client.send("aibot_respond_msg", {"msgtype": "stream", "stream": {"id": "s", "content": "one two"}}, p.req_id)
    assert client.dropped().rcvd is None  # no ack for the cut frame
    (bubble,) = sim.bubbles(p.req_id)
    assert bubble.text == "one two" and not bubble.finished
    sim.wait(lambda: sim.connections[0].close_reason == "drop_after_frames", timeout=2)
    assert sim.conversation(userid="u1") == []  # an unfinished bubble is not a shown answer


def test_drop_with_and_without_close_frame(sim, client, clients):
    sim.drop(BOT)
    assert client.dropped().rcvd is None
    c2 = clients(sim)
    c2.subscribe()
    sim.wait_subscribed(BOT, timeout=2, after=1)
    sim.drop(BOT, close_frame=True, code=1001)
    assert c2.dropped().rcvd.code == 1001
    sim.wait(lambda: [r.close_reason for r in sim.connections] == ["dropped", "closed"], timeout=2)


def test_reqids_do_not_survive_reconnect_when_knob_off(make, clients):
    sim = make(reqids_survive_reconnect=False)
    c1 = clients(sim)
    c1.subscribe()
    p = sim.push_text(BOT, "u1", "hi")
    c1.push()
    sim.drop(BOT)
    c1.dropped()
    c2 = clients(sim)
    c2.subscribe()
    assert stream(c2, p.req_id, "s", "x")["errcode"] == 846605
    q = sim.push_text(BOT, "u1", "again")
    c2.push()
    assert stream(c2, q.req_id, "s", "x")["errcode"] == 0



def test_refuse_connections_turns_handshakes_away_until_lifted(sim, client, clients):
    from websockets.exceptions import InvalidStatus

    sim.refuse_connections = True
    sim.drop(BOT)
    client.dropped()
    with pytest.raises(InvalidStatus) as info:
        clients(sim)
    assert info.value.response.status_code == 503 and sim.refused_connections == 1
    sim.refuse_connections = False
    c2 = clients(sim)
    assert c2.subscribe()["errcode"] == 0 and sim.refused_connections == 1

# --- response_url and the conversation view ---------------------------------------------------------------------------
def test_response_url_once_only(sim, client, clock):
    p = sim.push_text(BOT, "u1", "hi")
    q = sim.push_text(BOT, "u1", "hi", chatid="g1")
    body = {"msgtype": "markdown", "markdown": {"content": "late answer"}}
    assert httpx.post(p.response_url, json=body).json() == {"errcode": 0, "errmsg": "ok"}
    assert httpx.post(p.response_url, json=body).json()["errcode"] == 846605  # used
    card = {"msgtype": "template_card", "template_card": {"card_type": "text_notice"}}
    assert httpx.post(q.response_url, json=card).json()["errcode"] == 40008  # cards only in single chat
    assert httpx.post(q.response_url, json={"msgtype": "text"}).json()["errcode"] == 40008
    assert httpx.post(q.response_url, content=b"{no").json()["errcode"] == 47001
    assert httpx.post(sim.http_url + "/cgi-bin/aibot/response?response_code=nope", json=body).json()["errcode"] == 846605
    clock.advance(3601)
    assert httpx.post(q.response_url, json=body).json()["errcode"] == 846604
    assert sim.response_posts == [body]
    assert sim.conversation(userid="u1") == [("markdown", "late answer")]
    assert [a["errcode"] for a in sim.response_attempts] == [0, 846605, 40008, 40008, 47001, 846605, 846604]


def test_response_url_for_a_callback_mode_message(sim, clock):
    url = sim.response_url(BOT, "u1", chatid="g1")
    body = {"msgtype": "markdown", "markdown": {"content": "later"}}
    assert httpx.post(url, json=body).json()["errcode"] == 0
    assert httpx.post(url, json=body).json()["errcode"] == 846605  # used
    assert sim.conversation(chatid="g1") == [("markdown", "later")] and sim.conversation(userid="u1") == []
    late = sim.response_url(BOT, "u1")
    clock.advance(3601)
    assert httpx.post(late, json=body).json()["errcode"] == 846604


def test_conversation_view(sim, client):
    welcome = sim.push_enter_chat(BOT, "u1")
    client.push()
    client.call("aibot_respond_welcome_msg", {"msgtype": "text", "text": {"content": "hi there"}}, welcome.req_id)
    p = sim.push_text(BOT, "u1", "question")
    client.push()
    stream(client, p.req_id, "s1", "partial")
    stream(client, p.req_id, "s2", "never finished")
    client.call("aibot_respond_msg", {"msgtype": "markdown", "markdown": {"content": "md"}}, p.req_id)
    stream(client, p.req_id, "s1", "final answer", finish=True)
    client.call("aibot_send_msg", {"chatid": "u1", "msgtype": "markdown", "markdown": {"content": "push"}})
    httpx.post(p.response_url, json={"msgtype": "markdown", "markdown": {"content": "via url"}})
    assert sim.conversation(userid="u1") == [("welcome", "hi there"), ("stream", "final answer"), ("markdown", "md"),
                                             ("markdown", "push"), ("markdown", "via url")]
    assert sim.conversation(userid="u2") == [] and sim.conversation(chatid="u1") == []
