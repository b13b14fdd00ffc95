"""`python app.py` with `channel_type: web` and the Dify simulator, driven over HTTP and SSE."""
from __future__ import annotations

import json
import queue
import signal
import socket
import sys
import threading
import time

import httpx
import pytest

from tests.e2e.daemon import free_port, web_daemon

pytestmark = pytest.mark.slow


class SSE:
    """A raw-socket SSE client: events land in a queue as dicts {"id", "data"}."""

    def __init__(self, port: int, user: str, last_id: str | None = None, read: bool = True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        extra = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
        self.sock.sendall(
            f"GET /sse/{user} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{extra}\r\n".encode()
        )
        self.events: "queue.Queue[dict]" = queue.Queue()
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
            text = ""
            while True:
                # Chunked transfer: strip the chunk-size lines, keep the payload.
                while b"\r\n" in buffer:
                    size_line, rest = buffer.split(b"\r\n", 1)
                    size = int(size_line, 16)
                    if len(rest) < size + 2:
                        break
                    text += rest[:size].decode()
                    buffer = rest[size + 2:]
                    if size == 0:
                        return
                while "\n\n" in text:
                    block, text = text.split("\n\n", 1)
                    event = {}
                    for line in block.split("\n"):
                        if line.startswith("id: "):
                            event["id"] = line[4:]
                        elif line.startswith("data: "):
                            event["data"] = json.loads(line[6:])
                    if "data" in event:
                        self.events.put(event)
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


def test_streamed_pieces_arrive_in_order(web):
    daemon, server, port, base = web
    server.push_answer("first part\n\nsecond part\n\nthird part", chunk_size=3, chunk_delay=0.02)
    stream = SSE(port, "streamer")
    try:
        assert stream.opened.wait(5)
        post(base, "streamer", "tell me in parts")
        contents = [stream.next()["data"]["content"] for _ in range(3)]
        assert contents == ["first part", "second part", "third part"]
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
    "body, status",
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (json.dumps({"message": "no user"}).encode(), 400),
        (json.dumps({"user_id": "dave"}).encode(), 400),
        (json.dumps({"user_id": "dave", "message": ""}).encode(), 400),
        (json.dumps({"user_id": "dave", "message": "   "}).encode(), 400),
        (json.dumps({"user_id": "dave", "message": 42}).encode(), 400),
        (json.dumps({"user_id": "../etc/passwd", "message": "hi"}).encode(), 400),
        (json.dumps({"user_id": "x" * 65, "message": "hi"}).encode(), 400),
        (json.dumps({"user_id": "dave", "message": "y" * 8001}).encode(), 413),
        (json.dumps({"user_id": "dave", "message": "z" * 200_000}).encode(), 413),
        ("{\"user_id\": \"dave\", \"message\": \"\xff\"}".encode("latin-1"), 400),
    ],
)
def test_bad_input_is_refused_with_json(web, body, status):
    daemon, server, port, base = web
    r = httpx.post(base + "/message", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["status"] == "error"
    assert r.json()["message"]


def test_bad_paths_are_refused_with_json(web):
    daemon, server, port, base = web
    r = httpx.get(base + "/sse/bad%20id!")
    assert r.status_code == 400 and r.json()["status"] == "error"
    r = httpx.get(base + "/sse/" + "a" * 65)
    assert r.status_code == 400
    r = httpx.get(base + "/nowhere")
    assert r.status_code == 404 and r.json()["status"] == "error"
    r = httpx.get(base + "/media/alice/not-a-real-id")
    assert r.status_code == 404
    r = httpx.get(base + "/static/../../config.json")
    assert r.status_code == 404
    assert daemon.proc.poll() is None


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


def test_password_guards_the_api(settings, monkeypatch):
    from channel.web import web_channel

    settings["web_password"] = "s3cret"
    settings["web_host"] = "127.0.0.1"
    settings["web_port"] = free_port()
    channel = web_channel.WebChannel()
    channel.channel_type = "web"
    channel.startup()
    base = channel.server.base_url
    try:
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
    finally:
        channel.stop_accepting()
        channel.stop()


def test_outbox_is_bounded_and_media_is_served(settings, monkeypatch):
    import io

    from bridge.context import Context, ContextType
    from bridge.reply import Reply, ReplyType
    from channel.web import web_channel

    settings["web_host"] = "127.0.0.1"
    settings["web_port"] = free_port()
    channel = web_channel.WebChannel()
    channel.startup()
    base = channel.server.base_url
    try:
        for i in range(web_channel.OUTBOX_MAX + 20):
            channel.push("flood", "TEXT", f"n{i}")
        stream = SSE(channel.server.port, "flood")
        contents = [stream.next()["data"]["content"] for _ in range(web_channel.OUTBOX_MAX)]
        assert contents[0] == "n20" and contents[-1] == f"n{web_channel.OUTBOX_MAX + 19}"
        stream.close()

        context = Context(ContextType.TEXT, "x")
        context["receiver"] = "pics"
        png = b"\x89PNG\r\n\x1a\n" + b"0" * 32
        channel.send(Reply(ReplyType.IMAGE, io.BytesIO(png)), context)
        channel.send(Reply(ReplyType.IMAGE_URL, "https://example.org/a.png"), context)
        stream = SSE(channel.server.port, "pics")
        image, image_url = stream.next()["data"], stream.next()["data"]
        stream.close()
        assert image["type"] == "IMAGE" and image["content"].startswith("/media/pics/")
        fetched = httpx.get(base + image["content"])
        assert fetched.content == png and fetched.headers["content-type"] == "image/png"
        assert image_url == {**image_url, "type": "IMAGE_URL", "content": "https://example.org/a.png"}
    finally:
        channel.stop_accepting()
        channel.stop()
