"""Helpers for the Dify tests: the simulator wired into the settings, contexts as the
channel builds them, a channel that records deliveries, and a tiny raw HTTP server
for responses the simulator cannot script (Retry-After headers, malformed SSE)."""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bridge.context import Context, ContextType
from sandbox.dify_server import DifyServer
from tests.fakes.recording_channel import make_msg

API_KEY = "app-test"


@pytest.fixture
def dify_settings(settings, monkeypatch):
    """Fast retries and timeouts; no daemon store (each bot falls back to its own MemoryStore)."""
    from bot.dify.dify_client import DifyClient, close_clients
    from common import memory
    from config import conf

    monkeypatch.setattr(DifyClient, "backoff_base", 0.001)
    monkeypatch.setattr(conf().user_data_book, "_store", None)
    settings["model"] = "dify"
    settings["bot_type"] = ""
    settings["dify_api_key"] = API_KEY
    settings["dify_connect_timeout"] = 2
    settings["dify_read_timeout"] = 5
    settings["expires_in_seconds"] = 0
    yield settings
    close_clients()
    memory.USER_IMAGE_CACHE.clear()


@pytest.fixture
def dify(dify_settings):
    """A chat-mode simulator the settings point at."""
    with DifyServer(api_key=API_KEY, mode="chat") as server:
        dify_settings["dify_api_base"] = server.base_url
        yield server


class DeliveryChannel:
    """Stands in for context["channel"]: records what the bot delivers before its reply."""

    def __init__(self) -> None:
        self.delivered: list[Any] = []  # Reply objects, in order
        self.lock = threading.Lock()

    def deliver(self, context: Context, reply: Any) -> None:
        with self.lock:
            self.delivered.append(reply)


def make_context(text: str, *, group: tuple[str, str] | None = None, sender: str = "alice",
                 sender_name: str = "Alice", shared: bool = False, channel: Any = None,
                 ctype: ContextType = ContextType.TEXT) -> Context:
    """A context as ChatChannel._compose_context builds it for a TEXT message."""
    msg = make_msg(text, group=group, sender=sender, sender_name=sender_name)
    context = Context(ctype, text)
    context["msg"] = msg
    context["isgroup"] = group is not None
    if group is not None:
        group_id = group[0]
        context["session_id"] = group_id if shared else f"{sender}@@{group_id}"
        context["is_shared_session_group"] = shared
        context["group_name"] = group[1]
        context["receiver"] = group_id
    else:
        context["session_id"] = sender
        context["receiver"] = sender
    if channel is not None:
        context["channel"] = channel
    return context


class RawServer:
    """Answers each request with the next scripted raw response: (status, headers, body).

    ``body`` is bytes (sent with Content-Length) or a list of byte chunks (sent with
    chunked encoding and a proper end)."""

    def __init__(self) -> None:
        self.responses: list[tuple[int, dict[str, str], Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        raw = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with raw.lock:
                    raw.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status, headers, payload = raw.responses.pop(0) if raw.responses else (500, {}, b"{}")
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if isinstance(payload, list):
                    self.send_header("Transfer-Encoding", "chunked")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for chunk in payload:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            do_GET = do_POST

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def push(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        with self.lock:
            self.responses.append((status, dict(headers or {}), body))

    def __enter__(self) -> "RawServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def unused_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SaturatedListener:
    """A loopback port whose accept queue is full, so new connections time out
    while connecting (Linux drops the SYN). Used to provoke a connect timeout."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers: list[socket.socket] = []

    def __enter__(self) -> "SaturatedListener":
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", self.port))
            except (BlockingIOError, OSError):
                pass
            self.fillers.append(filler)
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __exit__(self, *exc: object) -> None:
        for sock in self.fillers + [self.listener]:
            sock.close()
