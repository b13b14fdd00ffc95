"""`python app.py` with `channel_type: web` and the Dify simulator, driven over HTTP and SSE."""
from __future__ import annotations

import contextlib
import json
import queue
import signal
import socket
import sys
import threading
import time

from urllib.parse import quote

import httpx
import pytest

from tests.e2e.daemon import free_port, web_daemon

pytestmark = pytest.mark.slow


class SSE:
    """A raw-socket SSE client. Events land in queues as dicts {"id", "data"}: `events`
    gets the unnamed ones (what an EventSource `onmessage` handler, i.e. a front end
    written for the original, sees), `partials` the ones named "partial", `named` the
    ones with any other name."""

    def __init__(self, port: int, user: str, last_id: str | None = None, read: bool = True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        extra = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
        self.sock.sendall(
            f"GET /sse/{quote(user, safe='')} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{extra}\r\n".encode()
        )
        self.events: "queue.Queue[dict]" = queue.Queue()
        self.partials: "queue.Queue[dict]" = queue.Queue()
        self.named: "queue.Queue[dict]" = queue.Queue()
        self.status: int | None = None
        self.opened = threading.Event()
        if read:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        try:
            while b"\r\n\r\n" not in buffer:
                chunk = self.sock.recv(4096)
                if not chunk:
                    return
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            self.status = int(head.split()[1])
            self.opened.set()
            text = b""  # bytes: a chunk may end inside a UTF-8 character
            while True:
                # Chunked transfer: strip the chunk-size lines, keep the payload.
                while b"\r\n" in buffer:
                    size_line, rest = buffer.split(b"\r\n", 1)
                    size = int(size_line, 16)
                    if len(rest) < size + 2:
                        break
                    text += rest[:size]
                    buffer = rest[size + 2:]
                    if size == 0:
                        return
                while b"\n\n" in text:
                    raw, text = text.split(b"\n\n", 1)
                    block = raw.decode("utf-8")
                    event = {}
                    for line in block.split("\n"):
                        if line.startswith("id: "):
                            event["id"] = line[4:]
                        elif line.startswith("event: "):
                            event["event"] = line[7:]
                        elif line.startswith("data: "):
                            event["data"] = json.loads(line[6:])
                    if "data" in event:
                        name = event.get("event")
                        (self.events if name is None else self.partials if name == "partial" else self.named).put(event)
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
        except OSError:
            return
        finally:
            self.opened.set()

    def next(self, timeout: float = 15) -> dict:
        return self.events.get(timeout=timeout)

    def none_within(self, seconds: float) -> bool:
        try:
            self.events.get(timeout=seconds)
            return False
        except queue.Empty:
            return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def wait_idle(base: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(base + "/healthz").json()["queue"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError("messages still pending")



@contextlib.contextmanager
def running_channel(settings):
    """A WebChannel in this process on a free local port, stopped afterwards."""
    from channel.web import web_channel

    settings["web_host"] = "127.0.0.1"
    settings["web_port"] = free_port()
    channel = web_channel.WebChannel()
    channel.channel_type = "web"
    channel.startup()
    try:
        yield channel
    finally:
        channel.stop_accepting()
        channel.stop()

@pytest.fixture(scope="module")
def web(tmp_path_factory):
    with web_daemon(tmp_path_factory.mktemp("web"), dify_stream_reply=True) as (daemon, server, port, base, health):
        assert health["channel"] == "web"
        yield daemon, server, port, base


def post(base: str, user: str, message: str) -> httpx.Response:
    return httpx.post(base + "/message", json={"user_id": user, "message": message}, timeout=10)


def test_question_answered_over_sse(web):
    daemon, server, port, base = web
    stream = SSE(port, "alice")
    try:
        assert stream.opened.wait(5) and stream.status == 200
        r = post(base, "alice", "hello there")
        assert r.status_code == 200
        assert r.json()["status"] == "success"
        event = stream.next()
        assert event["data"]["type"] == "TEXT"
        assert event["data"]["content"] == "echo: hello there"
        assert isinstance(event["data"]["timestamp"], float)
    finally:
        stream.close()


def test_streamed_answer_grows_in_partial_events_then_arrives_once(web):
    daemon, server, port, base = web
    answer = "first part\n\nsecond part\n\nthird part"
    server.push_answer(answer, chunk_size=3, chunk_delay=0.02)
    stream = SSE(port, "streamer")
    try:
        assert stream.opened.wait(5)
        post(base, "streamer", "tell me in parts")
        final = stream.next()["data"]
        # What a front end written for the original sees: the whole answer, once.
        assert final["type"] == "TEXT" and final["content"] == answer
        assert stream.none_within(0.5)
        # What the new page sees before it: one answer growing, piece by piece.
        partials = []
        while not stream.partials.empty():
            partials.append(stream.partials.get()["data"])
        assert len(partials) >= 3
        assert {p["type"] for p in partials} == {"TEXT_PARTIAL"}
        assert {p["stream"] for p in partials} == {final["stream"]}
        shown = ""
        for p in partials:
            longer = shown[:p["offset"]] + p["delta"]
            assert answer.startswith(longer) and len(longer) > len(shown)
            shown = longer
    finally:
        stream.close()


def test_reconnect_in_the_middle_loses_nothing(web):
    daemon, server, port, base = web
    first = SSE(port, "bob")
    assert first.opened.wait(5)
    post(base, "bob", "one")
    got = first.next()
    assert got["data"]["content"] == "echo: one"
    first.close()
    # The answer to "two" comes while bob has no open stream.
    post(base, "bob", "two")
    wait_idle(base)
    again = SSE(port, "bob", last_id=got["id"])
    try:
        missed = again.next()
        assert missed["data"]["content"] == "echo: two"
        assert again.none_within(0.5)  # once, and "one" is not replayed
    finally:
        again.close()
    # A fresh connection (no Last-Event-ID) gets only what was never delivered: nothing.
    fresh = SSE(port, "bob")
    try:
        assert fresh.opened.wait(5)
        assert fresh.none_within(0.5)
    finally:
        fresh.close()


def test_undelivered_reply_waits_for_a_new_connection(web):
    daemon, server, port, base = web
    post(base, "carol", "while away")
    wait_idle(base)
    stream = SSE(port, "carol")
    try:
        assert stream.next()["data"]["content"] == "echo: while away"
    finally:
        stream.close()


def test_200_open_streams_do_not_starve_a_new_user(web):
    daemon, server, port, base = web
    streams = [SSE(port, f"idle{i}", read=False) for i in range(200)]
    try:
        for s in streams:  # every stream is really open (its headers came back)
            s.sock.settimeout(10)
            assert s.sock.recv(1024).startswith(b"HTTP/1.1 200")
        listener = SSE(port, "newcomer")
        t0 = time.monotonic()
        assert post(base, "newcomer", "still there?").status_code == 200
        assert listener.next(10)["data"]["content"] == "echo: still there?"
        assert time.monotonic() - t0 < 5
        assert httpx.get(base + "/healthz").status_code == 200
        listener.close()
    finally:
        for s in streams:
            s.close()


@pytest.mark.parametrize(
    "body, text",
    [
        (b"{not json", "Invalid JSON"),
        (b"[1, 2]", "Invalid JSON"),
        ("{\"user_id\": \"dave\", \"message\": \"\xff\"}".encode("latin-1"), "Invalid JSON"),
        (json.dumps({"user_id": "dave"}).encode(), "No message provided"),
        (json.dumps({"user_id": "dave", "message": ""}).encode(), "No message provided"),
        (json.dumps({"user_id": "dave", "message": "   "}).encode(), "No message provided"),
        (json.dumps({"user_id": "dave", "message": 42}).encode(), "No message provided"),
    ],
)
def test_refusals_the_original_made_keep_its_status_and_text(web, body, text):
    # The original answered these with HTTP 200 and these texts (checked by running it).
    daemon, server, port, base = web
    r = httpx.post(base + "/message", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "error"
    assert r.json()["message"] == text
    assert r.json()["detail"]


@pytest.mark.parametrize(
    "body, status",
    [
        (json.dumps({"user_id": "x" * 257, "message": "hi"}).encode(), 400),
        (json.dumps({"user_id": "  ", "message": "hi"}).encode(), 400),
        (json.dumps({"user_id": ["a"], "message": "hi"}).encode(), 400),
        (json.dumps({"user_id": "..", "message": "hi"}).encode(), 400),  # browsers drop it from /sse/..
        (json.dumps({"user_id": ".", "message": "hi"}).encode(), 400),
        (b'{"user_id": "bad\\ud800", "message": "hi"}', 400),
        (json.dumps({"user_id": "dave", "message": "hi", "msg_id": "m" * 257}).encode(), 400),
        (json.dumps({"user_id": "dave", "message": "y" * 8001}).encode(), 413),
        (json.dumps({"user_id": "dave", "message": "z" * 200_000}).encode(), 413),
    ],
)
def test_new_refusals_have_their_http_status(web, body, status):
    daemon, server, port, base = web
    r = httpx.post(base + "/message", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["status"] == "error"
    assert r.json()["message"]


@pytest.mark.parametrize("user", [
    "张三@例子.com", "first.last+tag@example.org", "a/b/../c", "with space?&#%", "evil\nline", "x" * 256,
])
def test_any_text_is_a_user_id(web, user):
    daemon, server, port, base = web
    stream = SSE(port, user)
    try:
        assert stream.opened.wait(5) and stream.status == 200
        r = post(base, user, f"hi from {user}")
        assert r.status_code == 200 and r.json()["status"] == "success", r.text
        assert stream.next()["data"]["content"] == f"echo: hi from {user}"
    finally:
        stream.close()


def test_a_missing_user_id_is_the_originals_default_user(web):
    daemon, server, port, base = web
    stream = SSE(port, "default_user")
    try:
        assert stream.opened.wait(5)
        r = httpx.post(base + "/message", json={"message": "who am I"})
        assert r.status_code == 200 and r.json()["status"] == "success"
        assert stream.next()["data"]["content"] == "echo: who am I"
    finally:
        stream.close()


def test_history_gives_the_conversation_back(web):
    daemon, server, port, base = web
    user = "历史 reader"
    post(base, user, "remember me")
    wait_idle(base)
    r = httpx.get(base + "/history/" + quote(user, safe=""))
    assert r.status_code == 200
    body = r.json()
    assert [(m["role"], m["content"]) for m in body["messages"]] == [("user", "remember me"), ("bot", "echo: remember me")]
    # A stream that starts after what the history showed gets no repeat of it.
    stream = SSE(port, user, last_id=body["last_event_id"])
    try:
        assert stream.opened.wait(5)
        assert stream.none_within(0.5)
    finally:
        stream.close()


def test_history_keeps_no_password(web):
    daemon, server, port, base = web
    user = "auth-history"
    post(base, user, "#auth secret-pw-123")
    wait_idle(base)
    r = httpx.get(base + "/history/" + quote(user, safe=""))
    assert r.status_code == 200
    assert r.json()["messages"][0]["content"] == "#auth *****"
    assert "secret-pw-123" not in r.text


def test_bad_paths_are_refused_with_json(web):
    daemon, server, port, base = web
    r = httpx.get(base + "/sse/%20%20")
    assert r.status_code == 400 and r.json()["status"] == "error"
    r = httpx.get(base + "/sse/" + "a" * 257)
    assert r.status_code == 400
    r = httpx.get(base + "/history/" + "a" * 257)
    assert r.status_code == 400
    r = httpx.get(base + "/nowhere")
    assert r.status_code == 404 and r.json()["status"] == "error"
    r = httpx.get(base + "/media/alice/not-a-real-id")
    assert r.status_code == 404
    r = httpx.get(base + "/static/../../config.json")
    assert r.status_code == 404
    r = httpx.get(base + "/static/vendor/../../web_channel.py")
    assert r.status_code == 404
    assert daemon.proc.poll() is None


def test_open_to_all_without_password_warns_at_start(web):
    daemon, server, port, base = web
    daemon.wait_for_log("web_host 0.0.0.0")
    with open(daemon.folder + "/run.log", encoding="utf-8") as f:
        line = next(line for line in f if "web_host 0.0.0.0" in line)
    assert line.startswith("[WARNING]")
    assert "web_password" in line and "127.0.0.1" in line


def test_page_is_served(web):
    daemon, server, port, base = web
    r = httpx.get(base + "/chat")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert httpx.get(base + "/static/chat.js").status_code == 200


def test_a_retried_post_with_the_same_msg_id_is_answered_once(web):
    daemon, server, port, base = web
    stream = SSE(port, "retrier")
    try:
        assert stream.opened.wait(5)
        body = {"user_id": "retrier", "message": "only once", "msg_id": "m-42"}
        first = httpx.post(base + "/message", json=body)
        second = httpx.post(base + "/message", json=body)
        assert first.status_code == second.status_code == 200
        assert second.json()["handled"] is False
        assert stream.next()["data"]["content"] == "echo: only once"
        assert stream.none_within(0.5)
    finally:
        stream.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_with_an_open_stream_exits_0(web):
    daemon, server, port, base = web
    stream = SSE(port, "last")
    assert stream.opened.wait(5)
    t0 = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.wait(20) == 0
    assert time.monotonic() - t0 < 10
    stream.close()
    assert "Traceback" not in daemon.stderr()


def test_password_guards_the_api(settings, logs):
    settings["web_password"] = "s3cret"
    with running_channel(settings) as channel:
        base = channel.server.base_url
        body = {"user_id": "eve", "message": "hi", "msg_id": "m1"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            r = httpx.post(base + "/message", json=body, headers=headers)
            assert r.status_code == 401 and r.json()["auth"] == "password"
        assert httpx.get(base + "/sse/eve").status_code == 401
        assert httpx.post(base + "/token", json={"user_id": "eve"}).status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        token = httpx.post(base + "/token", json={"user_id": "eve"}, headers=good).json()["token"]
        assert token
        assert httpx.get(base + "/sse/mallory", params={"token": token}).status_code == 401  # bound to eve
        expired = str(int(time.time()) - 5) + "." + token.split(".", 1)[1]
        assert httpx.get(base + "/sse/eve", params={"token": expired}).status_code == 401
        with httpx.stream("GET", base + "/sse/eve", params={"token": token}, timeout=5) as stream:
            assert stream.status_code == 200
        assert httpx.get(base + "/chat").status_code == 200  # the page itself asks for the password
        assert httpx.get(base + "/history/eve").status_code == 401
        assert httpx.get(base + "/history/eve", params={"token": token}).status_code == 200
        assert not [m for m in logs.messages if "all network interfaces" in m]


def test_outbox_is_bounded_and_media_is_served(settings, logs, tmp_path):
    import io

    from bridge.context import Context, ContextType
    from bridge.reply import Reply, ReplyType
    from channel.web import web_channel

    with running_channel(settings) as channel:
        base = channel.server.base_url
        flood = "flood\n[ERROR] forged line"
        for i in range(web_channel.OUTBOX_MAX + 20):
            channel.push(flood, "TEXT", f"n{i}")
        stream = SSE(channel.server.port, flood)
        contents = [stream.next()["data"]["content"] for _ in range(web_channel.OUTBOX_MAX)]
        assert contents[0] == "n20" and contents[-1] == f"n{web_channel.OUTBOX_MAX + 19}"
        stream.close()
        # The id went into the log, escaped: it cannot start a line of its own.
        dropped = [m for m in logs.messages if "undelivered reply was dropped" in m]
        assert dropped and all("\n" not in m and "flood\\n[ERROR] forged line" in m for m in dropped)
        assert not [m for m in logs.messages if "all network interfaces" in m]  # 127.0.0.1: no warning

        user = "pics/张 ?#%"
        context = Context(ContextType.TEXT, "x")
        context["receiver"] = user
        png = b"\x89PNG\r\n\x1a\n" + b"0" * 32
        report = tmp_path / "report.pdf"
        report.write_bytes(b"%PDF-1.4 test")
        channel.send(Reply(ReplyType.IMAGE, io.BytesIO(png)), context)
        channel.send(Reply(ReplyType.IMAGE_URL, "https://example.org/a.png"), context)
        channel.send(Reply(ReplyType.FILE, str(report)), context)
        stream = SSE(channel.server.port, user)
        image, image_url, file = stream.next()["data"], stream.next()["data"], stream.next()["data"]
        stream.close()
        prefix = "/media/" + quote(user, safe="") + "/"
        assert image["type"] == "IMAGE" and image["content"].startswith(prefix)
        assert image["url"] == image["content"] and image["mime"] == "image/png"
        fetched = httpx.get(base + image["content"])
        assert fetched.content == png and fetched.headers["content-type"] == "image/png"
        assert image_url == {**image_url, "type": "IMAGE_URL", "content": "https://example.org/a.png"}
        # content is a string, as in the original; the details are beside it.
        assert file["type"] == "FILE" and isinstance(file["content"], str) and file["content"].startswith(prefix)
        assert (file["url"], file["name"], file["mime"]) == (file["content"], "report.pdf", "application/pdf")
        assert httpx.get(base + file["content"]).content == b"%PDF-1.4 test"


def test_history_is_bounded_and_a_withdrawn_partial_answer_leaves_the_page(settings):
    from bridge.context import Context, ContextType
    from bridge.reply import Reply, ReplyType
    from channel.web.history import WebJournal
    from common.store import MemoryStore

    with running_channel(settings) as channel:
        channel.journal = WebJournal(MemoryStore(), 3)
        context = Context(ContextType.TEXT, "q")
        context["receiver"] = "walt"
        for i in range(5):
            channel.send(Reply(ReplyType.TEXT, f"answer {i}"), context)
        history = httpx.get(channel.server.base_url + "/history/walt").json()
        assert [e["content"] for e in history["messages"]] == ["answer 2", "answer 3", "answer 4"]

        stream = SSE(channel.server.port, "walt", last_id=history["last_event_id"])
        assert stream.opened.wait(5)
        # Handling a message whose bot showed part of an answer, then sent nothing (an empty
        # context ends at once): the part is withdrawn and the page told the message is done.
        unanswered = Context(ContextType.TEXT, "")
        unanswered["receiver"] = "walt"
        channel.show_partial(unanswered, "s1", "never fin")
        assert stream.partials.get(timeout=5)["data"]["delta"] == "never fin"
        channel._handle(unanswered)
        gone = stream.partials.get(timeout=5)["data"]
        assert gone["stream"] == "s1" and gone["done"] is True
        end = stream.named.get(timeout=5)
        assert end["event"] == "end" and end["data"]["final"] is True
        assert stream.none_within(0.3)  # an old front end sees nothing of it
        history = httpx.get(channel.server.base_url + "/history/walt").json()
        assert [e["content"] for e in history["messages"]][-1] == "answer 4"
        stream.close()


def test_the_chatgpt_bot_shows_its_answer_growing(settings):
    from bot.chatgpt.chat_gpt_bot import ChatGPTBot
    from bridge.context import Context, ContextType
    from tests.fakes.openai_server import DEFAULT_KEY, OpenAIServer

    with running_channel(settings) as channel:
        with OpenAIServer() as openai:
            settings.update(open_ai_api_base=openai.base_url, open_ai_api_key=DEFAULT_KEY, model="gpt-4o-mini")
            answer = "A long answer, written three characters at a time."
            openai.push_answer(answer)
            stream = SSE(channel.server.port, "gpt user")
            assert stream.opened.wait(5)
            context = Context(ContextType.TEXT, "tell me")
            context.kwargs.update(receiver="gpt user", session_id="gpt user", channel=channel)
            reply = ChatGPTBot().reply("tell me", context)
            # Shown while the answer was read (kept for the page until the final text comes).
            shown = stream.partials.get(timeout=5)["data"]
            assert answer.startswith(shown["delta"]) and shown["delta"]
            channel.send(reply, context)
            final = stream.next()["data"]
            assert final["content"] == answer and final["stream"] == shown["stream"]
            stream.close()
